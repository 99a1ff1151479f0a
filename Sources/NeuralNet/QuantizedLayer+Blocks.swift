import Tensors

/// Global average pooling of uint8 images: exact int32 sums per channel, then one multiply
/// by input scale ÷ (output scale · pixels) and the requantization's rounding.
public struct QuantizedGlobalAveragePool: Sendable {
    public let input: QuantizationParameters, output: QuantizationParameters

    public init(input: QuantizationParameters, output: QuantizationParameters) throws {
        for (what, p) in [("input", input), ("output", output)] where !(p.scale.isNormal && p.scale > 0) {
            throw QuantizationError.invalidWeights("global average pooling: \(what) scale \(p.scale) is not a positive finite number")
        }
        self.input = input
        self.output = output
    }
}

/// A residual block: `main` and `shortcut` (empty: the input itself) run on the same input,
/// and their sum is requantized to `output` with `activation` as its clamp (the quantized add:
/// each branch dequantized with its own scale, one sum, one rounding).
public struct QuantizedResidual: Sendable {
    public let main: [QuantizedLayer], shortcut: [QuantizedLayer]
    public let input: QuantizationParameters, output: QuantizationParameters
    public let activation: FusedActivation
    /// The quantization each branch ends in.
    let mainOutput: QuantizationParameters, shortcutOutput: QuantizationParameters

    public init(main: [QuantizedLayer], shortcut: [QuantizedLayer], input: QuantizationParameters, output: QuantizationParameters,
                activation: FusedActivation) throws {
        guard output.scale.isNormal && output.scale > 0 else {
            throw QuantizationError.invalidWeights("residual block: output scale \(output.scale) is not a positive finite number")
        }
        guard !main.isEmpty, let a = QuantizedLayer.output(of: main, input: input), let b = QuantizedLayer.output(of: shortcut, input: input) else {
            throw QuantizationError.invalidWeights("residual block: a branch is empty or ends in float outputs")
        }
        self.main = main
        self.shortcut = shortcut
        self.input = input
        self.output = output
        self.activation = activation
        mainOutput = a
        shortcutOutput = b
    }
}

/// A module the quantizer could not quantize, run in float: its uint8 input dequantized (in
/// NCHW), the module and then `activation` applied, and the result quantized to `output`
/// (nil: the model's float output, when it is the last layer). The module is the float
/// model's own (shared, in evaluation mode).
public struct QuantizedFloatStage: @unchecked Sendable {
    public let module: any Module
    /// The module's path in the float model (what the quantization report lists).
    public let name: String
    public let activation: FusedActivation
    /// One example's shape in and out, channels-first as the module sees them.
    public let inputShape: [Int], outputShape: [Int]
    public let input: QuantizationParameters, output: QuantizationParameters?

    /// Runs `module` once on a zero example of `inputShape` to learn its output shape.
    public init(module: any Module, name: String, activation: FusedActivation, inputShape: [Int],
                input: QuantizationParameters, output: QuantizationParameters?) throws {
        for (what, p) in [("input", input), ("output", output)] {
            if let p, !(p.scale.isNormal && p.scale > 0) {
                throw QuantizationError.invalidWeights("\(name): \(what) scale \(p.scale) is not a positive finite number")
            }
        }
        guard !inputShape.isEmpty, inputShape.allSatisfy({ $0 >= 1 }), inputShape.reduce(1, *) <= 1 << 28 else {
            throw QuantizationError.invalidWeights("\(name): input shape \(inputShape) is not a list of positive sizes")
        }
        let shape = module.inEvaluationMode { module(Tensor.zeros(Shape([1] + inputShape))) }.shape.dimensions
        guard shape.count >= 2, shape[0] == 1 else { throw QuantizationError.invalidWeights("\(name): gives outputs of shape \(shape) for one example") }
        self.module = module
        self.name = name
        self.activation = activation
        self.inputShape = inputShape
        outputShape = Array(shape.dropFirst())
        self.input = input
        self.output = output
    }

    /// The float outputs [N, outputShape...] for uint8 inputs [N, channels-last input shape].
    func callAsFunction(_ values: [UInt8], batch: Int) -> Tensor {
        let x = dequantizedChannelsFirst(values, batch: batch, dims: channelsLast(inputShape), input)
        let y = module.inEvaluationMode { module(x) }
        require(Array(y.shape.dimensions.dropFirst()) == outputShape, "\(name): float output \(y.shape), expected [N] + \(outputShape)")
        return activation == .none ? y : Tensor(y.scalars.map(activation.apply), shape: y.shape)
    }
}

extension QuantizedLayer {
    /// The quantization of what `layers` give for an input in `input` (nil: float outputs).
    static func output(of layers: [QuantizedLayer], input: QuantizationParameters) -> QuantizationParameters? {
        var current: QuantizationParameters? = input
        for layer in layers {
            switch layer {
            case let .conv2d(c): current = c.output
            case let .linear(l): current = l.output
            case let .globalAveragePool(p): current = p.output
            case let .residual(r): current = r.output
            case let .float(f): current = f.output
            case .maxPool2d, .flatten: break
            }
        }
        return current
    }
}

/// uint8 values [N, dims] (channels-last images [H, W, C] or other shapes) as floats, images in NCHW.
func dequantizedChannelsFirst(_ values: [UInt8], batch: Int, dims: [Int], _ q: QuantizationParameters) -> Tensor {
    guard dims.count == 3 else { return Tensor(values.map(q.dequantize), shape: Shape([batch] + dims)) }
    let (h, w, c) = (dims[0], dims[1], dims[2])
    var out = [Float](repeating: 0, count: values.count)
    for n in 0..<batch {
        for y in 0..<h {
            for x in 0..<w {
                for ch in 0..<c { out[((n * c + ch) * h + y) * w + x] = q.dequantize(values[((n * h + y) * w + x) * c + ch]) }
            }
        }
    }
    return Tensor(out, shape: Shape([batch, c, h, w]))
}

/// Floats [N, dims] (NCHW images when dims is [C, H, W]) quantized, images to NHWC.
func quantizedChannelsLast(_ x: [Float], batch: Int, dims: [Int], _ q: QuantizationParameters) -> [UInt8] {
    Int8Kernels.quantizeChannelsLast(x, batch: batch, channels: dims.count == 3 ? dims[0] : 1, scale: q.scale, zeroPoint: q.zeroPoint)
}
