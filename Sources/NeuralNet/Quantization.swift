import Tensors

/// A per-tensor affine quantization of real values to uint8: real = scale · (q − zeroPoint).
public struct QuantizationParameters: Equatable, Sendable, Codable {
    public var scale: Float
    public var zeroPoint: UInt8

    public init(scale: Float, zeroPoint: UInt8) {
        self.scale = scale
        self.zeroPoint = zeroPoint
    }

    /// The parameters that cover [low, high] widened to include 0 (so that 0, a ReLU's floor
    /// and the convolution's padding, is exact): scale = (high − low) / 255, the zero point
    /// rounded. A range of only 0 gets scale 1.
    public init(low: Float, high: Float) {
        let low = min(low, 0), high = max(high, 0)
        let scale = (high - low) / 255
        guard scale.isNormal else {
            self.init(scale: 1, zeroPoint: 0)
            return
        }
        let zero = (-low / scale).rounded(.toNearestOrEven)
        self.init(scale: scale, zeroPoint: UInt8(min(max(zero, 0), 255)))
    }

    /// round(x / scale) + zeroPoint, saturated to 0...255 (half to even).
    @inline(__always) public func quantize(_ x: Float) -> UInt8 {
        let q = min(max((x / scale).rounded(.toNearestOrEven) + Float(zeroPoint), 0), 255)
        return q.isNaN ? zeroPoint : UInt8(q)
    }

    @inline(__always) public func dequantize(_ q: UInt8) -> Float { scale * (Float(q) - Float(zeroPoint)) }
}

/// How activation ranges are chosen from calibration data.
public enum CalibrationMethod: String, CaseIterable, Sendable, Codable {
    /// The smallest and largest value seen.
    case minMax = "minmax"
    /// The `percentile`-th and (100 − `percentile`)-th percentiles of the values seen (outliers
    /// clipped, finer steps for the rest).
    case percentile
}

/// Collects an activation's values over calibration batches and gives its quantization.
public struct RangeObserver: Sendable {
    public let method: CalibrationMethod
    /// The upper percentile for `.percentile` (the lower one is 100 minus it).
    public let percentile: Float
    public private(set) var low = Float.infinity, high = -Float.infinity
    /// For `.percentile`: an evenly strided sample of each batch's values (at most
    /// `samplesPerBatch` a batch), sorted at the end.
    private var samples: [Float] = []
    private let samplesPerBatch = 1 << 16

    public init(method: CalibrationMethod, percentile: Float = 99.99) {
        require(percentile > 50 && percentile <= 100, "RangeObserver: percentile \(percentile) must be in (50, 100]")
        self.method = method
        self.percentile = percentile
    }

    public mutating func observe(_ values: [Float]) {
        for v in values where v.isFinite {
            low = min(low, v)
            high = max(high, v)
        }
        if method == .percentile {
            let step = max(1, values.count / samplesPerBatch)
            samples += stride(from: 0, to: values.count, by: step).map { values[$0] }.filter(\.isFinite)
        }
    }

    /// The parameters for the values seen (nil when none were finite).
    public func parameters() -> QuantizationParameters? {
        guard low <= high else { return nil }
        switch method {
        case .minMax:
            return QuantizationParameters(low: low, high: high)
        case .percentile:
            let sorted = samples.sorted()
            func at(_ p: Float) -> Float {
                let position = Int((Float(sorted.count - 1) * p / 100).rounded())
                return sorted[min(max(position, 0), sorted.count - 1)]
            }
            return QuantizationParameters(low: at(100 - percentile), high: at(percentile))
        }
    }
}

/// Why a model could not be quantized: one line for the user.
public enum QuantizationError: Error, CustomStringConvertible, Equatable {
    case unsupported(String)
    case invalidCalibration(String)
    case invalidWeights(String)

    public var description: String {
        switch self {
        case let .unsupported(message), let .invalidCalibration(message), let .invalidWeights(message): return message
        }
    }
}

/// Weights per output channel, symmetric int8: channel j's scale is max |w_j| / 127 and
/// q = round(w / scale) in −127...127 (−128 unused, so that the range is symmetric).
public struct QuantizedWeights: Sendable {
    public let packed: PackedInt8Weights
    public let scales: [Float]

    private init(packed: PackedInt8Weights, scales: [Float]) {
        self.packed = packed
        self.scales = scales
    }

    /// The same weights packed in `pieces` equal pieces of each row (a convolution's kernel rows).
    func packedInPieces(_ pieces: Int) -> QuantizedWeights { QuantizedWeights(packed: packed.inPieces(pieces), scales: scales) }

