import Tensors

/// A quantized model: the float input is quantized once, the layers run on the int8 kernels
/// (`Int8Kernels`), residual blocks on the quantized add, float stages in float between a
/// dequantization and a quantization, and the last layer's outputs come back as floats.
///
/// It is a `Module` for inference only (`predictions`, evaluation, a teacher's outputs): it
/// has no float parameters to train or save; `QuantizedModelFile` saves it.
public final class QuantizedModel: Module, @unchecked Sendable {
    /// One example's shape: [C, H, W] images or [F] features.
    public let exampleShape: [Int]
    public let input: QuantizationParameters
    public let layers: [QuantizedLayer]
    /// One example's output shape: [classes] after a linear layer, [C, H, W] after a convolution or pooling.
    public let outputShape: [Int]
    public let state = ModuleState()

    /// Throws unless the layers fit one another from examples of `exampleShape` (what a file
    /// may get wrong), so that running the model cannot trap.
    public init(exampleShape: [Int], input: QuantizationParameters, layers: [QuantizedLayer]) throws {
        guard exampleShape.count == 3 || exampleShape.count == 1, exampleShape.allSatisfy({ $0 >= 1 }) else {
            throw QuantizationError.invalidWeights("examples must be [C, H, W] images or [F] features, got \(exampleShape)")
        }
        guard input.scale.isNormal && input.scale > 0 else {
            throw QuantizationError.invalidWeights("input scale \(input.scale) is not a positive finite number")
        }
        self.exampleShape = exampleShape
        self.input = input
        self.layers = layers
        outputShape = channelsFirst(try Self.check(layers, dims: channelsLast(exampleShape), top: true, path: ""))
    }

    /// The channels-last dims after `layers`; throws naming the layer that does not fit.
    private static func check(_ layers: [QuantizedLayer], dims: [Int], top: Bool, path: String) throws -> [Int] {
        var dims = dims
        for (index, layer) in layers.enumerated() {
            func fail(_ what: String) -> QuantizationError { .invalidWeights("layer \(path)\(index): \(what) after activations of shape \(dims)") }
            let last = top && index == layers.count - 1
            switch layer {
            case let .conv2d(c):
                guard dims.count == 3, dims[2] == c.inChannels, let out = c.window.outputSize(height: dims[0], width: dims[1]),
                      c.window.padding.height >= 0, c.window.padding.width >= 0, c.window.kernel.height >= 1, c.window.kernel.width >= 1 else {
                    throw fail("a convolution over \(c.inChannels) channels does not fit")
                }
                dims = [out.height, out.width, c.weights.packed.outputs]
                guard out.height <= 1 << 16, out.width <= 1 << 16, dims.reduce(1, *) <= 1 << 28 else { throw fail("the output is too large (above 2^28 values an example)") }
            case let .maxPool2d(window):
                guard dims.count == 3, let out = window.outputSize(height: dims[0], width: dims[1]),
                      window.padding.height >= 0, window.padding.width >= 0, window.kernel.height >= 1, window.kernel.width >= 1 else {
                    throw fail("max pooling does not fit")
                }
                dims = [out.height, out.width, dims[2]]
            case .flatten:
                guard dims.count == 3 else { throw fail("flatten needs images") }
                dims = [dims.reduce(1, *)]
            case let .linear(l):
                guard dims == [l.weights.packed.inputs] else { throw fail("a linear layer of \(l.weights.packed.inputs) inputs does not fit") }
                guard l.output != nil || last else { throw fail("a float-output linear layer must be the last") }
                dims = [l.weights.packed.outputs]
            case .globalAveragePool:
                guard dims.count == 3, dims[0] * dims[1] <= 1 << 23 else { throw fail("global average pooling needs images") }
                dims = [1, 1, dims[2]]
            case let .residual(r):
                let a = try check(r.main, dims: dims, top: false, path: "\(path)\(index).main.")
                let b = try check(r.shortcut, dims: dims, top: false, path: "\(path)\(index).shortcut.")
                guard a == b else { throw fail("residual branches give \(a) and \(b)") }
                dims = a
            case let .float(f):
                guard channelsFirst(dims) == f.inputShape else { throw fail("'\(f.name)' takes examples of shape \(f.inputShape)") }
                guard f.output != nil || last else { throw fail("a float-output stage must be the last") }
                dims = channelsLast(f.outputShape)
            }
        }
        return dims
    }

    /// The module paths of the layers that run in float (in order, each once).
    public var floatLayers: [String] {
        func names(_ layers: [QuantizedLayer]) -> [String] {
            layers.flatMap { layer -> [String] in
                switch layer {
                case let .float(f): return [f.name]
                case let .residual(r): return names(r.main) + names(r.shortcut)
                default: return []
                }
            }
        }
        var seen = Set<String>()
        return names(layers).filter { seen.insert($0).inserted }
    }

