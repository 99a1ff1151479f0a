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

    /// The table in int8 when it is quantized (`DynamicQuantization`: each row symmetric with
    /// its own scale), else nil; `weight` then holds exactly the values it stands for, which
    /// lookups return. Int8 here shrinks the model file (a text model's largest tensor); a
    /// lookup costs the same either way. Training the table (an update from the optimizer)
    /// makes it float again.
    public private(set) var int8: DynamicInt8Weights?

    /// Sets the table to the values of `rows` (int8 [count, dimension], a scale per row).
    public func setInt8(_ rows: DynamicInt8Weights) {
        require(rows.outputs == count && rows.inputs == dimension, "Embedding.setInt8: int8 rows [\(rows.outputs), \(rows.inputs)] for a table of \(weight.shape)")
        let values = rows.dequantized
        weight.withUnsafeMutableBufferPointer { _ = $0.update(from: values) }
        int8 = rows
    }

    /// The vectors of `ids` (row-major, shape `shape`): [shape..., dimension].
    public func lookup(_ ids: [Int], shape: Shape) throws -> Tensor {
        dropInt8WhenTrained()
        let output = try Tensor.embedding(weight, indices: ids, indexShape: shape, paddingIndex: paddingIndex)
        if state.tap != nil { state.report(input: Tensor(ids.map(Float.init), shape: shape), output: output) }
        return output
    }

    /// Looks up ids stored as whole numbers in a float tensor. For ids that were checked
    /// already (a tokenizer's output against this table); `lookup` throws instead.
    /// The first `count` rows [count, dimension] (a table of positions read in order).
    public func firstRows(_ count: Int) -> Tensor {
        dropInt8WhenTrained()
        return weight.sliced(alongAxis: 0, 0..<count)
    }

    /// Read in training mode with gradients recorded, the table is about to be trained: float again.
    private func dropInt8WhenTrained() {
        if int8 != nil, GradientRecording.isEnabled, state.isTraining { int8 = nil }
    }

    public func forward(_ input: Tensor) -> Tensor {
        dropInt8WhenTrained()
        do {
            return try Tensor.embedding(weight, indices: try TokenBatch.integers(input, name: "Embedding input"), indexShape: input.shape,
                                        paddingIndex: paddingIndex)
        } catch {
            requirementFailed("\(error)")
        }
    }

    public var localParameters: [(name: String, tensor: Tensor)] { [("weight", weight)] }
}
