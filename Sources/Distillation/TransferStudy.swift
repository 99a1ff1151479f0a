import Datasets
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// A transfer study: every strategy with every seed, each trained by the `Trainer` in its
/// own folder (`directory/STRATEGY/seed-N`), scored on both tasks' test sets once training
/// ends. Resuming keeps the runs that finished (their `result.json`) and continues the one
/// that was stopped from its checkpoint, so a study resumes strategy by strategy and seed
/// by seed.
public struct TransferStudy {
    /// One run's scores: new-task accuracy, and old-task accuracy through the old head (nil
    /// for a model trained from scratch, which has no old head worth measuring), and the
    /// new task's macro-F1 (`ClassificationMetrics.macroF1`; nil in results written before it).
    public struct Score: Codable, Equatable, Sendable {
        public var new: Double
        public var old: Double?
        public var newMacroF1: Double?
        /// A sentence encoder's old task (`OldTask.embedding`): how closely the trained
        /// encoder's embeddings of the held-out texts follow the original's
        /// (`EmbeddingAgreement`: Spearman of pair similarities, mean cosine); nil for scratch.
        public var oldSimilaritySpearman: Double?
        public var oldMeanCosine: Double?
    }

    /// What the old model knew, and how keeping it is measured.
    public enum OldTask {
        /// A classifier's old classes: old-task accuracy through the old head on `test`; joint
        /// training trains on `train`.
        case classes(train: Dataset, test: Dataset)
        /// A sentence encoder (re-headed with `MultiHeadModel(encoder:dimension:newClasses:using:)`):
        /// its embedding is the old task, scored by `EmbeddingAgreement` between the trained
        /// encoder's embeddings of `texts` and `reference`, the original's embeddings of them.
        case embedding(texts: Dataset, reference: Tensor)
    }

    /// A seed's data for the new task, and the class weights of its cross-entropy (nil: none;
    /// see `TrainerConfiguration.classWeights`).
    public struct NewTask {
        public var train: Dataset
        public var validation: Dataset?
        public var test: Dataset
        public var classWeights: [Float]?
        public init(train: Dataset, validation: Dataset?, test: Dataset, classWeights: [Float]? = nil) {
            self.train = train
            self.validation = validation
            self.test = test
            self.classWeights = classWeights
        }
    }

    /// Strategy names: `TransferStrategy` values, or `finetune-equal` (fine-tuning with the
    /// backbone at the head's rate).
    public var strategies: [String]
    public var seeds: [UInt64]
    /// Steps, batch size, the new head's learning rate, checkpoints; each run sets its seed and folder.
    public var training: TrainerConfiguration
    public var backboneLearningRateScale: Float
    /// The old model's classifier layer, replaced by the new head: a module path, or for an
    /// imported ONNX graph a Gemm or MatMul node's name or output.
    public var headPath: String
    /// Backbone layers kept frozen in every strategy but scratch: module paths, or for an
    /// imported ONNX graph node names (`NAME*` for a prefix), resolved by
    /// `ONNXNetwork.parameterNames(readBy:)`. See `TransferConfiguration.frozenLayers`.
    public var frozenLayers: [String] = []
    /// LwF's weight (`TransferConfiguration.lwfWeight`).
    public var lwfWeight: Float = 1
    /// How an old classifier (`OldTask.classes`) is re-headed, when not by replacing the
    /// `Linear` at `headPath` (`MultiHeadModel(from:headPath:newClasses:using:)`): the model,
    /// the new task's class count, the generator of the new head's weights.
    public var reheader: ((any Module, Int, inout RandomGenerator) throws -> MultiHeadModel)?
    public var directory: String
    /// Keep finished runs and continue the stopped one.
    public var resume: Bool
    /// The caller's settings that decide the numbers, kept in every run's checkpoint (see
    /// `Trainer.runSettings`).
    public var runSettings: [String: String] = [:]
    /// A sentence encoder's outputs (`OldTask.embedding`) for a set of texts, in their order,
    /// computed once by the caller (and kept, as it likes): the frozen encoder's features. With
    /// them, `freeze` is a linear probe: the Trainer trains the new head on the features of the
    /// training texts (evaluation mode, as the frozen encoder gives them at test time) instead
    /// of running the encoder at every step, and LwF's teacher is the features of the training
    /// texts instead of the old model run again.
    public var encoderOutputs: ((Dataset) throws -> Tensor)?

    public init(strategies: [String], seeds: [UInt64], training: TrainerConfiguration, backboneLearningRateScale: Float,
                headPath: String, directory: String, resume: Bool) throws {
        for name in strategies where TransferStrategy(rawValue: name) == nil && name != "finetune-equal" {
            throw DistillationError("unknown strategy '\(name)'")
        }
        self.strategies = strategies
        self.seeds = seeds
        self.training = training
        self.backboneLearningRateScale = backboneLearningRateScale
        self.headPath = headPath
        self.directory = directory
        self.resume = resume
    }

    /// Runs the study. `oldModel` loads a fresh copy of the old model, `scratchModel` builds an
    /// untrained one of its architecture, `newTask` gives a seed's data; `trained` hears about
    /// each newly trained model (to save it), `events` about training.
    public func run(oldModel: () throws -> any Module, scratchModel: (inout RandomGenerator) throws -> any Module,
                    newTask: (UInt64) throws -> NewTask, oldTask: (train: Dataset, test: Dataset), shouldStop: @escaping () -> Bool = { false },
                    trained: (_ strategy: String, _ seed: UInt64, _ model: MultiHeadModel) throws -> Void = { _, _, _ in },
                    events: (_ strategy: String, _ seed: UInt64, TrainingEvent) -> Void = { _, _, _ in }) throws -> [String: [Score]] {
        try run(oldModel: oldModel, scratchModel: scratchModel, newTask: newTask, old: .classes(train: oldTask.train, test: oldTask.test),
                shouldStop: shouldStop, trained: trained, events: events)
    }

