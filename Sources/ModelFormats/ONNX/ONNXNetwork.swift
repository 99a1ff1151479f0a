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
/// the declared input shape with every shape checked, so that running it on inputs of that
/// shape cannot fail. Initializers become the module's parameters (by their ONNX names);
/// every node's first output is a child module of that name, so feature-based methods can
/// tap any intermediate value (`forward(_:capturing: ["/features/features.2/Relu_output_0"])`).
public final class ONNXNetwork: Module {
    /// Operators of the default domain that Distill runs.
    public static let supportedOperators = [
        "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "Conv", "Div", "Dropout", "Erf",
        "Flatten", "Gather", "Gelu", "Gemm", "GlobalAveragePool", "Identity", "LeakyRelu", "MatMul", "MaxPool", "Mul",
        "ReduceMax", "ReduceMean", "ReduceSum", "Relu", "Reshape", "Shape", "Sigmoid", "Slice", "Softmax", "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze",
    ]

    public let model: ONNXModel
    /// The graph input the network reads, and its per-example shape (without the batch axis).
    public let inputName: String
    public let inputShape: [Int]
    /// The graph output the network returns (the first output).
    public let outputName: String
    public let state = ModuleState()
    let file: String
    let opset: Int
    /// Nodes in an order where every value is produced before it is read.
    let order: [ONNXNode]
    let floatInitializers: [(name: String, tensor: Tensor)]
    let integerInitializers: [String: Value]
    let nodeModules: [(name: String, module: any Module)]

    /// A value flowing through the graph: a float tensor, or integers (shapes, axes, indices).
    enum Value {
        case tensor(Tensor)
        case ints([Int], dims: [Int])

        var dims: [Int] {
            switch self {
            case let .tensor(t): return t.shape.dimensions
            case let .ints(_, d): return d
            }
        }
    }

    /// Reads and checks the ONNX file at `path`.
    public convenience init(contentsOf path: String) throws {
        try self.init(try ONNXModel.read(path), file: path)
    }

    /// Checks `model` and prepares it to run; `file` names the source in errors.
    public init(_ model: ONNXModel, file: String = "ONNX model") throws {
        self.model = model
        self.file = file
        opset = model.opset
        func fail(_ message: String) -> ModelFormatError { ModelFormatError(file: file, message) }
        let graph = model.graph
        guard opset >= 7 else { throw fail("uses operator set \(opset); Distill reads opset 7 and later") }

        var floats: [(name: String, tensor: Tensor)] = [], ints: [String: Value] = [:]
        var defined = Set<String>()
        for t in graph.initializers {
            guard !t.name.isEmpty, defined.insert(t.name).inserted else { throw fail("has an initializer with an empty or repeated name '\(t.name)'") }
            do { try t.validate() } catch let error as ProtoError { throw fail(error.message) }
            switch t.values {
            case let .floats(v): floats.append((t.name, Tensor(v, shape: Shape(t.dims))))
            case let .ints(v): ints[t.name] = .ints(v, dims: t.dims)
            }
        }
        guard let input = graph.inputs.first(where: { !defined.contains($0.name) }) else { throw fail("has no graph input") }
        guard graph.inputs.filter({ !defined.contains($0.name) }).count == 1 else {
            throw fail("has \(graph.inputs.filter { !defined.contains($0.name) }.count) graph inputs; a teacher takes one image batch")
        }
        guard input.elementType == ONNXTensor.float else { throw fail("input '\(input.name)' has element type \(input.elementType); Distill feeds float images") }
        guard input.dims.count >= 2, input.dims.dropFirst().allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw fail("input '\(input.name)' needs a batch axis and fixed positive sizes after it, got \(input.dims.map { $0.map(String.init) ?? "?" })")
        }
        let perExample = input.dims.dropFirst().map { $0! }
        guard perExample.reduce(1, { $0 > 1 << 24 ? $0 : $0 * $1 }) <= 1 << 24 else { throw fail("input '\(input.name)' shape \(input.dims) is too large") }
        inputName = input.name
        inputShape = perExample
        defined.insert(input.name)
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
        floatInitializers = floats
        integerInitializers = ints
        var seen = Set<String>()
        nodeModules = order.compactMap { node in
            let name = node.outputs[0]
            guard !name.isEmpty, seen.insert(name).inserted else { return nil }
            return (name, ONNXNodeModule(node))
        }

