import Tensors

/// Post-training static quantization of a float model: batch norm folded into the
/// convolution before its weights are quantized, activations fused as clamps, weights per
/// output channel symmetric int8, activations per tensor asymmetric uint8 with ranges observed
/// on calibration inputs. Chains (nested `Sequential`s), the zoo's residual networks and
/// depthwise convolutions are quantized; any layer it cannot quantize runs in float between a
/// dequantization and a quantization (`QuantizedModel.floatLayers` names them).
public enum Quantizer {
    /// The quantized model of `model` with activation ranges from `calibration` [N, example
    /// shape...] (run through the float model in evaluation mode, `batchSize` at a time).
    public static func quantize(_ model: any Module, calibration: Tensor, method: CalibrationMethod = .minMax,
                                percentile: Float = 99.99, batchSize: Int = 64) throws -> QuantizedModel {
        let stages = try plan(model)
        guard calibration.rank >= 2, calibration.shape[0] >= 1 else {
            throw QuantizationError.invalidCalibration("calibration inputs must be [N, ...] with N ≥ 1, got shape \(calibration.shape)")
        }
        let exampleShape = Array(calibration.shape.dimensions.dropFirst())
        guard exampleShape.count == 3 || exampleShape.count == 1 else {
            throw QuantizationError.invalidCalibration("calibration examples must be [C, H, W] images or [F] features, got \(exampleShape)")
        }
        _ = try checkShapes(stages, dims: exampleShape, exampleShape: exampleShape)
        guard percentile > 50 && percentile <= 100 else {
            throw QuantizationError.invalidCalibration("percentile \(percentile) must be in (50, 100]")
        }

        // Observe the input and each tap on the calibration inputs.
        let taps = Array(Set(Self.taps(stages)))
        let names = Array(Set(taps.map(\.module)))
        var inputObserver = RangeObserver(method: method, percentile: percentile)
        var observers = Dictionary(uniqueKeysWithValues: taps.map { ($0, RangeObserver(method: method, percentile: percentile)) })
        let count = calibration.shape[0], size = max(batchSize, 1)
        try model.inEvaluationMode {
            for start in stride(from: 0, to: count, by: size) {
                let batch = calibration.sliced(alongAxis: 0, start..<min(start + size, count))
                let values = batch.scalars
                guard values.allSatisfy(\.isFinite) else {
                    throw QuantizationError.invalidCalibration("calibration inputs \(start)..<\(min(start + size, count)) hold values that are not finite")
                }
                inputObserver.observe(values)
                let features = try model.forward(batch, capturing: names).features
                for tap in taps {
                    let values = features[tap.module]!.scalars
                    observers[tap]!.observe(tap.activation == .none ? values : values.map(tap.activation.apply))
                }
            }
        }
        func parameters(_ observer: RangeObserver?, _ what: String) throws -> QuantizationParameters {
            guard let p = observer?.parameters() else { throw QuantizationError.invalidCalibration("calibration gave no finite values for \(what)") }
            return p
        }
        let input = try parameters(inputObserver, "the model's input")
        let observed = observers
        let builder = Builder { tap in try parameters(observed[tap], "'\(tap.module)'") }
        return try builder.model(stages, exampleShape: exampleShape, input: input)
    }

    /// The quantized model of `model` with activation ranges given (by quantization-aware
    /// training, or kept from an earlier calibration) for examples of `exampleShape`. A range
    /// observed before an activation the model applies inline (ResNet's ReLUs) is clipped by it.
    public static func quantize(_ model: any Module, exampleShape: [Int], ranges: QuantizationRanges) throws -> QuantizedModel {
        let stages = try plan(model)
        guard exampleShape.count == 3 || exampleShape.count == 1 else {
            throw QuantizationError.invalidCalibration("examples must be [C, H, W] images or [F] features, got \(exampleShape)")
        }
        _ = try checkShapes(stages, dims: exampleShape, exampleShape: exampleShape)
        let builder = Builder { tap in
            guard let p = ranges.outputs[tap.module] else { throw QuantizationError.invalidCalibration("no activation range for '\(tap.module)'") }
            guard tap.activation != .none else { return p }
            let (low, high) = (p.dequantize(0), p.dequantize(255))
            let clipped = (tap.activation.apply(low), tap.activation.apply(high))
            // A range already of activated values (quantization-aware training's) is kept as it is.
            return clipped == (low, high) ? p : QuantizationParameters(low: clipped.0, high: clipped.1)
        }
        return try builder.model(stages, exampleShape: exampleShape, input: ranges.input)
    }

    /// Turns stages into quantized layers, following the activations' channels-last shape.
    struct Builder {
        /// The quantization of what a tap observes.
        let parameters: (Tap) throws -> QuantizationParameters

