import ArgumentParser
import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import Training

/// `distill transfer`: starts a new task from an old model with one or more strategies,
/// over one or more seeds, and reports new-task and old-task accuracy (mean ± std). Each
/// strategy and seed trains in its own folder (`OUT/STRATEGY/seed-N`), so `--resume` goes on
/// strategy by strategy and seed by seed. The old model is a zoo model (run folder or
/// safetensors) or any ONNX classifier (`TransferSource`).
struct TransferCommand: TabledCommand, ComputingCommand {
    static let configuration = CommandConfiguration(commandName: "transfer", abstract: "Start a new task from an old model: new head, freezing, fine-tuning, LwF, joint training.")
    static let experimentName = "transfer"
    static let options = [Spec.from, Spec.strategy, Spec.head, Spec.freeze, Spec.oldClasses, Spec.backboneLrScale, Spec.lwfWeight, Spec.steps, Spec.seeds, Spec.lr, Spec.batch,
                          Spec.out, Spec.resume, Spec.checkpointEvery, Spec.dryRun, Spec.classWeights, Spec.deterministic, Spec.optimizer] + Spec.dataOptions
        + [Spec.minClassSize] + Spec.textDataOptions + [Spec.cacheDirectory] + Spec.outputOptions

    @Option(name: Spec.from.long, help: Spec.from.help) var source: String
    @Option(name: Spec.strategy.long, help: Spec.strategy.help) var strategy: String = "finetune"
    @Option(name: Spec.head.long, help: Spec.head.help) var head: String?
    @Option(name: Spec.freeze.long, help: Spec.freeze.help) var freeze: String?
    @Option(name: Spec.oldClasses.long, help: Spec.oldClasses.help) var oldClasses: String = "0-4"
    @Option(name: Spec.backboneLrScale.long, help: Spec.backboneLrScale.help) var backboneLrScale: Float = 0.1
    @Option(name: Spec.lwfWeight.long, help: Spec.lwfWeight.help) var lwfWeight: Float?
    @Option(name: Spec.steps.long, help: Spec.steps.help) var steps: Int = 300
    @Option(name: Spec.seeds.long, help: Spec.seeds.help) var seeds: String = "0"
    @OptionGroup var dataOptions: DataOptions
    @Option(name: Spec.lr.long, help: Spec.lr.help) var lr: Float = 0.03
    @Option(name: Spec.batch.long, help: Spec.batch.help) var batch: Int = 32
    @Option(name: Spec.classWeights.long, help: Spec.classWeights.help) var classWeights: String?
    @Option(name: Spec.deterministic.long, help: Spec.deterministic.help) var deterministic: Int?
    @Option(name: Spec.optimizer.long, help: Spec.optimizer.help) var optimizer: OptimizerChoice?
    @OptionGroup var textClasses: TextClassesOption
    @OptionGroup var text: TextDataOptions
    @OptionGroup var cache: CacheDirectoryOption
    @OptionGroup var runOptions: RunOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var compute: ComputeOptions

    var strategies: [String] {
        strategy == "all" ? TransferStrategy.allCases.map(\.rawValue) + ["finetune-equal"]
            : strategy.split(separator: ",").map { $0 == "head" ? "freeze" : $0.trimmingCharacters(in: .whitespaces) }
    }

    var values: [(String, OptionValue?)] {
        [("from", .text(source)), ("strategy", .list(strategy.split(separator: ",").map(String.init))), ("head", head.map { .text($0) }),
         ("freeze", freeze.map { .text($0) }),
         ("old-classes", .text(oldClasses)), ("backbone-lr-scale", .number(backboneLrScale)), ("lwf-weight", lwfWeight.map { .number($0) }), ("steps", .integer(steps)),
         ("seeds", .text(seeds)), ("lr", .number(lr)), ("batch", .integer(batch)),
         ("class-weights", classWeights.map { .text($0) }), ("deterministic", deterministic.map { .integer($0) }),
         ("optimizer", optimizer.map { .text($0.rawValue) })] + runOptions.values + dataOptions.values
            + textClasses.values + text.values + (isText ? cache.values : []) + output.values + compute.values
    }