    /// `weights` [outputs, inputs] row-major; throws when a weight is not finite.
    public init(_ weights: [Float], outputs: Int, inputs: Int, name: String) throws {
        var q = [Int8](repeating: 0, count: outputs * inputs)
        var scales = [Float](repeating: 1, count: outputs)
        for j in 0..<outputs {
            let row = weights[(j * inputs)..<((j + 1) * inputs)]
            guard row.allSatisfy(\.isFinite) else { throw QuantizationError.invalidWeights("\(name): weights of output channel \(j) are not finite") }
            let largest = row.reduce(Float(0)) { max($0, abs($1)) }
            let scale = largest / 127
            guard scale.isNormal else { continue } // an all-zero channel: q = 0, scale 1
            scales[j] = scale
            for (k, w) in row.enumerated() { q[j * inputs + k] = Int8(min(max((w / scale).rounded(.toNearestOrEven), -127), 127)) }
        }
        try self.init(q, outputs: outputs, inputs: inputs, scales: scales, name: name)
    }

    /// Already quantized weights (as loaded from a file); throws when a scale is not a
    /// positive normal float.
    public init(_ q: [Int8], outputs: Int, inputs: Int, scales: [Float], name: String) throws {
        guard scales.count == outputs, q.count == outputs * inputs else {
            throw QuantizationError.invalidWeights("\(name): \(q.count) weights and \(scales.count) scales for \(outputs) × \(inputs)")
        }
        if let bad = scales.firstIndex(where: { !($0.isNormal && $0 > 0) }) {
            throw QuantizationError.invalidWeights("\(name): scale \(scales[bad]) of output channel \(bad) is not a positive finite number")
        }
        packed = PackedInt8Weights(q, outputs: outputs, inputs: inputs)
        self.scales = scales
    }
}

/// One step of a quantized model. Activations between steps are uint8, channels-last.
public enum QuantizedLayer: Sendable {
    /// A convolution (batch norm folded in, ReLU or ReLU6 fused as a clamp) with its input's
    /// and output's quantization.
    case conv2d(QuantizedConv2d)
    /// A linear layer; the last one of a model gives float outputs.
    case linear(QuantizedLinear)
    /// Max pooling: the input's quantization carries over.
    case maxPool2d(Int8Window)
    /// [N, H, W, C] → [N, H·W·C] (the next linear layer's columns are reordered to match).
    case flatten
    /// [N, H, W, C] → [N, 1, 1, C], the mean of each channel requantized.
    case globalAveragePool(QuantizedGlobalAveragePool)
    /// main(x) + shortcut(x), requantized (a residual block).
    case residual(QuantizedResidual)
    /// A module that stays float: dequantized before it, quantized after it.
    case float(QuantizedFloatStage)
}

extension FusedActivation {
    /// The clamp of uint8 outputs in `output`'s quantization.
    func bounds(_ output: QuantizationParameters) -> (UInt8, UInt8) {
        switch self {
        case .none: return (0, 255)
        case .relu: return (output.zeroPoint, 255)
        case .relu6: return (output.zeroPoint, output.quantize(6))
        }
    }
}

/// Int32 biases at the accumulators' scale (input scale × weight scale), rounded half to even
/// and saturated to Int32.
func quantizeBias(_ bias: [Float]?, inputScale: Float, weightScales: [Float], name: String) throws -> [Int32] {
    guard let bias else { return Array(repeating: 0, count: weightScales.count) }
    return try zip(bias, weightScales).enumerated().map { j, pair in
        guard pair.0.isFinite else { throw QuantizationError.invalidWeights("\(name): bias of output channel \(j) is not finite") }
        let q = (Double(pair.0) / (Double(inputScale) * Double(pair.1))).rounded(.toNearestOrEven)
        return Int32(min(max(q, Double(Int32.min)), Double(Int32.max)))
    }
}

/// Throws unless the bias has one value a channel and the activation scales are positive
/// normal floats (what a file may get wrong).
func checkLayer(weights: QuantizedWeights, bias: [Int32], input: QuantizationParameters, output: QuantizationParameters?, name: String) throws {
    guard bias.count == weights.packed.outputs else {
        throw QuantizationError.invalidWeights("\(name): \(bias.count) biases for \(weights.packed.outputs) output channels")
    }
    for (what, p) in [("input", input), ("output", output)] {
        if let p, !(p.scale.isNormal && p.scale > 0) {
            throw QuantizationError.invalidWeights("\(name): \(what) scale \(p.scale) is not a positive finite number")
        }
    }
}

