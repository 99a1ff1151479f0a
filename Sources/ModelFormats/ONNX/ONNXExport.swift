import Foundation
import NeuralNet
import Tensors

/// How `ONNXExport` writes a model.
public struct ONNXExportOptions: Equatable, Sendable {
    /// Default-domain operator set: 13 to 20. GELU is one node from 20, decomposed with Erf below.
    public var opset = 17
    /// Folds each BatchNormalization that follows a Conv into the conv's weights and bias.
    public var foldBatchNorm = false
    /// Appends a Softmax, so the model outputs probabilities instead of logits.
    public var appendSoftmax = false
    public var inputName = "input"
    public var outputName = "logits"
    /// Preprocessing built into the graph: the input becomes x · scale[c] + shift[c] per
    /// channel (axis 1) before the model runs — for images read as raw 0–255 pixels,
    /// scale = 1/(255·std) and shift = −mean/std. Nil: the graph takes preprocessed inputs.
    public var inputScale: [Float]?
    public var inputShift: [Float]?

    public init(opset: Int = 17, foldBatchNorm: Bool = false, appendSoftmax: Bool = false) {
        self.opset = opset
        self.foldBatchNorm = foldBatchNorm
        self.appendSoftmax = appendSoftmax
    }
}

/// A module that writes itself as ONNX nodes: given the name of its input value, it adds
/// nodes to the builder and returns the name of its output value.
public protocol ONNXExportable {
    func exportONNX(_ input: String, into builder: ONNXGraphBuilder, path: String) throws -> String
}

/// Collects nodes and initializers while modules export themselves. Initializers keep the
/// model's state-dict names, and each module's last output value is named by its dotted
/// path, so a re-imported file can be tapped by the same names as the native model.
public final class ONNXGraphBuilder {
    public let options: ONNXExportOptions
    private(set) var nodes: [ONNXNode] = []
    private(set) var initializers: [ONNXTensor] = []
    private var usedNames: Set<String> = []
    /// Input and output shapes of every module, recorded by running the model once.
    private let shapes: [ObjectIdentifier: (input: Shape, output: Shape)]

    init(options: ONNXExportOptions, shapes: [ObjectIdentifier: (input: Shape, output: Shape)]) {
        self.options = options
        self.shapes = shapes
    }

    private func unique(_ base: String) -> String {
        var name = base.isEmpty ? "value" : base, n = 1
        while usedNames.contains(name) {
            n += 1
            name = "\(base)_\(n)"
        }
        usedNames.insert(name)
        return name
    }

    /// The input and output shape `module` had when the model ran at batch 1.
    public func shapes(of module: any Module) -> (input: Shape, output: Shape)? { shapes[ObjectIdentifier(module)] }

    /// Adds a float initializer holding `tensor`'s values; returns its (unique) name.
    @discardableResult
    public func initializer(_ name: String, _ tensor: Tensor) -> String {
        let unique = unique(name)
        initializers.append(ONNXTensor(name: unique, dims: tensor.shape.dimensions, values: .floats(tensor.scalars)))
        return unique
    }

    /// Adds an integer initializer, a vector unless `dims` says otherwise: int64 (shapes, axes)
    /// unless `elementType` says otherwise (int8 weights, uint8 zero points, int32 biases).
    public func integers(_ name: String, _ values: [Int], dims: [Int]? = nil, elementType: Int = ONNXTensor.int64) -> String {
        let unique = unique(name)
        initializers.append(ONNXTensor(name: unique, dims: dims ?? [values.count], values: .ints(values), elementType: elementType))
        return unique
    }

    /// Adds a float scalar initializer.
    public func scalar(_ name: String, _ value: Float) -> String {
        let unique = unique(name)
        initializers.append(ONNXTensor(name: unique, dims: [], values: .floats([value])))
        return unique
    }

    /// Adds a node; returns the name of its output value.
    @discardableResult
    public func node(_ opType: String, _ inputs: [String], _ attributes: [ONNXAttribute] = [], path: String) -> String {
        let name = unique((path.isEmpty ? "" : path + "/") + opType)
        nodes.append(ONNXNode(name: name, opType: opType, inputs: inputs, outputs: [name], attributes: attributes))
        return name
    }

