import Tensors

/// A table of learned vectors looked up by integer id: [count, dimension] (`nn.Embedding`).
/// Ids outside `0..<count` are a thrown error from `lookup`.
public final class Embedding: Module {
    public let weight: Tensor
    /// The id whose vector gets no gradient (a padding token's), or nil.
    public let paddingIndex: Int?
    public let state = ModuleState()

    /// Rows drawn from N(0, standardDeviation²): PyTorch's default is 1, BERT's 0.02.
    public init(_ count: Int, _ dimension: Int, paddingIndex: Int? = nil, standardDeviation: Float = 1,
                using generator: inout RandomGenerator) {
        require(count > 0 && dimension > 0, "Embedding: count and dimension must be positive, got \(count) × \(dimension)")
        require(paddingIndex.map { $0 >= 0 && $0 < count } ?? true, "Embedding: padding index \(paddingIndex ?? 0) is outside 0..<\(count)")
        self.paddingIndex = paddingIndex
        weight = Tensor.randomNormal([count, dimension], standardDeviation: standardDeviation, using: &generator)
        weight.requiresGrad = true
    }

    public var count: Int { weight.shape[0] }
    public var dimension: Int { weight.shape[1] }

    /// The vectors of `ids` (row-major, shape `shape`): [shape..., dimension].
    public func lookup(_ ids: [Int], shape: Shape) throws -> Tensor {
        let output = try Tensor.embedding(weight, indices: ids, indexShape: shape, paddingIndex: paddingIndex)
        if state.tap != nil { state.report(input: Tensor(ids.map(Float.init), shape: shape), output: output) }
        return output
    }

    /// Looks up ids stored as whole numbers in a float tensor. For ids that were checked
    /// already (a tokenizer's output against this table); `lookup` throws instead.
    public func forward(_ input: Tensor) -> Tensor {
        do {
            return try Tensor.embedding(weight, indices: try TokenBatch.integers(input, name: "Embedding input"), indexShape: input.shape,
                                        paddingIndex: paddingIndex)
        } catch {
            requirementFailed("\(error)")
        }
    }

    public var localParameters: [(name: String, tensor: Tensor)] { [("weight", weight)] }
}
