import Datasets
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import Training

/// A model trained on an old task, re-headed for a new one: a shared backbone that gives
/// features [B, in], the old classifier head (kept, so the old task can still be measured and
/// forgetting is visible) and a new head sized for the new classes. Calling the model gives the
/// new task's logits [B, new classes]; every head runs on each call, so `old_head` can be
/// tapped (LwF, joint training, evaluation). Parameter names: `backbone.*`, `old_head.*`,
/// `new_head.*`.
///
/// A zoo model is re-headed by swapping its classifier `Linear` for `Identity`
/// (`init(from:headPath:newClasses:using:)`); an imported ONNX graph by cutting it at its
/// classifier node (`init(from:head:newClasses:using:)` for an `ONNXNetwork`); any other
/// model by giving the backbone and the old head directly.
public final class MultiHeadModel: Module {
    public let backbone: any Module
    /// Heads by task, in order ("old", "new").
    public let heads: [(task: String, head: Linear)]
    public let state = ModuleState()

    /// A model of `backbone`, whose output the old head `oldHead` reads, and a fresh `Linear`
    /// from the same features to `newClasses` outputs.
    public init(backbone: any Module, oldHead: Linear, newClasses: Int, using generator: inout RandomGenerator) throws {
        guard newClasses >= 1 else { throw ModuleError.invalidOption("the new task needs at least one class, got \(newClasses)") }
        self.backbone = backbone
        heads = [("old", oldHead), ("new", Linear(oldHead.inFeatures, newClasses, using: &generator))]
    }

    /// Re-heads `model`: the `Linear` at `headPath` (a child of a `ChildReplacing` module: a
    /// `Sequential`, or a zoo ResNet's `fc`) becomes the
    /// "old" head and a fresh `Linear` for `newClasses` the "new" one. An `ONNXNetwork` is
    /// re-headed at the classifier node `headPath` names (see `init(from:head:newClasses:using:)`).
    public convenience init(from model: any Module, headPath: String, newClasses: Int, using generator: inout RandomGenerator) throws {
        if let network = model as? ONNXNetwork {
            try self.init(from: network, head: headPath, newClasses: newClasses, using: &generator)
            return
        }
        guard newClasses >= 1 else { throw ModuleError.invalidOption("the new task needs at least one class, got \(newClasses)") }
        guard let old = model.module(named: headPath) else {
            throw ModuleError.noSuchModule(headPath, available: model.namedModules().map(\.name).filter { !$0.isEmpty })
        }
        guard let oldHead = old as? Linear else {
            throw ModuleError.invalidOption("head '\(headPath)' is a \(type(of: old)), not a Linear layer")
        }
        let parts = headPath.split(separator: ".")
        let parentPath = parts.dropLast().joined(separator: ".")
        guard let parent = model.module(named: parentPath) as? any ChildReplacing else {
            throw ModuleError.invalidOption("head '\(headPath)' sits in a \(type(of: model.module(named: parentPath)!)), whose children cannot be replaced (a Sequential's or a zoo classifier's can)")
        }
        try parent.replace(String(parts.last!), with: Identity())
        try self.init(backbone: model, oldHead: oldHead, newClasses: newClasses, using: &generator)
    }

    /// A sentence encoder re-headed for a new task: `encoder` (giving embeddings [B,
    /// `dimension`]) is the backbone, the "old" head the identity map of the embedding (an
    /// encoder's old task is its embedding itself: `TransferConfiguration.OldOutput.embedding`
    /// keeps this head frozen, so its output is the encoder's), and a fresh `Linear` from the
    /// embedding to `newClasses` outputs the "new" one.
    public convenience init(encoder: any Module, dimension: Int, newClasses: Int, using generator: inout RandomGenerator) throws {
        guard dimension >= 1 else { throw ModuleError.invalidOption("the encoder's embedding needs at least one value, got \(dimension)") }
        var identity = [Float](repeating: 0, count: dimension * dimension)
        for i in 0..<dimension { identity[i * dimension + i] = 1 }
        try self.init(backbone: encoder, oldHead: Linear(weight: Tensor(identity, shape: [dimension, dimension]), bias: Tensor.zeros([dimension])),
                      newClasses: newClasses, using: &generator)
    }

