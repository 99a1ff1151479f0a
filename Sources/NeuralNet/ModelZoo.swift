import Tensors

/// Options shared by the zoo's builders; each model uses those that apply to it. The input is
/// an image [inputChannels, inputSize, inputWidth ?? inputSize] or, with `inputFeatures`, a
/// feature vector [inputFeatures] (a table's row: `mlp` only). Fields added after the first
/// release are optional, so model files written before them still decode.
public struct ModelOptions: Equatable, Sendable, Codable {
    /// Output classes.
    public var classes: Int = 10
    /// Input channels (1 for Fashion-MNIST).
    public var inputChannels: Int = 1
    /// Input height (and width, unless `inputWidth` is given).
    public var inputSize: Int = 28
    /// Input width when it differs from the height.
    public var inputWidth: Int?
    /// Feature-vector inputs of this length instead of images.
    public var inputFeatures: Int?
    /// Channel multiplier for the convolutional models (1 = the published widths).
    public var width: Float = 1
    /// Hidden layer sizes of `mlp`; the first is the token-vector size of the text models.
    public var hiddenSizes: [Int] = [128]
    /// Text models: the tokenizer's vocabulary (nil for image and table models).
    public var vocabularySize: Int?
    /// Text models: the padding token's id (its vector gets no gradient).
    public var paddingId: Int?
    /// `text-transformer`: encoder layers and attention heads.
    public var layers: Int?
    public var heads: Int?
    /// `text-transformer`: the longest text it takes, in tokens (its learned positions).
    public var maxTokens: Int?
    /// `text-transformer`: the width of each layer's feed-forward block (nil: 4 × the hidden size).
    public var feedForward: Int?
    /// `text-transformer`: the dropout rate of the hidden states and attention weights in
    /// training (nil: BERT's 0.1).
    public var dropout: Float?
    /// Text models: true for a classifier trained on labelled texts (`distill train`): its
    /// `classes` outputs are class logits, not L2-normalised; nil or false: a unit-length
    /// embedding of `classes` values (a sentence encoder).
    public var classifies: Bool?
    /// Text models: a linear classification head of this many classes on the unit-length
    /// embedding (a sentence encoder re-headed for a new task by `distill transfer`); the
    /// model's outputs are then its logits.
    public var headClasses: Int?

    public init(classes: Int = 10, inputChannels: Int = 1, inputSize: Int = 28, inputWidth: Int? = nil, inputFeatures: Int? = nil,
                width: Float = 1, hiddenSizes: [Int] = [128]) {
        self.classes = classes
        self.inputChannels = inputChannels
        self.inputSize = inputSize
        self.inputWidth = inputWidth
        self.inputFeatures = inputFeatures
        self.width = width
        self.hiddenSizes = hiddenSizes
    }

    /// Options for examples of `exampleShape`: [C, H, W] images or [D] feature vectors.
    public init(classes: Int, exampleShape: [Int], width: Float = 1, hiddenSizes: [Int] = [128]) throws {
        switch exampleShape.count {
        case 3: self.init(classes: classes, inputChannels: exampleShape[0], inputSize: exampleShape[1],
                          inputWidth: exampleShape[2] == exampleShape[1] ? nil : exampleShape[2], width: width, hiddenSizes: hiddenSizes)
        case 1: self.init(classes: classes, inputChannels: 1, inputSize: 1, inputFeatures: exampleShape[0], width: width, hiddenSizes: hiddenSizes)
        default: throw ModuleError.invalidOption("zoo models take images [channels, height, width] or feature vectors [features], not examples of shape \(exampleShape)")
        }
    }

    /// Options of a text model over a vocabulary of `vocabularySize` ids, giving `outputs` values.
    public static func text(vocabularySize: Int, paddingId: Int?, outputs: Int, hidden: Int, layers: Int? = nil, heads: Int? = nil,
                            maxTokens: Int? = nil, feedForward: Int? = nil, dropout: Float? = nil) -> ModelOptions {
        var options = ModelOptions(classes: outputs, hiddenSizes: [hidden])
        options.vocabularySize = vocabularySize
        options.paddingId = paddingId
        options.layers = layers
        options.heads = heads
        options.maxTokens = maxTokens
        options.feedForward = feedForward
        options.dropout = dropout
        return options
    }

