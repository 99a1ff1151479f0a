/// An n-dimensional array of Float32 values, contiguous and row-major, that can take part
/// in reverse-mode automatic differentiation.
///
/// A tensor is a reference: `requiresGrad` leaves accumulate `grad` across `backward()`
/// calls until `zeroGrad()`; tensors made by ops under gradient recording remember the op
/// that made them until the graph is released by `backward()`.
public final class Tensor: @unchecked Sendable {
    public let storage: TensorStorage
    public let shape: Shape
    /// Leaves that ask for gradients (parameters, or inputs under a gradient check).
    public var requiresGrad: Bool
    /// The accumulated gradient of a leaf after `backward()`.
    public var grad: Tensor?
    /// The op that produced this tensor while recording; nil for leaves and constants.
    var gradNode: GradNode?

    init(storage: TensorStorage, shape: Shape, requiresGrad: Bool = false) {
        require(storage.count == shape.count, "Tensor: storage of \(storage.count) values cannot hold shape \(shape)")
        self.storage = storage
        self.shape = shape
        self.requiresGrad = requiresGrad
    }

    /// Uninitialised tensor for kernels that write every element (usable from the inlinable
    /// `ElementwiseKernels`).
    @usableFromInline
    package init(uninitialized shape: Shape) {
        self.storage = TensorStorage(uninitializedCount: shape.count)
        self.shape = shape
        self.requiresGrad = false
    }

    /// A tensor holding `scalars` in row-major order.
    public convenience init(_ scalars: [Float], shape: Shape, requiresGrad: Bool = false) {
        require(scalars.count == shape.count, "Tensor(_:shape:): \(scalars.count) values do not fill shape \(shape)")
        let storage = TensorStorage(uninitializedCount: scalars.count)
        scalars.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { storage.pointer.initialize(from: base, count: scalars.count) }
        }
        self.init(storage: storage, shape: shape, requiresGrad: requiresGrad)
    }

    /// A one-dimensional tensor of `scalars`.
    public convenience init(_ scalars: [Float], requiresGrad: Bool = false) {
        self.init(scalars, shape: [scalars.count], requiresGrad: requiresGrad)
    }

    /// A rank-0 tensor.
    public convenience init(scalar: Float) {
        self.init([scalar], shape: [])
    }

    public static func zeros(_ shape: Shape) -> Tensor { full(shape, 0) }
    public static func ones(_ shape: Shape) -> Tensor { full(shape, 1) }

    public static func full(_ shape: Shape, _ value: Float) -> Tensor {
        Tensor(storage: TensorStorage(repeating: value, count: shape.count), shape: shape)
    }

    /// `start, start + step, ...` below `end`, like `torch.arange`.
    public static func arange(_ start: Float, _ end: Float, step: Float = 1) -> Tensor {
        require(step != 0, "arange: step must not be zero")
        let count = Swift.max(0, Int(((end - start) / step).rounded(.up)))
        return Tensor((0..<count).map { start + Float($0) * step }, shape: [count])
    }

    /// Whether `randomNormal` and `randomUniform` draw (the default) or give zeros, without
    /// using the generator: for building a model whose every parameter is overwritten next
    /// (loading a saved model), where drawing took about a second for MiniLM's 22 million
    /// values. Set for a scope with `Tensor.$drawsRandomValues.withValue(false) { ... }`.
    @TaskLocal public static var drawsRandomValues = true

    /// Samples from N(mean, std²).
    public static func randomNormal(_ shape: Shape, mean: Float = 0, standardDeviation: Float = 1,
                                    using generator: inout RandomGenerator) -> Tensor {
        if !drawsRandomValues { return zeros(shape) }
        let result = Tensor(uninitialized: shape)
        let p = result.storage.pointer
        for i in 0..<shape.count { p[i] = mean + standardDeviation * generator.nextNormal() }
        return result
    }

    /// Samples uniformly from [low, high).
    public static func randomUniform(_ shape: Shape, low: Float = 0, high: Float = 1,
                                     using generator: inout RandomGenerator) -> Tensor {
        if !drawsRandomValues { return zeros(shape) }
        let result = Tensor(uninitialized: shape)
        let p = result.storage.pointer
        for i in 0..<shape.count { p[i] = low + (high - low) * generator.nextUniform() }
        return result
    }

    /// Number of elements.
    public var count: Int { shape.count }
    public var rank: Int { shape.rank }

    /// A copy of the values in row-major order.
    public var scalars: [Float] { Array(UnsafeBufferPointer(start: storage.pointer, count: count)) }

    /// The value of a one-element tensor.
    public var item: Float {
        require(count == 1, "item: tensor of shape \(shape) has \(count) elements, not 1")
        return storage.pointer[0]
    }

    /// Read-only access to the contiguous values.
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.pointer, count: count))
    }

    /// In-place access for optimizers and loaders. Never use it on a tensor that a
    /// recorded graph still needs (it would change what backward sees).
    public func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeMutableBufferPointer(start: storage.pointer, count: count))
    }

    /// A new leaf with the same values and no link to any graph.
    public func detached() -> Tensor {
        Tensor(storage: storage, shape: shape)
    }

    /// A deep copy (new storage), not recorded.
    public func copy() -> Tensor {
        let result = Tensor(uninitialized: shape)
        result.storage.pointer.update(from: storage.pointer, count: count)
        return result
    }

    /// Clears the accumulated gradient.
    public func zeroGrad() { grad = nil }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let shown = scalars.prefix(8).map { String($0) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(shown)\(count > 8 ? ", ..." : "")])"
    }
}
