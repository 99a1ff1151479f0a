import NeuralNet

/// A module whose layers are not child modules of their own (an imported ONNX graph, whose
/// parameters all belong to one module) says how to group its parameters for gradual
/// unfreezing. Other modules are grouped by their child modules that hold parameters.
public protocol LayerGroups: Module {
    /// The module's parameter names (local, as in `namedParameters()`) in at most `count`
    /// non-empty groups, from the top (nearest the output) down: gradual unfreezing thaws
    /// group 0 first.
    func layerGroups(count: Int) -> [[String]]
}