    /// Runs the study against either kind of old task (see `OldTask`).
    public func run(oldModel: () throws -> any Module, scratchModel: (inout RandomGenerator) throws -> any Module,
                    newTask: (UInt64) throws -> NewTask, old oldTask: OldTask, shouldStop: @escaping () -> Bool = { false },
                    trained: (_ strategy: String, _ seed: UInt64, _ model: MultiHeadModel) throws -> Void = { _, _, _ in },
                    events: (_ strategy: String, _ seed: UInt64, TrainingEvent) -> Void = { _, _, _ in }) throws -> [String: [Score]] {
        var scores: [String: [Score]] = [:]
        for name in strategies {
            for seed in seeds {
                let folder = ((directory as NSString).appendingPathComponent(name) as NSString).appendingPathComponent("seed-\(seed)")
                let resultPath = (folder as NSString).appendingPathComponent("result.json")
                if resume, let stored = FileManager.default.contents(atPath: resultPath),
                   let finished = try? JSONDecoder().decode(Score.self, from: stored) {
                    scores[name, default: []].append(finished)
                    continue
                }
                let task = try newTask(seed)
                var generator = RandomGenerator(seed: seed)
                let base = name == "scratch" ? try scratchModel(&generator) : try oldModel()
                let model: MultiHeadModel
                var strategy = TransferConfiguration(strategy: TransferStrategy(rawValue: name == "finetune-equal" ? "finetune" : name)!)
                switch oldTask {
                case .classes:
                    model = try reheader.map { try $0(base, task.train.classCount, &generator) }
                        ?? MultiHeadModel(from: base, headPath: headPath, newClasses: task.train.classCount, using: &generator)
                case let .embedding(_, reference):
                    model = try MultiHeadModel(encoder: base, dimension: reference.shape[1], newClasses: task.train.classCount, using: &generator)
                    strategy.oldOutput = .embedding
                }
                strategy.backboneLearningRateScale = name == "finetune-equal" ? 1 : backboneLearningRateScale
                strategy.lwfWeight = lwfWeight
                if !frozenLayers.isEmpty {
                    strategy.frozenLayers = try (model.backbone as? ONNXNetwork)?.parameterNames(readBy: frozenLayers) ?? frozenLayers
                }
                var configuration = training
                configuration.seed = seed
                configuration.runDirectory = folder
                configuration.classWeights = task.classWeights
                var oldTrain: Dataset?
                if case let .classes(train, _) = oldTask { oldTrain = train }
                let features = strategy.oldOutput == .embedding ? encoderOutputs : nil
                let probe = name == "freeze" && frozenLayers.isEmpty ? features : nil
                let trainer: Trainer
                var train = task.train, validation = task.validation
                if let probe {
                    // A linear probe: the new head alone, trained on the frozen encoder's features.
                    train = Dataset(inputs: try probe(task.train), labels: task.train.labels, classNames: task.train.classNames)
                    validation = try task.validation.map { Dataset(inputs: try probe($0), labels: $0.labels, classNames: $0.classNames) }
                    configuration.lengthBuckets = false
                    trainer = try Trainer(model: model.head("new"), configuration: configuration)
                    trainer.runSettings["strategy"] = "freeze (a linear probe on the encoder's features)"
                } else {
                    let lwfOutputs = name == "lwf" ? try features?(task.train) : nil
                    trainer = try KnowledgeTransfer.trainer(model, strategy: strategy, training: configuration,
                                                            oldModel: name == "lwf" && lwfOutputs == nil ? try oldModel() : nil, oldTask: oldTrain,
                                                            oldOutputs: lwfOutputs)
                }
                trainer.shouldStop = shouldStop
                trainer.runSettings.merge(runSettings) { _, caller in caller }
                let checkpoint = Trainer.checkpointPath(in: folder)
                if resume, FileManager.default.fileExists(atPath: checkpoint) { try trainer.resume(from: checkpoint, train: train) }
                try trainer.fit(train: train, validation: validation) { events(name, seed, $0) }
                let testLogits = try probe.map { model.head("new").predictions(try $0(task.test)) } ?? model.predictions(on: task.test)
                let newMetrics = ClassificationMetrics(logits: testLogits, labels: task.test.labels, classNames: task.test.classNames)
                var score = Score(new: newMetrics.top1, old: nil, newMacroF1: newMetrics.macroF1)
                switch oldTask {
                case let .classes(_, test):
                    score.old = name == "scratch" ? nil : try Evaluation.accuracy(model, on: test, output: "old_head")
                case let .embedding(texts, reference) where name != "scratch":
                    // The backbone's own embedding: the frozen identity old head gives the same.
                    // (A probe's encoder is untouched: its features are the encoder's outputs.)
                    let embeddings = try probe.map { try $0(texts) } ?? model.backbone.embeddings(ofTexts: texts)
                    let agreement = try EmbeddingAgreement(student: embeddings, teacher: reference,
                                                           pairs: min(10_000, texts.count * (texts.count - 1) / 2), seed: seed)
                    score.oldSimilaritySpearman = agreement.similaritySpearman
                    score.oldMeanCosine = agreement.meanCosine
                case .embedding: break
                }
                try trained(name, seed, model)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                try AtomicFile.write(try encoder.encode(score), to: resultPath)
                scores[name, default: []].append(score)
            }
        }
        return scores
    }
}