    /// What a model of these options outputs per example: `headClasses` when a head sits on a
    /// text encoder's embedding, else `classes`.
    public var outputCount: Int { headClasses ?? classes }

    /// The shape of one input example ([3, longest text] for text models: ids, mask, types).
    public var exampleShape: [Int] {
        if vocabularySize != nil { return [3, maxTokens ?? 512] }
        return inputFeatures.map { [$0] } ?? [inputChannels, inputSize, inputWidth ?? inputSize]
    }
    /// Input height and width.
    var height: Int { inputSize }
    var imageWidth: Int { inputWidth ?? inputSize }

    func scaled(_ channels: Int) -> Int { max(1, Int((Float(channels) * width).rounded())) }
}

/// The architectures the distillation literature uses, scaled to what CPU cores train.
/// Every model's parameter names match the PyTorch definitions in `scripts/zoo_models.py`.
public enum ModelZoo {
    /// Names accepted by `make`.
    public static let names = ["mlp", "lenet5", "cnn-teacher", "cnn-student", "resnet8", "resnet20", "resnet32", "resnet56",
                               "wrn-16-2", "wrn-40-2", "mobilenetv2"]

    /// Builds the model called `name` with `options`, initialised from `generator`.
    public static func make(_ name: String, options: ModelOptions = ModelOptions(),
                            using generator: inout RandomGenerator) throws -> any Module {
        if textNames.contains(name) || options.vocabularySize != nil { return try makeText(name, options: options, using: &generator) }
        guard options.classes > 0, options.inputChannels > 0, options.width > 0, options.exampleShape.allSatisfy({ $0 > 0 }) else {
            throw ModuleError.invalidOption("model options need positive classes, input sizes and width, got \(options)")
        }
        // Options come from users and files: an input or a layer too large to allocate is an error, not a trap.
        let inputSize = options.exampleShape.reduce((1, false)) { partial, side in
            let (product, overflow) = partial.0.multipliedReportingOverflow(by: side)
            return (product, partial.1 || overflow || product > 1 << 28)
        }
        guard !inputSize.1 else { throw ModuleError.invalidOption("inputs of shape \(options.exampleShape) are too large (above 2^28 values an example)") }
        if options.inputFeatures != nil && name != "mlp" {
            throw ModuleError.invalidOption("\(name) takes images; feature vectors (tables) train an mlp")
        }
        switch name {
        case "mlp": return try mlp(options, using: &generator)
        case "lenet5": return try lenet5(options, using: &generator)
        case "cnn-teacher": return try cnnTeacher(options, using: &generator)
        case "cnn-student": return try cnnStudent(options, using: &generator)
        case "resnet8", "resnet20", "resnet32", "resnet56":
            return try ResNet(depth: Int(name.dropFirst(6))!, options: options, using: &generator)
        case "wrn-16-2": return try WideResNet(depth: 16, widen: 2, options: options, using: &generator)
        case "wrn-40-2": return try WideResNet(depth: 40, widen: 2, options: options, using: &generator)
        case "mobilenetv2": return MobileNetV2(options: options, using: &generator)
        default: throw ModuleError.unknownModel(name, available: names)
        }
    }

    /// Throws unless a `Linear(inputs, outputs)` of `model` stays within 2^28 weights (1 GiB).
    private static func requireLinear(_ inputs: Int, _ outputs: Int, model: String) throws {
        let (weights, overflow) = inputs.multipliedReportingOverflow(by: outputs)
        guard !overflow, weights <= 1 << 28 else {
            throw ModuleError.invalidOption("\(model) would have a \(inputs)×\(outputs) weight matrix (above 2^28 values, 1 GiB) for this input size: use smaller images")
        }
    }

    private static func requireSize(_ options: ModelOptions, divisibleBy factor: Int, minimum: Int, model: String) throws {
        for side in [options.height, options.imageWidth] where side < minimum || side % factor != 0 {
            throw ModuleError.invalidOption("\(model) needs an input height and width divisible by \(factor) and at least \(minimum), got \(options.height)×\(options.imageWidth)")
        }
    }

