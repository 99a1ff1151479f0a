/// An activation fused into the op before it: a convolution's post-op (`PackedConvolution`),
/// a batch norm's output (`Tensor.batchNorm(…, activation:)`), an int8 layer's clamp. Each is
/// a clamp: ReLU to [0, ∞), ReLU6 to [0, 6].
public enum FusedActivation: String, Sendable, Codable {
    case none, relu, relu6

    /// The values the activation lets through.
    public var range: ClosedRange<Float> {
        switch self {
        case .none: return -.infinity ... .infinity
        case .relu: return 0 ... .infinity
        case .relu6: return 0...6
        }
    }

    public func apply(_ x: Float) -> Float {
        switch self {
        case .none: return x
        case .relu: return max(x, 0)
        case .relu6: return min(max(x, 0), 6)
        }
    }

    /// The activation of a tensor, as its own op (recorded for backward).
    public func applied(to x: Tensor) -> Tensor {
        switch self {
        case .none: return x
        case .relu: return x.relu()
        case .relu6: return x.clamped(min: 0, max: 6)
        }
    }
}

/// g where the clamped output y lies strictly inside (low, high), else 0: the gradient of a
/// fused activation, taken from the op's output.
struct ClampedGradient: BinaryFunction {
    let low: Float, high: Float
    func callAsFunction(_ g: Float, _ y: Float) -> Float { y > low && y < high ? g : 0 }
}

private struct AddClamped: BinaryFunction {
    let low: Float, high: Float
    func callAsFunction(_ a: Float, _ b: Float) -> Float { Swift.min(Swift.max(a + b, low), high) }
}

extension Tensor {
    /// activation(a + b) in one pass (a residual block's end), for tensors of one shape; other
    /// shapes (broadcasting) run as the two ops. Backward gives both inputs the output gradient
    /// masked where the output lies strictly inside the activation's range (as
    /// `batchNorm(…, activation:)`): for ReLU the bits of `(a + b).relu()`.
    public static func add(_ a: Tensor, _ b: Tensor, then activation: FusedActivation) -> Tensor {
        guard activation != .none, a.shape == b.shape else { return activation.applied(to: a + b) }
        let (low, high) = (activation.range.lowerBound, activation.range.upperBound)
        let y = ElementwiseKernels.zip(a, b, AddClamped(low: low, high: high))
        let saved = y.detached()
        return y.recorded("addActivation", [a, b]) { g in
            let masked = ElementwiseKernels.zip(g, saved, ClampedGradient(low: low, high: high))
            return [masked, masked]
        }
    }
}
