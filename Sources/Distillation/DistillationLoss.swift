import NeuralNet
import Tensors

/// What a distillation loss sees for one batch.
public struct DistillationBatch {
    /// Student logits [B, C], recorded for backward.
    public var studentLogits: Tensor
    /// The teachers' combined logits [B, C], constants.
    public var teacherLogits: Tensor
    /// Labels where known; for unlabelled examples (a transfer set), the teacher's top class.
    public var labels: [Int]
    /// Which examples carry a real label.
    public var isLabeled: [Bool]
    /// Outputs of the student modules the losses asked for (recorded).
    public var studentFeatures: [String: Tensor]
    /// Outputs of the teacher modules the losses asked for (constants).
    public var teacherFeatures: [String: Tensor]
    /// The examples' positions in the training set (memory-based losses index by them).
    public var indices: [Int]
    /// The current epoch, from 0 (losses with a warm-up use it).
    public var epoch: Int
    /// The batch's inputs as student and teacher saw them (constants; text losses read the
    /// padding mask of a packed token batch from them), or nil.
    public var inputs: Tensor?

    public init(studentLogits: Tensor, teacherLogits: Tensor, labels: [Int], isLabeled: [Bool]? = nil,
                studentFeatures: [String: Tensor] = [:], teacherFeatures: [String: Tensor] = [:], indices: [Int]? = nil, epoch: Int = 0,
                inputs: Tensor? = nil) {
        self.studentLogits = studentLogits
        self.teacherLogits = teacherLogits
        self.labels = labels
        self.isLabeled = isLabeled ?? Array(repeating: true, count: labels.count)
        self.studentFeatures = studentFeatures
        self.teacherFeatures = teacherFeatures
        self.indices = indices ?? Array(0..<labels.count)
        self.epoch = epoch
        self.inputs = inputs
    }
}

/// A distillation objective: a scalar from a batch of student and teacher outputs.
///
/// Losses declare the student and teacher modules whose outputs they need (taps, by dotted
/// name), may own trainable parts (a FitNets regressor, CRD's embedding heads) exposed as a
/// `Module`, and are prepared once with the tapped shapes before training.
public protocol DistillationLoss: AnyObject {
    /// Short name for logs and reports ("kd", "fitnets", ...).
    var name: String { get }
    /// Student modules whose outputs the loss needs.
    var studentTaps: [String] { get }
    /// Teacher modules whose outputs the loss needs.
    var teacherTaps: [String] { get }
    /// Trainable parts, trained with the student; nil when the loss has none.
    var module: (any Module)? { get }
    /// The student module whose output logit losses compare with the teachers' logits (LwF's
    /// old head); nil: the model's output.
    var studentOutput: String? { get }
    /// Called once before training with the per-example shapes of the tapped outputs
    /// (batch axis removed) and the training-set size.
    func prepare(studentShapes: [String: Shape], teacherShapes: [String: Shape], examples: Int,
                 using generator: inout RandomGenerator) throws
    /// The unweighted loss for `batch`.
    func loss(_ batch: DistillationBatch) -> Tensor
}

extension DistillationLoss {
    public var studentTaps: [String] { [] }
    public var teacherTaps: [String] { [] }
    public var module: (any Module)? { nil }
    public var studentOutput: String? { nil }
    public func prepare(studentShapes: [String: Shape], teacherShapes: [String: Shape], examples: Int,
                        using generator: inout RandomGenerator) throws {}
}

/// A loss over (student layer, teacher layer) pairs: its taps are the pairs' two sides.
public protocol LayerPairLoss: DistillationLoss {
    var pairs: [(student: String, teacher: String)] { get }
}

extension LayerPairLoss {
    public var studentTaps: [String] { pairs.map(\.student) }
    public var teacherTaps: [String] { pairs.map(\.teacher) }
}

/// A loss with its weight in the total objective.
public struct WeightedLoss {
    public var weight: Float
    public var loss: any DistillationLoss
    public init(_ loss: any DistillationLoss, weight: Float) {
        self.loss = loss
        self.weight = weight
    }
}

/// A configuration problem found before training starts.
public struct DistillationError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Flattens [B, ...] to [B, D].
func embeddings(_ x: Tensor) -> Tensor { x.rank == 2 ? x : x.flattened() }
