import Foundation

/// Whether ops record the graph for `backward()` on the current thread.
public enum GradientRecording {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// True unless the current thread is inside `withoutGradients`.
    public static var isEnabled: Bool { pthread_getspecific(key) == nil }

    fileprivate static func setDisabled(_ disabled: Bool) {
        // Any non-nil value marks "disabled"; the pointer is never dereferenced.
        pthread_setspecific(key, disabled ? UnsafeRawPointer(bitPattern: 1) : nil)
    }
}

/// Runs `body` without recording: no graph, no saved tensors (teachers, evaluation,
/// optimizer updates). Nests; the previous state is restored on exit.
public func withoutGradients<R>(_ body: () throws -> R) rethrows -> R {
    let wasEnabled = GradientRecording.isEnabled
    GradientRecording.setDisabled(true)
    defer { GradientRecording.setDisabled(!wasEnabled) }
    return try body()
}

/// The record of one op application: its inputs and the rule that maps the gradient of
/// its output to gradients of its inputs (nil for inputs that need none).
final class GradNode {
    let op: String
    var inputs: [Tensor]
    var backward: ((Tensor) -> [Tensor?])?

    init(op: String, inputs: [Tensor], backward: @escaping (Tensor) -> [Tensor?]) {
        self.op = op
        self.inputs = inputs
        self.backward = backward
    }

    deinit {
        backward = nil
        var pending: [Tensor] = []
        swap(&pending, &inputs)
        GradNode.dismantle(&pending)
    }
}

extension Tensor {
    /// True when gradients must flow through this tensor: a backward rule computes the
    /// gradients of the inputs that need them and returns nil for the others.
    public var needsGrad: Bool { requiresGrad || gradNode != nil }

    /// True when an op recorded how this tensor was made (so backward can pass through it).
    public var isRecorded: Bool { gradNode != nil }

    /// Attaches `backward` to `self` (an op's fresh output) when recording is on and any
    /// input needs a gradient. The closure runs without recording. Returns `self`.
    ///
    /// The one way an op becomes differentiable, here and in other modules (the losses in
    /// NeuralNet): compute the value with kernels or public ops, then record the rule that
    /// maps the output's gradient to one gradient per input (of the input's shape, or nil).
    @discardableResult
    public func recorded(_ op: String, _ inputs: [Tensor], backward: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        if GradientRecording.isEnabled && inputs.contains(where: { $0.needsGrad }) {
            gradNode = GradNode(op: op, inputs: inputs, backward: backward)
        }
        return self
    }

    /// Reverse-mode differentiation from this one-element tensor: accumulates d(self)/d(leaf)
    /// into the `grad` of every leaf with `requiresGrad`, then releases the graph.
    /// The walk is iterative, so graph depth is bounded by memory, not by the stack.
    ///
    /// `gradientReady`, when given, is called with each leaf as soon as this pass has
    /// finished adding to its `grad`, while backward goes on through earlier layers (data
    /// parallelism starts summing those gradients over processes there); `betweenOps` after
    /// every op's backward rule (where communication started earlier is moved on).
    public func backward(gradientReady: ((Tensor) -> Void)? = nil, betweenOps: (() -> Void)? = nil) {
        require(count == 1, "backward: needs a one-element tensor, got shape \(shape)")
        backward(seed: Tensor.ones(shape), gradientReady: gradientReady, betweenOps: betweenOps)
    }

    /// Reverse-mode differentiation with an explicit upstream gradient `seed` (shape of self).
    public func backward(seed: Tensor, gradientReady: ((Tensor) -> Void)? = nil, betweenOps: (() -> Void)? = nil) {
        require(seed.shape == shape, "backward: seed shape \(seed.shape) differs from tensor shape \(shape)")
        guard needsGrad else { return }
        let order = topologicalOrder()
        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): seed]
        withoutGradients {
            for tensor in order.reversed() {
                guard let g = grads.removeValue(forKey: ObjectIdentifier(tensor)) else { continue }
                guard let node = tensor.gradNode else {
                    if tensor.requiresGrad {
                        tensor.grad = tensor.grad.map { $0 + g } ?? g.detached()
                        // Every use of the leaf comes after it in `order`: its gradient is complete.
                        gradientReady?(tensor)
                    }
                    continue
                }
                guard let rule = node.backward else {
                    requirementFailed("backward: the graph through '\(node.op)' was already released by an earlier backward()")
                }
                let inputGrads = rule(g)
                for (input, inputGrad) in zip(node.inputs, inputGrads) {
                    guard let inputGrad, input.needsGrad else { continue }
                    require(inputGrad.shape == input.shape,
                                 "backward: '\(node.op)' gave gradient \(inputGrad.shape) for input \(input.shape)")
                    let key = ObjectIdentifier(input)
                    grads[key] = grads[key].map { $0 + inputGrad } ?? inputGrad
                }
                // Release saved tensors now: the graph's memory goes as soon as it is used.
                node.backward = nil
                node.inputs = []
                betweenOps?()
            }
        }
    }

    /// Tensors reachable from self through recorded nodes, inputs before outputs.
    private func topologicalOrder() -> [Tensor] {
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(tensor: Tensor, expanded: Bool)] = [(self, false)]
        while let (tensor, expanded) = stack.popLast() {
            if expanded {
                order.append(tensor)
                continue
            }
            guard visited.insert(ObjectIdentifier(tensor)).inserted else { continue }
            stack.append((tensor, true))
            for input in tensor.gradNode?.inputs ?? [] where input.needsGrad && !visited.contains(ObjectIdentifier(input)) {
                stack.append((input, false))
            }
        }
        return order
    }
}

extension GradNode {
    /// Dismantles the graph below a dropped node iteratively, so that releasing a deep
    /// graph that never saw backward() cannot overflow the stack through nested deinits.
    static func dismantle(_ pending: inout [Tensor]) {
        while var tensor = pending.popLast() {
            if isKnownUniquelyReferenced(&tensor), let node = tensor.gradNode {
                node.backward = nil
                pending.append(contentsOf: node.inputs)
                node.inputs.removeAll()
            }
        }
    }
}
