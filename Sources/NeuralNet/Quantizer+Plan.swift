import Tensors

/// How the quantizer reads a float model: its forward pass as steps (chains, the zoo's
/// residual blocks), then the steps grouped into what becomes one quantized layer each.
extension Quantizer {
    /// Where a layer's output range is observed: the output of the module at `module`, with
    /// `activation` applied first (an activation the module's parent applies inline, such as
    /// ResNet's `relu()` after the stem's batch norm).
    package struct Tap: Hashable {
        package var module: String
        package var activation: FusedActivation = .none
    }

    /// A float layer group that becomes one quantized layer.
    package indirect enum Stage {
        case conv(Conv2d, BatchNorm?, FusedActivation, name: String, observed: Tap)
        case linear(Linear, FusedActivation, name: String, observed: Tap)
        case maxPool(PoolingWindow)
        case flatten
        case globalAveragePool(observed: Tap)
        /// main(x) + shortcut(x) (an empty shortcut: x itself), then `activation`.
        case residual(main: [Stage], shortcut: [Stage], activation: FusedActivation, observed: Tap)
        /// A module the quantizer cannot quantize: it runs in float between a dequantization
        /// and a quantization, `activation` applied after it in float.
        case float(any Module, FusedActivation, name: String, observed: Tap)
    }

    /// One step of a model's forward pass, as its modules and blocks say.
    indirect enum Step {
        case module(String, any Module)
        /// ReLU or ReLU6: a module of its own (its path), or applied inline by a block (nil).
        case activation(FusedActivation, module: String?)
        case flatten
        case residual(main: [Step], shortcut: [Step], activation: FusedActivation, name: String)
    }

    /// The forward pass of `module` (at `path`) as steps: Sequentials are chains, and the zoo's
    /// ResNet, Wide ResNet, MobileNetV2 and their blocks are spelled out as their `forward`s
    /// compute. Any other module with children stays whole (it will run in float).
    static func steps(_ module: any Module, _ path: String) -> [Step] {
        func at(_ name: String) -> String { path.isEmpty ? name : path + "." + name }
        func child(_ m: any Module, _ name: String) -> [Step] { steps(m, at(name)) }
        switch module {
        case let s as Sequential:
            return s.children.flatMap { child($0.module, $0.name) }
        case let r as ResNet:
            return child(r.conv1, "conv1") + child(r.bn1, "bn1") + [.activation(.relu, module: nil)]
                + child(r.layer1, "layer1") + child(r.layer2, "layer2") + child(r.layer3, "layer3")
                + child(r.avgpool, "avgpool") + [.flatten] + child(r.fc, "fc")
        case let b as BasicBlock:
            let main = child(b.conv1, "conv1") + child(b.bn1, "bn1") + [.activation(.relu, module: nil)]
                + child(b.conv2, "conv2") + child(b.bn2, "bn2")
            return [.residual(main: main, shortcut: b.downsample.map { child($0, "downsample") } ?? [], activation: .relu, name: path)]
        case let w as WideResNet:
            return child(w.conv1, "conv1") + child(w.block1, "block1") + child(w.block2, "block2") + child(w.block3, "block3")
                + child(w.bn1, "bn1") + [.activation(.relu, module: nil)] + child(w.avgpool, "avgpool") + [.flatten] + child(w.fc, "fc")
        case let b as WideBasicBlock:
            let activated = child(b.bn1, "bn1") + [.activation(.relu, module: nil)]
            let main = activated + child(b.conv1, "conv1") + child(b.bn2, "bn2") + [.activation(.relu, module: nil)] + child(b.conv2, "conv2")
            return [.residual(main: main, shortcut: b.convShortcut.map { activated + child($0, "convShortcut") } ?? [], activation: .none, name: path)]
        case let m as MobileNetV2:
            return child(m.features, "features") + child(m.classifier, "classifier")
        case let b as InvertedResidual:
            let main = child(b.conv, "conv")
            return b.usesResidual ? [.residual(main: main, shortcut: [], activation: .none, name: path)] : main
        case let a as Activation where a.kind == .relu || a.kind == .relu6:
            return [.activation(a.kind == .relu ? .relu : .relu6, module: path)]
        case let f as Flatten where f.startAxis == 1:
            return [.flatten]
        case is Dropout, is Identity:
            return []
        default:
            return [.module(path, module)]
        }
    }

