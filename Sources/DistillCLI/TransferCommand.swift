import ArgumentParser
import Datasets
import Distillation
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// `distill transfer`: starts a new task from an old model with one or more strategies,
/// over one or more seeds, and reports new-task and old-task accuracy (mean ± std).
struct TransferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "transfer", abstract: "Start a new task from an old model: new head, freezing, fine-tuning, LwF, joint training.")

    @Option(name: .customLong("from"), help: "The old model: a run folder or model file.")
    var source: String

    @Option(help: "Strategies, comma-separated (\(TransferStrategy.allCases.map(\.rawValue).joined(separator: ", ")), head (= freeze), finetune-equal), or 'all'.")
    var strategy: String = "finetune"

    @Option(help: "The old model's classifier layer to replace.")
    var head: String = "classifier.3"

    @Option(help: "Classes of the old task (for measuring forgetting), a range or list.")
    var oldClasses: String = "0-4"

    @Option(help: "Backbone learning rate relative to the head's.")
    var backboneLrScale: Float = 0.1

    @Option(help: "Training steps.")
    var steps: Int = 300

    @Option(help: "Seeds: one number, or a range like 0-9 (results are mean ± std).")
    var seeds: String = "0"

    @OptionGroup var dataOptions: DataOptions

    @Option(help: "Learning rate of the new head.")
    var lr: Float = 0.03

    @Option(help: "Batch size.")
    var batch: Int = 32

    @Option(help: "Run folder: config.yaml, results.json and the new-task model of each strategy (first seed).")
    var out: String

    @OptionGroup var output: OutputOptions

    /// The resolved configuration, defaults included.
    var configEntries: [(String, Experiment.Value?)] {
        [("from", .text(source)), ("strategy", .list(strategy.split(separator: ",").map(String.init))), ("head", .text(head)),
         ("old-classes", .text(oldClasses)), ("backbone-lr-scale", .number(backboneLrScale)), ("steps", .integer(steps)),
         ("seeds", .text(seeds)), ("lr", .number(lr)), ("batch", .integer(batch)), ("out", .text(out))] + dataOptions.configEntries
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

    func run() throws {
        // "head" (train a new head on the old features) is another name for freeze.
        let names = strategy == "all" ? TransferStrategy.allCases.map(\.rawValue) + ["finetune-equal"]
            : strategy.split(separator: ",").map { $0 == "head" ? "freeze" : String($0) }
        for name in names where TransferStrategy(rawValue: name) == nil && name != "finetune-equal" {
            throw UserError("unknown strategy '\(name)' (available: \(TransferStrategy.allCases.map(\.rawValue).joined(separator: ", ")), head (= freeze), finetune-equal, all)")
        }
        let seedList = try DataOptions.parseClasses(seeds).map(UInt64.init)
        guard dataOptions.classes != nil else { throw UserError("give the new task's --classes, such as 5-9") }
        let dataset: FashionMNIST
        do { dataset = try FashionMNIST(directory: dataOptions.data) } catch let error as DatasetError { throw UserError("\(error)") }
        let oldList = try DataOptions.parseClasses(oldClasses)
        let overlap = Set(oldList).intersection(try DataOptions.parseClasses(dataOptions.classes!)).sorted()
        guard overlap.isEmpty else {
            throw UserError("--classes and --old-classes overlap on \(overlap.map(String.init).joined(separator: ", ")): the new task must be new classes")
        }
        let oldTrain = try dataset.train.selectingClasses(oldList), oldTest = try dataset.test.selectingClasses(oldList)
        let oldModel: (model: any Module, name: String, options: ModelOptions)
        do { oldModel = try SavedModel.load(source) } catch let error as ModelFormatError { throw UserError("--from: \(error)") }
        var probeGenerator = RandomGenerator(seed: 0)
        let before: MultiHeadModel
        do { before = try MultiHeadModel(from: SavedModel.load(source).model, headPath: head, newClasses: 1, using: &probeGenerator) } catch let error as ModuleError {
            throw UserError("--head: \(error)")
        }
        let oldAccuracy = KnowledgeTransfer.accuracy(before, head: "old", data: oldTest)
        try Experiment.writeResolved(command: "transfer", configEntries, to: out)
        let console = Console(output)
        console.say(String(format: "old model %@ on classes %@: old-task test accuracy %.2f%%", oldModel.name, oldClasses, oldAccuracy * 100))
        var summaries: [String] = []
        var fields: [String: Any] = ["old_model_accuracy": oldAccuracy, "out": out]
        var results: [String: [[String: Double]]] = [:]
        for name in names {
            var newScores: [Double] = [], oldScores: [Double] = []
            for seed in seedList {
                let (train, test, labeled) = try dataOptions.load(seed: seed)
                let newTrain = labeled.map { mask in train.subset(mask.indices.filter { mask[$0] }) } ?? train
                var generator = RandomGenerator(seed: seed)
                let base: any Module = name == "scratch"
                    ? try ModelZoo.make(oldModel.name, options: oldModel.options, using: &generator)
                    : try SavedModel.load(source).model
                let model: MultiHeadModel
                do { model = try MultiHeadModel(from: base, headPath: head, newClasses: newTrain.classCount, using: &generator) } catch let error as ModuleError {
                    throw UserError("--head: \(error)")
                }
                var configuration = TransferConfiguration(strategy: TransferStrategy(rawValue: name == "finetune-equal" ? "finetune" : name)!)
                configuration.steps = steps
                configuration.batchSize = batch
                configuration.learningRate = lr
                configuration.backboneLearningRateScale = name == "finetune-equal" ? 1 : backboneLrScale
                configuration.seed = seed
                try KnowledgeTransfer.train(model, newTask: newTrain, oldTask: oldTrain, configuration: configuration)
                newScores.append(KnowledgeTransfer.accuracy(model, head: "new", data: test))
                oldScores.append(name == "scratch" ? .nan : KnowledgeTransfer.accuracy(model, head: "old", data: oldTest))
                if seed == seedList[0] {
                    let (plain, options) = try Self.newTaskModel(model, name: oldModel.name, options: oldModel.options, head: head)
                    try SavedModel.save(plain, name: oldModel.name, options: options, to: (out as NSString).appendingPathComponent("\(name).safetensors"))
                    if names.count == 1 {
                        try SavedModel.save(plain, name: oldModel.name, options: options, to: (out as NSString).appendingPathComponent("model.safetensors"))
                    }
                }
                var row = ["seed": Double(seed), "new": newScores.last!]
                if name != "scratch" { row["old"] = oldScores.last! }
                results[name, default: []].append(row)
            }
            func stats(_ xs: [Double]) -> String {
                guard !xs.contains(where: \.isNaN) else { return "—" }
                let mean = xs.reduce(0, +) / Double(xs.count)
                let std = (xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(xs.count - 1, 1))).squareRoot()
                return String(format: "%.2f ± %.2f", mean * 100, std * 100)
            }
            let line = "\(name): new task \(stats(newScores)), old task \(stats(oldScores)) (old model \(String(format: "%.2f", oldAccuracy * 100)))"
            console.epoch(line, ["strategy": name, "new_task_accuracy": newScores, "old_task_accuracy": oldScores])
            summaries.append(line)
            fields[name] = ["new_task_mean": newScores.reduce(0, +) / Double(newScores.count),
                            "old_task_mean": oldScores.reduce(0, +) / Double(oldScores.count)]
        }
        results["old model"] = [["old": oldAccuracy]]
        try writeJSON(results, to: (out as NSString).appendingPathComponent("results.json"))
        console.result(summaries.joined(separator: "\n") + "\nwrote \(out)/results.json and the new-task models", fields)
    }
}
