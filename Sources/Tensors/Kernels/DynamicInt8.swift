import CKernels

/// A linear map's weights [outputs, inputs] in int8 for dynamic quantization: each output
/// channel j symmetric, w[j][k] ≈ q[j][k] · scale[j] with scale[j] = max_k |w[j][k]| / 127, so
/// q lies in −127…127 (the GEMM also takes −128). Packed once for the int8 GEMM.
public struct DynamicInt8Weights: Sendable {
    public let packed: PackedInt8Weights
    public let scales: [Float]

    /// The most inputs a channel may have: int32 sums stay exact up to there (CKernels.h).
    public static let maxInputs = Int(DISTILL_Q8_MAX_K)

    public var outputs: Int { packed.outputs }
    public var inputs: Int { packed.inputs }

    /// Quantizes float weights [outputs, inputs] (row j: output channel j). An all-zero channel
    /// gets scale 1; a scale below the smallest normal float is raised to it (the kernels
    /// take positive normal scales only), so tiny channels round to 0.
    public init(quantizing weights: [Float], outputs: Int, inputs: Int) {
        require(weights.count == outputs * inputs, "DynamicInt8Weights: \(weights.count) weights for \(outputs) × \(inputs)")
        var q = [Int8](repeating: 0, count: weights.count), scales = [Float](repeating: 1, count: outputs)
        for j in 0..<outputs {
            let row = weights[(j * inputs)..<((j + 1) * inputs)]
            let largest = row.reduce(Float(0)) { Swift.max($0, Swift.abs($1)) }
            guard largest > 0 else { continue }
            let scale = Swift.max(largest / 127, Float.leastNormalMagnitude)
            scales[j] = scale
            for (k, w) in row.enumerated() { q[j * inputs + k] = Int8(Swift.min(Swift.max((w / scale).rounded(.toNearestOrEven), -127), 127)) }
        }
        self.init(checked: q, scales: scales, outputs: outputs, inputs: inputs)
    }

    /// Weights already in int8 with their scales (a model file's), or the reason they cannot be.
    public static func make(_ q: [Int8], scales: [Float], outputs: Int, inputs: Int) -> Result<DynamicInt8Weights, Int8WeightsError> {
        guard outputs >= 1, inputs >= 1, q.count == outputs * inputs, scales.count == outputs else {
            return .failure(Int8WeightsError("\(q.count) weights and \(scales.count) scales do not make [\(outputs), \(inputs)]"))
        }
        guard inputs <= Int(DISTILL_Q8_MAX_K) else { return .failure(Int8WeightsError("\(inputs) inputs: at most \(DISTILL_Q8_MAX_K) keep int32 sums exact")) }
        if let bad = scales.firstIndex(where: { !($0.isNormal && $0 > 0) }) {
            return .failure(Int8WeightsError("scale \(scales[bad]) of output \(bad) is not a positive normal float"))
        }
        return .success(DynamicInt8Weights(checked: q, scales: scales, outputs: outputs, inputs: inputs))
    }

    private init(checked q: [Int8], scales: [Float], outputs: Int, inputs: Int) {
        packed = PackedInt8Weights(q, outputs: outputs, inputs: inputs)
        self.scales = scales
    }

    /// The float weights these stand for, q · scale, [outputs, inputs] row-major.
    public var dequantized: [Float] {
        var w = [Float](repeating: 0, count: packed.weights.count)
        for j in 0..<outputs {
            for k in 0..<inputs { w[j * inputs + k] = Float(packed.weights[j * inputs + k]) * scales[j] }
        }
        return w
    }
}

/// Why int8 weights read from a file cannot be used.
public struct Int8WeightsError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Int8Kernels {
    /// y [rows, outputs] = x·Wᵀ + b for float rows x [rows, inputs], with W int8 and each row
    /// of x quantized on the fly (dynamic quantization, as PyTorch's `quantize_dynamic` and
    /// onnxruntime's `DynamicQuantizeLinear` do for transformers; per row here, not per
    /// tensor, so that a text's values never depend on what else is in its batch):
    ///
    /// - row i's range [lo, hi] is its smallest and largest value widened to include 0;
    ///   scale a = (hi − lo) / 255 (1 for a row of zeros), zero point z = round(−lo / a) in 0…255,
    ///   q = clamp(round(x · (1/a)) + z, 0, 255), rounding half to even (1/a rounded once);
    /// - the GEMM gives Σ_k q·w exactly (wrapping int32, exact for inputs ≤ 65,536, see
    ///   CKernels.h), minus z · Σ_k w;
    /// - y = Float(acc) · (a · scale[j]) + b[j], each operation rounded once.
    ///
    /// Every kernel path gives the same integers, and the float steps are the same scalar
    /// operations, so the output is the same bits on every CPU and thread count. A row
    /// holding a NaN or an infinity gives NaN.
    public static func dynamicLinear(_ x: UnsafePointer<Float>, rows: Int, weights: DynamicInt8Weights, bias: UnsafePointer<Float>?,
                                     into out: UnsafeMutablePointer<Float>) {
        let n = weights.outputs, k = weights.inputs
        guard rows > 0 else { return }
        let blockCount = (rows + rowBlock - 1) / rowBlock
        weights.packed.packed.withUnsafeBufferPointer { packed in
            weights.packed.sums.withUnsafeBufferPointer { sums in
                weights.scales.withUnsafeBufferPointer { scales in
                    Compute.parallelFor(blockCount, costPerItem: rowBlock * n * k / 8) { range in
                        let q = UnsafeMutablePointer<UInt8>.allocate(capacity: rowBlock * k)
                        let acc = UnsafeMutablePointer<Int32>.allocate(capacity: rowBlock * n)
                        let rowScales = UnsafeMutablePointer<Float>.allocate(capacity: rowBlock)
                        let rowZeros = UnsafeMutablePointer<Int32>.allocate(capacity: rowBlock)
                        defer { q.deallocate(); acc.deallocate(); rowScales.deallocate(); rowZeros.deallocate() }
                        for block in range {
                            let start = block * rowBlock, count = Swift.min(rowBlock, rows - start)
                            distill_q8_quantize_rows(count, k, x + start * k, k, q, k, rowScales, rowZeros)
                            distill_q8_gemm(count, n, k, q, k, 0, packed.baseAddress!, sums.baseAddress!, acc, n)
                            distill_q8_dequantize_rows(count, n, acc, n, rowScales, rowZeros, sums.baseAddress!, scales.baseAddress!, bias,
                                                       out + start * n, n)
                        }
                    }
                }
            }
        }
    }
}

extension Tensor {
    /// `x · Wᵀ + bias` with int8 weights and each row of x quantized on the fly
    /// (`Int8Kernels.dynamicLinear`), for x [..., weights.inputs]. Inference only: the result
    /// records no gradient.
    public static func int8Linear(_ x: Tensor, weights: DynamicInt8Weights, bias: Tensor?) -> Tensor {
        require(x.rank >= 1 && x.shape[-1] == weights.inputs, "int8Linear: input \(x.shape) does not fit int8 weights [\(weights.outputs), \(weights.inputs)]")
        if let bias { require(bias.shape == [weights.outputs], "int8Linear: bias \(bias.shape) does not fit \(weights.outputs) outputs") }
        let rows = x.count / weights.inputs
        let out = Tensor(uninitialized: Shape(Array(x.shape.dimensions.dropLast()) + [weights.outputs]))
        Int8Kernels.dynamicLinear(x.storage.pointer, rows: rows, weights: weights, bias: bias.map { UnsafePointer($0.storage.pointer) },
                                  into: out.storage.pointer)
        return out
    }
}