        // A trial run at batch 1: every shape and attribute checked before training starts.
        let trial = Tensor.zeros(Shape([1] + perExample))
        let result = try withoutGradients { try run(trial) }
        guard result.rank >= 1 else { throw fail("output '\(outputName)' is a scalar, not a batch of class scores") }
    }

    public var localParameters: [(name: String, tensor: Tensor)] { floatInitializers }
    public var children: [(name: String, module: any Module)] { nodeModules }

    /// Runs the graph; shape errors are thrown, naming the node.
    public func run(_ input: Tensor) throws -> Tensor {
        guard Array(input.shape.dimensions.dropFirst()) == inputShape else {
            throw ModelFormatError(file: file, "input '\(inputName)' expects examples of shape \(inputShape), got a batch \(input.shape)")
        }
        var values: [String: Value] = integerInitializers
        for (name, tensor) in floatInitializers { values[name] = .tensor(tensor) }
        values[inputName] = .tensor(input)
        let taps = Dictionary(nodeModules.map { ($0.name, $0.module) }, uniquingKeysWith: { a, _ in a })
        for node in order {
            let inputs = node.inputs.map { $0.isEmpty ? nil : values[$0] }
            let outputs: [Value]
            do { outputs = try ONNXOperators(node: node, inputs: inputs, opset: opset).run() } catch let error as ONNXOperators.Failure {
                throw ModelFormatError(file: file, "node '\(node.name)' (\(node.opType)): \(error.message)")
            }
            for (name, value) in zip(node.outputs, outputs) where !name.isEmpty { values[name] = value }
            if let module = taps[node.outputs[0]] as? ONNXNodeModule, case let .tensor(t)? = outputs.first {
                module.count(inputs: inputs, output: t)
                if case let .tensor(x)? = inputs.first { module.state.report(input: x, output: t) }
            }
        }
        guard case let .tensor(result)? = values[outputName] else {
            throw ModelFormatError(file: file, "graph output '\(outputName)' is not a float tensor")
        }
        return result
    }

    public func forward(_ input: Tensor) -> Tensor {
        do { return try run(input) } catch { requirementFailed("\(error)") }
    }
}

/// A node's place in the module tree: it lets `forward(_:capturing:)` tap the node's output.
final class ONNXNodeModule: Module, CountsMultiplyAdds {
    let node: ONNXNode
    let state = ModuleState()
    private(set) var multiplyAddsPerExample = 0
    init(_ node: ONNXNode) { self.node = node }

    /// Multiply-adds per example of Conv, Gemm and MatMul, from the operands of the last run.
    func count(inputs: [ONNXNetwork.Value?], output: Tensor) {
        guard inputs.count >= 2, case let .tensor(w)? = inputs[1], output.rank >= 1, output.shape[0] > 0 else { return }
        let perExample = output.count / output.shape[0]
        switch node.opType {
        case "Conv" where w.rank == 4: multiplyAddsPerExample = perExample * w.shape[1] * w.shape[2] * w.shape[3]
        case "Gemm" where w.rank == 2, "MatMul" where w.rank == 2:
            let transB: Bool = { if case let .int(v)? = node.attribute("transB") { return v != 0 }; return false }()
            multiplyAddsPerExample = perExample * (transB ? w.shape[1] : w.shape[0])
        default: break
        }
    }
    func forward(_ input: Tensor) -> Tensor {
        requirementFailed("ONNX node '\(node.name)' runs inside its graph, not on its own")
    }
}

/// The operators, one node at a time. Every check that the engine would otherwise trap on
/// is made here first and thrown as a `Failure`.
struct ONNXOperators {
    struct Failure: Error { let message: String }
    typealias Value = ONNXNetwork.Value

    let node: ONNXNode
    let inputs: [Value?]
    let opset: Int

    static let maximumElements = 1 << 28

    func fail(_ message: String) -> Failure { Failure(message: message) }

    // MARK: Inputs and attributes

    func value(_ i: Int) throws -> Value {
        guard i < inputs.count, let v = inputs[i] else { throw fail("input \(i) is missing") }
        return v
    }

    func optional(_ i: Int) -> Value? { i < inputs.count ? inputs[i] : nil }

    func tensor(_ i: Int) throws -> Tensor {
        switch try value(i) {
        case let .tensor(t): return t
        case let .ints(v, dims): return Tensor(v.map(Float.init), shape: Shape(dims))
        }
    }

    func ints(_ i: Int) throws -> [Int] {
        guard case let .ints(v, _) = try value(i) else { throw fail("input \(i) should be integers") }
        return v
    }

    func int(_ name: String, _ fallback: Int) throws -> Int {
        switch node.attribute(name) {
        case nil: return fallback
        case let .int(v)?: return v
        default: throw fail("attribute '\(name)' should be an integer")
        }
    }

