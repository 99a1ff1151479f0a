import NeuralNet
import Tensors

extension ONNXExport {
    /// The opset and IR version of the imported graphs in `model`, or nil when it holds none;
    /// imported graphs of different opsets cannot share one file.
    static func importedVersions(in model: any Module) throws -> (opset: Int, irVersion: Int)? {
        let imported = model.namedModules().compactMap { $0.module as? ONNXNetwork }
        guard let first = imported.first else { return nil }
        let opsets = Set(imported.map(\.model.opset))
        guard opsets.count == 1 else {
            throw ModelFormatError(file: "ONNX export", "the model holds imported ONNX graphs of opsets \(opsets.sorted()); one file has one opset")
        }
        return (first.model.opset, imported.map(\.model.irVersion).max()!)
    }
}

extension ONNXNetwork: ONNXExportable {
    /// Writes the imported graph as it was read — the same nodes and attributes — with every
    /// initializer at its current (trained) value. At the top of a model the names stay the
    /// file's own; under a module path (a re-headed model's `backbone`) every initializer,
    /// value and node name takes the path as a prefix (`backbone.stem.weight`), so the names
    /// are the model's state-dict names, as for Distill's own layers.
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        func scoped(_ name: String) -> String { path.isEmpty ? name : path + "." + name }
        let floats = Dictionary(floatInitializers.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        var names = [inputName: input]
        // A text model's token inputs are rows of the packed batch [batch, 3, length], as integers.
        for (row, name) in (tokenInputs?.inputs ?? []).map({ (ONNXTokenInputs.names.firstIndex(of: $0)!, $0) }) {
            let index = b.integers(scoped(name + "_row"), [row], dims: [])
            let picked = b.node("Gather", [input, index], outputs: [scoped(name + "_packed")], [ONNXAttribute("axis", .int(1))], name: scoped(name + "_packed"))[0]
            let type = model.graph.inputs.first { $0.name == name }?.elementType ?? ONNXTensor.int64
            names[name] = b.node("Cast", [picked], outputs: [scoped(name)], [ONNXAttribute("to", .int(type))], name: scoped(name))[0]
        }
        for node in order {
            for (name, attribute) in node.attributes.map({ ($0.name, $0.value) }) {
                if case .unsupported = attribute {
                    throw ModelFormatError(file: file, "node '\(node.name)' (\(node.opType)) has attribute '\(name)' of a kind Distill does not write")
                }
            }
            for value in node.inputs where !value.isEmpty && names[value] == nil {
                if let tensor = floats[value] {
                    names[value] = b.initializer(scoped(value), tensor)
                } else if case let .ints(values, dims)? = integerInitializers[value] {
                    names[value] = b.integers(scoped(value), values, dims: dims)
                } else {
                    throw ModelFormatError(file: file, "node '\(node.name)' (\(node.opType)) reads '\(value)' before it is produced")
                }
            }
            let outputs = b.node(node.opType, node.inputs.map { $0.isEmpty ? "" : names[$0]! }, outputs: node.outputs.map { $0.isEmpty ? "" : scoped($0) },
                                 node.attributes, domain: node.domain, name: scoped(node.name.isEmpty ? node.outputs[0] : node.name))
            for (value, name) in zip(node.outputs, outputs) where !value.isEmpty { names[value] = name }
        }
        guard let output = names[outputName] else {
            throw ModelFormatError(file: file, "graph output '\(outputName)' is an initializer, which Distill does not export")
        }
        return output
    }
}
