import Datasets
import Foundation
import NeuralNet
import Tensors

extension Module {
    /// The model's output row for every text of `data` (a text dataset), in the data's order:
    /// texts of similar lengths run together in batches of `batchSize`, each padded to its
    /// longest text only, in evaluation mode, recording nothing. Throws when `data` holds no
    /// texts or none at all, and, for a `SentenceEmbedder`, for a batch it cannot read. With
    /// `output`, the rows are that submodule's outputs (one head of a multi-head model).
    public func embeddings(ofTexts data: Dataset, batchSize: Int = 32, output: String? = nil) throws -> Tensor {
        guard let lengths = data.sequenceLengths else { throw DistillationError("the data are not texts") }
        guard !lengths.isEmpty else { throw DistillationError("there are no texts to embed") }
        let order = lengths.indices.sorted { (lengths[$0], $0) < (lengths[$1], $1) }
        var rows: [Float] = []
        var width = 0
        for start in stride(from: 0, to: order.count, by: max(batchSize, 1)) {
            let indices = Array(order[start..<min(start + max(batchSize, 1), order.count)])
            let inputs = try data.batch(indices)
            // A text model's own entry point throws for what it cannot read (ids, lengths); `forward` would trap.
            let outputs = try output.map { try predictions(inputs, output: $0, batchSize: indices.count) }
                ?? (self as? any SentenceEmbedder).map { try $0.predictions(TokenBatch(packed: inputs)) }
                ?? predictions(inputs, batchSize: indices.count)
            guard outputs.rank == 2 else { throw DistillationError("the model gives outputs \(outputs.shape) for texts, not one vector each") }
            if rows.isEmpty {
                width = outputs.shape[1]
                rows = [Float](repeating: 0, count: lengths.count * width)
            }
            let values = outputs.scalars
            for (row, index) in indices.enumerated() {
                rows.replaceSubrange((index * width)..<((index + 1) * width), with: values[(row * width)..<((row + 1) * width)])
            }
        }
        return Tensor(rows, shape: [lengths.count, width])
    }
}

/// How closely a student's text embeddings follow a teacher's on the same texts: the mean
/// cosine between each text's two embeddings, and the Spearman rank correlation between the
/// cosine similarities of random pairs of texts under each (what matters for search and
/// clustering: that the student ranks pairs as the teacher does).
public struct EmbeddingAgreement: Codable, Equatable, Sendable {
    /// Texts compared.
    public var texts: Int
    /// Mean over texts of cos(student, teacher).
    public var meanCosine: Double
    /// Random pairs of distinct texts whose similarities are compared.
    public var pairs: Int
    /// Spearman correlation of cos(sᵢ, sⱼ) with cos(tᵢ, tⱼ) over the pairs.
    public var similaritySpearman: Double

    /// `student` and `teacher`: [texts, dimension] each (the dimensions may differ: only the
    /// mean cosine needs them equal, and is NaN otherwise); `pairs` drawn with `seed`.
    public init(student: Tensor, teacher: Tensor, pairs: Int = 10_000, seed: UInt64 = 0) throws {
        guard student.rank == 2, teacher.rank == 2, student.shape[0] == teacher.shape[0] else {
            throw DistillationError("embeddings \(student.shape) and \(teacher.shape) are not one row per text each")
        }
        let count = student.shape[0]
        guard count >= 2 else { throw DistillationError("comparing embeddings needs at least 2 texts, got \(count)") }
        let s = Self.unitRows(student), t = Self.unitRows(teacher)
        let (ds, dt) = (student.shape[1], teacher.shape[1])
        texts = count
        if ds == dt {
            var sum = 0.0
            for i in 0..<count { sum += Self.dot(s, i, s: ds, t, i) }
            meanCosine = sum / Double(count)
        } else {
            meanCosine = .nan
        }
        var generator = RandomGenerator(seed: seed ^ 0x5EA2)
        var a: [Double] = [], b: [Double] = []
        a.reserveCapacity(pairs)
        b.reserveCapacity(pairs)
        for _ in 0..<max(pairs, 1) {
            let i = Int(generator.next() % UInt64(count))
            var j = Int(generator.next() % UInt64(count - 1))
            if j >= i { j += 1 }
            a.append(Self.dot(s, i, s: ds, s, j))
            b.append(Self.dot(t, i, s: dt, t, j))
        }
        self.pairs = a.count
        similaritySpearman = Self.spearman(a, b)
    }

    static func unitRows(_ x: Tensor) -> [Float] {
        let width = x.shape[1]
        var values = x.scalars
        for row in 0..<x.shape[0] {
            let range = (row * width)..<((row + 1) * width)
            let norm = values[range].reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
            if norm > 0 { for k in range { values[k] /= norm } }
        }
        return values
    }

    static func dot(_ x: [Float], _ i: Int, s width: Int, _ y: [Float], _ j: Int) -> Double {
        var sum = 0.0
        for k in 0..<width { sum += Double(x[i * width + k]) * Double(y[j * width + k]) }
        return sum
    }

    /// Spearman's ρ: Pearson's correlation of the ranks (ties get their mean rank).
    public static func spearman(_ a: [Double], _ b: [Double]) -> Double {
        pearson(ranks(a), ranks(b))
    }

    static func ranks(_ values: [Double]) -> [Double] {
        let order = values.indices.sorted { values[$0] < values[$1] }
        var result = [Double](repeating: 0, count: values.count)
        var start = 0
        while start < order.count {
            var end = start
            while end + 1 < order.count && values[order[end + 1]] == values[order[start]] { end += 1 }
            let rank = Double(start + end) / 2 + 1
            for k in start...end { result[order[k]] = rank }
            start = end + 1
        }
        return result
    }

    static func pearson(_ a: [Double], _ b: [Double]) -> Double {
        let n = Double(a.count)
        let ma = a.reduce(0, +) / n, mb = b.reduce(0, +) / n
        var cov = 0.0, va = 0.0, vb = 0.0
        for (x, y) in zip(a, b) {
            cov += (x - ma) * (y - mb)
            va += (x - ma) * (x - ma)
            vb += (y - mb) * (y - mb)
        }
        return va > 0 && vb > 0 ? cov / (va * vb).squareRoot() : 0
    }
}