    func float(_ name: String, _ fallback: Float) throws -> Float {
        switch node.attribute(name) {
        case nil: return fallback
        case let .float(v)?: return v
        default: throw fail("attribute '\(name)' should be a float")
        }
    }

    func intList(_ name: String) throws -> [Int]? {
        switch node.attribute(name) {
        case nil: return nil
        case let .ints(v)?: return v
        default: throw fail("attribute '\(name)' should be a list of integers")
        }
    }

    func string(_ name: String, _ fallback: String) throws -> String {
        switch node.attribute(name) {
        case nil: return fallback
        case let .string(v)?: return v
        default: throw fail("attribute '\(name)' should be a string")
        }
    }

    /// Axes from an input (newer opsets) or an attribute (older ones), normalised for `rank`.
    func axes(input: Int, attribute: String, rank: Int) throws -> [Int]? {
        let raw: [Int]?
        if let v = optional(input) {
            guard case let .ints(list, _) = v else { throw fail("axes should be integers") }
            raw = list
        } else {
            raw = try intList(attribute)
        }
        guard let raw else { return nil }
        let normalized = try raw.map { a -> Int in
            guard a >= -rank, a < rank else { throw fail("axis \(a) is out of range for rank \(rank)") }
            return a < 0 ? a + rank : a
        }
        guard Set(normalized).count == normalized.count else { throw fail("axes \(raw) repeat an axis") }
        return normalized
    }

    func checked(_ shape: [Int]) throws -> Shape {
        var count = 1
        for d in shape {
            guard d >= 0 else { throw fail("negative dimension in \(shape)") }
            let (p, o) = count.multipliedReportingOverflow(by: d)
            guard !o, p <= ONNXOperators.maximumElements else { throw fail("result shape \(shape) is too large") }
            count = p
        }
        return Shape(shape)
    }

    func broadcast(_ a: Shape, _ b: Shape) throws -> Shape {
        guard let s = Shape.broadcast(a, b) else { throw fail("shapes \(a) and \(b) do not broadcast") }
        return try checked(s.dimensions)
    }

    // MARK: Dispatch

    func run() throws -> [Value] {
        switch node.opType {
        case "Identity": return [try value(0)]
        case "Dropout":
            guard node.outputs.count < 2 || node.outputs[1].isEmpty else { throw fail("the dropout mask output is not supported") }
            return [try value(0)]
        case "Constant": return [try constant()]
        case "Relu": return [.tensor(try tensor(0).relu())]
        case "Sigmoid": return [.tensor(try tensor(0).sigmoid())]
        case "Tanh": return [.tensor(try tensor(0).tanh())]
        case "Erf": return [.tensor(try tensor(0).erf())]
        case "LeakyRelu": return [.tensor(try tensor(0).leakyRelu(negativeSlope: try float("alpha", 0.01)))]
        case "Gelu": return [.tensor(try gelu())]
        case "Clip": return [.tensor(try clip())]
        case "Add", "Sub", "Mul", "Div": return [try arithmetic()]
        case "Conv": return [.tensor(try conv())]
        case "BatchNormalization": return [.tensor(try batchNorm())]
        case "MaxPool", "AveragePool": return [.tensor(try pool())]
        case "GlobalAveragePool":
            let x = try tensor(0)
            guard x.rank == 4 else { throw fail("needs [N, C, H, W], got \(x.shape)") }
            guard x.shape[2] > 0, x.shape[3] > 0 else { throw fail("empty spatial axes in \(x.shape)") }
            return [.tensor(Tensor.adaptiveAvgPool2d(x, outputSize: (1, 1)))]
        case "Flatten": return [try flatten()]
        case "Reshape": return [try reshape()]
        case "Gemm": return [.tensor(try gemm())]
        case "MatMul": return [.tensor(try matmul())]
        case "Concat": return [try concat()]
        case "Softmax": return [.tensor(try softmax())]
        case "Transpose": return [.tensor(try transpose())]
        case "Squeeze", "Unsqueeze": return [try squeezeOrUnsqueeze()]
        case "ReduceMean", "ReduceMax", "ReduceSum": return [.tensor(try reduce())]
        case "Slice": return [.tensor(try slice())]
        case "Shape": return [try shape()]
        case "Gather": return [try gather()]
        case "Cast": return [try cast()]
        default: throw fail("operator \(node.opType) is not supported")
        }
    }

    // MARK: Operators

