import NeuralNet
import Tensors

/// Observes a tensor's range during quantization-aware training, then fakes its uint8
/// quantization. Before `freeze()` (the warm-up) it keeps a running minimum and maximum of
/// every value it saw, as `RangeObserver(.minMax)` does for calibration, and quantizes with
/// the range so far; after it, the range is fixed: the int8 model gets exactly it.
public final class ActivationFakeQuantizer: @unchecked Sendable {
    /// [low, high, frozen (0 or 1)]: a buffer, so that checkpoints keep it (see
    /// `QuantizationAwareTraining.state`).
    public let range = Tensor([Float.infinity, -Float.infinity, 0], shape: [3])

    public init() {}

    public var low: Float { range.storage.pointer[0] }
    public var high: Float { range.storage.pointer[1] }
    public var isFrozen: Bool { range.storage.pointer[2] != 0 }

    /// The parameters for the range so far (nil before any finite value).
    public var parameters: QuantizationParameters? { low <= high ? QuantizationParameters(low: low, high: high) : nil }

    public func freeze() { range.storage.pointer[2] = 1 }

    /// Observes `x` (when `observing` and not frozen; the values `activation` makes of it)
    /// and returns its fake-quantized value.
    public func callAsFunction(_ x: Tensor, observing: Bool = true, through activation: FusedActivation = .none) -> Tensor {
        if observing && !isFrozen {
            let p = x.storage.pointer, r = range.storage.pointer
            var (low, high) = (r[0], r[1])
            for i in 0..<x.count where p[i].isFinite {
                let v = activation == .none ? p[i] : activation.apply(p[i])
                low = Swift.min(low, v)
                high = Swift.max(high, v)
            }
            (r[0], r[1]) = (low, high)
        }
        guard let parameters else { return x }
        return x.fakeQuantized(scale: parameters.scale, zeroPoint: Float(parameters.zeroPoint))
    }
}