    /// Adds a node as an imported graph has it: several outputs, another domain, any name.
    /// Returns its output names, each made unique ("" stays "": an output not wanted).
    @discardableResult
    public func node(_ opType: String, _ inputs: [String], outputs: [String], _ attributes: [ONNXAttribute] = [],
                     domain: String = "", name: String) -> [String] {
        let names = outputs.map { $0.isEmpty ? "" : unique($0) }
        nodes.append(ONNXNode(name: unique(name), opType: opType, domain: domain, inputs: inputs, outputs: names, attributes: attributes))
        return names
    }

    /// Exports `module` (at dotted `path`) reading `input`; names its output after the path.
    public func emit(_ module: any Module, _ input: String, path: String) throws -> String {
        guard let exportable = module as? ONNXExportable else {
            throw ModelFormatError(file: path.isEmpty ? "model" : path, "is a \(type(of: module)), which the ONNX exporter does not know")
        }
        let output = try exportable.exportONNX(input, into: self, path: path)
        // Name the module's output by its path when its last node produced it.
        if !path.isEmpty, !usedNames.contains(path), let last = nodes.indices.last, nodes[last].outputs == [output] {
            usedNames.insert(path)
            nodes[last].outputs = [path]
            return path
        }
        return output
    }

    func child(_ path: String, _ name: String) -> String { path.isEmpty ? name : path + "." + name }

    /// Folds Conv → BatchNormalization pairs whose conv output feeds only the batch norm.
    func foldBatchNorms() {
        var consumers: [String: Int] = [:]
        for node in nodes { for input in node.inputs { consumers[input, default: 0] += 1 } }
        var values: [String: Int] = [:]
        for (i, t) in initializers.enumerated() { values[t.name] = i }
        var removed = Set<Int>()
        for (b, bn) in nodes.enumerated() where bn.opType == "BatchNormalization" {
            guard let c = nodes.firstIndex(where: { $0.outputs == [bn.inputs[0]] }), nodes[c].opType == "Conv",
                  consumers[bn.inputs[0]] == 1, let w = values[nodes[c].inputs[1]], consumers[nodes[c].inputs[1]] == 1,
                  case let .floats(weight) = initializers[w].values,
                  case let .floats(gamma)? = values[bn.inputs[1]].map({ initializers[$0].values }),
                  case let .floats(beta)? = values[bn.inputs[2]].map({ initializers[$0].values }),
                  case let .floats(mean)? = values[bn.inputs[3]].map({ initializers[$0].values }),
                  case let .floats(variance)? = values[bn.inputs[4]].map({ initializers[$0].values })
            else { continue }
            var epsilon: Float = 1e-5
            if case let .float(e)? = bn.attribute("epsilon") { epsilon = e }
            let channels = gamma.count, perChannel = weight.count / max(channels, 1)
            var oldBias = [Float](repeating: 0, count: channels)
            if nodes[c].inputs.count > 2, let bi = values[nodes[c].inputs[2]], case let .floats(v) = initializers[bi].values { oldBias = v }
            var newWeight = weight, newBias = [Float](repeating: 0, count: channels)
            for o in 0..<channels {
                let scale = gamma[o] / (variance[o] + epsilon).squareRoot()
                for k in 0..<perChannel { newWeight[o * perChannel + k] *= scale }
                newBias[o] = (oldBias[o] - mean[o]) * scale + beta[o]
            }
            initializers[w].values = .floats(newWeight)
            let biasName = unique(nodes[c].inputs[1].replacingOccurrences(of: ".weight", with: "") + ".folded_bias")
            initializers.append(ONNXTensor(name: biasName, dims: [channels], values: .floats(newBias)))
            nodes[c].inputs = [nodes[c].inputs[0], nodes[c].inputs[1], biasName]
            nodes[c].outputs = bn.outputs
            removed.insert(b)
        }
        nodes = nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        // Drop the batch norms' parameters and any conv bias no node reads any more.
        var read = Set<String>()
        for node in nodes { read.formUnion(node.inputs) }
        initializers.removeAll { !read.contains($0.name) }
    }
}

