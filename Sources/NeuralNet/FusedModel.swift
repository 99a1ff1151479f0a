import Tensors

/// A float model prepared for inference, as onnxruntime prepares a graph: batch norm folded
/// into the convolution before it, ReLU / ReLU6 and a residual block's sum fused into the
/// convolution (oneDNN post-ops), weights packed once, and activations kept channels last
/// (NHWC) from the first layer to the last, so that no layer reorders them
/// (`PackedConvolution`). It reads the model the way the quantizer does
/// (`Quantizer.steps`/`stages`: chains, the zoo's residual networks and depthwise
/// convolutions); anything else runs as the model's own module, in NCHW, between two
/// transposes.
///
/// It is a snapshot: the weights are copied when it is made, and later changes to the model
/// do not reach it. Outputs equal the model's evaluation-mode outputs up to float rounding
/// (folding changes the order of operations). Linux builds with oneDNN only: elsewhere
/// `init` throws and the caller runs the model itself (`InferenceModel` does).
public final class FusedModel: Module, @unchecked Sendable {
    /// One example's shape: [C, H, W] images or [F] features.
    public let exampleShape: [Int]
    /// One example's output shape, channels first as the model gives it.
    public let outputShape: [Int]
    let layers: [FusedLayer]
    public let state = ModuleState()

    /// Prepares `model` (its evaluation mode: running statistics) for examples of `exampleShape`.
    /// Throws when this build cannot run packed convolutions or the model does not take such examples.
    public init(_ model: any Module, exampleShape: [Int]) throws {
        guard PackedConvolution.isAvailable else {
            throw ModuleError.invalidOption("fused inference needs oneDNN's convolution primitives, which this build does not have")
        }
        guard exampleShape.count == 3 || exampleShape.count == 1, exampleShape.allSatisfy({ $0 >= 1 }) else {
            throw ModuleError.invalidOption("fused inference takes [C, H, W] images or [F] features, got examples of shape \(exampleShape)")
        }
        self.exampleShape = exampleShape
        let stages = try Quantizer.stages(Quantizer.steps(model, ""))
        // Checked before building: a float stage runs once on a zero example to learn its shape.
        guard stages.contains(where: \.holdsWeightLayer) else {
            throw ModuleError.invalidOption("fused inference: the model has no layer it can fuse (it would run as it is)")
        }
        let builder = FusedBuilder()
        let (layers, dims) = try model.inEvaluationMode { try builder.build(stages, dims: channelsLast(exampleShape)) }
        self.layers = layers
        outputShape = channelsFirst(dims)
    }

    /// The outputs [N, ...] for inputs [N, exampleShape...] (NCHW images); call the model as a
    /// function (`model(x)`). Records no gradients.
    public func forward(_ x: Tensor) -> Tensor {
        require(Array(x.shape.dimensions.dropFirst()) == exampleShape,
                "FusedModel: input \(x.shape) does not match examples of shape \(exampleShape)")
        return withoutGradients {
            let batch = x.shape[0], chunks = chunkCount(batch)
            guard chunks > 1 else { return run(x) }
            // Large batches: each thread takes whole chunks of images through every layer, so
            // that a layer's output is still in cache when the next layer reads it, and the
            // threads never wait for one another between layers. (Calls inside run serially.)
            var outputs = [Tensor?](repeating: nil, count: chunks)
            outputs.withUnsafeMutableBufferPointer { slots in
                Compute.parallelFor(chunks, costPerItem: Int.max / chunks) { range in
                    for chunk in range {
                        slots[chunk] = run(x.sliced(alongAxis: 0, (batch * chunk / chunks)..<(batch * (chunk + 1) / chunks)))
                    }
                }
            }
            return Tensor.concatenating(outputs.map { $0! }, alongAxis: 0)
        }
    }

    /// Images a chunk holds at most (measured: bench/DistillBench `infer-*` cases).
    nonisolated(unsafe) public static var imagesPerChunk = 32

    /// How many chunks a batch is split in: at least one a thread once there are two images a thread.
    private func chunkCount(_ batch: Int) -> Int {
        let threads = Compute.threadCount
        guard batch >= 2 * threads, Self.imagesPerChunk > 0 else { return 1 }
        let chunks = (batch + Self.imagesPerChunk - 1) / Self.imagesPerChunk
        return ((chunks + threads - 1) / threads) * threads
    }

    private func run(_ x: Tensor) -> Tensor {
        let input = exampleShape.count == 3 ? x.permuted([0, 2, 3, 1]) : x
        let y = FusedLayer.run(layers[...], input, owned: exampleShape.count == 3)
        return y.rank == 4 ? y.permuted([0, 3, 1, 2]) : y
    }
}