    public func forward(_ input: Tensor) -> Tensor {
        let features = backbone(input)
        return heads.map { $0.head(features) }.last!
    }

    public func head(_ task: String) -> Linear { heads.first { $0.task == task }!.head }

    public var children: [(name: String, module: any Module)] {
        [("backbone", backbone)] + heads.map { ("\($0.task)_head", $0.head as any Module) }
    }
}

/// How to start the new task from the old model.
public enum TransferStrategy: String, CaseIterable, Sendable {
    /// A fresh model of the same architecture trained on the new task alone (the baseline).
    case scratch
    /// Feature extraction: the backbone is frozen (batch-norm statistics included); only the new head trains.
    case freeze
    /// Fine-tuning: everything but the old head trains, the backbone at `backboneLearningRateScale` times the head's rate.
    case finetune
    /// Gradual unfreezing (Howard & Ruder 2018): the head first, then one more backbone group
    /// (from the top down) at each of `groups` equal stages of training.
    case gradual
    /// Learning without Forgetting (Li & Hoiem 2016): the old model's outputs on the new-task
    /// images (computed once, before training) are soft targets for the old head: a
    /// `KnowledgeDistillation` term at T = 2, weight λ = 1, while the new head learns.
    case lwf
    /// Joint training: old and new data together, one backbone, a head per task, summed losses.
    case joint
}

/// Settings of a transfer run: the strategy and its own knobs; the rest is the `Trainer`'s.
public struct TransferConfiguration {
    public var strategy: TransferStrategy
    /// Backbone (and old head) learning rate relative to the new head's.
    public var backboneLearningRateScale: Float = 0.1
    /// Backbone groups unfrozen one at a time in gradual unfreezing.
    public var groups = 3
    /// LwF's temperature and weight.
    public var lwfTemperature: Float = 2
    public var lwfWeight: Float = 1
    /// Weight of the old task's loss in joint training.
    public var jointOldWeight: Float = 1
    /// What the old model gives: class logits (a classifier), or an embedding (a sentence
    /// encoder re-headed by `MultiHeadModel(encoder:dimension:newClasses:using:)`).
    public enum OldOutput: Sendable { case logits, embedding }
    /// For `.embedding` the old head (the identity) stays frozen in every strategy, and LwF's
    /// term is `EmbeddingDistillation` (squared distance plus cosine distance) between the old
    /// head's output and the original encoder's embedding, in place of KD: an encoder has no
    /// classes whose distribution a temperature could soften, and its embedding is what
    /// search and clustering use. Joint training needs old labelled data, which an encoder has not.
    public var oldOutput = OldOutput.logits
    /// Backbone layers kept frozen in every strategy but scratch (gradual unfreezing never
    /// thaws them): prefixes of backbone parameter names, as `Module.freeze` takes them (a
    /// zoo model's module paths such as `features.0`; for an imported graph, the parameter
    /// names `ONNXNetwork.parameterNames(readBy:)` gives for node names).
    public var frozenLayers: [String] = []

    public init(strategy: TransferStrategy) { self.strategy = strategy }
}

