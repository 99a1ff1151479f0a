import Tensors

/// Observes a tensor's range during quantization-aware training, then fakes its uint8
/// quantization. Before `freeze()` (the warm-up) it keeps a running minimum and maximum of
/// every value it saw, as `RangeObserver(.minMax)` does for calibration, and quantizes with
/// the range so far; after it, the range is fixed: the int8 model gets exactly it.
public final class ActivationFakeQuantizer: @unchecked Sendable {
    public private(set) var low = Float.infinity, high = -Float.infinity
    public private(set) var isFrozen = false

    public init() {}

    /// The parameters for the range so far (nil before any finite value).
    public var parameters: QuantizationParameters? { low <= high ? QuantizationParameters(low: low, high: high) : nil }

    public func freeze() { isFrozen = true }

    /// Observes `x` (when `observing` and not frozen) and returns its fake-quantized value.
    public func callAsFunction(_ x: Tensor, observing: Bool = true) -> Tensor {
        if observing && !isFrozen {
            let p = x.storage.pointer
            for i in 0..<x.count where p[i].isFinite {
                low = Swift.min(low, p[i])
                high = Swift.max(high, p[i])
            }
        }
        guard let parameters else { return x }
        return x.fakeQuantized(scale: parameters.scale, zeroPoint: Float(parameters.zeroPoint))
    }
}