    func constant() throws -> Value {
        switch node.attribute("value") {
        case let .tensor(t)?:
            do { try t.validate() } catch let error as ProtoError { throw fail(error.message) }
            switch t.values {
            case let .floats(v): return .tensor(Tensor(v, shape: Shape(t.dims)))
            case let .ints(v): return .ints(v, dims: t.dims)
            }
        case nil: break
        default: throw fail("attribute 'value' should be a tensor")
        }
        switch (node.attribute("value_float"), node.attribute("value_floats"), node.attribute("value_int"), node.attribute("value_ints")) {
        case let (.float(f)?, _, _, _): return .tensor(Tensor(scalar: f))
        case let (_, .floats(v)?, _, _): return .tensor(Tensor(v))
        case let (_, _, .int(i)?, _): return .ints([i], dims: [])
        case let (_, _, _, .ints(v)?): return .ints(v, dims: [v.count])
        default: throw fail("has no value this reader understands (value, value_float(s), value_int(s))")
        }
    }

    func gelu() throws -> Tensor {
        let x = try tensor(0)
        switch try string("approximate", "none") {
        case "none": return x.gelu()
        case "tanh":
            // 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 x³)))
            let inner = (x + x * x * x * 0.044715) * Float(0.7978845608)
            return x * 0.5 * (inner.tanh() + 1)
        case let other: throw fail("approximate '\(other)' is not 'none' or 'tanh'")
        }
    }

    func clip() throws -> Tensor {
        let x = try tensor(0)
        var low = -Float.infinity, high = Float.infinity
        if opset < 11 {
            low = try float("min", low)
            high = try float("max", high)
        } else {
            for (i, bound) in [(1, 0), (2, 1)] where optional(i) != nil {
                let t = try tensor(i)
                guard t.count == 1 else { throw fail("min and max must be scalars, got \(t.shape)") }
                if bound == 0 { low = t.scalars[0] } else { high = t.scalars[0] }
            }
        }
        guard !low.isNaN, !high.isNaN, low <= high else { throw fail("min \(low) is above max \(high)") }
        return x.clamped(min: low, max: high)
    }

    func arithmetic() throws -> Value {
        // Integer arithmetic on shapes (PyTorch's exporter computes shapes this way).
        if case let (.ints(a, da)?, .ints(b, db)?) = (optional(0), optional(1)) {
            guard a.count == b.count || a.count == 1 || b.count == 1 else { throw fail("integer operands of sizes \(a.count) and \(b.count)") }
            let n = max(a.count, b.count)
            let result = try (0..<n).map { i -> Int in
                let x = a[a.count == 1 ? 0 : i], y = b[b.count == 1 ? 0 : i]
                switch node.opType {
                case "Add": return x &+ y
                case "Sub": return x &- y
                case "Mul": return x &* y
                default:
                    guard y != 0 else { throw fail("integer division by zero") }
                    return x / y
                }
            }
            return .ints(result, dims: a.count >= b.count ? da : db)
        }
        let a = try tensor(0), b = try tensor(1)
        _ = try broadcast(a.shape, b.shape)
        switch node.opType {
        case "Add": return .tensor(a + b)
        case "Sub": return .tensor(a - b)
        case "Mul": return .tensor(a * b)
        default: return .tensor(a / b)
        }
    }

    /// Symmetric (top/left = bottom/right) padding from `pads` and `auto_pad`.
    func padding(kernel: [Int], strides: [Int], dilations: [Int], input: [Int]) throws -> (Int, Int) {
        switch try string("auto_pad", "NOTSET") {
        case "NOTSET":
            let pads = try intList("pads") ?? [0, 0, 0, 0]
            guard pads.count == 4, pads.allSatisfy({ $0 >= 0 }) else { throw fail("pads \(pads) should be four non-negative numbers") }
            guard pads[0] == pads[2], pads[1] == pads[3] else { throw fail("asymmetric pads \(pads) are not supported") }
            return (pads[0], pads[1])
        case "VALID": return (0, 0)
        case "SAME_UPPER", "SAME_LOWER":
            var result = [0, 0]
            for a in 0..<2 {
                let out = (input[a] + strides[a] - 1) / strides[a]
                let total = max(0, (out - 1) * strides[a] + (kernel[a] - 1) * dilations[a] + 1 - input[a])
                guard total % 2 == 0 else { throw fail("auto_pad SAME needs asymmetric padding here, which is not supported") }
                result[a] = total / 2
            }
            return (result[0], result[1])
        case let other: throw fail("auto_pad '\(other)' is not known")
        }
    }

    func window(_ name: String, _ fallback: Int) throws -> [Int] {
        let v = try intList(name) ?? [fallback, fallback]
        guard v.count == 2, v.allSatisfy({ $0 >= 1 && $0 <= 1 << 16 }) else { throw fail("\(name) \(v) should be two positive numbers (2-D only)") }
        return v
    }

