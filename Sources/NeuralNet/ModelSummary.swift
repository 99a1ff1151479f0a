import Tensors

/// Per-layer report of a model: output shape, parameters and multiply-adds, from one
/// forward pass of a single example in evaluation mode.
public struct ModelSummary: CustomStringConvertible {
    public struct Row {
        public var name: String
        public var type: String
        public var outputShape: Shape
        public var parameters: Int
        public var multiplyAdds: Int
    }

    public var rows: [Row]
    public var totalParameters: Int
    public var trainableParameters: Int
    public var totalMultiplyAdds: Int
    /// Bytes of parameters and buffers as Float32.
    public var bytes: Int

    /// Summarises `model` for inputs of `inputShape` (without the batch axis, e.g. [1, 28, 28]).
    public init(_ model: any Module, inputShape: Shape) {
        let shapes = model.traceShapes(inputShape: inputShape)
        let modules = model.namedModules()
        rows = modules.filter { !$0.name.isEmpty }.map { name, module in
            let (input, output) = shapes[ObjectIdentifier(module)] ?? ([], [])
            return Row(name: name, type: String(describing: type(of: module)), outputShape: output,
                       parameters: module.localParameters.reduce(0) { $0 + $1.tensor.count },
                       multiplyAdds: ModelSummary.multiplyAdds(module, input: input, output: output))
        }
        totalParameters = model.parameterCount
        trainableParameters = model.parameters.filter(\.requiresGrad).reduce(0) { $0 + $1.count }
        totalMultiplyAdds = rows.reduce(0) { $0 + $1.multiplyAdds }
        bytes = model.stateDict().reduce(0) { $0 + $1.tensor.count } * MemoryLayout<Float>.size
    }

    /// Multiply-adds of one example through the layers that do them (conv and linear).
    static func multiplyAdds(_ module: any Module, input: Shape, output: Shape) -> Int {
        if let counted = module as? CountsMultiplyAdds { return counted.multiplyAddsPerExample }
        if let conv = module as? Conv2d, output.rank == 4 {
            let w = conv.weight.shape
            return output.count * w[1] * w[2] * w[3]
        }
        if let linear = module as? Linear {
            return output.count / max(linear.outFeatures, 1) * linear.inFeatures * linear.outFeatures
        }
        return 0
    }

    public var description: String {
        let header = ["layer", "type", "output", "parameters", "multiply-adds"]
        let table = rows.map { [$0.name, $0.type, $0.outputShape.description, grouped($0.parameters), grouped($0.multiplyAdds)] }
        let widths = (0..<header.count).map { column in ([header] + table).map { $0[column].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                i >= 3 ? String(repeating: " ", count: widths[i] - cell.count) + cell : cell + String(repeating: " ", count: widths[i] - cell.count)
            }.joined(separator: "  ")
        }
        var lines = [line(header), String(repeating: "-", count: widths.reduce(0, +) + 8)]
        lines += table.map(line)
        lines.append("total parameters: \(grouped(totalParameters)) (trainable \(grouped(trainableParameters)))")
        lines.append("multiply-adds per example: \(grouped(totalMultiplyAdds))")
        lines.append("size: \(grouped(bytes)) bytes (Float32 parameters and buffers)")
        return lines.joined(separator: "\n")
    }

    private func grouped(_ n: Int) -> String {
        let digits = String(n)
        var out = ""
        for (i, ch) in digits.reversed().enumerated() {
            if i > 0 && i % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return String(out.reversed())
    }
}

/// A module that knows its own multiply-adds per example from its last run (graph nodes,
/// whose cost depends on operands the summary cannot see).
public protocol CountsMultiplyAdds {
    var multiplyAddsPerExample: Int { get }
}

extension Module {
    /// Every module's input and output shape when the model runs once, at batch 1 and in
    /// evaluation mode, on zeros of `inputShape` (without the batch axis). The model's
    /// modes are restored afterwards.
    public func traceShapes(inputShape: Shape) -> [ObjectIdentifier: (input: Shape, output: Shape)] {
        var shapes: [ObjectIdentifier: (input: Shape, output: Shape)] = [:]
        let modules = namedModules().map(\.module)
        let wasTraining = modules.map(\.state.isTraining)
        for module in modules {
            let key = ObjectIdentifier(module)
            module.state.tap = { input, output in shapes[key] = (input.shape, output.shape) }
        }
        eval()
        _ = withoutGradients { self(Tensor.zeros(Shape([1] + inputShape.dimensions))) }
        for (module, training) in zip(modules, wasTraining) {
            module.state.tap = nil
            module.state.isTraining = training
        }
        return shapes
    }
}