    /// The steps grouped into stages: Conv2d (groups 1, or depthwise) [BatchNorm] [ReLU |
    /// ReLU6], Linear [ReLU | ReLU6], max and global average pooling, flatten, residual
    /// blocks; anything else a float stage (with a ReLU after it fused in float).
    static func stages(_ steps: [Step]) throws -> [Stage] {
        var result: [Stage] = []
        var i = 0
        /// The activation at `i` (consumed) and the tap that sees it, or none and `tap`.
        func activation(after tap: Tap) -> (FusedActivation, Tap) {
            guard i < steps.count, case let .activation(kind, module) = steps[i] else { return (.none, tap) }
            i += 1
            return (kind, module.map { Tap(module: $0) } ?? Tap(module: tap.module, activation: kind))
        }
        while i < steps.count {
            let step = steps[i]
            i += 1
            switch step {
            case let .module(name, conv as Conv2d) where conv.dilation == (1, 1)
                && (conv.groups == 1 || (conv.groups == conv.weight.shape[0] && conv.weight.shape[1] == 1)):
                var tap = Tap(module: name), norm: BatchNorm?
                if i < steps.count, case let .module(normName, n as BatchNorm) = steps[i], n.weight.shape[0] == conv.outChannels {
                    norm = n
                    tap = Tap(module: normName)
                    i += 1
                }
                let (kind, observed) = activation(after: tap)
                result.append(.conv(conv, norm, kind, name: name, observed: observed))
            case let .module(name, linear as Linear):
                let (kind, observed) = activation(after: Tap(module: name))
                result.append(.linear(linear, kind, name: name, observed: observed))
            case let .module(_, pool as MaxPool2d):
                result.append(.maxPool(pool.window))
            case let .module(name, pool as AdaptiveAvgPool2d) where pool.outputSize == (1, 1):
                result.append(.globalAveragePool(observed: Tap(module: name)))
            case let .module(name, module):
                let (kind, observed) = activation(after: Tap(module: name))
                result.append(.float(module, kind, name: name, observed: observed))
            case let .activation(kind, module):
                guard let module else {
                    throw QuantizationError.unsupported("an inline \(kind.rawValue) that follows no layer it can be fused into cannot be quantized")
                }
                result.append(.float(Activation(kind == .relu ? .relu : .relu6), .none, name: module, observed: Tap(module: module)))
            case .flatten:
                result.append(.flatten)
            case let .residual(main, shortcut, kind, name):
                result.append(.residual(main: try Self.stages(main), shortcut: try Self.stages(shortcut), activation: kind, observed: Tap(module: name)))
            }
        }
        return result
    }

    /// The model's stages; throws when nothing in it can be quantized.
    package static func plan(_ model: any Module) throws -> [Stage] {
        let stages = try Self.stages(steps(model, ""))
        guard stages.contains(where: \.holdsWeightLayer) else {
            throw QuantizationError.unsupported("the model has no convolution or linear layer to quantize")
        }
        return stages
    }

    /// Every tap the stages observe.
    package static func taps(_ stages: [Stage]) -> [Tap] {
        stages.flatMap { stage -> [Tap] in
            switch stage {
            case let .conv(_, _, _, _, tap), let .linear(_, _, _, tap), let .globalAveragePool(tap), let .float(_, _, _, tap): return [tap]
            case let .residual(main, shortcut, _, tap): return taps(main) + taps(shortcut) + [tap]
            case .maxPool, .flatten: return []
            }
        }
    }
}

extension Quantizer.Stage {
    /// A convolution or linear layer, or a residual block holding one: what the quantizer
    /// quantizes and FusedModel fuses (a model of float stages only gains nothing from either).
    var holdsWeightLayer: Bool {
        switch self {
        case .conv, .linear: return true
        case let .residual(main, shortcut, _, _): return (main + shortcut).contains(where: \.holdsWeightLayer)
        default: return false
        }
    }
}
