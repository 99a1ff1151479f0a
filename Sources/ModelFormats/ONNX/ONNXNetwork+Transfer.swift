import NeuralNet
import Tensors

/// The classifier layer of an imported graph, as `ONNXNetwork.classifierHead(named:)` finds
/// it: a Gemm, or a MatMul with an optional Add of a bias, reading the features [batch, in]
/// and giving the logits [batch, out] that reach the graph output, possibly through a
/// Softmax (or Identity, Dropout).
public struct ONNXClassifierHead {
    /// The Gemm or MatMul node's name (its first output's when it has no name).
    public let node: String
    /// The operator: "Gemm" or "MatMul".
    public let opType: String
    /// The value the head reads: the backbone's output.
    public let features: String
    /// The value holding the logits: the Gemm's output, or the Add's after a MatMul.
    public let logits: String
    /// The head as PyTorch's `nn.Linear` holds it: [out, in], Gemm's `alpha` and transposition applied.
    public let weight: Tensor
    /// [out], Gemm's `beta` applied; nil when the head adds no bias.
    public let bias: Tensor?
    /// Operators between the logits and the graph output (["Softmax"] when the model outputs
    /// probabilities): re-heading drops them, so both heads give logits.
    public let droppedAfter: [String]
}

extension ONNXNetwork {
    /// The nodes that can be a classifier head (Gemm and MatMul), in topological order, by name.
    var headCandidates: [ONNXNode] { order.filter { $0.opType == "Gemm" || $0.opType == "MatMul" } }

