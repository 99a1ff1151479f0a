import Tensors

/// y = x·Wᵀ + b. Input [..., inFeatures] → output [..., outFeatures]; weight [out, in].
public final class Linear: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public let state = ModuleState()

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, using generator: inout RandomGenerator) {
        require(inFeatures > 0 && outFeatures > 0, "Linear: features must be positive, got \(inFeatures) → \(outFeatures)")
        weight = defaultUniform([outFeatures, inFeatures], fanIn: inFeatures, using: &generator)
        self.bias = bias ? defaultUniform([outFeatures], fanIn: inFeatures, using: &generator) : nil
    }

    /// A layer holding the given values (copied, trainable): weight [out, in], bias [out].
    /// For heads taken from other formats (an ONNX graph's Gemm).
    public init(weight: Tensor, bias: Tensor?) {
        require(weight.rank == 2 && weight.shape[0] > 0 && weight.shape[1] > 0, "Linear: weight must be [out, in], got \(weight.shape)")
        require(bias.map { $0.shape == [weight.shape[0]] } ?? true, "Linear: bias \(bias.map { "\($0.shape)" } ?? "") does not fit weight \(weight.shape)")
        self.weight = weight.copy()
        self.weight.requiresGrad = true
        self.bias = bias?.copy()
        self.bias?.requiresGrad = true
    }

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    public func forward(_ input: Tensor) -> Tensor { Tensor.linear(input, weight: state.weightTransform?(weight) ?? weight, bias: bias) }

    public var localParameters: [(name: String, tensor: Tensor)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }
}