/// The per-channel requantization scale input × weight ÷ output, kept a positive normal float.
func requantizationScales(input: Float, weights: [Float], output: Float) -> [Float] {
    weights.map { Float(min(max(Double(input) * Double($0) / Double(output), Double(Float.leastNormalMagnitude)), Double(Float.greatestFiniteMagnitude))) }
}

public struct QuantizedConv2d: Sendable {
    public let weights: QuantizedWeights
    public let bias: [Int32]
    public let window: Int8Window
    public let inChannels: Int
    /// One filter per channel (groups = channels): weights [channels, kh, kw].
    public let depthwise: Bool
    public let input: QuantizationParameters, output: QuantizationParameters
    public let activation: FusedActivation
    let requantization: Int8Requantization

    /// `weights` [out, kh, kw, in] (channels-last; depthwise: [channels, kh, kw]) quantized, `bias` in float.
    public init(weights: QuantizedWeights, bias: [Float]?, window: Int8Window, inChannels: Int, depthwise: Bool = false,
                input: QuantizationParameters, output: QuantizationParameters, activation: FusedActivation, name: String) throws {
        try self.init(weights: weights, quantizedBias: quantizeBias(bias, inputScale: input.scale, weightScales: weights.scales, name: name),
                      window: window, inChannels: inChannels, depthwise: depthwise, input: input, output: output, activation: activation, name: name)
    }

    /// The same with the bias already quantized (int32 at input scale × weight scale).
    public init(weights: QuantizedWeights, quantizedBias: [Int32], window: Int8Window, inChannels: Int, depthwise: Bool = false,
                input: QuantizationParameters, output: QuantizationParameters, activation: FusedActivation, name: String) throws {
        try checkLayer(weights: weights, bias: quantizedBias, input: input, output: output, name: name)
        let taps = window.kernel.height * window.kernel.width
        guard weights.packed.inputs == taps * (depthwise ? 1 : inChannels), !depthwise || weights.packed.outputs == inChannels else {
            throw QuantizationError.invalidWeights("\(name): \(weights.packed.outputs) × \(weights.packed.inputs) weights do not fit a \(depthwise ? "depthwise " : "")\(window.kernel.height)×\(window.kernel.width) window over \(inChannels) channels")
        }
        // Packed once in kernel rows, as Int8Kernels.conv2d reads them.
        self.weights = depthwise ? weights : weights.packedInPieces(window.kernel.height)
        self.bias = quantizedBias
        self.window = window
        self.inChannels = inChannels
        self.depthwise = depthwise
        self.input = input
        self.output = output
        self.activation = activation
        let (low, high) = activation.bounds(output)
        requantization = Int8Requantization(bias: self.bias, scale: requantizationScales(input: input.scale, weights: weights.scales, output: output.scale),
                                            zeroPoint: output.zeroPoint, low: low, high: high)
    }
}

public struct QuantizedLinear: Sendable {
    public let weights: QuantizedWeights
    public let bias: [Int32]
    public let input: QuantizationParameters
    /// nil: float outputs (acc + bias)·input scale·weight scale, then `activation`.
    public let output: QuantizationParameters?
    public let activation: FusedActivation
    let requantization: Int8Requantization?
    let outputScales: [Float]

    public init(weights: QuantizedWeights, bias: [Float]?, input: QuantizationParameters, output: QuantizationParameters?,
                activation: FusedActivation, name: String) throws {
        try self.init(weights: weights, quantizedBias: quantizeBias(bias, inputScale: input.scale, weightScales: weights.scales, name: name),
                      input: input, output: output, activation: activation, name: name)
    }

    /// The same with the bias already quantized (int32 at input scale × weight scale).
    public init(weights: QuantizedWeights, quantizedBias: [Int32], input: QuantizationParameters, output: QuantizationParameters?,
                activation: FusedActivation, name: String) throws {
        try checkLayer(weights: weights, bias: quantizedBias, input: input, output: output, name: name)
        self.weights = weights
        self.bias = quantizedBias
        self.input = input
        self.output = output
        self.activation = activation
        outputScales = weights.scales.map { input.scale * $0 }
        if let output {
            let (low, high) = activation.bounds(output)
            requantization = Int8Requantization(bias: self.bias, scale: requantizationScales(input: input.scale, weights: weights.scales, output: output.scale),
                                                zeroPoint: output.zeroPoint, low: low, high: high)
        } else {
            requantization = nil
        }
    }
}
