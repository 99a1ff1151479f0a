import Foundation
import NeuralNet
import Tensors

/// A learning-rate schedule: the factor applied to each group's base learning rate before
/// optimizer step `step` (0 for the first). Schedules are per step, like PyTorch's schedulers
/// stepped once per batch.
public protocol LearningRateSchedule {
    func factor(atStep step: Int) -> Float
}

/// The base learning rate throughout.
public struct ConstantSchedule: LearningRateSchedule {
    public init() {}
    public func factor(atStep step: Int) -> Float { 1 }
}

/// γ^⌊step / stepSize⌋ (`StepLR`).
public struct StepSchedule: LearningRateSchedule {
    public let stepSize: Int, gamma: Float
    public init(stepSize: Int, gamma: Float = 0.1) {
        require(stepSize > 0, "StepSchedule: step size must be positive")
        self.stepSize = stepSize
        self.gamma = gamma
    }
    public func factor(atStep step: Int) -> Float { Foundation.pow(gamma, Float(step / stepSize)) }
}

/// γ^(number of milestones ≤ step) (`MultiStepLR`).
public struct MultiStepSchedule: LearningRateSchedule {
    public let milestones: [Int], gamma: Float
    public init(milestones: [Int], gamma: Float = 0.1) {
        self.milestones = milestones.sorted()
        self.gamma = gamma
    }
    public func factor(atStep step: Int) -> Float { Foundation.pow(gamma, Float(milestones.filter { $0 <= step }.count)) }
}

/// Cosine annealing from 1 to `minimumFactor` over `totalSteps` (`CosineAnnealingLR` with
/// T_max = totalSteps, η_min = minimumFactor · base): m + (1 − m)(1 + cos(π·t/T))/2; held at m after T.
public struct CosineSchedule: LearningRateSchedule {
    public let totalSteps: Int, minimumFactor: Float
    public init(totalSteps: Int, minimumFactor: Float = 0) {
        require(totalSteps > 0, "CosineSchedule: total steps must be positive")
        self.totalSteps = totalSteps
        self.minimumFactor = minimumFactor
    }
    public func factor(atStep step: Int) -> Float {
        let t = Double(min(step, totalSteps)) / Double(totalSteps)
        return Float(Double(minimumFactor) + Double(1 - minimumFactor) * (1 + cos(Double.pi * t)) / 2)
    }
}

/// Linear warm-up from `startFactor` to 1 over `warmupSteps`, then `after` (counted from the
/// end of the warm-up): `SequentialLR(LinearLR, after)`.
public struct WarmupSchedule: LearningRateSchedule {
    public let warmupSteps: Int, startFactor: Float
    public let after: any LearningRateSchedule
    public init(warmupSteps: Int, startFactor: Float = 0.1, then after: any LearningRateSchedule = ConstantSchedule()) {
        require(warmupSteps > 0 && startFactor > 0 && startFactor <= 1, "WarmupSchedule: needs warm-up steps > 0 and a start factor in (0, 1]")
        self.warmupSteps = warmupSteps
        self.startFactor = startFactor
        self.after = after
    }
    public func factor(atStep step: Int) -> Float {
        step < warmupSteps
            ? startFactor + (1 - startFactor) * Float(step) / Float(warmupSteps)
            : after.factor(atStep: step - warmupSteps)
    }
}

/// One-cycle policy (Smith & Topin 2019), as `OneCycleLR` with cosine annealing: from
/// 1/divFactor up to 1 over the first `warmupFraction` of `totalSteps`, then down to
/// 1/(divFactor · finalDivFactor). The base learning rate is the peak.
public struct OneCycleSchedule: LearningRateSchedule {
    public let totalSteps: Int, warmupFraction: Double, divFactor: Double, finalDivFactor: Double
    public init(totalSteps: Int, warmupFraction: Double = 0.3, divFactor: Double = 25, finalDivFactor: Double = 1e4) {
        require(totalSteps > 1 && warmupFraction > 0 && warmupFraction < 1, "OneCycleSchedule: needs more than one step and a warm-up fraction in (0, 1)")
        self.totalSteps = totalSteps
        self.warmupFraction = warmupFraction
        self.divFactor = divFactor
        self.finalDivFactor = finalDivFactor
    }
    public func factor(atStep step: Int) -> Float {
        func anneal(_ start: Double, _ end: Double, _ fraction: Double) -> Double { end + (start - end) / 2 * (1 + cos(Double.pi * fraction)) }
        let peakStep = warmupFraction * Double(totalSteps) - 1, lastStep = Double(totalSteps - 1)
        let initial = 1 / divFactor, final = initial / finalDivFactor
        let t = Double(min(step, totalSteps - 1))
        if t <= peakStep { return Float(anneal(initial, 1, t / peakStep)) }
        return Float(anneal(1, final, (t - peakStep) / (lastStep - peakStep)))
    }
}

/// The optimizers the command line and configuration files name.
public enum OptimizerChoice: String, CaseIterable, Codable, Sendable {
    /// SGD with Nesterov momentum 0.9.
    case sgd
    /// Adam with L2 weight decay added to the gradient.
    case adam
    /// Adam with decoupled weight decay (Loshchilov & Hutter).
    case adamw

    /// The optimizer over `model`'s parameters; weight decay applies to weights only, not to
    /// biases or normalisation parameters.
    public func make(_ model: any Module, learningRate: Float, weightDecay: Float) -> any Optimizer {
        make(ParameterGroup.decayingWeightsOnly(model, learningRate: learningRate, weightDecay: weightDecay))
    }

    /// The optimizer over `groups`; `momentum` is SGD's Nesterov momentum.
    public func make(_ groups: [ParameterGroup], momentum: Float = 0.9) -> any Optimizer {
        switch self {
        case .sgd: return SGD(groups, momentum: momentum, nesterov: true)
        case .adam: return Adam(groups)
        case .adamw: return Adam(groups, decoupledWeightDecay: true)
        }
    }
}

/// The learning-rate schedules the command line and configuration files name.
public enum ScheduleChoice: String, CaseIterable, Codable, Sendable {
    /// Cosine decay to zero over the run.
    case cosine
    /// ×0.1 at 50% and 75% of the run.
    case step
    /// The peak rate throughout.
    case constant
    /// One-cycle: warm up for 30% of the run, then anneal (Smith & Topin).
    case onecycle

    public func make(totalSteps: Int) -> any LearningRateSchedule {
        let total = max(1, totalSteps)
        switch self {
        case .cosine: return CosineSchedule(totalSteps: total)
        case .step: return MultiStepSchedule(milestones: [total / 2, total * 3 / 4], gamma: 0.1)
        case .constant: return ConstantSchedule()
        case .onecycle: return OneCycleSchedule(totalSteps: total)
        }
    }
}