/// One step of a fused model; images are NHWC [N, H, W, C] between steps.
indirect enum FusedLayer {
    case conv(PackedConvolution)
    /// A convolution oneDNN refused: run in NCHW by `Tensor.conv2d` with the folded weights.
    case plainConv(weight: Tensor, bias: Tensor, stride: (Int, Int), padding: (Int, Int), groups: Int, activation: FusedActivation)
    /// A batch norm that follows no convolution (pre-activation blocks): x·scale + shift per channel.
    case channelAffine(scale: [Float], shift: [Float], activation: FusedActivation)
    case linear(weight: Tensor, bias: Tensor?, activation: FusedActivation)
    case maxPool(PoolingWindow)
    case globalAveragePool
    /// NHWC images to feature vectors in NCHW order (C·H·W, as the model flattens them), or,
    /// `channelsLast`, in NHWC order (the next linear layer's columns were reordered to match).
    case flatten(channelsLast: Bool)
    /// act(main(x) + shortcut(x)); `fusedSum`: main's last convolution adds the shortcut and
    /// applies `activation` itself.
    case residual(main: [FusedLayer], shortcut: [FusedLayer], activation: FusedActivation, fusedSum: Bool)
    case float(any Module, FusedActivation)

    /// Runs `layers` on `x`; `owned`: x is this run's own tensor (a fused sum may write into it).
    static func run(_ layers: ArraySlice<FusedLayer>, _ x: Tensor, owned: Bool) -> Tensor {
        var (x, owned) = (x, owned)
        for layer in layers {
            x = layer.apply(x, owned: owned)
            owned = true
        }
        return x
    }

    private func apply(_ x: Tensor, owned: Bool) -> Tensor {
        switch self {
        case let .conv(convolution):
            return convolution(x)
        case let .plainConv(weight, bias, stride, padding, groups, activation):
            let y = Tensor.conv2d(x.permuted([0, 3, 1, 2]), weight: weight, bias: bias, stride: stride, padding: padding, groups: groups)
            return activation.applied(to: y.permuted([0, 2, 3, 1]))
        case let .channelAffine(scale, shift, activation):
            return ChannelsLastKernels.channelAffine(x, scale: scale, shift: shift, clamp: activation.range)
        case let .linear(weight, bias, activation):
            return activation.applied(to: Tensor.linear(x, weight: weight, bias: bias))
        case let .maxPool(window):
            return ChannelsLastKernels.maxPool(x, kernel: window.kernelSize, stride: window.stride, padding: window.padding)
        case .globalAveragePool:
            return ChannelsLastKernels.globalAveragePool(x)
        case let .flatten(channelsLast):
            guard x.rank == 4 else { return x }
            let n = x.shape[0]
            return channelsLast || x.shape[1] * x.shape[2] == 1 ? x.reshaped([n, x.count / max(n, 1)]) : x.permuted([0, 3, 1, 2]).reshaped([n, -1])
        case let .residual(main, shortcut, activation, fusedSum):
            if fusedSum, case let .conv(last) = main.last! {
                // The sum target is the shortcut's output: x itself (owned) or a new tensor.
                let target = shortcut.isEmpty ? (owned ? x : x.copy()) : Self.run(shortcut[...], x, owned: false)
                let hidden = Self.run(main.dropLast(), x, owned: false)
                return last(hidden, accumulating: target)
            }
            let a = Self.run(main[...], x, owned: false), b = shortcut.isEmpty ? x : Self.run(shortcut[...], x, owned: false)
            return Tensor.add(a, b, then: activation)
        case let .float(module, activation):
            let nchw = x.rank == 4 ? x.permuted([0, 3, 1, 2]) : x
            let y = activation.applied(to: module.inEvaluationMode { module(nchw) })
            return y.rank == 4 ? y.permuted([0, 2, 3, 1]) : y
        }
    }
}

/// Turns the quantizer's stages into fused layers, following one example's channels-last dims.
struct FusedBuilder {
    func build(_ stages: [Quantizer.Stage], dims: [Int]) throws -> ([FusedLayer], [Int]) {
        var dims = dims, layers: [FusedLayer] = [], index = 0
        while index < stages.count {
            if case .flatten = stages[index], dims.count == 3, index + 1 < stages.count,
               case let .linear(linear, activation, _, _) = stages[index + 1], linear.inFeatures == dims.reduce(1, *) {
                // Flatten → linear: the images stay NHWC and the linear layer's columns are
                // reordered once, from NCHW order (c, h, w) to NHWC order (h, w, c).
                let (h, w, c) = (dims[0], dims[1], dims[2])
                let weight = (linear.state.weightTransform?(linear.weight) ?? linear.weight).scalars
                var reordered = [Float](repeating: 0, count: weight.count)
                let n = linear.inFeatures
                for o in 0..<linear.outFeatures {
                    for y in 0..<h { for x in 0..<w { for k in 0..<c {
                        reordered[o * n + (y * w + x) * c + k] = weight[o * n + (k * h + y) * w + x]
                    } } }
                }
                layers += [.flatten(channelsLast: true),
                           .linear(weight: Tensor(reordered, shape: [linear.outFeatures, n]), bias: linear.bias?.copy(), activation: activation)]
                dims = [linear.outFeatures]
                index += 2
                continue
            }
            let layer: FusedLayer
            (layer, dims) = try build(stages[index], dims: dims, residualActivation: nil)
            layers.append(layer)
            index += 1
        }
        return (layers, dims)
    }

