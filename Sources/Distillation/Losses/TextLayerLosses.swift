import Foundation
import NeuralNet
import Tensors

// Layer-to-layer transfer between text encoders (a student and a teacher holding
// `TransformerEncoder`s, fed the same packed token batch): TinyBERT's hidden-state loss and
// MiniLM's attention-distribution loss, over the tokens the padding mask keeps. Pairs of
// layers come from `TextLayerMap`.

/// The token mask [batch, length] of a packed token batch [batch, 3, length] (its second
/// row); nil for other inputs, where every position counts.
func tokenMask(_ inputs: Tensor?) -> Tensor? {
    guard let inputs, inputs.rank == 3, inputs.shape[1] == 3 else { return nil }
    return withoutGradients { inputs.sliced(alongAxis: 1, 1..<2).squeezed(axis: 1) }
}

/// Hidden-state transfer (TinyBERT, Jiao et al. 2020): for each (student layer, teacher
/// layer) pair the mean squared error between the student layer's output, through a learned
/// linear map W·h + b when the hidden sizes differ (one map shared by the pairs, as TinyBERT's
/// W_h), and the teacher layer's output, over the tokens the mask keeps:
/// Σ_pairs Σ_{b, real t} ‖W·s_bt + b − t_bt‖² / (real tokens · teacher hidden size).
/// Padded positions add nothing. Taps: layer outputs [batch, length, hidden].
public final class HiddenStateTransfer: LayerPairLoss {
    public let pairs: [(student: String, teacher: String)]
    public let name = "hidden"
    private var projection: Linear?

    public init(pairs: [(student: String, teacher: String)]) {
        require(!pairs.isEmpty, "HiddenStateTransfer: needs at least one layer pair")
        self.pairs = pairs
    }

    public var module: (any Module)? { projection.map { Sequential(named: [("projection", $0)]) } }

    public func prepare(studentShapes: [String: Shape], teacherShapes: [String: Shape], examples: Int,
                        using generator: inout RandomGenerator) throws {
        var widths: (Int, Int)?
        for (s, t) in pairs {
            let a = studentShapes[s]!, b = teacherShapes[t]!
            guard a.rank == 2, b.rank == 2, a[0] == b[0] else {
                throw DistillationError("hidden: student layer '\(s)' gives \(a) and teacher layer '\(t)' \(b) per text; both must be [tokens, hidden] of one length")
            }
            if let (ws, wt) = widths, ws != a[1] || wt != b[1] {
                throw DistillationError("hidden: the paired layers have hidden sizes \(ws) and \(a[1]) (student), \(wt) and \(b[1]) (teacher); one projection needs one size each")
            }
            widths = (a[1], b[1])
        }
        if let (s, t) = widths, s != t { projection = Linear(s, t, using: &generator) }
    }

    public func loss(_ batch: DistillationBatch) -> Tensor {
        let mask = tokenMask(batch.inputs)
        return pairs.map { s, t in
            let student = batch.studentFeatures[s]!, teacher = batch.teacherFeatures[t]!
            let squared = ((projection.map { $0(student) } ?? student) - teacher).squared().sum(alongAxis: 2)  // [batch, length]
            let width = Float(teacher.shape[2])
            guard let mask else { return squared.mean() * (1 / width) }
            let tokens = max(mask.sum().item, 1)
            return (squared * mask).sum() * (1 / (tokens * width))
        }.reduce(Tensor(scalar: 0), +)
    }
}

/// Attention-distribution transfer (MiniLM, Wang et al. 2020): for each (student layer, teacher
/// layer) pair, KL(teacher ‖ student) between their attention distributions over the keys,
/// per head and per query, averaged over the heads and the queries the mask keeps:
/// Σ_pairs Σ_{b, h, real q} Σ_k A^t_bhqk (log A^t_bhqk − log A^s_bhqk) / (real queries · heads).
/// Padded keys have probability exactly 0 in both and add nothing; probabilities are clamped
/// at 1e-20 inside the logarithms, so an underflowed one gives a large finite term. Needs
/// equal head counts. Taps: attention probabilities [batch, heads, length, length].
public final class AttentionDistributionTransfer: LayerPairLoss {
    public let pairs: [(student: String, teacher: String)]
    public let name = "attention"
    static let floor: Float = 1e-20

    public init(pairs: [(student: String, teacher: String)]) {
        require(!pairs.isEmpty, "AttentionDistributionTransfer: needs at least one layer pair")
        self.pairs = pairs
    }


    public func prepare(studentShapes: [String: Shape], teacherShapes: [String: Shape], examples: Int,
                        using generator: inout RandomGenerator) throws {
        for (s, t) in pairs {
            let a = studentShapes[s]!, b = teacherShapes[t]!
            guard a.rank == 3, b.rank == 3, a[1] == b[1], a[2] == b[2] else {
                throw DistillationError("attention: student layer '\(s)' gives \(a) and teacher layer '\(t)' \(b) per text; both must be [heads, tokens, tokens] of one length")
            }
            guard a[0] == b[0] else {
                throw DistillationError("attention: the student has \(a[0]) attention heads and the teacher \(b[0]): attention-distribution transfer compares head by head and needs equal counts")
            }
        }
    }

