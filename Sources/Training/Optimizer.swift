import Foundation
import NeuralNet
import Tensors

/// Parameters that share hyper-parameters: a learning rate (the schedule scales
/// `baseLearningRate` into `learningRate`) and a weight decay.
public struct ParameterGroup {
    public var name: String
    public var parameters: [Tensor]
    public var baseLearningRate: Float
    public var learningRate: Float
    public var weightDecay: Float

    public init(name: String = "default", parameters: [Tensor], learningRate: Float, weightDecay: Float = 0) {
        require(learningRate >= 0 && weightDecay >= 0, "ParameterGroup: learning rate and weight decay must be ≥ 0")
        self.name = name
        self.parameters = parameters
        self.baseLearningRate = learningRate
        self.learningRate = learningRate
        self.weightDecay = weightDecay
    }

    /// Two groups from `model`'s trainable parameters: those weight decay applies to
    /// (`decayedParameters`) with `weightDecay`, and the rest without.
    public static func decayingWeightsOnly(_ model: any Module, learningRate: Float, weightDecay: Float) -> [ParameterGroup] {
        let trainable = model.parameters.filter(\.requiresGrad), decayed = decayedParameters(of: model)
        return [ParameterGroup(name: "weights", parameters: trainable.filter { decayed.contains(ObjectIdentifier($0)) },
                               learningRate: learningRate, weightDecay: weightDecay),
                ParameterGroup(name: "biases, norms and embedding tables", parameters: trainable.filter { !decayed.contains(ObjectIdentifier($0)) },
                               learningRate: learningRate, weightDecay: 0)]
    }

    /// The parameters of `model` that weight decay applies to: weights of rank ≥ 2, but not
    /// biases and normalisation parameters (rank ≤ 1, the usual exemption) nor the tables of
    /// `Embedding` layers. A table row gets a gradient only in the steps whose batch holds its
    /// token; with Adam's L2 form the decay term is then all the gradient it has in the other
    /// steps, and Adam scales it up to about the learning rate a step, so every rare token's
    /// vector is pulled to zero within a few hundred steps (distilling MiniLM into a one-layer
    /// student at Adam 1e-3, weight decay 5e-4: held-out similarity Spearman 0.639 with the
    /// tables decayed, 0.723 without; docs/text.md).
    public static func decayedParameters(of model: any Module) -> Set<ObjectIdentifier> {
        let tables = Set(model.namedModules().compactMap { ($0.module as? Embedding).map { ObjectIdentifier($0.weight) } })
        return Set(model.parameters.filter { $0.rank >= 2 && !tables.contains(ObjectIdentifier($0)) }.map(ObjectIdentifier.init))
    }
}

/// An optimizer updates its groups' parameters from their gradients, in place.
public protocol Optimizer: AnyObject {
    var groups: [ParameterGroup] { get set }
    /// One update from the current gradients; parameters without a gradient are skipped.
    func step()
    /// The optimizer's internal state (momenta, moments, step counts) as named tensors, for checkpoints.
    func stateTensors() -> [(name: String, tensor: Tensor)]
    /// Restores what `stateTensors` returned; throws if a name or shape does not fit.
    func loadStateTensors(_ tensors: [String: Tensor]) throws
}

extension Optimizer {
    /// Clears every parameter's gradient.
    public func zeroGrad() { for group in groups { for p in group.parameters { p.zeroGrad() } } }

    /// Sets each group's learning rate to its base rate times `factor` (what a schedule gives).
    public func setLearningRateFactor(_ factor: Float) {
        for i in groups.indices { groups[i].learningRate = groups[i].baseLearningRate * factor }
    }

    /// Every parameter, group by group.
    var allParameters: [Tensor] { groups.flatMap(\.parameters) }

    /// Calls `body` with each parameter that has a gradient, its group and its index among
    /// all parameters (the key of its optimizer state).
    func forEachParameterWithGradient(_ body: (_ group: ParameterGroup, _ index: Int, _ parameter: Tensor, _ grad: Tensor) -> Void) {
        var index = 0
        for group in groups {
            for parameter in group.parameters {
                defer { index += 1 }
                if let grad = parameter.grad { body(group, index, parameter, grad) }
            }
        }
    }
}