    /// Whether the old model is a text encoder (a folder with tokenizer.json or a Hugging Face config.json).
    var isText: Bool { TextModel.isTextModel(source) }

    func validate() throws {
        try checkOptions()
        if lwfWeight != nil, !strategies.contains("lwf") { throw UserError("--lwf-weight weighs LwF's old-task term: give it with --strategy lwf") }
        if isText { return try validateText() }
        for (name, given) in [("min-class-size", textClasses.minClassSize != nil), ("text-separator", text.textSeparator != nil),
                              ("text-column", text.textColumn != nil), ("max-tokens", text.maxTokens != nil)] where given {
            throw UserError("--\(name) is for texts, and --from \(source) is not a text model (a folder with model.safetensors and tokenizer.json)")
        }
        guard let classes = dataOptions.classes else { throw UserError("give the new task's --classes, such as 5-9") }
        let overlap = Set(try OptionTable.parseNumbers(oldClasses, spec: Spec.oldClasses))
            .intersection(try OptionTable.parseNumbers(classes, spec: Spec.classes)).sorted()
        guard overlap.isEmpty else {
            throw UserError("--classes and --old-classes overlap on \(overlap.map(String.init).joined(separator: ", ")): the new task must be new classes")
        }
    }

    func run() throws {
        let console = Console(output)
        if runOptions.dryRun { return console.result("options are valid", ["valid": true]) }
        if isText { return try runText(console: console) }
        // Both tasks read the data through the old model's recorded preprocessing (its size and
        // normalisation), as fine-tuning a pretrained model should; the old task's classes must
        // be the old model's own.
        // The data is read after the old model's record, but a missing folder is the first thing to say.
        guard FileManager.default.fileExists(atPath: dataOptions.data) else { throw UserError("--data: \(dataOptions.data): data does not exist") }
        let recorded = try recordedPreprocessing(source, role: "--from")
        var oldOptions = dataOptions
        oldOptions.classes = oldClasses
        oldOptions.labelsPerClass = nil
        let oldData = try oldOptions.load(seed: 0, recorded: recorded, holdingOutValidation: false)
        // A model that records no preprocessing (an ONNX file from elsewhere) sees both tasks
        // normalised one way: with the statistics of the old task's training examples.
        let reference = recorded ?? oldData.preprocessing
        let (oldTrain, oldTest) = (oldData.train, oldData.test)
        let newTaskPreprocessing = NewTaskPreprocessing()
        let old = try TransferSource.load(source, head: head, exampleShape: oldTest.exampleShape.dimensions,
                                          preprocessing: { newTaskPreprocessing.bySeed.values.first })
        let oldAccuracy = try Evaluation.accuracy(old.model, on: oldTest)
        let out = runOptions.out
        try Experiment.writeResolved(Self.self, values, to: out)
        console.say(String(format: "old model %@ on classes %@: old-task test accuracy %.2f%%", old.name, oldClasses, oldAccuracy * 100))
        if let note = old.headNote { console.say(note) }
        let seedList = try OptionTable.parseNumbers(seeds, spec: Spec.seeds).map(UInt64.init)
        let study = try makeStudy(training: sharedTraining, seeds: seedList, headPath: old.head)
        var printedWeights: [Float]?
        let scores: [String: [TransferStudy.Score]]
        do {
            scores = try study.run(
                oldModel: old.load, scratchModel: old.scratch,
                newTask: { seed in
                    let data = try dataOptions.load(seed: seed, recorded: reference, sameClasses: false)
                    newTaskPreprocessing.bySeed[seed] = data.preprocessing
                    let weights = try resolvedClassWeights(classWeights, labeled: data.labeledTrain)
                    if let weights, weights != printedWeights {
                        console.say(classWeightsLine(weights, classNames: data.labeledTrain.classNames))
                        printedWeights = weights
                    }
                    return TransferStudy.NewTask(train: data.labeledTrain, validation: data.validation, test: data.test, classWeights: weights)
                },
                oldTask: (oldTrain, oldTest), shouldStop: StopRequest.isRequested,
                trained: { name, seed, model in
                    // The first seed's new-task model, in the file that evaluate, export and distill read.
                    guard seed == seedList[0] else { return }
                    newTaskPreprocessing.bySeed = newTaskPreprocessing.bySeed.filter { $0.key == seed }
                    try old.save(model, (out as NSString).appendingPathComponent(name))
                    if strategies.count == 1 { try old.save(model, (out as NSString).appendingPathComponent("model")) }
                }) { name, seed, event in console.training(event, batchSize: batch, label: "\(name), seed \(seed): ") }
        } catch let error as ModelFormatError { throw UserError("\(error)") }
        var summaries: [String] = []
        var fields: [String: Any] = ["old_model_accuracy": oldAccuracy, "out": out]
        var results: [String: [[String: Double]]] = ["old model": [["old": oldAccuracy]]]
        for name in strategies {
            let newScores = scores[name]!.map(\.new), oldScores = scores[name]!.map { $0.old ?? .nan }
            results[name] = zip(seedList, scores[name]!).map { seed, score in
                ["seed": Double(seed), "new": score.new].merging(score.old.map { ["old": $0] } ?? [:]) { a, _ in a }
                    .merging(score.newMacroF1.map { ["new_macro_f1": $0] } ?? [:]) { a, _ in a }
            }
            let newF1 = scores[name]!.map { $0.newMacroF1 ?? .nan }
            let line = "\(name): new task \(meanAndDeviation(newScores)) (macro-F1 \(meanAndDeviation(newF1, percent: false))), old task \(meanAndDeviation(oldScores)) (old model \(String(format: "%.2f", oldAccuracy * 100)))"
            console.epoch(line, ["strategy": name, "new_task_accuracy": newScores, "new_task_macro_f1": newF1, "old_task_accuracy": oldScores])
            summaries.append(line)
            fields[name] = ["new_task_mean": newScores.reduce(0, +) / Double(newScores.count),
                            "new_task_macro_f1_mean": newF1.reduce(0, +) / Double(newF1.count),
                            "old_task_mean": oldScores.reduce(0, +) / Double(oldScores.count)]
        }
        try writeJSON(results, to: (out as NSString).appendingPathComponent("results.json"))
        console.result(summaries.joined(separator: "\n") + "\nwrote \(out)/results.json and the new-task models", fields)
    }
}