    /// Values stored for the layers: int8 weights, int32 biases, and float stages' parameters
    /// (what `ModelCost.parameters` counts for an int8 model; batch norms are folded away).
    public var storedParameterCount: Int {
        func count(_ layers: [QuantizedLayer]) -> Int {
            layers.reduce(0) { total, layer in
                switch layer {
                case let .conv2d(c): return total + c.weights.packed.weights.count + c.bias.count
                case let .linear(l): return total + l.weights.packed.weights.count + l.bias.count
                case let .residual(r): return total + count(r.main) + count(r.shortcut)
                case let .float(f): return total + f.module.parameterCount
                case .maxPool2d, .flatten, .globalAveragePool: return total
                }
            }
        }
        return count(layers)
    }

    /// Bytes of the float stages' parameters and buffers (Float32), which `weightBytes` leaves out.
    public var floatStageBytes: Int {
        func bytes(_ layers: [QuantizedLayer]) -> Int {
            layers.reduce(0) { total, layer in
                switch layer {
                case let .float(f): return total + f.module.stateDict().reduce(0) { $0 + $1.tensor.count } * MemoryLayout<Float>.size
                case let .residual(r): return total + bytes(r.main) + bytes(r.shortcut)
                default: return total
                }
            }
        }
        return bytes(layers)
    }

    /// Multiply-adds of one example: each convolution's outputs times its inputs a pixel
    /// (kh·kw·C, or kh·kw depthwise), each linear layer's outputs times its inputs, and the
    /// float stages' as `ModelSummary` counts them.
    public var multiplyAddsPerExample: Int {
        func count(_ layers: [QuantizedLayer], dims: [Int]) -> (total: Int, dims: [Int]) {
            var (total, dims) = (0, dims)
            for layer in layers {
                switch layer {
                case let .conv2d(c):
                    let out = c.window.outputSize(height: dims[0], width: dims[1])!
                    total += out.height * out.width * c.weights.packed.outputs * c.weights.packed.inputs
                    dims = [out.height, out.width, c.weights.packed.outputs]
                case let .maxPool2d(window):
                    let out = window.outputSize(height: dims[0], width: dims[1])!
                    dims = [out.height, out.width, dims[2]]
                case .flatten: dims = [dims.reduce(1, *)]
                case .globalAveragePool: dims = [1, 1, dims[2]]
                case let .linear(l):
                    total += l.weights.packed.outputs * l.weights.packed.inputs
                    dims = [l.weights.packed.outputs]
                case let .residual(r):
                    let main = count(r.main, dims: dims), shortcut = count(r.shortcut, dims: dims)
                    total += main.total + shortcut.total
                    dims = main.dims
                case let .float(f):
                    let shapes = f.module.traceShapes(inputShape: Shape(f.inputShape))
                    total += f.module.namedModules().reduce(0) { sum, entry in
                        let (input, output) = shapes[ObjectIdentifier(entry.module)] ?? ([], [])
                        return sum + ModelSummary.multiplyAdds(entry.module, input: input, output: output)
                    }
                    dims = channelsLast(f.outputShape)
                }
            }
            return (total, dims)
        }
        return count(layers, dims: channelsLast(exampleShape)).total
    }

    /// Bytes of the int8 weights, their scales and the int32 biases (float stages not counted).
    public var weightBytes: Int {
        func bytes(_ layers: [QuantizedLayer]) -> Int {
            layers.reduce(0) { total, layer in
                switch layer {
                case let .conv2d(c): return total + c.weights.packed.weights.count + 4 * (c.weights.scales.count + c.bias.count)
                case let .linear(l): return total + l.weights.packed.weights.count + 4 * (l.weights.scales.count + l.bias.count)
                case let .residual(r): return total + bytes(r.main) + bytes(r.shortcut)
                case .maxPool2d, .flatten, .globalAveragePool, .float: return total
                }
            }
        }
        return bytes(layers)
    }

    /// The float outputs [N, ...] for float inputs [N, exampleShape...] (NCHW images); call
    /// the model as a function (`model(x)`).
    public func forward(_ x: Tensor) -> Tensor {
        require(Array(x.shape.dimensions.dropFirst()) == exampleShape,
                "QuantizedModel: input \(x.shape) does not match examples of shape \(exampleShape)")
        let batch = x.shape[0]
        guard batch > 0 else { return Tensor([], shape: Shape([0] + outputShape)) }
        let scalars = x.scalars, inputSize = scalars.count / batch
        guard batch > Self.imagesPerPass else { return forward(scalars[...], batch: batch) }
        // A large batch runs in passes of imagesPerPass images: each layer's output is then
        // read by the next from cache rather than memory. Images are independent, so the
        // values are the same.
        var outputs: [Float] = []
        for start in stride(from: 0, to: batch, by: Self.imagesPerPass) {
            let count = min(Self.imagesPerPass, batch - start)
            outputs += forward(scalars[(start * inputSize)..<((start + count) * inputSize)], batch: count).scalars
        }
        return Tensor(outputs, shape: Shape([batch] + outputShape))
    }

