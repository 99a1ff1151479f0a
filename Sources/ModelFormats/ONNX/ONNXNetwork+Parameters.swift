import NeuralNet
import Tensors
import Training

// Which of an imported graph's initializers train, how they group for gradual unfreezing,
// which ones a node reads (freezing by node name), and a fresh initialisation (the scratch
// baseline of a transfer).

extension ONNXNetwork {
    /// Operators whose initializer inputs are weights whatever their size.
    static let weightReaders: Set<String> = ["Conv", "Gemm", "MatMul", "BatchNormalization"]

    /// The float initializers that never train: batch-norm running statistics (inputs 3 and 4
    /// of BatchNormalization: an imported graph is in inference form, so it normalises with
    /// them in training too, and no batch statistics update them), and one-element values read
    /// only by other operators (a division's 2, a clip's bounds: constants of the computation,
    /// not weights).
    static func constantNames(_ nodes: [ONNXNode], floats: [(name: String, tensor: Tensor)]) -> Set<String> {
        let floatNames = Set(floats.map(\.name))
        var statistics = Set<String>(), readByWeightOperators = Set<String>()
        for node in nodes {
            if node.opType == "BatchNormalization" { statistics.formUnion(node.inputs.dropFirst(3).prefix(2).filter(floatNames.contains)) }
            if weightReaders.contains(node.opType) { readByWeightOperators.formUnion(node.inputs) }
        }
        let scalars = floats.filter { $0.tensor.count == 1 && !readByWeightOperators.contains($0.name) }.map(\.name)
        return statistics.union(scalars)
    }

    /// The trainable initializers each node reads first, in topological order (a weight
    /// shared by two nodes belongs to the first).
    func parametersByNode() -> [(node: ONNXNode, parameters: [(name: String, tensor: Tensor)])] {
        let trainable = Dictionary(localParameters.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        var claimed = Set<String>()
        return order.map { node in
            let own = node.inputs.filter { trainable[$0] != nil && claimed.insert($0).inserted }
            return (node, own.map { ($0, trainable[$0]!) })
        }
    }

    /// The trainable initializers read by the named nodes, for freezing layers by name. Each
    /// name is a node's name or its first output's; `NAME*` matches every node whose name or
    /// first output starts with NAME. A name that matches no node, or only nodes that read no
    /// trainable initializer, is an error listing the nodes.
    public func parameterNames(readBy names: [String]) throws -> [String] {
        let byNode = parametersByNode()
        var result: [String] = [], seen = Set<String>()
        for name in names {
            let prefix = name.hasSuffix("*") ? String(name.dropLast()) : nil
            let matched = byNode.filter { entry in
                let keys = [entry.node.name, entry.node.outputs.first ?? ""]
                return prefix.map { p in keys.contains { $0.hasPrefix(p) } } ?? keys.contains(name)
            }
            guard !matched.isEmpty else {
                let listed = order.prefix(30).map { $0.name.isEmpty ? $0.outputs[0] : $0.name }.joined(separator: ", ")
                throw ModelFormatError(file: file, "has no node named '\(name)' (nodes: \(listed)\(order.count > 30 ? ", ..." : ""))")
            }
            let parameters = matched.flatMap { $0.parameters.map(\.name) }
            guard !parameters.isEmpty else {
                throw ModelFormatError(file: file, "node\(matched.count > 1 ? "s" : "") matching '\(name)' (\(matched.map(\.node.opType).joined(separator: ", "))) read no trainable parameters")
            }
            for parameter in parameters where seen.insert(parameter).inserted { result.append(parameter) }
        }
        return result
    }

    /// Sets every trainable initializer to a fresh value, as PyTorch initialises a new layer
    /// of its kind: weights of Conv, Gemm and MatMul from U(−1/√fanIn, 1/√fanIn), and their
    /// biases from the same range; batch-norm scale 1, shift 0, running mean 0 and variance 1;
    /// any other weight (rank ≥ 2) from the same rule with fanIn = its size / its first axis;
    /// any other vector 0. Scalar constants keep their values.
    public func reinitializeParameters(using generator: inout RandomGenerator) {
        enum Rule { case uniform(fanIn: Int), constant(Float) }
        let floats = Dictionary(floatInitializers.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        var rules: [String: Rule] = [:]
        for node in order {
            let inputs = node.inputs
            func set(_ index: Int, _ rule: Rule) {
                if index < inputs.count, floats[inputs[index]] != nil, rules[inputs[index]] == nil { rules[inputs[index]] = rule }
            }
            guard inputs.count > 1, let weight = floats[inputs[1]] else { continue }
            switch node.opType {
            case "Conv" where weight.rank == 4:
                let fanIn = weight.shape[1] * weight.shape[2] * weight.shape[3]
                set(1, .uniform(fanIn: fanIn))
                set(2, .uniform(fanIn: fanIn))
            case "Gemm" where weight.rank == 2:
                let transB: Bool = { if case let .int(v)? = node.attribute("transB") { return v != 0 }; return false }()
                let fanIn = transB ? weight.shape[1] : weight.shape[0]
                set(1, .uniform(fanIn: fanIn))
                set(2, .uniform(fanIn: fanIn))
            case "MatMul" where weight.rank == 2: set(1, .uniform(fanIn: weight.shape[0]))
            case "BatchNormalization":
                for (index, value) in [(1, Float(1)), (2, 0), (3, 0), (4, 1)] { set(index, .constant(value)) }
            default: break
            }
        }
        for (name, tensor) in floatInitializers where !constantNames.contains(name) || rules[name] != nil {
            let value: Tensor
            switch rules[name] ?? (tensor.rank >= 2 ? .uniform(fanIn: tensor.count / max(tensor.shape[0], 1)) : .constant(0)) {
            case let .uniform(fanIn):
                let bound = 1 / Float(max(fanIn, 1)).squareRoot()
                value = Tensor.randomUniform(tensor.shape, low: -bound, high: bound, using: &generator)
            case let .constant(c): value = Tensor.full(tensor.shape, c)
            }
            tensor.withUnsafeMutableBufferPointer { target in
                value.withUnsafeBufferPointer { source in target.baseAddress!.update(from: source.baseAddress!, count: source.count) }
            }
        }
    }
}

extension ONNXNetwork: LayerGroups {
    /// Nodes in topological order, split into `count` groups of about equal parameter count
    /// (each node's trainable initializers go with it whole), from the top down: group 0 holds
    /// the nodes nearest the output.
    public func layerGroups(count: Int) -> [[String]] {
        let nodes = parametersByNode().filter { !$0.parameters.isEmpty }.reversed()
        let total = nodes.reduce(0) { $0 + $1.parameters.reduce(0) { $0 + $1.tensor.count } }
        guard count >= 1, total > 0 else { return [] }
        var groups = [[String]](repeating: [], count: count), before = 0
        for (_, parameters) in nodes {
            let size = parameters.reduce(0) { $0 + $1.tensor.count }
            // A node joins the group its middle falls in.
            let index = min(count - 1, (2 * before + size) * count / (2 * total))
            groups[index] += parameters.map(\.name)
            before += size
        }
        return groups.filter { !$0.isEmpty }
    }
}
