import Tensors

/// Post-training static quantization of a float model that is a chain of layers (nested
/// `Sequential`s of Conv2d [BatchNorm] [ReLU | ReLU6], Linear [ReLU | ReLU6], MaxPool2d,
/// Flatten, Dropout, Identity): batch norm folded into the convolution before its weights
/// are quantized, activations fused as clamps, weights per output channel symmetric int8,
/// activations per tensor asymmetric uint8 with ranges observed on calibration inputs.
public enum Quantizer {
    /// A float layer group that becomes one quantized layer; `observed` names the module
    /// whose output the group's output range is taken from.
    enum Stage {
        case conv(Conv2d, BatchNorm?, FusedActivation, name: String, observed: String)
        case linear(Linear, FusedActivation, name: String, observed: String)
        case maxPool(PoolingWindow)
        case flatten
    }

    /// The quantized model of `model` with activation ranges from `calibration` [N, example
    /// shape...] (run through the float model in evaluation mode, `batchSize` at a time).
    public static func quantize(_ model: any Module, calibration: Tensor, method: CalibrationMethod = .minMax,
                                percentile: Float = 99.99, batchSize: Int = 64) throws -> QuantizedModel {
        let stages = try plan(model)
        guard calibration.rank >= 2, calibration.shape[0] >= 1 else {
            throw QuantizationError.invalidCalibration("calibration inputs must be [N, ...] with N ≥ 1, got shape \(calibration.shape)")
        }
        let exampleShape = Array(calibration.shape.dimensions.dropFirst())
        try checkShapes(stages, exampleShape: exampleShape)
        guard percentile > 50 && percentile <= 100 else {
            throw QuantizationError.invalidCalibration("percentile \(percentile) must be in (50, 100]")
        }

        // Observe the input and each group's output on the calibration inputs.
        let names = stages.compactMap { stage -> String? in
            switch stage {
            case let .conv(_, _, _, _, observed), let .linear(_, _, _, observed): return observed
            default: return nil
            }
        }
        var inputObserver = RangeObserver(method: method, percentile: percentile)
        var observers = Dictionary(uniqueKeysWithValues: names.map { ($0, RangeObserver(method: method, percentile: percentile)) })
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
                for name in names { observers[name]!.observe(features[name]!.scalars) }
            }
        }
        func parameters(_ observer: RangeObserver?, _ what: String) throws -> QuantizationParameters {
            guard let p = observer?.parameters() else { throw QuantizationError.invalidCalibration("calibration gave no finite values for \(what)") }
            return p
        }
        var ranges = QuantizationRanges(input: try parameters(inputObserver, "the model's input"))
        for name in names { ranges.outputs[name] = try parameters(observers[name], "'\(name)'") }
        return try build(stages, exampleShape: exampleShape, ranges: ranges)
    }

    /// The quantized model of `model` with activation ranges given (by quantization-aware
    /// training, or kept from an earlier calibration) for examples of `exampleShape`.
    public static func quantize(_ model: any Module, exampleShape: [Int], ranges: QuantizationRanges) throws -> QuantizedModel {
        let stages = try plan(model)
        try checkShapes(stages, exampleShape: exampleShape)
        return try build(stages, exampleShape: exampleShape, ranges: ranges)
    }

    static func build(_ stages: [Stage], exampleShape: [Int], ranges: QuantizationRanges) throws -> QuantizedModel {
        func parameters(_ name: String) throws -> QuantizationParameters {
            guard let p = ranges.outputs[name] else { throw QuantizationError.invalidCalibration("no activation range for '\(name)'") }
            return p
        }
        // Quantize, following the activations' channels-last shape.
        let input = ranges.input
        var current = input
        var dims = exampleShape.count == 3 ? [exampleShape[1], exampleShape[2], exampleShape[0]] : exampleShape
        var flattenedFrom: [Int]? // [H, W, C] of the flattened image before a linear layer
        let lastComputing = stages.lastIndex { if case .conv = $0 { return true }; if case .linear = $0 { return true }; return false }
        var layers: [QuantizedLayer] = []
        for (index, stage) in stages.enumerated() {
            switch stage {
            case let .conv(conv, norm, activation, name, observed):
                let (o, c, kh, kw) = (conv.weight.shape[0], conv.weight.shape[1], conv.weight.shape[2], conv.weight.shape[3])
                var (w, b) = (conv.weight.scalars, conv.bias?.scalars)
                if let norm { (w, b) = fold(w, b, outputs: o, into: norm) }
                // [O, C, kh, kw] → [O, kh, kw, C] (channels-last rows).
                var reordered = [Float](repeating: 0, count: w.count)
                for oc in 0..<o { for ic in 0..<c { for y in 0..<kh { for x in 0..<kw {
                    reordered[((oc * kh + y) * kw + x) * c + ic] = w[((oc * c + ic) * kh + y) * kw + x]
                } } } }
                let window = Int8Window(kernel: (kh, kw), stride: conv.stride, padding: conv.padding)
                let output = try parameters(observed)
                let weights = try QuantizedWeights(reordered, outputs: o, inputs: kh * kw * c, name: name)
                layers.append(.conv2d(try QuantizedConv2d(weights: weights, bias: b, window: window, inChannels: c, input: current,
                                                          output: output, activation: activation, name: name)))
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
                let last = index == lastComputing
                let output = last ? nil : try parameters(observed)
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
            case .flatten:
                if dims.count == 3 {
                    flattenedFrom = dims
                    layers.append(.flatten)
                    dims = [dims.reduce(1, *)]
                }
            }
        }
        return try QuantizedModel(exampleShape: exampleShape, input: input, layers: layers)
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

    /// The model's layers as quantizable groups; throws naming the first layer that is not.
    static func plan(_ model: any Module) throws -> [Stage] {
        var leaves: [(name: String, module: any Module)] = []
        func collect(_ module: any Module, _ name: String) throws {
            if let sequential = module as? Sequential {
                for child in sequential.children { try collect(child.module, name.isEmpty ? child.name : name + "." + child.name) }
            } else if module.children.isEmpty {
                leaves.append((name, module))
            } else {
                throw QuantizationError.unsupported("layer '\(name.isEmpty ? "model" : name)' (\(type(of: module))) is not a chain of layers: it cannot be quantized yet")
            }
        }
        try collect(model, "")
        var stages: [Stage] = []
        var i = 0
        func activation(at index: Int) -> FusedActivation? {
            guard index < leaves.count, let a = leaves[index].module as? Activation else { return nil }
            switch a.kind {
            case .relu: return .relu
            case .relu6: return .relu6
            default: return nil
            }
        }
        while i < leaves.count {
            let (name, module) = leaves[i]
            i += 1
            switch module {
            case let conv as Conv2d:
                guard conv.groups == 1, conv.dilation == (1, 1) else {
                    throw QuantizationError.unsupported("layer '\(name)' (a grouped or dilated convolution) cannot be quantized yet")
                }
                var observed = name
                var norm: BatchNorm?
                if i < leaves.count, let n = leaves[i].module as? BatchNorm {
                    guard n.weight.shape[0] == conv.outChannels else {
                        throw QuantizationError.unsupported("layer '\(leaves[i].name)': batch norm of \(n.weight.shape[0]) features after \(conv.outChannels) channels")
                    }
                    norm = n
                    observed = leaves[i].name
                    i += 1
                }
                let fused = activation(at: i)
                if fused != nil {
                    observed = leaves[i].name
                    i += 1
                }
                stages.append(.conv(conv, norm, fused ?? .none, name: name, observed: observed))
            case let linear as Linear:
                let fused = activation(at: i)
                let observed = fused != nil ? leaves[i].name : name
                if fused != nil { i += 1 }
                stages.append(.linear(linear, fused ?? .none, name: name, observed: observed))
            case let pool as MaxPool2d:
                stages.append(.maxPool(pool.window))
            case let flatten as Flatten:
                guard flatten.startAxis == 1 else {
                    throw QuantizationError.unsupported("layer '\(name)': flatten from axis \(flatten.startAxis) cannot be quantized (only axis 1)")
                }
                stages.append(.flatten)
            case is Dropout, is Identity:
                continue
            default:
                throw QuantizationError.unsupported("layer '\(name)' (\(type(of: module))) cannot be quantized yet")
            }
        }
        guard stages.contains(where: { if case .linear = $0 { return true }; if case .conv = $0 { return true }; return false }) else {
            throw QuantizationError.unsupported("the model has no convolution or linear layer to quantize")
        }
        return stages
    }

    /// Follows the example shape through the stages, so that calibration inputs of the wrong
    /// shape are one-line errors rather than traps in the float model.
    static func checkShapes(_ stages: [Stage], exampleShape: [Int]) throws {
        var dims = exampleShape // [C, H, W] or [F]
        func fail(_ what: String) -> QuantizationError {
            .invalidCalibration("calibration examples of shape \(exampleShape) do not fit the model: \(what)")
        }
        for stage in stages {
            switch stage {
            case let .conv(conv, _, _, name, _):
                guard dims.count == 3, dims[0] == conv.weight.shape[1] else {
                    throw fail("'\(name)' takes images of \(conv.weight.shape[1]) channels, got \(dims)")
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
            case .flatten:
                dims = [dims.reduce(1, *)]
            }
        }
    }
}