    /// The images a forward pass takes at once (a 28×28 image's first activations are 6-12 KiB).
    static let imagesPerPass = 32

    private func forward(_ scalars: ArraySlice<Float>, batch: Int) -> Tensor {
        let values = quantizedChannelsLast(Array(scalars), batch: batch, dims: exampleShape, input)
        switch run(layers, values, batch: batch, dims: channelsLast(exampleShape), input) {
        case let .float(y): return y
        case let .quantized(values, dims, q): return dequantizedChannelsFirst(values, batch: batch, dims: dims, q)
        }
    }

    private enum Activations {
        case quantized([UInt8], dims: [Int], QuantizationParameters)
        case float(Tensor)
    }

    /// Runs `layers` on uint8 activations [batch, dims] (channels-last) in `current`'s quantization.
    private func run(_ layers: [QuantizedLayer], _ values: [UInt8], batch: Int, dims: [Int], _ current: QuantizationParameters) -> Activations {
        var (values, dims, current) = (values, dims, current)
        for layer in layers {
            switch layer {
            case let .conv2d(c):
                let out = c.window.outputSize(height: dims[0], width: dims[1])!
                values = c.depthwise
                    ? Int8Kernels.depthwiseConv2d(values, batch: batch, height: dims[0], width: dims[1], channels: dims[2], zeroPoint: c.input.zeroPoint,
                                                  weights: c.weights.packed, window: c.window, c.requantization)
                    : Int8Kernels.conv2d(values, batch: batch, height: dims[0], width: dims[1], channels: dims[2], zeroPoint: c.input.zeroPoint,
                                         weights: c.weights.packed, window: c.window, c.requantization)
                dims = [out.height, out.width, c.weights.packed.outputs]
                current = c.output
            case let .maxPool2d(window):
                let out = window.outputSize(height: dims[0], width: dims[1])!
                values = Int8Kernels.maxPool2d(values, batch: batch, height: dims[0], width: dims[1], channels: dims[2], window: window)
                dims = [out.height, out.width, dims[2]]
            case .flatten:
                dims = [dims.reduce(1, *)]
            case let .globalAveragePool(p):
                values = Int8Kernels.globalAveragePool(values, batch: batch, pixels: dims[0] * dims[1], channels: dims[2], inZero: p.input.zeroPoint,
                                                       scale: p.input.scale / p.output.scale, outZero: p.output.zeroPoint)
                dims = [1, 1, dims[2]]
                current = p.output
            case let .residual(r):
                guard case let .quantized(a, outDims, _) = run(r.main, values, batch: batch, dims: dims, current),
                      case let .quantized(b, _, _) = run(r.shortcut, values, batch: batch, dims: dims, current) else {
                    preconditionFailure("QuantizedModel: a residual branch gave float outputs")
                }
                let (low, high) = r.activation.bounds(r.output)
                values = Int8Kernels.add(a, aZero: r.mainOutput.zeroPoint, aScale: r.mainOutput.scale / r.output.scale,
                                         b, bZero: r.shortcutOutput.zeroPoint, bScale: r.shortcutOutput.scale / r.output.scale,
                                         outZero: r.output.zeroPoint, low: low, high: high)
                dims = outDims
                current = r.output
            case let .float(f):
                let y = f(values, batch: batch)
                guard let output = f.output else { return .float(y) }
                values = quantizedChannelsLast(y.scalars, batch: batch, dims: f.outputShape, output)
                dims = channelsLast(f.outputShape)
                current = output
            case let .linear(l):
                let n = l.weights.packed.outputs
                if let r = l.requantization {
                    var out = [UInt8](repeating: 0, count: batch * n)
                    values.withUnsafeBufferPointer { Int8Kernels.linear($0.baseAddress!, rows: batch, zeroPoint: l.input.zeroPoint, weights: l.weights.packed, r, into: &out) }
                    values = out
                    dims = [n]
                    current = l.output!
                } else {
                    var out = [Float](repeating: 0, count: batch * n)
                    values.withUnsafeBufferPointer {
                        Int8Kernels.linear($0.baseAddress!, rows: batch, zeroPoint: l.input.zeroPoint, weights: l.weights.packed,
                                           bias: l.bias, scale: l.outputScales, into: &out)
                    }
                    if l.activation != .none { out = out.map(l.activation.apply) }
                    return .float(Tensor(out, shape: Shape([batch, n])))
                }
            }
        }
        return .quantized(values, dims: dims, current)
    }
}