        func model(_ stages: [Stage], exampleShape: [Int], input: QuantizationParameters) throws -> QuantizedModel {
            let dims = exampleShape.count == 3 ? [exampleShape[1], exampleShape[2], exampleShape[0]] : exampleShape
            let layers = try build(stages, dims: dims, input: input, top: true).layers
            return try QuantizedModel(exampleShape: exampleShape, input: input, layers: layers)
        }

        /// The layers of `stages` for activations of channels-last `dims` in `input`'s
        /// quantization; at the top level the last computing layer gives floats.
        func build(_ stages: [Stage], dims: [Int], input: QuantizationParameters, top: Bool)
            throws -> (layers: [QuantizedLayer], dims: [Int], output: QuantizationParameters) {
            var (dims, current) = (dims, input)
            var flattenedFrom: [Int]? // [H, W, C] of the flattened image before a linear layer
            let last = stages.lastIndex { if case .maxPool = $0 { return false }; if case .flatten = $0 { return false }; return true }
            var layers: [QuantizedLayer] = []
            for (index, stage) in stages.enumerated() {
                let floatOutput = top && index == last
                switch stage {
                case let .conv(conv, norm, activation, name, observed):
                    let (o, c, kh, kw) = (conv.weight.shape[0], conv.weight.shape[1], conv.weight.shape[2], conv.weight.shape[3])
                    var (w, b) = (conv.weight.scalars, conv.bias?.scalars)
                    if let norm { (w, b) = Quantizer.fold(w, b, outputs: o, into: norm) }
                    // [O, C, kh, kw] → [O, kh, kw, C] (channels-last rows; depthwise: C = 1).
                    var reordered = [Float](repeating: 0, count: w.count)
                    for oc in 0..<o { for ic in 0..<c { for y in 0..<kh { for x in 0..<kw {
                        reordered[((oc * kh + y) * kw + x) * c + ic] = w[((oc * c + ic) * kh + y) * kw + x]
                    } } } }
                    let depthwise = conv.groups > 1
                    let window = Int8Window(kernel: (kh, kw), stride: conv.stride, padding: conv.padding)
                    let output = try parameters(observed)
                    let weights = try QuantizedWeights(reordered, outputs: o, inputs: kh * kw * c, name: name)
                    layers.append(.conv2d(try QuantizedConv2d(weights: weights, bias: b, window: window, inChannels: depthwise ? o : c,
                                                              depthwise: depthwise, input: current, output: output, activation: activation, name: name)))
                    let out = window.outputSize(height: dims[0], width: dims[1])!
                    dims = [out.height, out.width, o]
                    current = output
                case let .linear(linear, activation, name, observed):
                    let (o, f) = (linear.outFeatures, linear.inFeatures)
                    var w = linear.weight.scalars
                    if let image = flattenedFrom {
                        // Columns in PyTorch's flatten order (c, h, w) → ours (h, w, c).
                        let (h, wd, c) = (image[0], image[1], image[2])
                        var reordered = w
                        for j in 0..<o { for ch in 0..<c { for y in 0..<h { for x in 0..<wd {
                            reordered[j * f + (y * wd + x) * c + ch] = w[j * f + (ch * h + y) * wd + x]
                        } } } }
                        w = reordered
                        flattenedFrom = nil
                    }
                    let weights = try QuantizedWeights(w, outputs: o, inputs: f, name: name)
                    let output = floatOutput ? nil : try parameters(observed)
                    layers.append(.linear(try QuantizedLinear(weights: weights, bias: linear.bias?.scalars, input: current, output: output,
                                                              activation: activation, name: name)))
                    dims = [o]
                    if let output { current = output }
                case let .maxPool(window):
                    let w = Int8Window(kernel: (window.kernelSize, window.kernelSize), stride: (window.stride, window.stride),
                                       padding: (window.padding, window.padding))
                    layers.append(.maxPool2d(w))
                    let out = w.outputSize(height: dims[0], width: dims[1])!
                    dims = [out.height, out.width, dims[2]]
                case let .globalAveragePool(observed):
                    let output = try parameters(observed)
                    layers.append(.globalAveragePool(try QuantizedGlobalAveragePool(input: current, output: output)))
                    dims = [1, 1, dims[2]]
                    current = output
                case .flatten:
                    if dims.count == 3 {
                        flattenedFrom = dims
                        layers.append(.flatten)
                        dims = [dims.reduce(1, *)]
                    }
                case let .residual(main, shortcut, activation, observed):
                    let a = try build(main, dims: dims, input: current, top: false)
                    let b = try build(shortcut, dims: dims, input: current, top: false)
                    let output = try parameters(observed)
                    layers.append(.residual(try QuantizedResidual(main: a.layers, shortcut: b.layers, input: current, output: output,
                                                                  activation: activation)))
                    dims = a.dims
                    current = output
                case let .float(module, activation, name, observed):
                    let output = floatOutput ? nil : try parameters(observed)
                    let stage = try QuantizedFloatStage(module: module, name: name, activation: activation,
                                                        inputShape: channelsFirst(dims), input: current, output: output)
                    layers.append(.float(stage))
                    dims = channelsLast(stage.outputShape)
                    if let output { current = output }
                }
            }
            return (layers, dims, current)
        }
    }