    func conv() throws -> Tensor {
        let x = try tensor(0), w = try tensor(1)
        guard x.rank == 4, w.rank == 4 else { throw fail("only 2-D convolutions are supported: input \(x.shape), weight \(w.shape)") }
        let groups = try int("group", 1)
        guard groups >= 1, w.shape[0] % groups == 0, w.shape[1] * groups == x.shape[1], w.shape[0] > 0, w.shape[1] > 0 else {
            throw fail("weight \(w.shape) with \(groups) groups does not fit input \(x.shape)")
        }
        let kernel = [w.shape[2], w.shape[3]]
        guard kernel.allSatisfy({ $0 >= 1 }) else { throw fail("empty kernel in weight \(w.shape)") }
        if let k = try intList("kernel_shape"), k != kernel { throw fail("kernel_shape \(k) disagrees with weight \(w.shape)") }
        let strides = try window("strides", 1), dilations = try window("dilations", 1)
        let pad = try padding(kernel: kernel, strides: strides, dilations: dilations, input: [x.shape[2], x.shape[3]])
        guard pad.0 <= 1 << 16, pad.1 <= 1 << 16 else { throw fail("padding \(pad) is too large") }
        var bias: Tensor?
        if optional(2) != nil {
            let b = try tensor(2)
            guard b.shape == [w.shape[0]] else { throw fail("bias \(b.shape) does not fit weight \(w.shape)") }
            bias = b
        }
        let geometry = Convolution2DGeometry(kernel: (kernel[0], kernel[1]), stride: (strides[0], strides[1]),
                                             padding: pad, dilation: (dilations[0], dilations[1]))
        let (oh, ow) = geometry.outputSize(height: x.shape[2], width: x.shape[3])
        guard oh > 0, ow > 0 else { throw fail("kernel \(kernel) does not fit input \(x.shape)") }
        _ = try checked([x.shape[0], w.shape[0], oh, ow])
        _ = try checked([x.shape[1] / groups * kernel[0] * kernel[1], oh * ow])
        return Tensor.conv2d(x, weight: w, bias: bias, stride: (strides[0], strides[1]), padding: pad,
                             dilation: (dilations[0], dilations[1]), groups: groups)
    }

    func batchNorm() throws -> Tensor {
        let x = try tensor(0)
        guard x.rank >= 2 else { throw fail("needs [N, C, ...], got \(x.shape)") }
        guard try int("training_mode", 0) == 0 else { throw fail("training mode is not supported; export the model in eval mode") }
        let parts = try (1...4).map { try tensor($0) }
        for (name, p) in zip(["scale", "B", "mean", "var"], parts) where p.shape != [x.shape[1]] {
            throw fail("\(name) \(p.shape) does not fit \(x.shape[1]) channels")
        }
        let epsilon = try float("epsilon", 1e-5)
        guard epsilon >= 0 else { throw fail("epsilon \(epsilon) is negative") }
        return Tensor.batchNorm(x, runningMean: parts[2], runningVariance: parts[3], weight: parts[0], bias: parts[1],
                                training: false, momentum: 0.1, epsilon: epsilon)
    }

    func pool() throws -> Tensor {
        let x = try tensor(0)
        guard x.rank == 4 else { throw fail("only 2-D pooling is supported, input \(x.shape)") }
        guard let kernel = try intList("kernel_shape") else { throw fail("kernel_shape is missing") }
        guard kernel.count == 2, kernel.allSatisfy({ $0 >= 1 && $0 <= 1 << 16 }) else { throw fail("kernel_shape \(kernel) should be two positive numbers") }
        let strides = try window("strides", 1)
        guard try window("dilations", 1) == [1, 1] else { throw fail("dilated pooling is not supported") }
        guard try int("ceil_mode", 0) == 0 else { throw fail("ceil_mode 1 is not supported") }
        let pad = try padding(kernel: kernel, strides: strides, dilations: [1, 1], input: [x.shape[2], x.shape[3]])
        guard pad.0 * 2 <= kernel[0], pad.1 * 2 <= kernel[1] else { throw fail("padding \(pad) is more than half of kernel \(kernel)") }
        let geometry = Convolution2DGeometry(kernel: (kernel[0], kernel[1]), stride: (strides[0], strides[1]), padding: pad)
        let (oh, ow) = geometry.outputSize(height: x.shape[2], width: x.shape[3])
        guard oh > 0, ow > 0 else { throw fail("kernel \(kernel) does not fit input \(x.shape)") }
        if node.opType == "MaxPool" {
            guard node.outputs.count < 2 || node.outputs[1].isEmpty else { throw fail("the indices output is not supported") }
            return Tensor.maxPool2d(x, kernel: (kernel[0], kernel[1]), stride: (strides[0], strides[1]), padding: pad)
        }
        return Tensor.avgPool2d(x, kernel: (kernel[0], kernel[1]), stride: (strides[0], strides[1]), padding: pad,
                                countIncludePadding: try int("count_include_pad", 0) != 0)
    }