/// A problem restoring optimizer state.
public struct OptimizerStateError: Error, CustomStringConvertible {
    public let description: String
}

/// Optimizers that keep per-parameter slots in a `SlotStore`, which gives them checkpointing.
protocol SlotStoring: Optimizer {
    var store: SlotStore { get }
    /// The slot names this optimizer keeps per parameter.
    static var slotNames: Set<String> { get }
}

extension SlotStoring {
    public func stateTensors() -> [(name: String, tensor: Tensor)] { store.export() }

    public func loadStateTensors(_ tensors: [String: Tensor]) throws {
        try store.load(tensors, parameters: allParameters, knownSlots: Self.slotNames)
    }
}

/// Per-parameter state tensors keyed "<index>.<slot>", shared by the optimizers.
final class SlotStore {
    var slots: [String: [Int: Tensor]] = [:]
    var steps: [Int: Int] = [:]

    func tensor(_ slot: String, _ index: Int, like parameter: Tensor) -> (Tensor, isNew: Bool) {
        if let existing = slots[slot]?[index] { return (existing, false) }
        let fresh = Tensor.zeros(parameter.shape)
        slots[slot, default: [:]][index] = fresh
        return (fresh, true)
    }

    func export() -> [(name: String, tensor: Tensor)] {
        var result: [(name: String, tensor: Tensor)] = []
        for slot in slots.keys.sorted() {
            for (index, tensor) in slots[slot]!.sorted(by: { $0.key < $1.key }) { result.append(("\(index).\(slot)", tensor)) }
        }
        for (index, step) in steps.sorted(by: { $0.key < $1.key }) { result.append(("\(index).step", Tensor(scalar: Float(step)))) }
        return result
    }

    func load(_ tensors: [String: Tensor], parameters: [Tensor], knownSlots: Set<String>) throws {
        var newSlots: [String: [Int: Tensor]] = [:], newSteps: [Int: Int] = [:]
        for (name, tensor) in tensors {
            let parts = name.split(separator: ".", maxSplits: 1).map(String.init)
            guard parts.count == 2, let index = Int(parts[0]), index >= 0, index < parameters.count else {
                throw OptimizerStateError(description: "optimizer state '\(name)' does not name a parameter index below \(parameters.count)")
            }
            if parts[1] == "step" {
                guard tensor.count == 1, tensor.item >= 0, tensor.item == tensor.item.rounded() else {
                    throw OptimizerStateError(description: "optimizer state '\(name)' must be a whole non-negative number")
                }
                newSteps[index] = Int(tensor.item)
                continue
            }
            guard knownSlots.contains(parts[1]) else {
                throw OptimizerStateError(description: "optimizer state '\(name)': unknown slot '\(parts[1])' (expected \(knownSlots.sorted().joined(separator: ", ")))")
            }
            guard tensor.shape == parameters[index].shape else {
                throw OptimizerStateError(description: "optimizer state '\(name)' has shape \(tensor.shape) but parameter \(index) has \(parameters[index].shape)")
            }
            newSlots[parts[1], default: [:]][index] = tensor.copy()
        }
        slots = newSlots
        steps = newSteps
    }
}

/// Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay, as
/// `torch.optim.SGD`: g ← ∇ + λθ; b ← μb + (1 − τ)g (b = g on the first step);
/// g ← g + μb (Nesterov) or b; θ ← θ − η·g.
public final class SGD: SlotStoring {
    public var groups: [ParameterGroup]
    public let momentum: Float, dampening: Float, nesterov: Bool
    let store = SlotStore()
    static let slotNames: Set<String> = ["momentum_buffer"]

    public init(_ groups: [ParameterGroup], momentum: Float = 0, dampening: Float = 0, nesterov: Bool = false) {
        require(momentum >= 0 && (!nesterov || (momentum > 0 && dampening == 0)),
                     "SGD: Nesterov momentum needs momentum > 0 and no dampening")
        self.groups = groups
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
    }

    public convenience init(parameters: [Tensor], learningRate: Float, momentum: Float = 0, nesterov: Bool = false, weightDecay: Float = 0) {
        self.init([ParameterGroup(parameters: parameters, learningRate: learningRate, weightDecay: weightDecay)], momentum: momentum, nesterov: nesterov)
    }