    /// Conv weights and bias with batch norm folded in: per channel, s = γ / √(var + ε),
    /// w' = w·s, b' = (b − mean)·s + β (the running statistics: evaluation mode).
    static func fold(_ w: [Float], _ b: [Float]?, outputs: Int, into norm: BatchNorm) -> ([Float], [Float]) {
        let (gamma, beta) = (norm.weight.scalars, norm.bias.scalars)
        let (mean, variance) = (norm.runningMean.scalars, norm.runningVariance.scalars)
        let perChannel = w.count / outputs
        var w = w
        var bias = b ?? [Float](repeating: 0, count: outputs)
        for o in 0..<outputs {
            let s = gamma[o] / (variance[o] + norm.epsilon).squareRoot()
            for i in 0..<perChannel { w[o * perChannel + i] *= s }
            bias[o] = (bias[o] - mean[o]) * s + beta[o]
        }
        return (w, bias)
    }

    /// Follows one example's channels-first shape `dims` through the stages, so that
    /// calibration inputs of the wrong shape are one-line errors rather than traps in the
    /// float model. A float stage runs once on a zero example (its input shape checked) to
    /// learn its output's shape.
    static func checkShapes(_ stages: [Stage], dims: [Int], exampleShape: [Int]) throws -> [Int] {
        var dims = dims // [C, H, W] or [F]
        func fail(_ what: String) -> QuantizationError {
            .invalidCalibration("calibration examples of shape \(exampleShape) do not fit the model: \(what)")
        }
        for stage in stages {
            switch stage {
            case let .conv(conv, _, _, name, _):
                let inChannels = conv.weight.shape[1] * conv.groups
                guard dims.count == 3, dims[0] == inChannels else {
                    throw fail("'\(name)' takes images of \(inChannels) channels, got \(dims)")
                }
                let w = Int8Window(kernel: (conv.weight.shape[2], conv.weight.shape[3]), stride: conv.stride, padding: conv.padding)
                guard let out = w.outputSize(height: dims[1], width: dims[2]) else { throw fail("'\(name)''s kernel does not fit \(dims)") }
                dims = [conv.outChannels, out.height, out.width]
            case let .linear(linear, _, name, _):
                guard dims == [linear.inFeatures] else { throw fail("'\(name)' takes \(linear.inFeatures) features, got \(dims)") }
                dims = [linear.outFeatures]
            case let .maxPool(window):
                let w = Int8Window(kernel: (window.kernelSize, window.kernelSize), stride: (window.stride, window.stride),
                                   padding: (window.padding, window.padding))
                guard dims.count == 3, let out = w.outputSize(height: dims[1], width: dims[2]) else { throw fail("max pooling of \(dims)") }
                dims = [dims[0], out.height, out.width]
            case let .globalAveragePool(tap):
                guard dims.count == 3 else { throw fail("'\(tap.module)' pools images, got \(dims)") }
                dims = [dims[0], 1, 1]
            case .flatten:
                dims = [dims.reduce(1, *)]
            case let .residual(main, shortcut, _, tap):
                let a = try checkShapes(main, dims: dims, exampleShape: exampleShape)
                let b = try checkShapes(shortcut, dims: dims, exampleShape: exampleShape)
                guard a == b else { throw fail("the branches of '\(tap.module)' give \(a) and \(b)") }
                dims = a
            case let .float(module, _, _, _):
                dims = Array(module.inEvaluationMode { module(Tensor.zeros(Shape([1] + dims))) }.shape.dimensions.dropFirst())
            }
        }
        return dims
    }
}

/// One example's channels-last shape ([H, W, C] or other) as the float layers see it, and back.
func channelsFirst(_ dims: [Int]) -> [Int] { dims.count == 3 ? [dims[2], dims[0], dims[1]] : dims }
func channelsLast(_ dims: [Int]) -> [Int] { dims.count == 3 ? [dims[1], dims[2], dims[0]] : dims }

/// Activation ranges given rather than calibrated: the model's input and the output of each
/// layer group, by the name of the module the quantizer observes.
public struct QuantizationRanges: Sendable {
    public var input: QuantizationParameters
    public var outputs: [String: QuantizationParameters] = [:]

    public init(input: QuantizationParameters, outputs: [String: QuantizationParameters] = [:]) {
        self.input = input
        self.outputs = outputs
    }
}
