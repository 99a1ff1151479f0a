import ArgumentParser
import Datasets
import Distillation
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// `distill transfer`: starts a new task from an old model with one or more strategies,
/// over one or more seeds, and reports new-task and old-task accuracy (mean ± std). Each
/// strategy and seed trains in its own folder (`OUT/STRATEGY/seed-N`), so `--resume` goes on
/// strategy by strategy and seed by seed.
struct TransferCommand: TabledCommand {
    static let configuration = CommandConfiguration(commandName: "transfer", abstract: "Start a new task from an old model: new head, freezing, fine-tuning, LwF, joint training.")
    static let experimentName = "transfer"
    static let options = [Spec.from, Spec.strategy, Spec.head, Spec.oldClasses, Spec.backboneLrScale, Spec.steps, Spec.seeds, Spec.lr, Spec.batch,
                          Spec.out, Spec.resume, Spec.checkpointEvery, Spec.dryRun] + Spec.dataOptions + Spec.outputOptions

    @Option(name: Spec.from.long, help: Spec.from.help) var source: String
    @Option(name: Spec.strategy.long, help: Spec.strategy.help) var strategy: String = "finetune"
    @Option(name: Spec.head.long, help: Spec.head.help) var head: String = "classifier.3"
    @Option(name: Spec.oldClasses.long, help: Spec.oldClasses.help) var oldClasses: String = "0-4"
    @Option(name: Spec.backboneLrScale.long, help: Spec.backboneLrScale.help) var backboneLrScale: Float = 0.1
    @Option(name: Spec.steps.long, help: Spec.steps.help) var steps: Int = 300
    @Option(name: Spec.seeds.long, help: Spec.seeds.help) var seeds: String = "0"
    @OptionGroup var dataOptions: DataOptions
    @Option(name: Spec.lr.long, help: Spec.lr.help) var lr: Float = 0.03
    @Option(name: Spec.batch.long, help: Spec.batch.help) var batch: Int = 32
    @OptionGroup var runOptions: RunOptions
    @OptionGroup var output: OutputOptions

    var strategies: [String] {
        strategy == "all" ? TransferStrategy.allCases.map(\.rawValue) + ["finetune-equal"]
            : strategy.split(separator: ",").map { $0 == "head" ? "freeze" : $0.trimmingCharacters(in: .whitespaces) }
    }

    var values: [(String, OptionValue?)] {
        [("from", .text(source)), ("strategy", .list(strategy.split(separator: ",").map(String.init))), ("head", .text(head)),
         ("old-classes", .text(oldClasses)), ("backbone-lr-scale", .number(backboneLrScale)), ("steps", .integer(steps)),
         ("seeds", .text(seeds)), ("lr", .number(lr)), ("batch", .integer(batch))] + runOptions.values + dataOptions.values + output.values
    }

    func validate() throws {
        try checkOptions()
        guard let classes = dataOptions.classes else { throw UserError("give the new task's --classes, such as 5-9") }
        let overlap = Set(try OptionTable.parseNumbers(oldClasses, spec: Spec.oldClasses))
            .intersection(try OptionTable.parseNumbers(classes, spec: Spec.classes)).sorted()
        guard overlap.isEmpty else {
            throw UserError("--classes and --old-classes overlap on \(overlap.map(String.init).joined(separator: ", ")): the new task must be new classes")
        }
    }

