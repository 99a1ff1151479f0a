import Foundation
import NeuralNet
import Tensors
import Training

/// Contrastive representation distillation (Tian, Krishnan & Isola 2020): linear embedding
/// heads map the student's and the teacher's features to unit vectors of `dimension` (128);
/// a memory bank keeps each training example's latest student and teacher embeddings
/// (updated with momentum 0.5 and renormalised). Each student embedding must pick its own
/// example's teacher embedding out of `negatives` (4096) drawn from the teacher bank, and
/// symmetrically each teacher embedding its student embedding:
/// L = CE(s·[t⁺, t⁻₁…t⁻ₖ]/τ, 0) + CE(t·[s⁺, s⁻…]/τ, 0), τ = 0.07, averaged over the batch.
///
/// This is CRD's memory-bank objective with two CPU-minded changes, stated here because they
/// change numbers: the softmax (InfoNCE) form of the contrast, which the authors' code also
/// offers, instead of NCE with an estimated partition constant; and one set of negatives per
/// batch, drawn from examples outside the batch, shared by its anchors (as MoCo's queue is)
/// instead of a set per anchor. Per-anchor sets of 4,096 cost 167 s an epoch here (a
/// [128, 4097, 128] gather each step); shared ones are one [128 × 128] · [128 × 4096] product.
/// Weight 0.8, as in the paper. Training-set indices select the memory rows.
public final class ContrastiveRepresentationDistillation: DistillationLoss {
    public let studentLayer: String, teacherLayer: String
    public let dimension: Int, negatives: Int, temperature: Float, momentum: Float
    public let name = "crd"
    private var heads: Heads?
    /// Negatives are drawn from a generator derived from this seed and the batch (epoch and
    /// indices), so a resumed run draws what an uninterrupted one would.
    private var samplingSeed: UInt64 = 0

    /// The trainable heads and the memory banks (buffers, so checkpoints keep them).
    final class Heads: Module {
        let student: Linear, teacher: Linear
        let studentMemory: Tensor, teacherMemory: Tensor
        let state = ModuleState()
        init(studentFeatures: Int, teacherFeatures: Int, dimension: Int, examples: Int, using g: inout RandomGenerator) {
            student = Linear(studentFeatures, dimension, using: &g)
            teacher = Linear(teacherFeatures, dimension, using: &g)
            // Random unit vectors to start, as the reference implementation does.
            studentMemory = Tensor.randomNormal([examples, dimension], using: &g).l2Normalized(alongAxis: 1)
            teacherMemory = Tensor.randomNormal([examples, dimension], using: &g).l2Normalized(alongAxis: 1)
        }
        func forward(_ input: Tensor) -> Tensor { input }
        var children: [(name: String, module: any Module)] { [("embed_s", student), ("embed_t", teacher)] }
        var localBuffers: [(name: String, tensor: Tensor)] { [("memory_s", studentMemory), ("memory_t", teacherMemory)] }
    }

    public init(studentLayer: String, teacherLayer: String, dimension: Int = 128, negatives: Int = 4096,
                temperature: Float = 0.07, momentum: Float = 0.5) {
        require(dimension > 0 && negatives > 0 && temperature > 0 && momentum >= 0 && momentum < 1,
                "ContrastiveRepresentationDistillation: dimension and negatives must be positive, temperature positive, momentum in [0, 1)")
        self.studentLayer = studentLayer
        self.teacherLayer = teacherLayer
        self.dimension = dimension
        self.negatives = negatives
        self.temperature = temperature
        self.momentum = momentum
    }

    public var studentTaps: [String] { [studentLayer] }
    public var teacherTaps: [String] { [teacherLayer] }
    public var module: (any Module)? { heads }

    public func prepare(studentShapes: [String: Shape], teacherShapes: [String: Shape], examples: Int,
                        using generator: inout RandomGenerator) throws {
        guard examples >= 2 else { throw DistillationError("crd: needs at least 2 training examples") }
        heads = Heads(studentFeatures: studentShapes[studentLayer]!.count, teacherFeatures: teacherShapes[teacherLayer]!.count,
                      dimension: dimension, examples: examples, using: &generator)
        samplingSeed = generator.next()
    }

    /// The contrastive loss for anchors [B, d]: each against its own row of `memory` (the
    /// positive) and the shared `negativeRows`; softmax cross-entropy with the positive first.
    public static func contrast(anchors: Tensor, memory: Tensor, indices: [Int], negativeRows: [Int], temperature: Float) -> Tensor {
        let positives = withoutGradients { memory.indexSelect(alongAxis: 0, indices: indices) }       // [B, d]
        let negatives = withoutGradients { memory.indexSelect(alongAxis: 0, indices: negativeRows) }  // [K, d]
        let positive = (anchors * positives).sum(alongAxis: 1, keepDims: true)                        // [B, 1]
        let negative = Tensor.linear(anchors, weight: negatives, bias: nil)                           // [B, K]
        let logits = Tensor.concatenating([positive, negative], alongAxis: 1) / temperature
        return Tensor.crossEntropy(logits: logits, labels: Array(repeating: 0, count: indices.count))
    }

    public func loss(_ batch: DistillationBatch) -> Tensor {
        guard let heads else { requirementFailed("crd: loss used before prepare()") }
        let s = heads.student(embeddings(batch.studentFeatures[studentLayer]!)).l2Normalized(alongAxis: 1)
        let t = heads.teacher(embeddings(batch.teacherFeatures[teacherLayer]!)).l2Normalized(alongAxis: 1)
        let examples = heads.studentMemory.shape[0]
        let inBatch = Set(batch.indices)
        let k = min(negatives, examples - inBatch.count)
        var negativeRows: [Int] = []
        negativeRows.reserveCapacity(k)
        var generator = RandomGenerator(seed: samplingSeed)
            .derived(UInt64(batch.epoch) << 40 ^ UInt64(batch.indices.first ?? 0) << 20 ^ UInt64(batch.indices.count))
        while negativeRows.count < k {
            // Uniform over the examples outside the batch (with replacement).
            let r = Int(generator.next() % UInt64(examples))
            if !inBatch.contains(r) { negativeRows.append(r) }
        }
        let loss = Self.contrast(anchors: s, memory: heads.teacherMemory, indices: batch.indices, negativeRows: negativeRows, temperature: temperature)
            + Self.contrast(anchors: t, memory: heads.studentMemory, indices: batch.indices, negativeRows: negativeRows, temperature: temperature)
        withoutGradients {
            update(heads.studentMemory, rows: batch.indices, with: s)
            update(heads.teacherMemory, rows: batch.indices, with: t)
        }
        return loss
    }

    /// memory[i] ← normalize(m·memory[i] + (1 − m)·e).
    private func update(_ memory: Tensor, rows: [Int], with values: Tensor) {
        let d = dimension, m = momentum
        memory.withUnsafeMutableBufferPointer { bank in
            values.withUnsafeBufferPointer { v in
                for (r, index) in rows.enumerated() {
                    var squares: Float = 0
                    for j in 0..<d {
                        let x = m * bank[index * d + j] + (1 - m) * v[r * d + j]
                        bank[index * d + j] = x
                        squares += x * x
                    }
                    let scale = 1 / max(squares.squareRoot(), 1e-12)
                    for j in 0..<d { bank[index * d + j] *= scale }
                }
            }
        }
    }
}