    /// `residualActivation`: this convolution ends a residual block's main branch and fuses its sum and activation.
    private func build(_ stage: Quantizer.Stage, dims: [Int], residualActivation: FusedActivation?) throws -> (FusedLayer, [Int]) {
        func fail(_ what: String) -> ModuleError { .invalidOption("fused inference: \(what) after activations of shape \(channelsFirst(dims))") }
        switch stage {
        case let .conv(conv, norm, activation, name, _):
            let weight = conv.state.weightTransform?(conv.weight) ?? conv.weight
            guard dims.count == 3, dims[2] == weight.shape[1] * conv.groups else { throw fail("'\(name)' does not fit") }
            var (w, b) = (weight.scalars, conv.bias?.scalars ?? [Float](repeating: 0, count: conv.outChannels))
            if let norm { (w, b) = Quantizer.fold(w, b, outputs: conv.outChannels, into: norm) }
            let folded = Tensor(w, shape: weight.shape)
            let geometry = Convolution2DGeometry(kernel: (weight.shape[2], weight.shape[3]), stride: conv.stride, padding: conv.padding)
            let (oh, ow) = geometry.outputSize(height: dims[0], width: dims[1])
            guard oh > 0, ow > 0 else { throw fail("'\(name)''s kernel does not fit") }
            let fused = residualActivation ?? activation
            if let packed = PackedConvolution(weight: folded, bias: b, channels: dims[2], height: dims[0], width: dims[1], groups: conv.groups,
                                              geometry: geometry, activation: fused) {
                return (.conv(packed), [oh, ow, conv.outChannels])
            }
            return (.plainConv(weight: folded, bias: Tensor(b, shape: [b.count]), stride: conv.stride, padding: conv.padding,
                               groups: conv.groups, activation: activation), [oh, ow, conv.outChannels])
        case let .linear(linear, activation, name, _):
            guard dims == [linear.inFeatures] else { throw fail("'\(name)' takes \(linear.inFeatures) features") }
            let weight = linear.state.weightTransform?(linear.weight) ?? linear.weight
            return (.linear(weight: weight.copy(), bias: linear.bias?.copy(), activation: activation), [linear.outFeatures])
        case let .maxPool(window):
            let g = Convolution2DGeometry(kernel: window.kernel, stride: window.strides, padding: window.paddings)
            guard dims.count == 3 else { throw fail("max pooling") }
            let (oh, ow) = g.outputSize(height: dims[0], width: dims[1])
            guard oh > 0, ow > 0, window.padding * 2 <= window.kernelSize else { throw fail("max pooling") }
            return (.maxPool(window), [oh, ow, dims[2]])
        case .globalAveragePool:
            guard dims.count == 3 else { throw fail("global average pooling") }
            return (.globalAveragePool, [1, 1, dims[2]])
        case .flatten:
            return (.flatten(channelsLast: false), [dims.reduce(1, *)])
        case let .residual(main, shortcut, activation, observed):
            let (b, bDims) = try build(shortcut, dims: dims)
            var (a, aDims) = ([FusedLayer](), dims), fusedSum = false
            if main.allSatisfy(\.isConv), case .conv(_, _, .none, _, _)? = main.last {
                // Every layer a convolution (nothing aliases the input), the last without an
                // activation of its own: it adds the shortcut and applies the block's activation.
                (a, aDims) = try build(Array(main.dropLast()), dims: dims)
                if case let (.conv(end), endDims) = try build(main.last!, dims: aDims, residualActivation: activation) {
                    a.append(.conv(end))
                    aDims = endDims
                    fusedSum = true
                }
            }
            if !fusedSum { (a, aDims) = try build(main, dims: dims) }
            guard aDims == (shortcut.isEmpty ? dims : bDims) else {
                throw fail("the branches of '\(observed.module)' give \(channelsFirst(aDims)) and \(channelsFirst(shortcut.isEmpty ? dims : bDims))")
            }
            return (.residual(main: a, shortcut: b, activation: activation, fusedSum: fusedSum), aDims)
        case let .float(module, activation, _, _):
            if let norm = module as? BatchNorm, dims.count == 3, norm.weight.count == dims[2] {
                let (scale, shift) = Quantizer.fold([Float](repeating: 1, count: dims[2]), nil, outputs: dims[2], into: norm)
                return (.channelAffine(scale: scale, shift: shift, activation: activation), dims)
            }
            let input = Tensor.zeros(Shape([1] + channelsFirst(dims)))
            let output = activation.applied(to: module(input))
            return (.float(module, activation), channelsLast(Array(output.shape.dimensions.dropFirst())))
        }
    }
}

extension Quantizer.Stage {
    var isConv: Bool { if case .conv = self { return true }; return false }
}
