import Foundation
import NeuralNet
import Tensors

/// An ONNX classifier run on Distill's engine: any graph made of the supported operators
/// (`ONNXNetwork.supportedOperators`) becomes a `Module`, so a model exported from PyTorch
/// (`torch.onnx.export`) or another framework can teach a Distill student without an
/// architecture match.
///
/// Loading checks the whole graph before anything runs: every operator supported, every
/// value produced before it is read, no cycles, attributes in range, and one trial run at
/// the input shape with every shape checked, so that running it on inputs of that shape
/// cannot fail. The input shape is the model's own where it declares fixed sizes after the
/// batch axis; models exported with symbolic sizes (`dynamic_axes` in PyTorch, `?` in
/// Paddle's exports) are given the per-example shape when they are loaded (`inputShape:`).
/// Float initializers become the module's parameters (by their ONNX names; batch-norm
/// statistics and scalar constants are buffers);
/// every node's first output is a child module of that name, so feature-based methods can
/// tap any intermediate value (`forward(_:capturing: ["/features/features.2/Relu_output_0"])`).
///
/// Text models exported with integer inputs `input_ids`, `attention_mask` and
/// `token_type_ids` (a BERT from `transformers`) take one packed token batch [batch, 3,
/// length] instead, as Distill's own text encoders do (`ONNXTokenInputs`).
public final class ONNXNetwork: Module {
    /// Operators of the default domain that Distill runs.
    public static let supportedOperators = [
        "Add", "And", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "Div",
        "DequantizeLinear", "Dropout", "Equal", "Erf", "Expand", "Flatten", "Gather", "GatherND", "Gelu", "Gemm", "GlobalAveragePool",
        "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish", "Identity", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual",
        "MatMul", "Max", "MaxPool", "Min", "Mul", "Not", "Or", "Pad", "Pow", "PRelu", "QuantizeLinear", "Range", "ReduceL2", "ReduceMax",
        "ReduceMean", "ReduceSum", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Split", "Sqrt", "Squeeze", "Sub",
        "Tanh", "Transpose", "Unsqueeze", "Where", "Xor",
    ]

    public let model: ONNXModel
    /// The graph input the network reads (`input_ids` for a text model), and its per-example
    /// shape (without the batch axis): for a text model [3, length], a packed `TokenBatch` of
    /// sequences of `length` tokens (the length loading ran at; any length runs when the
    /// graph leaves its sequence axis open).
    public let inputName: String
    public let inputShape: [Int]
    /// The token inputs of a text model (`input_ids`, `attention_mask`, `token_type_ids`), fed
    /// from one packed token batch; nil for a model of one float input.
    public let tokenInputs: ONNXTokenInputs?
    /// The graph output the network returns (the first output).
    public let outputName: String
    public let state = ModuleState()
    let file: String
    let opset: Int
    /// Nodes in an order where every value is produced before it is read.
    let order: [ONNXNode]
    /// For each node of `order`, the values no later node reads: a run lets go of them once
    /// the node has run, so it does not hold every intermediate of a long graph at once.
    let lastReads: [[String]]
    let floatInitializers: [(name: String, tensor: Tensor)]
    let integerInitializers: [String: Value]
    /// The element type of each integer initializer (uint8 and int8 zero points say which
    /// range QuantizeLinear saturates to).
    let integerTypes: [String: Int]
    /// Float initializers that never train (`ONNXNetwork.constantNames`): the module's buffers.
    let constantNames: Set<String>
    let nodeModules: [(name: String, module: any Module)]

    /// Reads and checks the ONNX file at `path`.
    ///
    /// `inputShape` is the shape of one example without the batch axis (`[3, 48, 192]`): it
    /// fixes the sizes the model leaves symbolic, and must agree with the ones it fixes. It
    /// may be omitted when the model fixes every size after the batch axis. A text model (one
    /// whose inputs are `input_ids` and, optionally, `attention_mask` and `token_type_ids`)
    /// takes [3, length]; without it, loading tries sequences of the length the graph fixes,
    /// or of 8 tokens.
    public convenience init(contentsOf path: String, inputShape: [Int]? = nil) throws {
        try self.init(try ONNXModel.read(path), file: path, inputShape: inputShape)
    }