    /// Flatten, then Linear-ReLU for each hidden size, then a Linear classifier.
    static func mlp(_ o: ModelOptions, using g: inout RandomGenerator) throws -> any Module {
        guard !o.hiddenSizes.isEmpty, o.hiddenSizes.allSatisfy({ $0 > 0 }) else {
            throw ModuleError.invalidOption("mlp needs positive hidden sizes, got \(o.hiddenSizes)")
        }
        var layers: [any Module] = [Flatten()]
        var width = o.exampleShape.reduce(1, *)
        // Options come from users and files: a layer too large to allocate is an error, not a trap.
        let sizes = [width] + o.hiddenSizes + [o.classes]
        for (inputs, outputs) in zip(sizes, sizes.dropFirst()) { try requireLinear(inputs, outputs, model: "mlp") }
        for hidden in o.hiddenSizes {
            layers += [Linear(width, hidden, using: &g), Activation(.relu)]
            width = hidden
        }
        layers.append(Linear(width, o.classes, using: &g))
        return Sequential(layers)
    }

    /// LeNet-5 with ReLU and max pooling: conv 5×5 (pad 2) → 6, pool, conv 5×5 → 16, pool, 120, 84, classes.
    static func lenet5(_ o: ModelOptions, using g: inout RandomGenerator) throws -> any Module {
        try requireSize(o, divisibleBy: 4, minimum: 12, model: "lenet5")
        let c1 = o.scaled(6), c2 = o.scaled(16)
        let (sideY, sideX) = ((o.height / 2 - 4) / 2, (o.imageWidth / 2 - 4) / 2)
        try requireLinear(c2 * sideY * sideX, 120, model: "lenet5")
        return Sequential(named: [
            ("conv1", Conv2d(o.inputChannels, c1, kernelSize: 5, padding: 2, using: &g)), ("relu1", Activation(.relu)),
            ("pool1", MaxPool2d(kernelSize: 2)),
            ("conv2", Conv2d(c1, c2, kernelSize: 5, using: &g)), ("relu2", Activation(.relu)), ("pool2", MaxPool2d(kernelSize: 2)),
            ("flatten", Flatten()),
            ("fc1", Linear(c2 * sideY * sideX, 120, using: &g)), ("relu3", Activation(.relu)),
            ("fc2", Linear(120, 84, using: &g)), ("relu4", Activation(.relu)),
            ("fc3", Linear(84, o.classes, using: &g)),
        ])
    }

    /// Conv(1→32)-BN-ReLU-Conv(32→64)-BN-ReLU-MaxPool-Conv(64→128)-BN-ReLU-MaxPool-
    /// Linear(6272→256)-ReLU-Dropout(0.3)-Linear(256→10): 1,701,578 parameters at width 1.
    static func cnnTeacher(_ o: ModelOptions, using g: inout RandomGenerator) throws -> any Module {
        try requireSize(o, divisibleBy: 4, minimum: 4, model: "cnn-teacher")
        let (c1, c2, c3) = (o.scaled(32), o.scaled(64), o.scaled(128))
        let features = Sequential([
            Conv2d(o.inputChannels, c1, kernelSize: 3, padding: 1, using: &g), BatchNorm(c1), Activation(.relu),
            Conv2d(c1, c2, kernelSize: 3, padding: 1, using: &g), BatchNorm(c2), Activation(.relu), MaxPool2d(kernelSize: 2),
            Conv2d(c2, c3, kernelSize: 3, padding: 1, using: &g), BatchNorm(c3), Activation(.relu), MaxPool2d(kernelSize: 2),
        ])
        let (sideY, sideX) = (o.height / 4, o.imageWidth / 4)
        try requireLinear(c3 * sideY * sideX, o.scaled(256), model: "cnn-teacher")
        let classifier = Sequential([
            Flatten(), Linear(c3 * sideY * sideX, o.scaled(256), using: &g), Activation(.relu),
            Dropout(probability: 0.3, using: &g), Linear(o.scaled(256), o.classes, using: &g),
        ])
        return Sequential(named: [("features", features), ("classifier", classifier)])
    }