/// Writes Distill models as ONNX graphs.
public enum ONNXExport {
    /// The ONNX form of `model`, which takes inputs of `inputShape` ([C, H, W]) with any batch size.
    /// A model that holds an imported graph (`ONNXNetwork`) is written at that graph's opset
    /// and IR version (at least 8), whatever `options.opset` says: its nodes are written as
    /// they were read, and Distill does not convert operators between opsets.
    public static func model(_ model: any Module, inputShape: [Int], options requested: ONNXExportOptions = ONNXExportOptions(),
                             metadata: [String: String] = [:]) throws -> ONNXModel {
        var options = requested, irVersion = 8
        if let imported = try importedVersions(in: model) {
            options.opset = imported.opset
            irVersion = max(irVersion, imported.irVersion)
        } else {
            guard (13...20).contains(options.opset) else {
                throw ModelFormatError(file: "ONNX export", "opset \(options.opset) is not supported (13 to 20)")
            }
        }
        let shapes = model.traceShapes(inputShape: Shape(inputShape))
        guard let output = shapes[ObjectIdentifier(model)]?.output else {
            throw ModelFormatError(file: "ONNX export", "the model did not run on inputs of shape \(inputShape)")
        }
        let builder = ONNXGraphBuilder(options: options, shapes: shapes)
        var input = options.inputName
        if let scale = options.inputScale, let shift = options.inputShift {
            guard scale.count == inputShape[0], shift.count == inputShape[0] else {
                throw ModelFormatError(file: "ONNX export", "built-in preprocessing needs \(inputShape[0]) scales and shifts, got \(scale.count) and \(shift.count)")
            }
            let perChannel = [inputShape[0]] + Array(repeating: 1, count: inputShape.count - 1)
            let scaled = builder.node("Mul", [input, builder.initializer("preprocessing.scale", Tensor(scale, shape: Shape(perChannel)))], path: "preprocessing.scale")
            input = builder.node("Add", [scaled, builder.initializer("preprocessing.shift", Tensor(shift, shape: Shape(perChannel)))], path: "preprocessing")
        }
        var result = try builder.emit(model, input, path: "")
        if options.appendSoftmax { result = builder.node("Softmax", [result], [ONNXAttribute("axis", .int(-1))], path: "softmax") }
        if options.foldBatchNorm { builder.foldBatchNorms() }
        return assemble(builder, result: result, inputShape: inputShape, outputShape: Array(output.dimensions.dropFirst()),
                        irVersion: irVersion, metadata: metadata)
    }

    /// The model of the builder's nodes, whose value `result` becomes the graph's output
    /// (named by the options), with inputs of `inputShape` and outputs of `outputShape` (one
    /// example's, any batch size); `inputs` replaces the one float input (a text model's token inputs).
    static func assemble(_ builder: ONNXGraphBuilder, result: String, inputShape: [Int], outputShape: [Int], irVersion: Int,
                         metadata: [String: String], inputs: [ONNXValueInfo]? = nil) -> ONNXModel {
        let options = builder.options
        var nodes = builder.nodes
        if let last = nodes.indices.last, nodes[last].outputs == [result] {
            nodes[last].outputs = [options.outputName]
            for i in nodes.indices { nodes[i].inputs = nodes[i].inputs.map { $0 == result ? options.outputName : $0 } }
        } else {
            nodes.append(ONNXNode(name: "output", opType: "Identity", inputs: [result], outputs: [options.outputName]))
        }
        let graph = ONNXGraph(
            name: "distill", nodes: nodes, initializers: builder.initializers,
            inputs: inputs ?? [ONNXValueInfo(name: options.inputName, dims: [nil] + inputShape.map { Optional($0) })],
            outputs: [ONNXValueInfo(name: options.outputName, dims: [nil] + outputShape.map { Optional($0) })])
        return ONNXModel(irVersion: irVersion, opsets: ["": options.opset], producerName: "distill", graph: graph, metadata: metadata)
    }
}

// MARK: - Layers

extension Sequential: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        var x = input
        for (name, module) in layers { x = try b.emit(module, x, path: b.child(path, name)) }
        return x
    }
}