    /// The classifier head named `name` (a Gemm or MatMul node's name, or its output's), or by
    /// default the last Gemm or MatMul in topological order. Errors name the file and the node:
    /// no such node, a weight that is not an initializer, a head whose output reaches the graph
    /// output through anything but Softmax, Identity or Dropout, features that are not [batch, in].
    public func classifierHead(named name: String? = nil) throws -> ONNXClassifierHead {
        func fail(_ message: String) -> ModelFormatError { ModelFormatError(file: file, message) }
        let candidates = headCandidates
        func label(_ node: ONNXNode) -> String { node.name.isEmpty ? node.outputs[0] : node.name }
        let listed = candidates.map { "\(label($0)) (\($0.opType) → \($0.outputs[0]))" }.joined(separator: ", ")
        let node: ONNXNode
        if let name {
            guard let found = order.first(where: { $0.name == name || $0.outputs.first == name }) else {
                throw fail("has no node named '\(name)'; classifier heads it could take: \(listed.isEmpty ? "none" : listed)")
            }
            guard found.opType == "Gemm" || found.opType == "MatMul" else {
                throw fail("node '\(name)' is a \(found.opType); a classifier head is a Gemm or MatMul (here: \(listed.isEmpty ? "none" : listed))")
            }
            node = found
        } else {
            guard let last = candidates.last else { throw fail("has no Gemm or MatMul node to take as the classifier head") }
            node = last
        }
        let title = "head '\(label(node))' (\(node.opType))"
        let floats = Dictionary(floatInitializers.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        guard node.inputs.count >= 2, let b = floats[node.inputs[1]], b.rank == 2, b.shape[0] > 0, b.shape[1] > 0 else {
            throw fail("\(title): its weight (input 2) must be a non-empty matrix held in the file, as a linear layer's is")
        }
        var readers: [String: [ONNXNode]] = [:]
        for n in order { for input in Set(n.inputs) where !input.isEmpty { readers[input, default: []].append(n) } }

        var weight: Tensor, bias: Tensor?, logits = node.outputs[0]
        if node.opType == "Gemm" {
            func number(_ key: String, _ fallback: Float) -> Float {
                switch node.attribute(key) {
                case let .float(v)?: return v
                case let .int(v)?: return Float(v)
                default: return fallback
                }
            }
            guard number("transA", 0) == 0 else { throw fail("\(title) transposes its input (transA = 1); it cannot be a classifier head") }
            let alpha = number("alpha", 1), beta = number("beta", 1)
            // Y = alpha · A · B′ + beta · C, with B′ = Bᵀ (transB = 1, B is [out, in]) or B ([in, out]).
            weight = (number("transB", 0) != 0 ? b : b.transposed()).copy() * alpha
            if node.inputs.count > 2, !node.inputs[2].isEmpty {
                guard let c = floats[node.inputs[2]] else { throw fail("\(title): its bias (input 3) must be held in the file") }
                let out = weight.shape[0]
                guard c.count == out || c.count == 1, c.shape.dimensions.filter({ $0 != 1 }).count <= 1 else {
                    throw fail("\(title): bias \(c.shape) does not fit \(out) outputs")
                }
                bias = (c.count == 1 ? Tensor.full([out], c.scalars[0]) : c.reshaped([out]).copy()) * beta
            }
        } else {
            weight = b.transposed().copy()
            let out = weight.shape[0]
            if let next = readers[logits], next.count == 1, next[0].opType == "Add",
               let other = next[0].inputs.first(where: { $0 != logits }), let c = floats[other], c.count == out {
                bias = c.reshaped([out]).copy()
                logits = next[0].outputs[0]
            }
        }
        // Only Softmax, Identity or Dropout may stand between the logits and the graph output.
        var value = logits, dropped: [String] = []
        while value != outputName {
            guard let next = readers[value], next.count == 1 else {
                let count = readers[value]?.count ?? 0
                throw fail("\(title): its output '\(value)' \(count == 0 ? "does not reach the graph output '\(outputName)'" : "is read by \(count) nodes"); the head must be the graph's last layer")
            }
            guard ["Softmax", "Identity", "Dropout"].contains(next[0].opType) else {
                throw fail("\(title) is followed by \(next[0].opType) node '\(label(next[0]))'; only Softmax, Identity or Dropout may follow a classifier head")
            }
            dropped.append(next[0].opType)
            value = next[0].outputs[0]
        }
        let features = node.inputs[0]
        let probe = try truncated(at: features)
        let shape = try withoutGradients { try probe.run(Tensor.zeros(Shape([1] + inputShape))) }.shape
        guard shape == [1, weight.shape[1]] else {
            throw fail("\(title) reads '\(features)' of shape \(shape) at batch 1; a classifier head reads [batch, \(weight.shape[1])]")
        }
        return ONNXClassifierHead(node: label(node), opType: node.opType, features: features, logits: logits, weight: weight,
                                  bias: bias, droppedAfter: dropped)
    }

    /// The graph up to `valueName`: the nodes that value depends on, the initializers they
    /// read (with their current values) and the same input, as a new network whose output is
    /// that value. Taking the value a classifier head reads gives the backbone.
    public func truncated(at valueName: String) throws -> ONNXNetwork {
        var producer: [String: ONNXNode] = [:]
        for node in order { for output in node.outputs where !output.isEmpty { producer[output] = node } }
        guard valueName == inputName || producer[valueName] != nil else {
            throw ModelFormatError(file: file, "has no value '\(valueName)' produced by a node")
        }
        var needed = Set<String>(), stack = [valueName]
        while let value = stack.popLast() {
            guard let node = producer[value], needed.insert(node.outputs[0]).inserted else { continue }
            stack += node.inputs.filter { !$0.isEmpty }
        }
        let current = currentModel()
        let nodes = current.graph.nodes.filter { !$0.outputs.isEmpty && needed.contains($0.outputs[0]) }
        let read = Set(nodes.flatMap(\.inputs))
        var graph = current.graph
        graph.nodes = nodes
        graph.initializers = current.graph.initializers.filter { read.contains($0.name) }
        // A text model keeps its token inputs (and their open sequence axis).
        graph.inputs = tokenInputs.map { tokens in current.graph.inputs.filter { tokens.inputs.contains($0.name) } }
            ?? [ONNXValueInfo(name: inputName, dims: [nil] + inputShape.map { Optional($0) })]
        graph.outputs = [ONNXValueInfo(name: valueName, dims: [])]
        var model = current
        model.graph = graph
        return try ONNXNetwork(model, file: file, inputShape: inputShape)
    }

    /// The model as loaded, with every float initializer holding its current (trained) value.
    public func currentModel() -> ONNXModel {
        let values = Dictionary(floatInitializers.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        var result = model
        for i in result.graph.initializers.indices {
            if let tensor = values[result.graph.initializers[i].name] { result.graph.initializers[i].values = .floats(tensor.scalars) }
        }
        return result
    }
}
