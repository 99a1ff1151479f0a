import Foundation
import NeuralNet
import Tensors
import Training

/// Knowledge distillation (Hinton, Vinyals & Dean 2015): T²·KL(softmax(t/T) ‖ softmax(s/T)),
/// KL summed over classes and averaged over the batch. With the usual cross-entropy weighted
/// 1 − α and this loss α, the objective is α·T²·KL + (1 − α)·CE; defaults T = 4, α = 0.9.
/// The T² keeps gradient magnitudes comparable across temperatures.
///
/// With `studentOutput`, the student side is that module's output instead of the model's:
/// Learning without Forgetting (Li & Hoiem 2016) is this loss on the old head, against the
/// old model's outputs recorded before training.
public final class KnowledgeDistillation: DistillationLoss {
    public let temperature: Float
    public let studentOutput: String?
    public let name: String

    public init(temperature: Float = TrainingDefaults.temperature, studentOutput: String? = nil, name: String = "kd") {
        require(temperature > 0, "KnowledgeDistillation: temperature must be positive, got \(temperature)")
        self.temperature = temperature
        self.studentOutput = studentOutput
        self.name = name
    }

    public func loss(_ batch: DistillationBatch) -> Tensor {
        let t = temperature
        let target = withoutGradients { (batch.teacherLogits / t).softmax(alongAxis: 1) }
        return Tensor.klDivergence(logProbabilities: (batch.studentLogits / t).logSoftmax(alongAxis: 1), target: target) * (t * t)
    }
}

/// Decoupled knowledge distillation (Zhao et al. 2022): KD split into the target-class part
/// (TCKD: binary KL between target and non-target probability mass) and the non-target part
/// (NCKD: KL between the distributions over non-target classes), weighted independently:
/// α·TCKD + β·NCKD, each × T² and averaged over the batch; defaults α = 1, β = 8, T = 4.
/// The loss ramps up linearly over the first `warmupEpochs` (20) epochs, as in the paper.
/// Unlabelled examples use the teacher's top class as the target.
public final class DecoupledKnowledgeDistillation: DistillationLoss {
    public let alpha: Float, beta: Float, temperature: Float, warmupEpochs: Int
    public let name = "dkd"

    public init(alpha: Float = 1, beta: Float = 8, temperature: Float = 4, warmupEpochs: Int = 20) {
        require(temperature > 0 && warmupEpochs >= 0, "DecoupledKnowledgeDistillation: temperature must be positive and warm-up ≥ 0")
        self.alpha = alpha
        self.beta = beta
        self.temperature = temperature
        self.warmupEpochs = warmupEpochs
    }

    public func loss(_ batch: DistillationBatch) -> Tensor {
        let t = temperature
        let c = batch.studentLogits.shape[1]
        let targetMask = Tensor.oneHot(batch.labels, classes: c)
        let otherMask = 1 - targetMask
        let student = (batch.studentLogits / t).softmax(alongAxis: 1)
        let teacher = withoutGradients { (batch.teacherLogits / t).softmax(alongAxis: 1) }
        // Binary distributions (target, rest) for TCKD.
        func binary(_ p: Tensor) -> Tensor {
            Tensor.concatenating([(p * targetMask).sum(alongAxis: 1, keepDims: true), (p * otherMask).sum(alongAxis: 1, keepDims: true)], alongAxis: 1)
        }
        let tckd = Tensor.klDivergence(logProbabilities: binary(student).log(), target: binary(teacher)) * (t * t)
        // Non-target distributions: the target logit pushed to −∞ (−1000·T after scaling, as the reference does).
        let suppressed = targetMask * 1000
        let teacherRest = withoutGradients { (batch.teacherLogits / t - suppressed).softmax(alongAxis: 1) }
        let studentRest = (batch.studentLogits / t - suppressed).logSoftmax(alongAxis: 1)
        let nckd = Tensor.klDivergence(logProbabilities: studentRest, target: teacherRest) * (t * t)
        let ramp = warmupEpochs == 0 ? 1 : min(Float(batch.epoch + 1) / Float(warmupEpochs), 1)
        return (tckd * alpha + nckd * beta) * ramp
    }
}
