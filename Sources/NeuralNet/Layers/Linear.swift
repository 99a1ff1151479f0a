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

    /// The weights in int8 when the layer is dynamically quantized (`DynamicQuantization`),
    /// else nil; `weight` then holds exactly the values they stand for.
    public private(set) var int8: DynamicInt8Weights?

    /// Makes the layer compute with `weights` (int8 [out, in] per output channel), and sets
    /// `weight` to the values they stand for.
    public func setInt8(_ weights: DynamicInt8Weights) {
        require(weights.outputs == outFeatures && weights.inputs == inFeatures,
                "Linear.setInt8: int8 weights [\(weights.outputs), \(weights.inputs)] for a layer of \(weight.shape)")
        let values = weights.dequantized
        weight.withUnsafeMutableBufferPointer { _ = $0.update(from: values) }
        int8 = weights
    }

    /// A quantized layer computes in int8 (`Tensor.int8Linear`) unless it is trained: in
    /// training mode with gradients recorded it computes in float, and its int8 weights are
    /// dropped, since the optimizer is about to change `weight` (the layer is float again).
    public func forward(_ input: Tensor) -> Tensor {
        if let int8, state.weightTransform == nil {
            if !(GradientRecording.isEnabled && state.isTraining) { return Tensor.int8Linear(input, weights: int8, bias: bias) }
            self.int8 = nil
        }
        return Tensor.linear(input, weight: state.weightTransform?(weight) ?? weight, bias: bias)
    }

    public var localParameters: [(name: String, tensor: Tensor)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }
}