    func flatten() throws -> Value {
        let v = try value(0)
        let dims = v.dims
        var axis = try int("axis", 1)
        guard axis >= -dims.count, axis <= dims.count else { throw fail("axis \(axis) is out of range for rank \(dims.count)") }
        if axis < 0 { axis += dims.count }
        let target = [dims[..<axis].reduce(1, *), dims[axis...].reduce(1, *)]
        return try reshaped(v, to: target)
    }

    func reshaped(_ v: Value, to target: [Int]) throws -> Value {
        switch v {
        case let .tensor(t):
            guard Shape(target).count == t.count else { throw fail("cannot reshape \(t.shape) to \(target)") }
            return .tensor(t.reshaped(target))
        case let .ints(list, _):
            guard target.reduce(1, *) == list.count else { throw fail("cannot reshape \(list.count) integers to \(target)") }
            return .ints(list, dims: target)
        }
    }

    func reshape() throws -> Value {
        let v = try value(0)
        let dims = v.dims
        let requested = try ints(1)
        let allowZero = try int("allowzero", 0) != 0
        guard requested.count <= 16 else { throw fail("shape \(requested) has too many axes") }
        var target = try requested.enumerated().map { i, d -> Int in
            if d == 0 && !allowZero {
                guard i < dims.count else { throw fail("shape \(requested) copies axis \(i), which \(dims) lacks") }
                return dims[i]
            }
            guard d >= -1 else { throw fail("shape \(requested) has a negative size") }
            return d
        }
        let count = dims.reduce(1, *)
        let inferred = target.indices.filter { target[$0] == -1 }
        guard inferred.count <= 1 else { throw fail("shape \(requested) infers more than one axis") }
        if let i = inferred.first {
            let known = target.enumerated().filter { $0.offset != i }.reduce(1) { $0 * $1.element }
            guard known > 0, count % known == 0 else { throw fail("cannot reshape \(dims) to \(requested)") }
            target[i] = count / known
        }
        _ = try checked(target)
        return try reshaped(v, to: target)
    }

    func gemm() throws -> Tensor {
        var a = try tensor(0), b = try tensor(1)
        guard a.rank == 2, b.rank == 2 else { throw fail("needs matrices, got \(a.shape) and \(b.shape)") }
        let transA = try int("transA", 0) != 0, transB = try int("transB", 0) != 0
        let alpha = try float("alpha", 1), beta = try float("beta", 1)
        let k = transA ? a.shape[0] : a.shape[1], kb = transB ? b.shape[1] : b.shape[0]
        guard k == kb else { throw fail("inner dimensions differ: \(a.shape)\(transA ? "ᵀ" : "") · \(b.shape)\(transB ? "ᵀ" : "")") }
        let (m, n) = (transA ? a.shape[1] : a.shape[0], transB ? b.shape[0] : b.shape[1])
        _ = try checked([m, n])
        let c = optional(2) == nil ? nil : try tensor(2)
        if let c, try broadcast(c.shape, [m, n]) != [m, n] { throw fail("C \(c.shape) does not broadcast to [\(m), \(n)]") }
        // The common case, a linear layer: one sgemm with the bias added in place.
        if !transA, transB, alpha == 1, beta == 1, c == nil || c!.shape == [n] { return Tensor.linear(a, weight: b, bias: c) }
        if transA { a = a.transposed() }
        if transB { b = b.transposed() }
        var y = a.matmul(b)
        if alpha != 1 { y = y * alpha }
        if let c, beta != 0 { y = y + (beta == 1 ? c : c * beta) }
        return y
    }

    func matmul() throws -> Tensor {
        var a = try tensor(0), b = try tensor(1)
        guard a.rank >= 1, b.rank >= 1 else { throw fail("needs tensors of rank ≥ 1, got \(a.shape) and \(b.shape)") }
        let vectorA = a.rank == 1, vectorB = b.rank == 1
        if vectorA { a = a.unsqueezed(axis: 0) }
        if vectorB { b = b.unsqueezed(axis: 1) }
        guard a.shape[-1] == b.shape[-2] else { throw fail("inner dimensions differ: \(a.shape) · \(b.shape)") }
        let batch = try broadcast(Shape(Array(a.shape.dimensions.dropLast(2))), Shape(Array(b.shape.dimensions.dropLast(2))))
        _ = try checked(batch.dimensions + [a.shape[-2], b.shape[-1]])
        var y = a.matmul(b)
        if vectorA { y = y.squeezed(axis: -2) }
        if vectorB { y = y.squeezed(axis: -1) }
        return y
    }

