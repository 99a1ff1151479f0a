import Tensors

/// Applies its children in order. Children are named "0", "1", ... like `nn.Sequential`,
/// or by the names given.
/// A module whose children can be swapped by name: where transfer learning puts a new head.
public protocol ChildReplacing: Module {
    /// Replaces the child called `name`; throws naming the children when there is none.
    func replace(_ name: String, with module: any Module) throws
}

public final class Sequential: ChildReplacing {
    public private(set) var layers: [(name: String, module: any Module)]
    public let state = ModuleState()

    public init(_ layers: [any Module]) {
        self.layers = layers.enumerated().map { (String($0.offset), $0.element) }
    }

    public init(named layers: [(String, any Module)]) {
        require(Set(layers.map(\.0)).count == layers.count, "Sequential: duplicate child names in \(layers.map(\.0))")
        self.layers = layers.map { (name: $0.0, module: $0.1) }
    }

    public func forward(_ input: Tensor) -> Tensor {
        var x = input, index = 0
        while index < layers.count {
            // A batch norm followed by a ReLU or ReLU6 that nothing observes or rewrites: one op.
            if let norm = layers[index].module as? BatchNorm, index + 1 < layers.count,
               let activation = layers[index + 1].module as? Activation, let fused = activation.fusable {
                x = norm(x, then: fused)
                index += 2
                continue
            }
            x = layers[index].module(x)
            index += 1
        }
        return x
    }

    public var children: [(name: String, module: any Module)] { layers }

    /// Replaces the child called `name` (a new head for transfer learning).
    public func replace(_ name: String, with module: any Module) throws {
        guard let index = layers.firstIndex(where: { $0.name == name }) else {
            throw ModuleError.noSuchModule(name, available: layers.map(\.name))
        }
        layers[index].module = module
    }
}