    public func step() {
        forEachParameterWithGradient { group, index, parameter, grad in
            let (buffer, isNew) = momentum != 0 ? store.tensor("momentum_buffer", index, like: parameter) : (parameter, false)
            let lr = group.learningRate, decay = group.weightDecay, mu = momentum, damp = dampening, nesterov = nesterov
            let hasMomentum = momentum != 0
            parameter.withUnsafeMutableBufferPointer { p in
                grad.withUnsafeBufferPointer { g in
                    buffer.withUnsafeMutableBufferPointer { b in
                        // One loop per case, 16 lanes at a time (the three buffers may not
                        // alias, but the compiler cannot know that), then the tail.
                        let n = p.count, pp = p.baseAddress!, gp = g.baseAddress!, bp = b.baseAddress!
                        let lanes = 16, vectorEnd = n - n % lanes
                        typealias V = SIMD16<Float>
                        @inline(__always) func load(_ base: UnsafeMutablePointer<Float>, _ i: Int) -> V {
                            UnsafeRawPointer(base + i).loadUnaligned(as: V.self)
                        }
                        @inline(__always) func store(_ v: V, _ base: UnsafeMutablePointer<Float>, _ i: Int) {
                            UnsafeMutableRawPointer(base + i).storeBytes(of: v, as: V.self)
                        }
                        let gm = UnsafeMutablePointer(mutating: gp)
                        if !hasMomentum {
                            for i in 0..<n { pp[i] -= lr * (gp[i] + decay * pp[i]) }
                        } else if isNew {
                            for i in 0..<n {
                                let d = gp[i] + decay * pp[i]
                                bp[i] = d
                                pp[i] -= lr * (nesterov ? d + mu * d : d)
                            }
                        } else {
                            let keep = 1 - damp
                            // Large tensors are split over the compute threads in 4 KiB-aligned blocks.
                            let blocks = (n + 1023) / 1024
                            Compute.parallelFor(blocks, costPerItem: 1024 * 4) { range in
                                var i = range.lowerBound * 1024
                                let stop = Swift.min(n, range.upperBound * 1024), vectorStop = Swift.min(stop, vectorEnd)
                                while i < vectorStop {
                                    let w = load(pp, i)
                                    let d = load(gm, i) + decay * w
                                    let v = mu * load(bp, i) + keep * d
                                    store(v, bp, i)
                                    store(w - lr * (nesterov ? d + mu * v : v), pp, i)
                                    i += lanes
                                }
                                while i < stop {
                                    let d = gp[i] + decay * pp[i]
                                    let v = mu * bp[i] + keep * d
                                    bp[i] = v
                                    pp[i] -= lr * (nesterov ? d + mu * v : v)
                                    i += 1
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adam (Kingma & Ba 2015), and AdamW's decoupled weight decay (Loshchilov & Hutter 2019),
/// computed as `torch.optim.Adam` / `AdamW` do:
/// m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; θ ← θ − (η/(1−β₁ᵗ))·m / (√v/√(1−β₂ᵗ) + ε).
/// Adam adds λθ to g; AdamW multiplies θ by (1 − ηλ) first.
public final class Adam: SlotStoring {
    public var groups: [ParameterGroup]
    public let beta1: Float, beta2: Float, epsilon: Float
    /// Decoupled (AdamW) rather than L2 (Adam) weight decay.
    public let decoupledWeightDecay: Bool
    let store = SlotStore()
    static let slotNames: Set<String> = ["exp_avg", "exp_avg_sq"]

    public init(_ groups: [ParameterGroup], beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, decoupledWeightDecay: Bool = false) {
        require(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && epsilon > 0, "Adam: betas must be in [0, 1) and epsilon positive")
        self.groups = groups
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.decoupledWeightDecay = decoupledWeightDecay
    }

    /// AdamW with PyTorch's default weight decay of 0.01.
    public static func adamW(_ groups: [ParameterGroup]) -> Adam { Adam(groups, decoupledWeightDecay: true) }

    public func step() {
        forEachParameterWithGradient { group, index, parameter, grad in
            let (m, _) = store.tensor("exp_avg", index, like: parameter)
            let (v, _) = store.tensor("exp_avg_sq", index, like: parameter)
            let t = (store.steps[index] ?? 0) + 1
            store.steps[index] = t
            let lr = group.learningRate, decay = group.weightDecay
            let b1 = beta1, b2 = beta2, eps = epsilon, decoupled = decoupledWeightDecay
            let correction1 = 1 - Foundation.pow(b1, Float(t)), correction2 = 1 - Foundation.pow(b2, Float(t))
            let stepSize = lr / correction1, root2 = correction2.squareRoot()
            parameter.withUnsafeMutableBufferPointer { p in
                grad.withUnsafeBufferPointer { g in
                    m.withUnsafeMutableBufferPointer { mb in
                        v.withUnsafeMutableBufferPointer { vb in
                            // The weight-decay form chosen outside the loop. 16 lanes at a time (the
                            // four buffers may not alias, but the compiler cannot know that, so it
                            // would not vectorise the plain loop), then the tail; each lane does the
                            // tail's operations in the same order, so the results are the same.
                            let shrink: Float = decoupled ? 1 - lr * decay : 1, l2: Float = decoupled ? 0 : decay
                            guard let pp = p.baseAddress, let gp = g.baseAddress, let mp = mb.baseAddress, let vp = vb.baseAddress else { return }
                            let n = p.count
                            typealias V = SIMD16<Float>
                            let vectorEnd = n - n % V.scalarCount
                            // Large tensors (a text model's 30,522-row embedding table) split over the
                            // worker pool: each lane is independent of the others.
                            Compute.parallelFor(vectorEnd / V.scalarCount, costPerItem: 4 * V.scalarCount) { blocks in
                                for block in blocks {
                                    let i = block * V.scalarCount
                                    var pv = UnsafeRawPointer(pp + i).loadUnaligned(as: V.self)
                                    let d = UnsafeRawPointer(gp + i).loadUnaligned(as: V.self) + l2 * pv
                                    pv *= shrink
                                    let mv = b1 * UnsafeRawPointer(mp + i).loadUnaligned(as: V.self) + (1 - b1) * d
                                    let vv = b2 * UnsafeRawPointer(vp + i).loadUnaligned(as: V.self) + (1 - b2) * d * d
                                    pv -= stepSize * mv / (vv.squareRoot() / root2 + eps)
                                    UnsafeMutableRawPointer(mp + i).storeBytes(of: mv, as: V.self)
                                    UnsafeMutableRawPointer(vp + i).storeBytes(of: vv, as: V.self)
                                    UnsafeMutableRawPointer(pp + i).storeBytes(of: pv, as: V.self)
                                }
                            }
                            for i in vectorEnd..<n {
                                let d = gp[i] + l2 * pp[i]
                                pp[i] *= shrink
                                mp[i] = b1 * mp[i] + (1 - b1) * d
                                vp[i] = b2 * vp[i] + (1 - b2) * d * d
                                pp[i] -= stepSize * mp[i] / (vp[i].squareRoot() / root2 + eps)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Scales all gradients so that their global L2 norm is at most `maxNorm`
/// (`torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    require(maxNorm > 0, "clipGradientNorm: maxNorm must be positive, got \(maxNorm)")
    // Squares summed in doubles, eight lanes at a time (a plain running sum cannot vectorise).
    var lanes = SIMD8<Double>()
    var squares: Double = 0
    for p in parameters {
        guard let g = p.grad else { continue }
        g.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            let n = buffer.count, vectorEnd = n - n % 8
            for i in stride(from: 0, to: vectorEnd, by: 8) {
                let v = SIMD8<Double>(UnsafeRawPointer(base + i).loadUnaligned(as: SIMD8<Float>.self))
                lanes += v * v
            }
            for i in vectorEnd..<n { squares += Double(base[i]) * Double(base[i]) }
        }
    }
    squares += lanes.sum()
    let total = Float(squares.squareRoot())
    let coefficient = maxNorm / (total + 1e-6)
    if coefficient < 1 {
        for p in parameters {
            guard let g = p.grad else { continue }
            // A fresh tensor: the gradient may share storage with a graph value.
            p.grad = withoutGradients { g * coefficient }
        }
    }
    return total
}
