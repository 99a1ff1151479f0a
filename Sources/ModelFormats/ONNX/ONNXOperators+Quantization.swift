import Tensors

/// QuantizeLinear and DequantizeLinear: the QDQ form of quantized models (what
/// onnxruntime's `quantize_static` writes, and what Distill exports for int8 students).
/// Quantized values flow between them as float tensors holding whole numbers (exact for
/// 8-bit integers), so a QDQ graph runs as the float graph with every quantization step's
/// rounding and saturation in place: a teacher or a model to evaluate.
extension ONNXOperators {
    /// The integer range of a quantized value: from `output_dtype` (opset 21), else from the
    /// zero point's element type (uint8 when there is none, as the operator's default).
    func quantizedRange() throws -> ClosedRange<Float> {
        var type = ONNXTensor.uint8
        if let declared = try? int("output_dtype", 0), declared != 0 {
            type = declared
        } else if optional(2) != nil {
            guard inputTypes.count > 2, let zeroPointType = inputTypes[2] else {
                throw fail("the zero point must be an initializer (uint8 or int8) so that its type is known")
            }
            type = zeroPointType
        }
        switch type {
        case ONNXTensor.uint8: return 0...255
        case ONNXTensor.int8: return -128...127
        default: throw fail("quantized element type \(type) is not supported (uint8 and int8 are)")
        }
    }

    /// (scale, zero point) per element of `x`'s `axis` (or one pair for the whole tensor),
    /// checked: scales finite and positive, zero points whole numbers.
    func quantizationParameters(for x: Tensor) throws -> (axis: Int?, scales: [Float], zeroPoints: [Float]) {
        let blockSize = try int("block_size", 0)
        guard blockSize == 0 else { throw fail("blocked quantization (block_size \(blockSize)) is not supported") }
        let scale = try tensor(1)
        let zeroPoint = try optional(2).map { _ in try tensor(2) }
        if let zeroPoint, zeroPoint.shape != scale.shape {
            throw fail("scale \(scale.shape) and zero point \(zeroPoint.shape) differ in shape")
        }
        let scales = scale.scalars
        guard !scales.isEmpty, scales.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw fail("scales must be finite and positive, got \(scales.prefix(4))")
        }
        let zeroPoints = zeroPoint?.scalars ?? [Float](repeating: 0, count: scales.count)
        guard zeroPoints.allSatisfy({ $0 == $0.rounded() }) else { throw fail("zero points must be whole numbers") }
        if scale.count == 1 && scale.rank <= 1 { return (nil, scales, zeroPoints) }
        guard scale.rank == 1 else { throw fail("scale of shape \(scale.shape): per-tensor (a scalar) or per-axis (1-D) only") }
        var axis = try int("axis", 1)
        if axis < 0 { axis += x.rank }
        guard (0..<x.rank).contains(axis) else { throw fail("axis \(axis) is out of range for rank \(x.rank)") }
        guard x.shape[axis] == scales.count else {
            throw fail("\(scales.count) scales for axis \(axis) of size \(x.shape[axis])")
        }
        return (axis, scales, zeroPoints)
    }

    /// Applies `body(value, scale, zeroPoint)` to every element with its channel's parameters.
    func perElement(_ x: Tensor, _ p: (axis: Int?, scales: [Float], zeroPoints: [Float]), _ body: (Float, Float, Float) -> Float) -> Tensor {
        let inner = p.axis.map { axis in (axis + 1..<x.rank).reduce(1) { $0 * x.shape[$1] } } ?? x.count
        let channels = p.scales.count
        let values = x.withUnsafeBufferPointer { source in
            (0..<source.count).map { i in
                let c = p.axis == nil ? 0 : (i / inner) % channels
                return body(source[i], p.scales[c], p.zeroPoints[c])
            }
        }
        return Tensor(values, shape: x.shape)
    }

    /// y = saturate(round(x / scale) + zero point), rounding half to even, as the operator's
    /// definition says.
    func quantizeLinear() throws -> Tensor {
        let x = try tensor(0)
        let range = try quantizedRange()
        let p = try quantizationParameters(for: x)
        return perElement(x, p) { value, scale, zeroPoint in
            let q = (value / scale).rounded(.toNearestOrEven) + zeroPoint
            return q.isNaN ? zeroPoint : min(max(q, range.lowerBound), range.upperBound)
        }
    }

    /// x = (q − zero point) · scale. Differentiable in q (a straight-through path for
    /// the float values that reach it), so an imported QDQ graph can still pass gradients.
    func dequantizeLinear() throws -> Tensor {
        let q = try tensor(0)
        let p = try quantizationParameters(for: q)
        if p.axis == nil {
            return (q - p.zeroPoints[0]) * p.scales[0]
        }
        let shape = (0..<q.rank).map { $0 == p.axis ? p.scales.count : 1 }
        return (q - Tensor(p.zeroPoints, shape: Shape(shape))) * Tensor(p.scales, shape: Shape(shape))
    }
}
