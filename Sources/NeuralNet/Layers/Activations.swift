import Tensors

/// An elementwise function as a layer (ReLU, GELU, ...), no parameters.
public final class Activation: Module {
    /// The functions available as layers, with PyTorch's module names in comments.
    public enum Kind: Equatable, Sendable {
        case relu            // nn.ReLU
        case leakyRelu(Float) // nn.LeakyReLU(negative_slope)
        case gelu            // nn.GELU
        case sigmoid         // nn.Sigmoid
        case tanh            // nn.Tanh
        case relu6           // nn.ReLU6 (MobileNetV2)
    }

    public let kind: Kind
    public let state = ModuleState()

    public init(_ kind: Kind) { self.kind = kind }

    /// ReLU or ReLU6 that may run inside the op before it: nothing observes or rewrites this
    /// module's input or output (no tap, no quantization-aware training transforms).
    var fusable: FusedActivation? {
        guard state.tap == nil, state.inputTransform == nil, state.outputTransform == nil else { return nil }
        switch kind {
        case .relu: return .relu
        case .relu6: return .relu6
        default: return nil
        }
    }

    public func forward(_ input: Tensor) -> Tensor {
        switch kind {
        case .relu: return input.relu()
        case let .leakyRelu(slope): return input.leakyRelu(negativeSlope: slope)
        case .gelu: return input.gelu()
        case .sigmoid: return input.sigmoid()
        case .tanh: return input.tanh()
        case .relu6: return input.clamped(min: 0, max: 6)
        }
    }
}

/// Collapses axes from `startAxis` on: [N, C, H, W] → [N, C·H·W].
public final class Flatten: Module {
    public let startAxis: Int
    public let state = ModuleState()
    public init(startAxis: Int = 1) { self.startAxis = startAxis }
    public func forward(_ input: Tensor) -> Tensor { input.flattened(startAxis: startAxis) }
}

/// Passes its input through (a placeholder, or a removed head).
public final class Identity: Module {
    public let state = ModuleState()
    public init() {}
    public func forward(_ input: Tensor) -> Tensor { input }
}