    /// Checks `model` and prepares it to run on examples of `inputShape` (without the batch
    /// axis; nil takes the model's declared sizes, which must then all be fixed); `file`
    /// names the source in errors.
    public init(_ model: ONNXModel, file: String = "ONNX model", inputShape: [Int]? = nil) throws {
        // Weights written as Constant nodes become initializers: parameters like any other.
        let model = model.liftingFloatConstants()
        self.model = model
        self.file = file
        opset = model.opset
        func fail(_ message: String) -> ModelFormatError { ModelFormatError(file: file, message) }
        let graph = model.graph
        guard opset >= 7 else { throw fail("uses operator set \(opset); Distill reads opset 7 and later") }

        var floats: [(name: String, tensor: Tensor)] = [], ints: [String: Value] = [:], types: [String: Int] = [:]
        var defined = Set<String>()
        for t in graph.initializers {
            guard !t.name.isEmpty, defined.insert(t.name).inserted else { throw fail("has an initializer with an empty or repeated name '\(t.name)'") }
            do { try t.validate() } catch let error as ProtoError { throw fail(error.message) }
            switch t.values {
            case let .floats(v): floats.append((t.name, Tensor(v, shape: Shape(t.dims))))
            case let .ints(v):
                ints[t.name] = .ints(v, dims: t.dims)
                types[t.name] = t.elementType
            }
        }
        let feedable = graph.inputs.filter { !defined.contains($0.name) }
        let (name, perExample, tokens) = try ONNXNetwork.graphInputs(feedable, given: inputShape, fail: fail)
        inputName = name
        self.inputShape = perExample
        tokenInputs = tokens
        for input in feedable { defined.insert(input.name) }
        guard let output = graph.outputs.first else { throw fail("has no graph output") }
        outputName = output.name

        // Operators, then a topological order: Kahn's algorithm over value names.
        let unsupported = graph.nodes.filter { !($0.domain.isEmpty || $0.domain == "ai.onnx") || !ONNXNetwork.supportedOperators.contains($0.opType) }
        if let node = unsupported.first {
            let ops = Set(unsupported.map { $0.domain.isEmpty ? $0.opType : "\($0.domain).\($0.opType)" }).sorted()
            throw fail("node '\(node.name)' uses operator \(node.domain.isEmpty ? "" : node.domain + ".")\(node.opType), which Distill does not run"
                + (ops.count > 1 ? " (unsupported here: \(ops.joined(separator: ", ")))" : "")
                + "; supported: \(ONNXNetwork.supportedOperators.joined(separator: ", "))")
        }
        var producers: [String: Int] = [:]
        for (i, node) in graph.nodes.enumerated() {
            guard !node.outputs.isEmpty else { throw fail("node '\(node.name)' (\(node.opType)) has no outputs") }
            for o in node.outputs where !o.isEmpty {
                guard !defined.contains(o), producers.updateValue(i, forKey: o) == nil else {
                    throw fail("value '\(o)' is produced twice (node '\(node.name)', \(node.opType))")
                }
            }
        }
        for node in graph.nodes {
            for i in node.inputs where !i.isEmpty && !defined.contains(i) && producers[i] == nil {
                throw fail("node '\(node.name)' (\(node.opType)) reads '\(i)', which no node, input or initializer produces")
            }
        }
        var waiting = graph.nodes.map { node in Set(node.inputs.filter { !$0.isEmpty && producers[$0] != nil }).count }
        var readers: [String: [Int]] = [:]
        for (i, node) in graph.nodes.enumerated() { for v in Set(node.inputs) where producers[v] != nil { readers[v, default: []].append(i) } }
        var ready = graph.nodes.indices.filter { waiting[$0] == 0 }.reversed() as [Int]
        var order: [ONNXNode] = []
        while let i = ready.popLast() {
            order.append(graph.nodes[i])
            for o in graph.nodes[i].outputs where !o.isEmpty {
                for r in readers[o] ?? [] {
                    waiting[r] -= 1
                    if waiting[r] == 0 { ready.append(r) }
                }
            }
        }
        if order.count < graph.nodes.count, let stuck = graph.nodes.indices.first(where: { waiting[$0] > 0 }) {
            throw fail("the graph has a cycle: node '\(graph.nodes[stuck].name)' (\(graph.nodes[stuck].opType)) depends on its own output")
        }
        guard output.name == inputName || defined.contains(output.name) || producers[output.name] != nil else {
            throw fail("graph output '\(output.name)' is not produced by any node")
        }
        self.order = order
        var lastReader: [String: Int] = [:]
        for (index, node) in order.enumerated() { for value in node.inputs where !value.isEmpty { lastReader[value] = index } }
        var lastReads = [[String]](repeating: [], count: order.count)
        for (value, index) in lastReader { lastReads[index].append(value) }
        self.lastReads = lastReads
        floatInitializers = floats
        integerInitializers = ints
        integerTypes = types
        constantNames = ONNXNetwork.constantNames(order, floats: floats)
        var seen = Set<String>()
        nodeModules = order.compactMap { node in
            let name = node.outputs[0]
            guard !name.isEmpty, seen.insert(name).inserted else { return nil }
            return (name, ONNXNodeModule(node))
        }

        // A trial run at batch 1: every shape and attribute checked before training starts.
        let trial = tokens == nil ? Tensor.zeros(Shape([1] + perExample)) : ONNXTokenInputs.trialBatch(length: perExample[1])
        let result = try withoutGradients { try run(trial) }
        guard result.rank >= 1 else { throw fail("output '\(outputName)' is a scalar, not a batch of class scores") }
    }

