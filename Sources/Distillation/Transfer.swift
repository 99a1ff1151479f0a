import Datasets
import Foundation
import NeuralNet
import Tensors

/// A model trained on an old task, re-headed for a new one: the old model with its classifier
/// head (a `Linear` found by name) swapped for `Identity` is the shared backbone; the old head
/// stays (its task can still be measured, so forgetting is visible) and a new head, sized for
/// the new classes, is added. Calling the model gives the new task's logits.
public final class MultiHeadModel: Module {
    public let backbone: any Module
    /// Heads by task, in order ("old", "new").
    public let heads: [(task: String, head: Linear)]
    public let state = ModuleState()

    /// Re-heads `model`: the `Linear` at `headPath` (a child of a `Sequential`) becomes the
    /// "old" head and a fresh `Linear` for `newClasses` the "new" one.
    public init(from model: any Module, headPath: String, newClasses: Int, using generator: inout RandomGenerator) throws {
        guard newClasses >= 1 else { throw ModuleError.invalidOption("the new task needs at least one class, got \(newClasses)") }
        guard let old = model.module(named: headPath) else {
            throw ModuleError.noSuchModule(headPath, available: model.namedModules().map(\.name).filter { !$0.isEmpty })
        }
        guard let oldHead = old as? Linear else {
            throw ModuleError.invalidOption("head '\(headPath)' is a \(type(of: old)), not a Linear layer")
        }
        let parts = headPath.split(separator: ".")
        let parentPath = parts.dropLast().joined(separator: ".")
        guard let parent = model.module(named: parentPath) as? Sequential else {
            throw ModuleError.invalidOption("head '\(headPath)' must sit in a Sequential to be replaced")
        }
        try parent.replace(String(parts.last!), with: Identity())
        backbone = model
        heads = [("old", oldHead), ("new", Linear(oldHead.inFeatures, newClasses, using: &generator))]
    }

    public func forward(_ input: Tensor) -> Tensor { head("new")(backbone(input)) }

    /// Every head's logits from one backbone pass.
    public func outputs(_ input: Tensor) -> [String: Tensor] {
        let features = backbone(input)
        return Dictionary(uniqueKeysWithValues: heads.map { ($0.task, $0.head(features)) })
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
    /// Fine-tuning: everything trains, the backbone at `backboneLearningRateScale` times the head's rate.
    case finetune
    /// Gradual unfreezing (Howard & Ruder 2018): the head first, then one more backbone group
    /// (from the top down) at each of `groups` equal stages of training.
    case gradual
    /// Learning without Forgetting (Li & Hoiem 2016): the old head's outputs on the new-task
    /// images, recorded before training, are soft targets (T = 2, λ = 1) while the new head learns.
    case lwf
    /// Joint training: old and new data together, one backbone, a head per task, summed losses.
    case joint
}

/// Settings of a transfer run.
public struct TransferConfiguration {
    public var strategy: TransferStrategy
    public var steps = 300
    public var batchSize = 32
    /// The new head's learning rate (SGD, Nesterov momentum 0.9, cosine schedule).
    public var learningRate: Float = 0.03
    /// Backbone learning rate relative to the head's (fine-tuning, gradual unfreezing, LwF, joint).
    public var backboneLearningRateScale: Float = 0.1
    /// Backbone groups unfrozen one at a time in gradual unfreezing.
    public var groups = 3
    /// LwF's temperature and weight.
    public var lwfTemperature: Float = 2
    public var lwfWeight: Float = 1
    /// Weight of the old task's loss in joint training.
    public var jointOldWeight: Float = 1
    public var seed: UInt64 = 0