/// Knowledge transfer from an old model to a new task, as configurations of the `Trainer`.
public enum KnowledgeTransfer {
    /// The trainer that trains `model` (already re-headed) on the new task with the strategy:
    /// frozen modules, learning-rate scales, and for LwF the old model (`oldModel`, unchanged)
    /// as a teacher of the old head, for joint training the old task's data (`oldTask`).
    /// `training` gives steps, batch size, the head's learning rate, seed and run folder.
    /// With `oldOutputs` (the old model's outputs on the training examples, in their order,
    /// computed once by the caller) LwF's teacher is those outputs instead of `oldModel` run here.
    public static func trainer(_ model: MultiHeadModel, strategy c: TransferConfiguration, training: TrainerConfiguration,
                               oldModel: (any Module)? = nil, oldTask: Dataset? = nil, oldOutputs: Tensor? = nil) throws -> Trainer {
        guard c.backboneLearningRateScale >= 0 && c.backboneLearningRateScale.isFinite else {
            throw DistillationError("the backbone learning-rate scale must be a number ≥ 0, got \(c.backboneLearningRateScale)")
        }
        guard c.groups >= 1 else { throw DistillationError("gradual unfreezing needs at least one group, got \(c.groups)") }
        var configuration = training
        if c.strategy != .scratch {
            configuration.learningRateScales = ["backbone": c.backboneLearningRateScale, "old_head": c.backboneLearningRateScale]
        }
        var teachers: [Teacher] = [], losses: [WeightedLoss] = []
        if c.oldOutput == .embedding {
            guard c.strategy != .joint else { throw DistillationError("joint training needs the old task's labelled data, and a sentence encoder's old task is its embedding") }
            try model.freeze(["old_head"])
        }
        switch c.strategy {
        case .freeze, .gradual:
            try model.backbone.freeze([""], statistics: true)
            try model.freeze(["old_head"])
        case .finetune:
            try model.freeze(["old_head"])
        case .lwf:
            if let oldOutputs {
                teachers = [Teacher(.outputs(oldOutputs))]
            } else {
                guard let oldModel else { throw DistillationError("Learning without Forgetting needs the old model") }
                teachers = [Teacher(.model(oldModel))]
            }
            let term: any DistillationLoss
            if c.oldOutput == .embedding {
                term = EmbeddingDistillation(studentOutput: "old_head", name: "lwf")
            } else {
                term = KnowledgeDistillation(temperature: c.lwfTemperature, studentOutput: "old_head", name: "lwf")
            }
            losses = [WeightedLoss(term, weight: c.lwfWeight)]
        case .joint, .scratch: break
        }
        if c.strategy != .scratch, !c.frozenLayers.isEmpty { try model.backbone.freeze(c.frozenLayers, statistics: true) }
        let trainer = try Trainer(model: model, teachers: teachers, losses: losses, configuration: configuration)
        if c.strategy == .joint {
            guard let oldTask else { throw DistillationError("joint training needs the old task's data") }
            trainer.auxiliaryTasks = [AuxiliaryTask(name: "old task", data: oldTask, output: "old_head", weight: c.jointOldWeight)]
        }
        if c.strategy == .gradual {
            // Backbone modules with parameters, from the top, in `groups` groups (an imported graph
            // groups its own parameters: `LayerGroups`); stage 0 trains the head only.
            let stages: [[String]]
            if let grouped = model.backbone as? any LayerGroups {
                stages = grouped.layerGroups(count: c.groups)
            } else {
                let layers = Array(model.backbone.namedModules().filter { !$0.module.localParameters.isEmpty }.map(\.name).reversed())
                let size = max(1, (layers.count + c.groups - 1) / c.groups)
                stages = stride(from: 0, to: layers.count, by: size).map { Array(layers[$0..<min($0 + size, layers.count)]) }
            }
            trainer.beforeStep = { step, total in
                // The whole freezing state from the step alone, so that a resumed or rolled-back
                // run has exactly the layers trainable that the original had at that step.
                let reached = step * (c.groups + 1) / total
                for (index, group) in stages.enumerated() {
                    if index < reached { try model.backbone.unfreeze(group) } else { try model.backbone.freeze(group, statistics: true) }
                }
                if !c.frozenLayers.isEmpty { try model.backbone.freeze(c.frozenLayers, statistics: true) }
            }
        }
        trainer.runSettings["strategy"] = c.strategy.rawValue
        trainer.runSettings["backboneLearningRateScale"] = String(c.backboneLearningRateScale)
        return trainer
    }
}