    /// The float initializers that train: every one but batch-norm statistics and scalar constants.
    public var localParameters: [(name: String, tensor: Tensor)] { floatInitializers.filter { !constantNames.contains($0.name) } }
    /// Batch-norm running statistics and scalar constants, kept fixed (see `constantNames`).
    public var localBuffers: [(name: String, tensor: Tensor)] { floatInitializers.filter { constantNames.contains($0.name) } }
    public var children: [(name: String, module: any Module)] { nodeModules }

    /// Runs the graph; shape errors are thrown, naming the node.
    public func run(_ input: Tensor) throws -> Tensor { try run(input, outputs: [outputName])[0] }

    /// Runs the graph and returns the float values named `names`: any of its outputs (a text
    /// model's `last_hidden_state` beside its first output) or intermediate values.
    public func run(_ input: Tensor, outputs names: [String]) throws -> [Tensor] {
        var values: [String: Value] = integerInitializers
        for (name, tensor) in floatInitializers { values[name] = .tensor(tensor) }
        if let tokenInputs {
            for (name, value) in try tokenValues(input, tokenInputs) { values[name] = value }
        } else {
            guard Array(input.shape.dimensions.dropFirst()) == inputShape else {
                throw ModelFormatError(file: file, "input '\(inputName)' expects examples of shape \(inputShape), got a batch \(input.shape)")
            }
            values[inputName] = .tensor(input)
        }
        let taps = Dictionary(nodeModules.map { ($0.name, $0.module) }, uniquingKeysWith: { a, _ in a })
        let kept = Set(names)
        for (index, node) in order.enumerated() {
            let inputs = node.inputs.map { $0.isEmpty ? nil : values[$0] }
            let outputs: [Value]
            do { outputs = try ONNXOperators(node: node, inputs: inputs, opset: opset, inputTypes: node.inputs.map { integerTypes[$0] }).run() } catch let error as ONNXOperators.Failure {
                throw ModelFormatError(file: file, "node '\(node.name)' (\(node.opType)): \(error.message)")
            }
            for (name, value) in zip(node.outputs, outputs) where !name.isEmpty { values[name] = value }
            if let module = taps[node.outputs[0]] as? ONNXNodeModule, case let .tensor(t)? = outputs.first {
                module.count(inputs: inputs, output: t)
                if case let .tensor(x)? = inputs.first { module.state.report(input: x, output: t) }
            }
            for value in lastReads[index] where !kept.contains(value) { values[value] = nil }
        }
        return try names.map { name in
            switch values[name] {
            case let .tensor(result)?: return result
            case .ints?: throw ModelFormatError(file: file, "value '\(name)' holds integers, not a float tensor")
            case nil: throw ModelFormatError(file: file, "has no value '\(name)' (graph outputs: \(model.graph.outputs.map(\.name).joined(separator: ", ")))")
            }
        }
    }

    public func forward(_ input: Tensor) -> Tensor {
        do { return try run(input) } catch { requirementFailed("\(error)") }
    }
}