    /// The re-headed model as a plain zoo model for the new classes, so that evaluate, export
    /// and distill read it like any other.
    static func newTaskModel(_ model: MultiHeadModel, name: String, options: ModelOptions, head: String) throws -> (any Module, ModelOptions) {
        var newOptions = options
        newOptions.classes = model.head("new").outFeatures
        var generator = RandomGenerator(seed: 0)
        let plain = try ModelZoo.make(name, options: newOptions, using: &generator)
        var state = Dictionary(model.backbone.stateDict().map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        state[head + ".weight"] = model.head("new").weight
        if let bias = model.head("new").bias { state[head + ".bias"] = bias }
        _ = try plain.loadStateDict(state, strict: true)
        return (plain, newOptions)
    }

    /// One strategy and seed's accuracies, kept in its folder once it has finished.
    struct SeedResult: Codable {
        var new: Double
        var old: Double?
    }

    func run() throws {
        if runOptions.dryRun { return Console(output).result("options are valid", ["valid": true]) }
        let seedList = try OptionTable.parseNumbers(seeds, spec: Spec.seeds).map(UInt64.init)
        let dataset = try FashionMNIST(directory: dataOptions.data)
        let oldList = try OptionTable.parseNumbers(oldClasses, spec: Spec.oldClasses)
        let oldTrain: Dataset, oldTest: Dataset
        do { (oldTrain, oldTest) = (try dataset.train.selectingClasses(oldList), try dataset.test.selectingClasses(oldList)) } catch let error as DatasetError {
            throw UserError("--old-classes: \(error.problem)")
        }
        let oldModel = try SavedModel.load(source)
        let oldAccuracy = try Evaluation.accuracy(oldModel.model, on: oldTest)
        let out = runOptions.out
        try Experiment.writeResolved(Self.self, values, to: out)
        let console = Console(output)
        console.say(String(format: "old model %@ on classes %@: old-task test accuracy %.2f%%", oldModel.name, oldClasses, oldAccuracy * 100))
        var summaries: [String] = []
        var fields: [String: Any] = ["old_model_accuracy": oldAccuracy, "out": out]
        var results: [String: [[String: Double]]] = [:]
        for name in strategies {
            var newScores: [Double] = [], oldScores: [Double] = []
            for seed in seedList {
                let folder = ((out as NSString).appendingPathComponent(name) as NSString).appendingPathComponent("seed-\(seed)")
                let resultPath = (folder as NSString).appendingPathComponent("result.json")
                let result: SeedResult
                if runOptions.resume != nil, let stored = FileManager.default.contents(atPath: resultPath),
                   let decoded = try? JSONDecoder().decode(SeedResult.self, from: stored) {
                    result = decoded  // finished before the interruption
                } else {
                    result = try trainSeed(name, seed: seed, folder: folder, oldModel: oldModel, oldTrain: oldTrain, oldTest: oldTest, console: console)
                    try writeJSON(result, to: resultPath)
                }
                newScores.append(result.new)
                oldScores.append(result.old ?? .nan)
                var row = ["seed": Double(seed), "new": result.new]
                if let old = result.old { row["old"] = old }
                results[name, default: []].append(row)
            }
            let line = "\(name): new task \(meanAndDeviation(newScores)), old task \(meanAndDeviation(oldScores)) (old model \(String(format: "%.2f", oldAccuracy * 100)))"
            console.epoch(line, ["strategy": name, "new_task_accuracy": newScores, "old_task_accuracy": oldScores])
            summaries.append(line)
            fields[name] = ["new_task_mean": newScores.reduce(0, +) / Double(newScores.count),
                            "old_task_mean": oldScores.reduce(0, +) / Double(oldScores.count)]
        }
        results["old model"] = [["old": oldAccuracy]]
        try writeJSON(results, to: (out as NSString).appendingPathComponent("results.json"))
        console.result(summaries.joined(separator: "\n") + "\nwrote \(out)/results.json and the new-task models", fields)
    }

    /// Trains one strategy with one seed in `folder` (resuming from its checkpoint when asked)
    /// and scores both tasks on their test sets; the first seed's model is saved as
    /// `OUT/STRATEGY.safetensors` (and `model.safetensors` for a single strategy).
    private func trainSeed(_ name: String, seed: UInt64, folder: String, oldModel: (model: any Module, name: String, options: ModelOptions),
                           oldTrain: Dataset, oldTest: Dataset, console: Console) throws -> SeedResult {
        let data = try dataOptions.load(seed: seed)
        let newTrain = data.labeledTrain
        var generator = RandomGenerator(seed: seed)
        let base: any Module = name == "scratch"
            ? try ModelZoo.make(oldModel.name, options: oldModel.options, using: &generator)
            : try SavedModel.load(source).model
        let model = try MultiHeadModel(from: base, headPath: head, newClasses: newTrain.classCount, using: &generator)
        var strategyConfiguration = TransferConfiguration(strategy: TransferStrategy(rawValue: name == "finetune-equal" ? "finetune" : name)!)
        strategyConfiguration.backboneLearningRateScale = name == "finetune-equal" ? 1 : backboneLrScale
        var training = TrainerConfiguration()
        training.steps = steps
        training.batchSize = batch
        training.learningRate = lr
        training.seed = seed
        training.runDirectory = folder
        training.checkpointEvery = runOptions.checkpointEvery
        let trainer = try KnowledgeTransfer.trainer(model, strategy: strategyConfiguration, training: training,
                                                    oldModel: name == "lwf" ? try SavedModel.load(source).model : nil, oldTask: oldTrain)
        trainer.shouldStop = StopRequest.isRequested
        let checkpoint = Trainer.checkpointPath(in: folder)
        if runOptions.resume != nil, FileManager.default.fileExists(atPath: checkpoint) { try trainer.resume(from: checkpoint, train: newTrain) }
        try trainer.fit(train: newTrain, validation: data.validation) { console.training($0, batchSize: batch, label: "\(name), seed \(seed): ") }
        let result = SeedResult(new: try Evaluation.accuracy(model, on: data.test),
                                old: name == "scratch" ? nil : try Evaluation.accuracy(model, on: oldTest, output: "old_head"))
        if seed == (try OptionTable.parseNumbers(seeds, spec: Spec.seeds)).first.map(UInt64.init) {
            let (plain, options) = try Self.newTaskModel(model, name: oldModel.name, options: oldModel.options, head: head)
            try SavedModel.save(plain, name: oldModel.name, options: options, to: (runOptions.out as NSString).appendingPathComponent("\(name).safetensors"))
            if strategies.count == 1 {
                try SavedModel.save(plain, name: oldModel.name, options: options, to: (runOptions.out as NSString).appendingPathComponent("model.safetensors"))
            }
        }
        return result
    }
}

/// "mean ± sample standard deviation" in percent, or "—" when a value is missing.
func meanAndDeviation(_ values: [Double]) -> String {
    guard !values.isEmpty, !values.contains(where: \.isNaN) else { return "—" }
    let mean = values.reduce(0, +) / Double(values.count)
    let deviation = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(values.count - 1, 1))).squareRoot()
    return String(format: "%.2f ± %.2f", mean * 100, deviation * 100)
}
