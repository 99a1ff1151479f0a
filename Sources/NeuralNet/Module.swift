import Tensors

/// Mutable per-module state: training mode, frozen statistics, and the tap that observes
/// the module's output.
public final class ModuleState {
    /// Training (dropout active, batch statistics) or evaluation mode.
    public var isTraining = true
    /// Keeps batch-norm running statistics fixed and in use even in training mode
    /// (a frozen backbone during feature extraction).
    public var freezesStatistics = false
    /// Called with (input, output) after every forward pass of this module.
    var tap: ((Tensor, Tensor) -> Void)?
    /// Rewrites the module's input before `forward`, and its output after it (before the
    /// tap sees it): where quantization-aware training fakes the int8 model's rounding.
    public var inputTransform: ((Tensor) -> Tensor)?
    public var outputTransform: ((Tensor) -> Tensor)?
    /// Rewrites the weight a `Conv2d` or `Linear` computes with (its parameter stays the
    /// trained one): quantization-aware training's fake-quantized weights.
    public var weightTransform: ((Tensor) -> Tensor)?

    public init() {}

    /// Reports an output computed outside `callAsFunction` to the tap, if any: for modules
    /// that stand for part of a larger computation (the nodes of an ONNX graph).
    public func report(input: Tensor, output: Tensor) { tap?(input, output) }
}

/// A network layer or a composition of layers, PyTorch-style: named parameters and buffers
/// whose dotted names (`features.0.weight`, `layer1.0.bn1.running_mean`) match a PyTorch
/// `state_dict` one to one.
///
/// Conformers implement `forward` and list what they own; call modules as functions
/// (`model(x)`), which runs `forward` and lets taps observe the output.
public protocol Module: AnyObject {
    /// The module's computation. Use `callAsFunction` from outside, so that taps see it.
    func forward(_ input: Tensor) -> Tensor
    /// Direct submodules with their names, in order.
    var children: [(name: String, module: any Module)] { get }
    /// This module's own trainable tensors with their local names.
    var localParameters: [(name: String, tensor: Tensor)] { get }
    /// This module's own non-trainable state (running statistics) with their local names.
    var localBuffers: [(name: String, tensor: Tensor)] { get }
    var state: ModuleState { get }
}

extension Module {
    public var children: [(name: String, module: any Module)] { [] }
    public var localParameters: [(name: String, tensor: Tensor)] { [] }
    public var localBuffers: [(name: String, tensor: Tensor)] { [] }

    /// Runs the module and reports the output to its tap, if any.
    public func callAsFunction(_ input: Tensor) -> Tensor {
        let input = state.inputTransform?(input) ?? input
        var output = forward(input)
        if let transform = state.outputTransform { output = transform(output) }
        state.tap?(input, output)
        return output
    }

    /// Every module in the tree, depth first, with dotted names ("" for self).
    public func namedModules() -> [(name: String, module: any Module)] {
        var result: [(name: String, module: any Module)] = []
        var stack: [(String, any Module)] = [("", self)]
        while let (name, module) = stack.popLast() {
            result.append((name, module))
            for child in module.children.reversed() {
                stack.append((name.isEmpty ? child.name : name + "." + child.name, child.module))
            }
        }
        return result
    }

    /// All parameters with dotted names, in a stable order.
    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        namedModules().flatMap { prefix, module in
            module.localParameters.map { (prefix.isEmpty ? $0.name : prefix + "." + $0.name, $0.tensor) }
        }
    }

    /// All buffers with dotted names.
    public func namedBuffers() -> [(name: String, tensor: Tensor)] {
        namedModules().flatMap { prefix, module in
            module.localBuffers.map { (prefix.isEmpty ? $0.name : prefix + "." + $0.name, $0.tensor) }
        }
    }

    /// All parameters.
    public var parameters: [Tensor] { namedParameters().map(\.tensor) }

    /// Parameters and buffers by dotted name: what a PyTorch `state_dict` holds.
    public func stateDict() -> [(name: String, tensor: Tensor)] { namedParameters() + namedBuffers() }

    /// Number of trainable scalars.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    /// The submodule at a dotted path ("" is self), or nil.
    public func module(named path: String) -> (any Module)? {
        namedModules().first { $0.name == path }?.module
    }

    /// Training mode for this module and all below it.
    public func train() { for (_, m) in namedModules() { m.state.isTraining = true } }

    /// Evaluation mode for this module and all below it.
    public func eval() { for (_, m) in namedModules() { m.state.isTraining = false } }

    public var isTraining: Bool { state.isTraining }

    /// Stops gradients for every parameter under the given dotted prefixes (a prefix names a
    /// module or a parameter; "" is the whole model). With `statistics`, batch-norm layers
    /// under them also keep their running statistics fixed and in use.
    public func freeze(_ prefixes: [String], statistics: Bool = true) throws {
        try setFrozen(prefixes, frozen: true, statistics: statistics)
    }

    /// Lets gradients flow again under the given prefixes (and statistics update again).
    public func unfreeze(_ prefixes: [String]) throws {
        try setFrozen(prefixes, frozen: false, statistics: true)
    }

    private func setFrozen(_ prefixes: [String], frozen: Bool, statistics: Bool) throws {
        let modules = namedModules(), parameters = namedParameters()
        for prefix in prefixes {
            func matches(_ name: String) -> Bool { prefix.isEmpty || name == prefix || name.hasPrefix(prefix + ".") }
            let hitModules = modules.filter { matches($0.name) }
            let hitParameters = parameters.filter { matches($0.name) }
            guard !hitModules.isEmpty || !hitParameters.isEmpty else {
                throw ModuleError.noSuchModule(prefix, available: modules.map(\.name).filter { !$0.isEmpty })
            }
            for (_, tensor) in hitParameters { tensor.requiresGrad = !frozen }
            if statistics { for (_, module) in hitModules { module.state.freezesStatistics = frozen } }
        }
    }

    /// Runs the model and also returns the outputs of the named submodules (taps), without
    /// changing the model: what feature-based distillation needs.
    public func forward(_ input: Tensor, capturing names: [String]) throws -> (output: Tensor, features: [String: Tensor]) {
        var features: [String: Tensor] = [:]
        var tapped: [any Module] = []
        for name in names {
            guard let module = module(named: name) else {
                throw ModuleError.noSuchModule(name, available: namedModules().map(\.name).filter { !$0.isEmpty })
            }
            require(module.state.tap == nil, "forward(capturing:): module '\(name)' is already tapped")
            module.state.tap = { _, output in features[name] = output }
            tapped.append(module)
        }
        defer { for module in tapped { module.state.tap = nil } }
        let output = self(input)
        return (output, features)
    }
}

/// Errors from module trees: names that do not exist, loading mismatches.
public enum ModuleError: Error, CustomStringConvertible, Equatable {
    case noSuchModule(String, available: [String])
    case unknownModel(String, available: [String])
    case invalidOption(String)

    public var description: String {
        switch self {
        case let .noSuchModule(name, available):
            let shown = available.prefix(30).joined(separator: ", ")
            return "no module or parameter named '\(name)' (modules: \(shown)\(available.count > 30 ? ", ..." : ""))"
        case let .unknownModel(name, available):
            return "unknown model '\(name)' (available: \(available.joined(separator: ", ")))"
        case let .invalidOption(message):
            return message
        }
    }
}