extension Linear: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        if b.shapes(of: self)?.input.rank ?? 2 == 2 {
            let w = b.initializer(b.child(path, "weight"), weight)
            let inputs = [input, w] + (bias.map { [b.initializer(b.child(path, "bias"), $0)] } ?? [])
            return b.node("Gemm", inputs, [ONNXAttribute("transB", .int(1))], path: path)
        }
        // Rank > 2: MatMul with the transposed weight, then the bias.
        let w = b.initializer(b.child(path, "weight_transposed"), weight.transposed().copy())
        let product = b.node("MatMul", [input, w], path: path)
        guard let bias else { return product }
        return b.node("Add", [product, b.initializer(b.child(path, "bias"), bias)], path: path)
    }
}

extension Conv2d: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        let w = b.initializer(b.child(path, "weight"), weight)
        let inputs = [input, w] + (bias.map { [b.initializer(b.child(path, "bias"), $0)] } ?? [])
        return b.node("Conv", inputs, [
            ONNXAttribute("kernel_shape", .ints([weight.shape[2], weight.shape[3]])),
            ONNXAttribute("strides", .ints([stride.0, stride.1])),
            ONNXAttribute("pads", .ints([padding.0, padding.1, padding.0, padding.1])),
            ONNXAttribute("dilations", .ints([dilation.0, dilation.1])),
            ONNXAttribute("group", .int(groups)),
        ], path: path)
    }
}

extension BatchNorm: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        let inputs = [input, b.initializer(b.child(path, "weight"), weight), b.initializer(b.child(path, "bias"), bias),
                      b.initializer(b.child(path, "running_mean"), runningMean), b.initializer(b.child(path, "running_var"), runningVariance)]
        return b.node("BatchNormalization", inputs, [ONNXAttribute("epsilon", .float(epsilon))], path: path)
    }
}

extension LayerNorm: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        guard b.options.opset >= 17 else {
            throw ModelFormatError(file: path, "LayerNorm needs opset 17 or later (LayerNormalization); export with a later opset")
        }
        let inputs = [input, b.initializer(b.child(path, "weight"), weight), b.initializer(b.child(path, "bias"), bias)]
        return b.node("LayerNormalization", inputs,
                      [ONNXAttribute("axis", .int(-normalizedShape.rank)), ONNXAttribute("epsilon", .float(epsilon))], path: path)
    }
}

extension Activation: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        switch kind {
        case .relu: return b.node("Relu", [input], path: path)
        case let .leakyRelu(slope): return b.node("LeakyRelu", [input], [ONNXAttribute("alpha", .float(slope))], path: path)
        case .sigmoid: return b.node("Sigmoid", [input], path: path)
        case .tanh: return b.node("Tanh", [input], path: path)
        case .relu6:
            return b.node("Clip", [input, b.scalar(b.child(path, "min"), 0), b.scalar(b.child(path, "max"), 6)], path: path)
        case .gelu:
            if b.options.opset >= 20 { return b.node("Gelu", [input], path: path) }
            // 0.5 · x · (1 + erf(x / √2)), the exact GELU that nn.GELU computes.
            let scaled = b.node("Div", [input, b.scalar(b.child(path, "sqrt2"), Float(2).squareRoot())], path: path)
            let erf = b.node("Erf", [scaled], path: path)
            let shifted = b.node("Add", [erf, b.scalar(b.child(path, "one"), 1)], path: path)
            let product = b.node("Mul", [input, shifted], path: path)
            return b.node("Mul", [product, b.scalar(b.child(path, "half"), 0.5)], path: path)
        }
    }
}

extension Flatten: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        if startAxis == 1 { return b.node("Flatten", [input], [ONNXAttribute("axis", .int(1))], path: path) }
        // Keep the leading axes (0 copies a dimension in Reshape), merge the rest.
        let shape = b.integers(b.child(path, "shape"), [Int](repeating: 0, count: max(startAxis, 0)) + [-1])
        return b.node("Reshape", [input, shape], path: path)
    }
}

extension Identity: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String { input }
}

extension Dropout: ONNXExportable {
    /// Inference graphs have no dropout.
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String { input }
}

