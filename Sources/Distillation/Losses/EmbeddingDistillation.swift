import NeuralNet
import Tensors
import Training

/// Embedding distillation: the student's output vectors (a sentence encoder's pooled
/// embeddings, [B, D]) should equal the teacher's: the mean over the batch of the squared
/// distance ‖s − t‖² plus the cosine distance 1 − cos(s, t). For unit-length embeddings (both
/// of Distill's text students and sentence-transformers' encoders normalise) the two agree up
/// to a factor of 2; the squared distance also pulls unnormalised outputs to the teacher's
/// length. Needs no labels: it trains on unlabelled text. Weight 1.
///
/// With `studentOutput`, the student side is that module's output instead of the model's:
/// Learning without Forgetting for a sentence encoder compares its old head (the embedding
/// itself) with the original encoder's embedding while the new head learns.
public final class EmbeddingDistillation: DistillationLoss {
    public let name: String
    public let studentOutput: String?

    public init(studentOutput: String? = nil, name: String = "embedding") {
        self.studentOutput = studentOutput
        self.name = name
    }

    public func loss(_ batch: DistillationBatch) -> Tensor {
        let s = embeddings(batch.studentLogits), t = embeddings(batch.teacherLogits)
        let squared = (s - t).squared().sum(alongAxis: 1).mean()
        let cosine = (s.l2Normalized(alongAxis: 1) * t.l2Normalized(alongAxis: 1)).sum(alongAxis: 1).mean()
        return squared + (1 - cosine)
    }
}