    /// Conv(1→8)-ReLU-MaxPool-Conv(8→16)-ReLU-MaxPool-Linear(784→64)-ReLU-Linear(64→10):
    /// 52,138 parameters at width 1, no batch norm.
    static func cnnStudent(_ o: ModelOptions, using g: inout RandomGenerator) throws -> any Module {
        try requireSize(o, divisibleBy: 4, minimum: 4, model: "cnn-student")
        let (c1, c2) = (o.scaled(8), o.scaled(16))
        let features = Sequential([
            Conv2d(o.inputChannels, c1, kernelSize: 3, padding: 1, using: &g), Activation(.relu), MaxPool2d(kernelSize: 2),
            Conv2d(c1, c2, kernelSize: 3, padding: 1, using: &g), Activation(.relu), MaxPool2d(kernelSize: 2),
        ])
        let (sideY, sideX) = (o.height / 4, o.imageWidth / 4)
        try requireLinear(c2 * sideY * sideX, o.scaled(64), model: "cnn-student")
        let classifier = Sequential([
            Flatten(), Linear(c2 * sideY * sideX, o.scaled(64), using: &g), Activation(.relu), Linear(o.scaled(64), o.classes, using: &g),
        ])
        return Sequential(named: [("features", features), ("classifier", classifier)])
    }
}

/// CIFAR-style ResNet (He et al. 2016): a 3×3 stem of 16 channels, three stages of
/// (depth − 2)/6 basic blocks at 16, 32 and 64 channels (stride 2 between stages), global
/// average pooling and a linear classifier. resnet8/20/32/56 have 1/3/5/9 blocks a stage.
public final class ResNet: ChildReplacing {
    public let conv1: Conv2d, bn1: BatchNorm
    public let layer1: Sequential, layer2: Sequential, layer3: Sequential
    public let avgpool = AdaptiveAvgPool2d(outputSize: 1)
    /// The classifier: a `Linear`, or what transfer learning put in its place.
    public private(set) var fc: any Module
    public let state = ModuleState()

    public init(depth: Int, options o: ModelOptions, using g: inout RandomGenerator) throws {
        guard depth >= 8, (depth - 2) % 6 == 0 else { throw ModuleError.invalidOption("ResNet depth must be 6n + 2, got \(depth)") }
        let blocks = (depth - 2) / 6
        let widths = [16, 32, 64].map { o.scaled($0) }
        conv1 = Conv2d(o.inputChannels, widths[0], kernelSize: 3, padding: 1, bias: false, using: &g)
        bn1 = BatchNorm(widths[0])
        func stage(_ inChannels: Int, _ outChannels: Int, stride: Int, _ g: inout RandomGenerator) -> Sequential {
            Sequential((0..<blocks).map { i in
                BasicBlock(i == 0 ? inChannels : outChannels, outChannels, stride: i == 0 ? stride : 1, using: &g)
            })
        }
        layer1 = stage(widths[0], widths[0], stride: 1, &g)
        layer2 = stage(widths[0], widths[1], stride: 2, &g)
        layer3 = stage(widths[1], widths[2], stride: 2, &g)
        fc = Linear(widths[2], o.classes, using: &g)
    }

    public func forward(_ input: Tensor) -> Tensor {
        let x = layer3(layer2(layer1(bn1(conv1(input), then: .relu))))
        return fc(avgpool(x).flattened())
    }

    public var children: [(name: String, module: any Module)] {
        [("conv1", conv1), ("bn1", bn1), ("layer1", layer1), ("layer2", layer2), ("layer3", layer3), ("avgpool", avgpool), ("fc", fc)]
    }

    /// Only the classifier `fc` can be replaced.
    public func replace(_ name: String, with module: any Module) throws {
        guard name == "fc" else { throw ModuleError.invalidOption("only ResNet's classifier 'fc' can be replaced, not '\(name)'") }
        fc = module
    }
}

/// Wide ResNet WRN-depth-widen (Zagoruyko & Komodakis 2016): a 16-channel stem, three stages
/// of (depth − 4)/6 pre-activation blocks at 16k, 32k, 64k channels, BN-ReLU, global pooling, linear.
public final class WideResNet: ChildReplacing {
    public let conv1: Conv2d
    public let block1: Sequential, block2: Sequential, block3: Sequential
    public let bn1: BatchNorm
    public let avgpool = AdaptiveAvgPool2d(outputSize: 1)
    /// The classifier: a `Linear`, or what transfer learning put in its place.
    public private(set) var fc: any Module
    public let state = ModuleState()