    func concat() throws -> Value {
        let values = try inputs.indices.map { try value($0) }
        guard !values.isEmpty else { throw fail("has no inputs") }
        let axis = try int("axis", 0)
        if values.allSatisfy({ if case .ints = $0 { return true } else { return false } }) {
            var all: [Int] = []
            for case let .ints(v, dims) in values {
                guard dims.count <= 1 else { throw fail("integer concatenation supports vectors only") }
                all += v
            }
            guard axis == 0 || axis == -1 else { throw fail("axis \(axis) is out of range for vectors") }
            return .ints(all, dims: [all.count])
        }
        let tensors = try inputs.indices.map { try tensor($0) }
        let rank = tensors[0].rank
        guard axis >= -rank, axis < rank else { throw fail("axis \(axis) is out of range for rank \(rank)") }
        let a = axis < 0 ? axis + rank : axis
        for t in tensors {
            guard t.rank == rank, (0..<rank).allSatisfy({ $0 == a || t.shape[$0] == tensors[0].shape[$0] }) else {
                throw fail("shapes \(tensors.map(\.shape)) differ outside axis \(axis)")
            }
        }
        _ = try checked(tensors[0].shape.dimensions.enumerated().map { $0.offset == a ? tensors.reduce(0) { $0 + $1.shape[a] } : $0.element })
        return .tensor(Tensor.concatenating(tensors, alongAxis: a))
    }

    func softmax() throws -> Tensor {
        let x = try tensor(0)
        guard x.rank >= 1 else { throw fail("needs rank ≥ 1, got a scalar") }
        var axis = try int("axis", opset >= 13 ? -1 : 1)
        guard axis >= -x.rank, axis < x.rank else { throw fail("axis \(axis) is out of range for \(x.shape)") }
        if axis < 0 { axis += x.rank }
        if opset >= 13 || axis == x.rank - 1 { return x.softmax(alongAxis: axis) }
        // Before opset 13, Softmax normalises over all axes from `axis` on, as one.
        let dims = x.shape.dimensions
        let flat = x.reshaped([dims[..<axis].reduce(1, *), dims[axis...].reduce(1, *)])
        return flat.softmax(alongAxis: 1).reshaped(dims)
    }

    func transpose() throws -> Tensor {
        let x = try tensor(0)
        let perm = try intList("perm") ?? Array((0..<x.rank).reversed())
        guard perm.count == x.rank, Set(perm) == Set(0..<x.rank) else { throw fail("perm \(perm) is not a permutation of \(x.rank) axes") }
        return x.permuted(perm)
    }

    func squeezeOrUnsqueeze() throws -> Value {
        let v = try value(0)
        let dims = v.dims
        if node.opType == "Squeeze" {
            let axes = try axes(input: 1, attribute: "axes", rank: dims.count) ?? dims.indices.filter { dims[$0] == 1 }
            for a in axes where dims[a] != 1 { throw fail("axis \(a) of \(dims) is not of size 1") }
            return try reshaped(v, to: dims.enumerated().filter { !axes.contains($0.offset) }.map(\.element))
        }
        guard let axes = try axes(input: 1, attribute: "axes", rank: dims.count + ((try? ints(1))?.count ?? intList("axes")?.count ?? 0)) else {
            throw fail("axes are missing")
        }
        var result = dims
        for a in axes.sorted() { result.insert(1, at: min(a, result.count)) }
        return try reshaped(v, to: result)
    }

    func reduce() throws -> Tensor {
        let x = try tensor(0)
        let keep = try int("keepdims", 1) != 0
        // Axes became an input in opset 13 for ReduceSum and in 18 for the others.
        let axesAsInput = node.opType == "ReduceSum" ? opset >= 13 : opset >= 18
        var axes = axesAsInput ? try axes(input: 1, attribute: "", rank: x.rank) : try axes(input: 99, attribute: "axes", rank: x.rank)
        if axes?.isEmpty ?? true {
            if try int("noop_with_empty_axes", 0) != 0 { return x }
            axes = nil
        }
        guard x.count > 0 else { throw fail("cannot reduce an empty tensor \(x.shape)") }
        switch node.opType {
        case "ReduceMean": return x.mean(alongAxes: axes, keepDims: keep)
        case "ReduceSum": return x.sum(alongAxes: axes, keepDims: keep)
        default: return x.max(alongAxes: axes, keepDims: keep)
        }
    }

