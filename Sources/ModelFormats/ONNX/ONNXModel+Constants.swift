/// Weights stored as `Constant` nodes (as Paddle2ONNX writes them) instead of initializers.
extension ONNXModel {
    /// The same model with each default-domain `Constant` node whose `value` is a float
    /// tensor of more than one element turned into a graph initializer named by the node's
    /// output: such constants are weights, and initializers are what an imported network
    /// trains, freezes and exports. Scalars and integer constants (shapes, axes) stay nodes.
    public func liftingFloatConstants() -> ONNXModel {
        var result = self
        var lifted: [ONNXTensor] = []
        result.graph.nodes = graph.nodes.filter { node in
            guard node.opType == "Constant", node.domain.isEmpty || node.domain == "ai.onnx", node.outputs.count == 1,
                  !node.outputs[0].isEmpty, case let .tensor(tensor)? = node.attribute("value"),
                  case let .floats(values) = tensor.values, values.count > 1 else { return true }
            var named = tensor
            named.name = node.outputs[0]
            lifted.append(named)
            return false
        }
        result.graph.initializers += lifted
        return result
    }
}