extension PoolingWindow {
    var onnxAttributes: [ONNXAttribute] {
        [ONNXAttribute("kernel_shape", .ints([kernelSize, kernelSize])), ONNXAttribute("strides", .ints([stride, stride])),
         ONNXAttribute("pads", .ints([padding, padding, padding, padding]))]
    }
}

extension MaxPool2d: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        b.node("MaxPool", [input], window.onnxAttributes, path: path)
    }
}

extension AvgPool2d: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        b.node("AveragePool", [input], window.onnxAttributes + [ONNXAttribute("count_include_pad", .int(1))], path: path)
    }
}

extension AdaptiveAvgPool2d: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        if outputSize == (1, 1) { return b.node("GlobalAveragePool", [input], path: path) }
        guard let shape = b.shapes(of: self)?.input, shape.rank == 4,
              shape[2] % outputSize.0 == 0, shape[3] % outputSize.1 == 0 else {
            throw ModelFormatError(file: path, "adaptive average pooling to \(outputSize) is exported only when it divides the input evenly")
        }
        let kernel = [shape[2] / outputSize.0, shape[3] / outputSize.1]
        return b.node("AveragePool", [input], [ONNXAttribute("kernel_shape", .ints(kernel)), ONNXAttribute("strides", .ints(kernel))], path: path)
    }
}

// MARK: - Blocks and zoo models

extension BasicBlock: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        var x = try b.emit(conv1, input, path: b.child(path, "conv1"))
        x = try b.emit(bn1, x, path: b.child(path, "bn1"))
        x = b.node("Relu", [x], path: b.child(path, "relu1"))
        x = try b.emit(conv2, x, path: b.child(path, "conv2"))
        x = try b.emit(bn2, x, path: b.child(path, "bn2"))
        let shortcut = try downsample.map { try b.emit($0, input, path: b.child(path, "downsample")) } ?? input
        return b.node("Relu", [b.node("Add", [x, shortcut], path: path)], path: path)
    }
}

extension WideBasicBlock: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        let activated = b.node("Relu", [try b.emit(bn1, input, path: b.child(path, "bn1"))], path: b.child(path, "relu1"))
        var x = try b.emit(conv1, activated, path: b.child(path, "conv1"))
        x = b.node("Relu", [try b.emit(bn2, x, path: b.child(path, "bn2"))], path: b.child(path, "relu2"))
        x = try b.emit(conv2, x, path: b.child(path, "conv2"))
        let shortcut = try convShortcut.map { try b.emit($0, activated, path: b.child(path, "convShortcut")) } ?? input
        return b.node("Add", [x, shortcut], path: path)
    }
}

extension InvertedResidual: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        let x = try b.emit(conv, input, path: b.child(path, "conv"))
        return usesResidual ? b.node("Add", [input, x], path: path) : x
    }
}

extension ResNet: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        var x = try b.emit(bn1, try b.emit(conv1, input, path: b.child(path, "conv1")), path: b.child(path, "bn1"))
        x = b.node("Relu", [x], path: b.child(path, "relu"))
        for (name, layer) in [("layer1", layer1), ("layer2", layer2), ("layer3", layer3)] { x = try b.emit(layer, x, path: b.child(path, name)) }
        x = b.node("Flatten", [try b.emit(avgpool, x, path: b.child(path, "avgpool"))], [ONNXAttribute("axis", .int(1))], path: b.child(path, "flatten"))
        return try b.emit(fc, x, path: b.child(path, "fc"))
    }
}

extension WideResNet: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        var x = try b.emit(conv1, input, path: b.child(path, "conv1"))
        for (name, block) in [("block1", block1), ("block2", block2), ("block3", block3)] { x = try b.emit(block, x, path: b.child(path, name)) }
        x = b.node("Relu", [try b.emit(bn1, x, path: b.child(path, "bn1"))], path: b.child(path, "relu"))
        x = b.node("Flatten", [try b.emit(avgpool, x, path: b.child(path, "avgpool"))], [ONNXAttribute("axis", .int(1))], path: b.child(path, "flatten"))
        return try b.emit(fc, x, path: b.child(path, "fc"))
    }
}

extension MobileNetV2: ONNXExportable {
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        try b.emit(classifier, try b.emit(features, input, path: b.child(path, "features")), path: b.child(path, "classifier"))
    }
}
