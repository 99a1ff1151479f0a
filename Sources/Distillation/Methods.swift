import NeuralNet
import Tensors

/// The methods by name, with their default weights and the layers they tap in zoo models.
public enum DistillationMethod: String, CaseIterable, Sendable {
    case kd, fitnets, at, rkd, sp, pkt, dkd, crd, embedding

    /// The weight each method's loss gets in the objective when none is given (KD's is α).
    public var defaultWeight: Float {
        switch self {
        case .kd: return 0.9
        case .fitnets: return 100
        case .at: return 1000
        case .rkd: return 1  // the distance (25) and angle (50) weights are inside the loss
        case .sp: return 3000
        case .pkt: return 30000
        case .dkd: return 1  // α = 1, β = 8 are inside the loss
        case .crd: return 0.8
        case .embedding: return 1
        }
    }

    /// Whether the method compares intermediate features (and so needs a teacher model).
    public var usesFeatures: Bool { ![.kd, .dkd, .embedding].contains(self) }
}

/// Which layers feature methods tap in a zoo model.
public struct TapLayers: Equatable, Sendable {
    /// A spatial map in the middle of the network (FitNets hint, AT).
    public var hint: String
    /// Spatial maps for attention transfer, shallow to deep.
    public var attention: [String]
    /// The penultimate representation (RKD, SP, PKT, CRD).
    public var embedding: String

    public init(hint: String, attention: [String], embedding: String) {
        self.hint = hint
        self.attention = attention
        self.embedding = embedding
    }

    /// A zoo model's layers (`defaults(for: model)`) with any named explicitly in their place;
    /// nil when the model has no defaults and none are named (an ONNX teacher, say).
    public static func resolve(model: String?, hint: String?, attention: [String], embedding: String?) -> TapLayers? {
        let base = model.flatMap(defaults(for:))
        guard hint != nil || !attention.isEmpty || embedding != nil else { return base }
        let start = base ?? TapLayers(hint: "", attention: [], embedding: "")
        return TapLayers(hint: hint ?? start.hint, attention: attention.isEmpty ? start.attention : attention, embedding: embedding ?? start.embedding)
    }

    /// Defaults for the zoo's architectures.
    public static func defaults(for model: String) -> TapLayers? {
        switch model {
        case "cnn-teacher": return TapLayers(hint: "features.6", attention: ["features.6", "features.10"], embedding: "classifier.2")
        case "cnn-student": return TapLayers(hint: "features.4", attention: ["features.4", "features.5"], embedding: "classifier.2")
        case "lenet5": return TapLayers(hint: "relu2", attention: ["relu1", "relu2"], embedding: "relu4")
        case "mlp": return TapLayers(hint: "2", attention: [], embedding: "2")
        case "resnet8", "resnet20", "resnet32", "resnet56":
            return TapLayers(hint: "layer2", attention: ["layer1", "layer2", "layer3"], embedding: "avgpool")
        case "wrn-16-2", "wrn-40-2": return TapLayers(hint: "block2", attention: ["block1", "block2", "block3"], embedding: "avgpool")
        case "mobilenetv2": return TapLayers(hint: "features.5", attention: ["features.2", "features.5", "features.7"], embedding: "features.9")
        default: return nil
        }
    }
}

extension DistillationMethod {
    /// The weighted losses of `methods` for a student and a teacher tapped at the given layers,
    /// with KD's weight `alpha` and each other method's default unless `weights` names one.
    /// `teacher` nil (a teacher with no known layers) is an error for feature methods. Returns
    /// the losses and the cross-entropy weight (1 − KD's weight with KD, else 1).
    public static func objective(_ methods: [DistillationMethod], student: TapLayers, teacher: TapLayers?,
                                 temperature: Float = TrainingDefaults.temperature, alpha: Float = TrainingDefaults.alpha,
                                 weights: [DistillationMethod: Float] = [:]) throws -> (losses: [WeightedLoss], crossEntropyWeight: Float) {
        let losses = try methods.map { method -> WeightedLoss in
            guard !method.usesFeatures || teacher != nil else {
                throw DistillationError("\(method.rawValue) compares intermediate features: use a zoo teacher, or name the teacher's layers with --teacher-hint, --teacher-attention and --teacher-embedding")
            }
            let loss = try method.makeLoss(student: student, teacher: teacher ?? student, temperature: temperature)
            return WeightedLoss(loss, weight: weights[method] ?? (method == .kd ? alpha : method.defaultWeight))
        }
        return (losses, methods.contains(.kd) ? 1 - (weights[.kd] ?? alpha) : 1)
    }

    /// The method's loss for a student and teacher tapped at `student` and `teacher` layers.
    public func makeLoss(student: TapLayers, teacher: TapLayers, temperature: Float = 4) throws -> any DistillationLoss {
        switch self {
        case .kd: return KnowledgeDistillation(temperature: temperature)
        case .dkd: return DecoupledKnowledgeDistillation(temperature: temperature)
        case .fitnets: return FitNets(studentLayer: student.hint, teacherLayer: teacher.hint)
        case .at:
            let count = min(student.attention.count, teacher.attention.count)
            guard count > 0 else { throw DistillationError("at: no attention layers to pair for these models") }
            // Pair the deepest layers of each.
            let pairs = zip(student.attention.suffix(count), teacher.attention.suffix(count)).map { (student: $0, teacher: $1) }
            return AttentionTransfer(pairs: pairs)
        case .rkd: return RelationalKnowledgeDistillation(studentLayer: student.embedding, teacherLayer: teacher.embedding)
        case .sp: return SimilarityPreserving(studentLayer: student.embedding, teacherLayer: teacher.embedding)
        case .pkt: return ProbabilisticKnowledgeTransfer(studentLayer: student.embedding, teacherLayer: teacher.embedding)
        case .crd: return ContrastiveRepresentationDistillation(studentLayer: student.embedding, teacherLayer: teacher.embedding)
        case .embedding: return EmbeddingDistillation()
        }
    }
}