extension TransferCommand {
    /// The Trainer settings that every strategy and seed of this command share (images and texts).
    var sharedTraining: TrainerConfiguration {
        var training = TrainerConfiguration()
        training.communicator = Processes.communicator
        training.steps = steps
        training.batchSize = batch
        training.learningRate = lr
        training.checkpointEvery = runOptions.checkpointEvery
        training.deterministicParts = deterministic
        if let optimizer { training.optimizer = optimizer }
        return training
    }

    /// The study over --strategy and the seeds with `training`, `headPath` the old model's
    /// layer that the new head replaces, and --freeze's layers.
    func makeStudy(training: TrainerConfiguration, seeds: [UInt64], headPath: String) throws -> TransferStudy {
        var study = try TransferStudy(strategies: strategies, seeds: seeds, training: training, backboneLearningRateScale: backboneLrScale,
                                      headPath: headPath, directory: runOptions.out, resume: runOptions.resume != nil)
        study.frozenLayers = freeze.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } } ?? []
        study.runSettings = recordedSettings
        if let lwfWeight { study.lwfWeight = lwfWeight }
        return study
    }
}

/// "mean ± sample standard deviation" in percent (as fractions with `percent` false), or "—"
/// when a value is missing.
func meanAndDeviation(_ values: [Double], percent: Bool = true) -> String {
    guard !values.isEmpty, !values.contains(where: \.isNaN) else { return "—" }
    let mean = values.reduce(0, +) / Double(values.count)
    let deviation = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(values.count - 1, 1))).squareRoot()
    return percent ? String(format: "%.2f ± %.2f", mean * 100, deviation * 100) : String(format: "%.4f ± %.4f", mean, deviation)
}

/// The new task's preprocessing, as each seed's data load found it (the model files record it).
final class NewTaskPreprocessing {
    var bySeed: [UInt64: Preprocessing] = [:]
}