    /// Slice with unit steps (what PyTorch's `x[:, a:b]` exports).
    func slice() throws -> Tensor {
        let x = try tensor(0)
        let starts: [Int], ends: [Int], axesList: [Int]?, steps: [Int]?
        if opset >= 10 {
            starts = try ints(1)
            ends = try ints(2)
            axesList = optional(3) == nil ? nil : try ints(3)
            steps = optional(4) == nil ? nil : try ints(4)
        } else {
            starts = try intList("starts") ?? []
            ends = try intList("ends") ?? []
            axesList = try intList("axes")
            steps = nil
        }
        let axes = axesList ?? Array(0..<starts.count)
        guard starts.count == ends.count, axes.count == starts.count, steps.map({ $0.count == starts.count }) ?? true else {
            throw fail("starts \(starts), ends \(ends) and axes \(axes) differ in length")
        }
        guard steps?.allSatisfy({ $0 == 1 }) ?? true else { throw fail("steps other than 1 are not supported") }
        var y = x
        var seen = Set<Int>()
        for (i, rawAxis) in axes.enumerated() {
            guard rawAxis >= -x.rank, rawAxis < x.rank else { throw fail("axis \(rawAxis) is out of range for \(x.shape)") }
            let axis = rawAxis < 0 ? rawAxis + x.rank : rawAxis
            guard seen.insert(axis).inserted else { throw fail("axis \(axis) is sliced twice") }
            let size = x.shape[axis]
            func clamp(_ v: Int) -> Int { min(max(v < 0 ? v + size : v, 0), size) }
            let lower = clamp(starts[i]), upper = max(clamp(ends[i]), lower)
            y = y.sliced(alongAxis: axis, lower..<upper)
        }
        return y
    }

    func shape() throws -> Value {
        let dims = try value(0).dims
        let rank = dims.count
        func clamp(_ i: Int) -> Int { min(max(i < 0 ? i + rank : i, 0), rank) }
        let start = clamp(try int("start", 0)), end = clamp(try int("end", rank))
        let slice = start < end ? Array(dims[start..<end]) : []
        return .ints(slice, dims: [slice.count])
    }

    func gather() throws -> Value {
        let indices = try ints(1)
        let indexDims: [Int]
        if case let .ints(_, d) = try value(1) { indexDims = d } else { indexDims = [indices.count] }
        let axis = try int("axis", 0)
        switch try value(0) {
        case let .ints(data, dims):
            guard dims.count <= 1, axis == 0 || axis == -1 else { throw fail("integer gather supports vectors only") }
            let picked = try indices.map { i -> Int in
                guard i >= -data.count, i < data.count else { throw fail("index \(i) is out of range for \(data.count) values") }
                return data[i < 0 ? i + data.count : i]
            }
            return .ints(picked, dims: indexDims)
        case let .tensor(t):
            guard t.rank >= 1, axis >= -t.rank, axis < t.rank else { throw fail("axis \(axis) is out of range for \(t.shape)") }
            let a = axis < 0 ? axis + t.rank : axis
            let size = t.shape[a]
            let resolved = try indices.map { i -> Int in
                guard i >= -size, i < size else { throw fail("index \(i) is out of range for axis \(a) of \(t.shape)") }
                return i < 0 ? i + size : i
            }
            let selected = t.indexSelect(alongAxis: a, indices: resolved)
            var dims = t.shape.dimensions
            dims.replaceSubrange(a...a, with: indexDims)
            return .tensor(selected.reshaped(try checked(dims)))
        }
    }

    func cast() throws -> Value {
        let to = try int("to", ONNXTensor.float)
        switch (try value(0), to) {
        case let (.tensor(t), ONNXTensor.float), let (.tensor(t), ONNXTensor.double): return .tensor(t)
        case let (.ints(v, dims), ONNXTensor.float), let (.ints(v, dims), ONNXTensor.double): return .tensor(Tensor(v.map(Float.init), shape: Shape(dims)))
        case let (.ints(v, dims), ONNXTensor.int64), let (.ints(v, dims), ONNXTensor.int32): return .ints(v, dims: dims)
        case let (.tensor(t), ONNXTensor.int64), let (.tensor(t), ONNXTensor.int32):
            guard t.count <= 1 << 20, t.scalars.allSatisfy({ $0.isFinite && Swift.abs($0) < 1e15 }) else { throw fail("cannot cast these values to integers") }
            return .ints(t.scalars.map { Int($0) }, dims: t.shape.dimensions)
        default: throw fail("cast to element type \(to) is not supported")
        }
    }
}
