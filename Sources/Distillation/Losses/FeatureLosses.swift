import Foundation
import NeuralNet
import Tensors
import Training

/// FitNets hints (Romero et al. 2015): the student's hint layer, through a learned regressor,
/// should reproduce the teacher's guided layer: mean squared error between regressor(s) and t.
/// The regressor is a 1×1 convolution (or a linear map for flat features) when the channel
/// counts differ, the identity when they agree; when the spatial sizes differ the teacher's map
/// is average-pooled to the student's size. Weight in the objective: 100, as mdistiller uses.
public final class FitNets: DistillationLoss {
    public let studentLayer: String, teacherLayer: String
    public let name = "fitnets"
    private var regressor: (any Module)?
    private var poolTeacherTo: (Int, Int)?

    public init(studentLayer: String, teacherLayer: String) {
        self.studentLayer = studentLayer
        self.teacherLayer = teacherLayer
    }

    public var studentTaps: [String] { [studentLayer] }
    public var teacherTaps: [String] { [teacherLayer] }
    public var module: (any Module)? { regressor }

    public func prepare(studentShapes: [String: Shape], teacherShapes: [String: Shape], examples: Int,
                        using generator: inout RandomGenerator) throws {
        let s = studentShapes[studentLayer]!, t = teacherShapes[teacherLayer]!
        guard s.rank == t.rank, s.rank == 3 || s.rank == 1 else {
            throw DistillationError("fitnets: student layer '\(studentLayer)' \(s) and teacher layer '\(teacherLayer)' \(t) must both be [C, H, W] or both flat")
        }
        if s.rank == 3 {
            guard t[1] >= s[1], t[2] >= s[2], t[1] % s[1] == 0, t[2] % s[2] == 0 else {
                throw DistillationError("fitnets: teacher map \(t) cannot be pooled to the student's \(s) (sizes must divide)")
            }
            if t[1] != s[1] || t[2] != s[2] { poolTeacherTo = (s[1], s[2]) }
            regressor = s[0] == t[0] ? nil : Sequential(named: [("conv", Conv2d(s[0], t[0], kernelSize: 1, using: &generator))])
        } else {
            regressor = s[0] == t[0] ? nil : Sequential(named: [("linear", Linear(s[0], t[0], using: &generator))])
        }
    }

    public func loss(_ batch: DistillationBatch) -> Tensor {
        let s = batch.studentFeatures[studentLayer]!
        var t = batch.teacherFeatures[teacherLayer]!
        if let size = poolTeacherTo { t = withoutGradients { Tensor.adaptiveAvgPool2d(t, outputSize: size) } }
        return Tensor.meanSquaredError(regressor.map { $0(s) } ?? s, t)
    }
}

/// Attention transfer (Zagoruyko & Komodakis 2017): for each (student, teacher) layer pair the
/// spatial attention map Q = normalize(mean over channels of F²), flattened; the loss is the
/// mean of (Q_s − Q_t)² summed over pairs. Weight β = 1000. Paired maps must have the same
/// spatial size (channel counts may differ).
public final class AttentionTransfer: LayerPairLoss {
    public let pairs: [(student: String, teacher: String)]
    public let name = "at"

    public init(pairs: [(student: String, teacher: String)]) {
        require(!pairs.isEmpty, "AttentionTransfer: needs at least one layer pair")
        self.pairs = pairs
    }


    public func prepare(studentShapes: [String: Shape], teacherShapes: [String: Shape], examples: Int,
                        using generator: inout RandomGenerator) throws {
        for (s, t) in pairs {
            let a = studentShapes[s]!, b = teacherShapes[t]!
            guard a.rank == 3, b.rank == 3, a[1] == b[1], a[2] == b[2] else {
                throw DistillationError("at: student '\(s)' \(a) and teacher '\(t)' \(b) need feature maps of the same height and width")
            }
        }
    }

    static func attention(_ f: Tensor) -> Tensor {
        f.squared().mean(alongAxis: 1).flattened().l2Normalized(alongAxis: 1)
    }

    public func loss(_ batch: DistillationBatch) -> Tensor {
        pairs.map { s, t in
            let qs = Self.attention(batch.studentFeatures[s]!)
            let qt = withoutGradients { Self.attention(batch.teacherFeatures[t]!) }
            return (qs - qt).squared().mean()
        }.reduce(Tensor(scalar: 0), +)
    }
}