    public func loss(_ batch: DistillationBatch) -> Tensor {
        let mask = tokenMask(batch.inputs)
        return pairs.map { s, t in
            let student = batch.studentFeatures[s]!, teacher = batch.teacherFeatures[t]!
            let logTeacher = withoutGradients { teacher.clamped(min: Self.floor).log() }
            let divergence = (teacher * (logTeacher - student.clamped(min: Self.floor).log())).sum(alongAxis: 3)  // [batch, heads, queries]
            let heads = Float(teacher.shape[1])
            guard let mask else { return divergence.mean() }
            let queries = max(mask.sum().item, 1)
            return (divergence * mask.unsqueezed(axis: 1)).sum() * (1 / (queries * heads))
        }.reduce(Tensor(scalar: 0), +)
    }
}

/// Which teacher layer each student layer learns from.
public enum TextLayerMap {
    /// Student layer i (from 0) ↔ teacher layer (i + 1)·teacher ÷ student − 1 (rounded down,
    /// at least 0): the last student layer learns from the last teacher layer. TinyBERT's
    /// uniform mapping g(m) = m·N/M (layers counted from 1); 3 of 6 gives 1, 3, 5.
    public static func uniform(student: Int, teacher: Int) -> [(student: Int, teacher: Int)] {
        (0..<student).map { ($0, max((($0 + 1) * teacher) / max(student, 1) - 1, 0)) }
    }

    /// A map written `S:T,S:T,...` (student layer S learns from teacher layer T, both from 0;
    /// some student layers may be left out, none given twice), checked against the layer
    /// counts when given; errors are one line naming the item.
    public static func parse(_ text: String, student: Int? = nil, teacher: Int? = nil) throws -> [(student: Int, teacher: Int)] {
        var pairs: [(student: Int, teacher: Int)] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false).map({ $0.trimmingCharacters(in: .whitespaces) }) {
            let parts = item.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let s = Int(parts[0]), let t = Int(parts[1]), s >= 0, t >= 0 else {
                throw DistillationError("layer map item '\(item)' is not STUDENT:TEACHER with layer numbers from 0 (as in 0:1,1:3,2:5)")
            }
            if let student, s >= student {
                throw DistillationError("layer map item '\(item)': the student has \(student) layer\(student == 1 ? "" : "s") (0 to \(student - 1))")
            }
            if let teacher, t >= teacher {
                throw DistillationError("layer map item '\(item)': the teacher has \(teacher) layer\(teacher == 1 ? "" : "s") (0 to \(teacher - 1))")
            }
            guard !pairs.contains(where: { $0.student == s }) else {
                throw DistillationError("layer map item '\(item)': student layer \(s) is mapped twice")
            }
            pairs.append((s, t))
        }
        return pairs
    }
}

/// Hidden-state and attention transfer between two text encoders.
public enum TextLayerTransfer {
    /// The losses whose weight is above 0, for the layer `pairs` (from `TextLayerMap.parse`;
    /// nil: `TextLayerMap.uniform`), and the pairs. Throws when either model has no encoder
    /// layers, a pair is out of range, or attention is asked for with unequal head counts.
    public static func losses(student: any Module, teacher: any Module, pairs given: [(student: Int, teacher: Int)]?,
                              hiddenWeight: Float, attentionWeight: Float) throws -> (losses: [WeightedLoss], pairs: [(student: Int, teacher: Int)]) {
        guard let s = EncoderLayerTaps(student) else {
            throw DistillationError("the student has no encoder layers: hidden-state and attention transfer take a text-transformer student")
        }
        guard let t = EncoderLayerTaps(teacher) else {
            throw DistillationError("the teacher has no encoder layers: hidden-state and attention transfer need a BERT teacher or a text-transformer run")
        }
        let pairs = given ?? TextLayerMap.uniform(student: s.layers, teacher: t.layers)
        guard !pairs.isEmpty, pairs.allSatisfy({ (0..<s.layers).contains($0.student) && (0..<t.layers).contains($0.teacher) }) else {
            throw DistillationError("the layer pairs \(pairs.map { "\($0.student):\($0.teacher)" }.joined(separator: ",")) do not fit \(s.layers) student and \(t.layers) teacher layers")
        }
        if attentionWeight > 0 && s.heads != t.heads {
            throw DistillationError("attention transfer compares head by head: the student has \(s.heads) attention heads and the teacher \(t.heads); give --heads \(t.heads) (dividing --hidden) or no attention weight")
        }
        var losses: [WeightedLoss] = []
        if hiddenWeight > 0 {
            losses.append(WeightedLoss(HiddenStateTransfer(pairs: pairs.map { (s.hiddenStates[$0.student], t.hiddenStates[$0.teacher]) }), weight: hiddenWeight))
        }
        if attentionWeight > 0 {
            losses.append(WeightedLoss(AttentionDistributionTransfer(pairs: pairs.map { (s.attention[$0.student], t.attention[$0.teacher]) }), weight: attentionWeight))
        }
        return (losses, pairs)
    }
}
