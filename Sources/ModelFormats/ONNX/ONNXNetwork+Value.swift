import Tensors

extension ONNXNetwork {
    /// A value flowing through the graph: a float tensor, or integers (shapes, axes, indices).
    enum Value {
        case tensor(Tensor)
        case ints([Int], dims: [Int])

        var dims: [Int] {
            switch self {
            case let .tensor(t): return t.shape.dimensions
            case let .ints(_, d): return d
            }
        }
    }
}