/// Relational knowledge distillation (Park et al. 2019) on embeddings (flattened outputs of one
/// student and one teacher layer): distance-wise — pairwise Euclidean distances divided by their
/// mean over distinct pairs, compared by smooth L1 — and angle-wise — cosines of the angles in
/// every triplet, compared by smooth L1. Loss = distanceWeight·L_D + angleWeight·L_A with the
/// paper's 25 and 50, so the objective weight is 1.
public final class RelationalKnowledgeDistillation: DistillationLoss {
    public let studentLayer: String, teacherLayer: String
    public let distanceWeight: Float, angleWeight: Float
    public let name = "rkd"

    public init(studentLayer: String, teacherLayer: String, distanceWeight: Float = 25, angleWeight: Float = 50) {
        self.studentLayer = studentLayer
        self.teacherLayer = teacherLayer
        self.distanceWeight = distanceWeight
        self.angleWeight = angleWeight
    }

    public var studentTaps: [String] { [studentLayer] }
    public var teacherTaps: [String] { [teacherLayer] }

    /// Cosines of all triplet angles: [B·B·B].
    static func angles(_ e: Tensor) -> Tensor {
        let differences = (e.unsqueezed(axis: 0) - e.unsqueezed(axis: 1)).l2Normalized(alongAxis: 2)  // [B, B, D]
        return differences.matmul(differences.transposed()).flattened(startAxis: 0)
    }

    public func loss(_ batch: DistillationBatch) -> Tensor {
        let s = embeddings(batch.studentFeatures[studentLayer]!)
        let t = embeddings(batch.teacherFeatures[teacherLayer]!)
        func normalized(_ e: Tensor) -> Tensor {
            let d = Tensor.pairwiseDistances(e, e)
            let n = Float(e.shape[0])
            return d / (d.sum() / (n * (n - 1))).maximum(Tensor(scalar: 1e-12))
        }
        let distance = Tensor.smoothL1(normalized(s), withoutGradients { normalized(t) })
        let angle = Tensor.smoothL1(Self.angles(s), withoutGradients { Self.angles(t) })
        return distance * distanceWeight + angle * angleWeight
    }
}

/// Similarity-preserving distillation (Tung & Mori 2019): the batch similarity matrices
/// G = F·Fᵀ of flattened features, each row L2-normalised, should agree:
/// ‖G_s − G_t‖²_F / B². Weight 3000.
public final class SimilarityPreserving: DistillationLoss {
    public let studentLayer: String, teacherLayer: String
    public let name = "sp"

    public init(studentLayer: String, teacherLayer: String) {
        self.studentLayer = studentLayer
        self.teacherLayer = teacherLayer
    }

    public var studentTaps: [String] { [studentLayer] }
    public var teacherTaps: [String] { [teacherLayer] }

    static func similarity(_ f: Tensor) -> Tensor {
        let e = embeddings(f)
        return e.matmul(e.transposed()).l2Normalized(alongAxis: 1)
    }

    public func loss(_ batch: DistillationBatch) -> Tensor {
        let gs = Self.similarity(batch.studentFeatures[studentLayer]!)
        let gt = withoutGradients { Self.similarity(batch.teacherFeatures[teacherLayer]!) }
        let b = Float(gs.shape[0])
        return (gs - gt).squared().sum() / (b * b)
    }
}

/// Probabilistic knowledge transfer (Passalis & Tefas 2018): cosine similarities between the
/// batch's embeddings, mapped to [0, 1] and normalised per row into conditional probabilities,
/// compared by KL divergence, averaged over all pairs: mean(t·log((t + ε)/(s + ε))), ε = 1e-7.
/// Weight 30000, as in the CRD benchmark.
public final class ProbabilisticKnowledgeTransfer: DistillationLoss {
    public let studentLayer: String, teacherLayer: String
    public let name = "pkt"

    public init(studentLayer: String, teacherLayer: String) {
        self.studentLayer = studentLayer
        self.teacherLayer = teacherLayer
    }

    public var studentTaps: [String] { [studentLayer] }
    public var teacherTaps: [String] { [teacherLayer] }

    static func conditional(_ f: Tensor) -> Tensor {
        let e = embeddings(f)
        let normalized = e / (e.norm(alongAxes: [1], keepDims: true) + 1e-7)
        let similarity = (normalized.matmul(normalized.transposed()) + 1) / 2
        return similarity / similarity.sum(alongAxis: 1, keepDims: true)
    }

    public func loss(_ batch: DistillationBatch) -> Tensor {
        let s = Self.conditional(batch.studentFeatures[studentLayer]!)
        let t = withoutGradients { Self.conditional(batch.teacherFeatures[teacherLayer]!) }
        return (t * ((t + 1e-7).log() - (s + 1e-7).log())).mean()
    }
}