    public init(depth: Int, widen: Int, options o: ModelOptions, using g: inout RandomGenerator) throws {
        guard depth >= 10, (depth - 4) % 6 == 0, widen >= 1 else {
            throw ModuleError.invalidOption("Wide ResNet depth must be 6n + 4 and widen ≥ 1, got \(depth), \(widen)")
        }
        let blocks = (depth - 4) / 6
        let widths = [16, 16 * widen, 32 * widen, 64 * widen].map { o.scaled($0) }
        conv1 = Conv2d(o.inputChannels, widths[0], kernelSize: 3, padding: 1, bias: false, using: &g)
        func stage(_ inChannels: Int, _ outChannels: Int, stride: Int, _ g: inout RandomGenerator) -> Sequential {
            Sequential((0..<blocks).map { i in
                WideBasicBlock(i == 0 ? inChannels : outChannels, outChannels, stride: i == 0 ? stride : 1, using: &g)
            })
        }
        block1 = stage(widths[0], widths[1], stride: 1, &g)
        block2 = stage(widths[1], widths[2], stride: 2, &g)
        block3 = stage(widths[2], widths[3], stride: 2, &g)
        bn1 = BatchNorm(widths[3])
        fc = Linear(widths[3], o.classes, using: &g)
    }

    public func forward(_ input: Tensor) -> Tensor {
        let x = bn1(block3(block2(block1(conv1(input)))), then: .relu)
        return fc(avgpool(x).flattened())
    }

    public var children: [(name: String, module: any Module)] {
        [("conv1", conv1), ("block1", block1), ("block2", block2), ("block3", block3), ("bn1", bn1), ("avgpool", avgpool), ("fc", fc)]
    }

    /// Only the classifier `fc` can be replaced.
    public func replace(_ name: String, with module: any Module) throws {
        guard name == "fc" else { throw ModuleError.invalidOption("only the Wide ResNet's classifier 'fc' can be replaced, not '\(name)'") }
        fc = module
    }
}

/// A MobileNetV2-style depthwise network sized for 28×28 inputs: a 3×3 stem of 32 channels,
/// inverted residual stages (expansion, channels, blocks, stride) = (1,16,1,1), (6,24,2,2),
/// (6,32,2,2), (6,64,2,1), a 1×1 conv to 256, global pooling and a linear classifier.
public final class MobileNetV2: ChildReplacing {
    public let features: Sequential
    /// The classifier: a `Linear`, or what transfer learning put in its place.
    public private(set) var classifier: any Module
    public let state = ModuleState()

    public init(options o: ModelOptions, using g: inout RandomGenerator) {
        var layers: [any Module] = [Sequential([
            Conv2d(o.inputChannels, o.scaled(32), kernelSize: 3, padding: 1, bias: false, using: &g),
            BatchNorm(o.scaled(32)), Activation(.relu6),
        ])]
        var channels = o.scaled(32)
        for (expansion, width, count, stride) in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 1)] {
            for i in 0..<count {
                layers.append(InvertedResidual(channels, o.scaled(width), stride: i == 0 ? stride : 1, expansion: expansion, using: &g))
                channels = o.scaled(width)
            }
        }
        let last = o.scaled(256)
        layers.append(Sequential([Conv2d(channels, last, kernelSize: 1, bias: false, using: &g), BatchNorm(last), Activation(.relu6)]))
        layers.append(AdaptiveAvgPool2d(outputSize: 1))
        layers.append(Flatten())
        features = Sequential(layers)
        classifier = Linear(last, o.classes, using: &g)
    }

    public func forward(_ input: Tensor) -> Tensor { classifier(features(input)) }

    public var children: [(name: String, module: any Module)] { [("features", features), ("classifier", classifier)] }

    /// Only the classifier can be replaced.
    public func replace(_ name: String, with module: any Module) throws {
        guard name == "classifier" else { throw ModuleError.invalidOption("only MobileNetV2's 'classifier' can be replaced, not '\(name)'") }
        classifier = module
    }
}
