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
    public var directory: String
    /// Keep finished runs and continue the stopped one.
    public var resume: Bool
    /// The caller's settings that decide the numbers, kept in every run's checkpoint (see
    /// `Trainer.runSettings`).
    public var runSettings: [String: String] = [:]

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
                let model = try MultiHeadModel(from: base, headPath: headPath, newClasses: task.train.classCount, using: &generator)
                var strategy = TransferConfiguration(strategy: TransferStrategy(rawValue: name == "finetune-equal" ? "finetune" : name)!)
                strategy.backboneLearningRateScale = name == "finetune-equal" ? 1 : backboneLearningRateScale
                if !frozenLayers.isEmpty {
                    strategy.frozenLayers = try (model.backbone as? ONNXNetwork)?.parameterNames(readBy: frozenLayers) ?? frozenLayers
                }
                var configuration = training
                configuration.seed = seed
                configuration.runDirectory = folder
                configuration.classWeights = task.classWeights
                let trainer = try KnowledgeTransfer.trainer(model, strategy: strategy, training: configuration,
                                                            oldModel: name == "lwf" ? try oldModel() : nil, oldTask: oldTask.train)
                trainer.shouldStop = shouldStop
                trainer.runSettings.merge(runSettings) { _, caller in caller }
                let checkpoint = Trainer.checkpointPath(in: folder)
                if resume, FileManager.default.fileExists(atPath: checkpoint) { try trainer.resume(from: checkpoint, train: task.train) }
                try trainer.fit(train: task.train, validation: task.validation) { events(name, seed, $0) }
                let newMetrics = ClassificationMetrics(logits: try model.predictions(on: task.test), labels: task.test.labels, classNames: task.test.classNames)
                let score = Score(new: newMetrics.top1,
                                  old: name == "scratch" ? nil : try Evaluation.accuracy(model, on: oldTask.test, output: "old_head"),
                                  newMacroF1: newMetrics.macroF1)
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