    public init(strategy: TransferStrategy) { self.strategy = strategy }
}

/// Knowledge transfer from an old model to a new task.
public enum KnowledgeTransfer {
    /// Trains `model` (already re-headed) on `newTask` with `configuration.strategy`; `oldTask`
    /// is the old data, needed by joint training only. Returns the final mean loss.
    @discardableResult
    public static func train(_ model: MultiHeadModel, newTask: Dataset, oldTask: Dataset? = nil,
                             configuration c: TransferConfiguration) throws -> Float {
        guard c.steps >= 1, c.batchSize >= 1, c.learningRate > 0 else { throw DistillationError("transfer needs steps, batch size and learning rate above 0") }
        if c.strategy == .joint && oldTask == nil { throw DistillationError("joint training needs the old task's data") }
        var generator = RandomGenerator(seed: c.seed)
        let backboneParameters = model.backbone.parameters
        let newHead = model.head("new").parameters, oldHead = model.head("old").parameters
        model.train()
        switch c.strategy {
        case .freeze:
            try model.backbone.freeze([""], statistics: true)
            for p in oldHead { p.requiresGrad = false }
        case .gradual:
            try model.backbone.freeze([""], statistics: true)
            for p in oldHead { p.requiresGrad = false }
        case .finetune:
            for p in oldHead { p.requiresGrad = false }
        default: break
        }
        let scale = c.strategy == .scratch ? 1 : c.backboneLearningRateScale
        var groups = [ParameterGroup(name: "backbone", parameters: backboneParameters, learningRate: c.learningRate * scale, weightDecay: 5e-4),
                      ParameterGroup(name: "new head", parameters: newHead, learningRate: c.learningRate, weightDecay: 5e-4)]
        if c.strategy == .joint || c.strategy == .lwf {
            groups.append(ParameterGroup(name: "old head", parameters: oldHead, learningRate: c.learningRate * scale, weightDecay: 5e-4))
        }
        let optimizer = SGD(groups, momentum: 0.9, nesterov: true)
        let schedule = CosineSchedule(totalSteps: c.steps)
        // LwF: the old head's responses to the new images before any change.
        let recorded = c.strategy == .lwf ? ClassifierTraining.predictOutputs(model, head: "old", images: newTask.inputs) : nil
        // Gradual unfreezing: backbone parameterised modules from the top, split into groups.
        let layers = model.backbone.namedModules().filter { !$0.module.localParameters.isEmpty }.map(\.name).reversed()
        let stageGroups = Array(layers).chunked(into: max(1, (layers.count + c.groups - 1) / c.groups))
        var order: [Int] = [], oldOrder: [Int] = []
        var lastLoss: Float = 0
        for step in 0..<c.steps {
            if c.strategy == .gradual {
                let stage = step * (c.groups + 1) / c.steps  // stage 0: head only
                if stage >= 1, stage - 1 < stageGroups.count { try model.backbone.unfreeze(stageGroups[stage - 1]) }
            }
            if order.count < c.batchSize { order += Array(0..<newTask.count).shuffled(using: &generator) }
            let indices = Array(order.prefix(c.batchSize))
            order.removeFirst(indices.count)
            optimizer.setLearningRateFactor(schedule.factor(atStep: step))
            optimizer.zeroGrad()
            let inputs = withoutGradients { newTask.inputs.indexSelect(alongAxis: 0, indices: indices) }
            let outputs = model.outputs(inputs)
            var loss = Tensor.crossEntropy(logits: outputs["new"]!, labels: indices.map { newTask.labels[$0] })
            if let recorded {
                let t = c.lwfTemperature
                let target = withoutGradients { (recorded.indexSelect(alongAxis: 0, indices: indices) / t).softmax(alongAxis: 1) }
                loss = loss + Tensor.klDivergence(logProbabilities: (outputs["old"]! / t).logSoftmax(alongAxis: 1), target: target) * (c.lwfWeight * t * t)
            }
            if c.strategy == .joint, let oldTask {
                if oldOrder.count < c.batchSize { oldOrder += Array(0..<oldTask.count).shuffled(using: &generator) }
                let oldIndices = Array(oldOrder.prefix(c.batchSize))
                oldOrder.removeFirst(oldIndices.count)
                let oldInputs = withoutGradients { oldTask.inputs.indexSelect(alongAxis: 0, indices: oldIndices) }
                loss = loss + Tensor.crossEntropy(logits: model.outputs(oldInputs)["old"]!, labels: oldIndices.map { oldTask.labels[$0] }) * c.jointOldWeight
            }
            loss.backward()
            clipGradientNorm(optimizer.groups.flatMap(\.parameters), maxNorm: 5)
            guard loss.item.isFinite else { throw DistillationError("transfer diverged at step \(step + 1); lower the learning rate") }
            optimizer.step()
            lastLoss = loss.item
        }
        return lastLoss
    }

    /// Accuracy of one task's head on `data`.
    public static func accuracy(_ model: MultiHeadModel, head: String, data: Dataset) -> Double {
        let logits = ClassifierTraining.predictOutputs(model, head: head, images: data.inputs)
        let predictions = logits.max(alongAxis: 1).indices
        return Double(zip(predictions, data.labels).filter { $0 == $1 }.count) / Double(max(data.count, 1))
    }
}

extension ClassifierTraining {
    /// One head's logits for `images`, evaluation mode, no recording.
    static func predictOutputs(_ model: MultiHeadModel, head: String, images: Tensor, batchSize: Int = 1000) -> Tensor {
        let wasTraining = model.namedModules().map { $0.module.state.isTraining }
        model.eval()
        defer { for ((_, m), t) in zip(model.namedModules(), wasTraining) { m.state.isTraining = t } }
        let count = images.shape[0]
        return withoutGradients {
            Tensor.concatenating(stride(from: 0, to: count, by: batchSize).map { first in
                model.outputs(images.sliced(alongAxis: 0, first..<min(first + batchSize, count)))[head]!
            }, alongAxis: 0)
        }
    }
}

extension Array {
    func chunked(into size: Int) -> [[Element]] {
        stride(from: 0, to: count, by: size).map { Array(self[$0..<Swift.min($0 + size, count)]) }
    }
}
