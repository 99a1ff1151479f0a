import ArgumentParser
import Datasets
import Distillation
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// Where the data comes from and which part of it is used.
struct DataOptions: ParsableArguments {
    @Option(name: Spec.data.long, help: Spec.data.help)
    var data: String = FashionMNIST.defaultDirectory

    @Option(name: Spec.classes.long, help: Spec.classes.help)
    var classes: String?

    @Option(name: Spec.labelsPerClass.long, help: Spec.labelsPerClass.help)
    var labelsPerClass: Int?

    @Option(name: Spec.validationFraction.long, help: Spec.validationFraction.help)
    var validationFraction: Double?

    var values: [(String, OptionValue?)] {
        [("data", .text(data)), ("classes", classes.map { .text($0) }), ("labels-per-class", labelsPerClass.map { .integer($0) }),
         ("validation-fraction", validationFraction.map { .number($0) })]
    }

    /// The data a run uses: training examples (with the labelled mask, when only some keep
    /// their labels), the validation split carved from the labelled ones, and the test set.
    struct Loaded {
        var train: Dataset
        var labeled: [Bool]?
        var validation: Dataset?
        var test: Dataset
        /// Where the training examples sit in the data as read (before the validation split).
        var trainPositions: [Int]?
        /// The labelled training examples alone.
        var labeledTrain: Dataset { labeled.map { mask in train.subset(mask.indices.filter { mask[$0] }) } ?? train }
    }

    /// Reads the data, selects classes, keeps `labels-per-class` labels, then holds out the
    /// validation split from the labelled examples (the test set is never touched).
    func load(seed: UInt64, unlabeled: Bool = false) throws -> Loaded {
        let dataset = try FashionMNIST(directory: data)
        var train = dataset.train, test = dataset.test
        if let classes {
            let list = try OptionTable.parseNumbers(classes, spec: Spec.classes)
            do {
                train = try train.selectingClasses(list)
                test = try test.selectingClasses(list)
            } catch let error as DatasetError { throw UserError("--classes: \(error.problem)") }
        }
        var labeled: [Bool]?
        if unlabeled {
            labeled = [Bool](repeating: false, count: train.count)
        } else if let labelsPerClass {
            do { labeled = try train.labeledMask(perClass: labelsPerClass, seed: seed) } catch let error as DatasetError {
                throw UserError("--labels-per-class: \(error.problem)")
            }
        }
        let fewest = unlabeled ? 0 : (labelsPerClass ?? train.classCounts.min() ?? 0)
        let fraction = validationFraction ?? (fewest >= TrainingDefaults.minimumLabelsPerClassForValidation ? TrainingDefaults.validationFraction : 0)
        guard fraction > 0 else { return Loaded(train: train, labeled: labeled, validation: nil, test: test) }
        do {
            let split = try train.holdingOutValidation(fraction: fraction, labeled: labeled, seed: seed)
            return Loaded(train: split.train, labeled: split.labeled, validation: split.validation, test: test, trainPositions: split.kept)
        } catch let error as DatasetError { throw UserError("--validation-fraction: \(error.problem)") }
    }
}

/// How long and how fast to train, and where the run folder is.
struct TrainingOptions: ParsableArguments {
    @Option(name: Spec.epochs.long, help: Spec.epochs.help) var epochs: Int = TrainingDefaults.epochs
    @Option(name: Spec.batch.long, help: Spec.batch.help) var batch: Int = TrainingDefaults.batchSize
    @Option(name: Spec.lr.long, help: Spec.lr.help) var lr: Float = TrainingDefaults.learningRate
    @Option(name: Spec.seed.long, help: Spec.seed.help) var seed: UInt64 = 0
    @Option(name: Spec.optimizer.long, help: Spec.optimizer.help) var optimizer: OptimizerChoice = TrainingDefaults.optimizer
    @Option(name: Spec.schedule.long, help: Spec.schedule.help) var schedule: ScheduleChoice = TrainingDefaults.schedule
    @Option(name: Spec.weightDecay.long, help: Spec.weightDecay.help) var weightDecay: Float = TrainingDefaults.weightDecay
    @Option(name: Spec.clipNorm.long, help: Spec.clipNorm.help) var clipNorm: Float = TrainingDefaults.clipNorm
    @Option(name: Spec.warmupSteps.long, help: Spec.warmupSteps.help) var warmupSteps: Int = TrainingDefaults.warmupSteps
    @Option(name: Spec.onNonFinite.long, help: Spec.onNonFinite.help) var onNonFinite: String = "stop"
    @Option(name: Spec.patience.long, help: Spec.patience.help) var patience: Int?
    @Option(name: Spec.seeds.long, help: Spec.seeds.help) var seeds: String?
    @OptionGroup var run: RunOptions

    var values: [(String, OptionValue?)] {
        [("epochs", .integer(epochs)), ("batch", .integer(batch)), ("lr", .number(lr)), ("seed", .integer(Int(clamping: seed))),
         ("optimizer", .text(optimizer.rawValue)), ("schedule", .text(schedule.rawValue)), ("weight-decay", .number(weightDecay)),
         ("clip-norm", .number(clipNorm)), ("warmup-steps", .integer(warmupSteps)), ("on-nonfinite", .text(onNonFinite)),
         ("patience", patience.map { .integer($0) }), ("seeds", seeds.map { .text($0) })] + run.values
    }

    /// The trainer's configuration from these options.
    func configuration(seed: UInt64, folder: String) -> TrainerConfiguration {
        var c = TrainerConfiguration()
        c.epochs = epochs
        c.batchSize = batch
        c.learningRate = lr
        c.seed = seed
        c.optimizer = optimizer
        c.schedule = schedule
        c.weightDecay = weightDecay
        c.clipNorm = clipNorm > 0 ? clipNorm : nil
        c.warmupSteps = warmupSteps
        c.nonFinite = onNonFinite == "rollback" ? .rollback(factor: 0.5, retries: 3) : .stop
        c.patience = patience
        c.runDirectory = folder
        c.checkpointEvery = run.checkpointEvery
        return c
    }
}

/// The run folder, resuming, checkpoints inside epochs and dry runs.
struct RunOptions: ParsableArguments {
    @Option(name: Spec.out.long, help: Spec.out.help) var out: String
    @Option(name: Spec.resume.long, help: Spec.resume.help) var resume: String?
    @Option(name: Spec.checkpointEvery.long, help: Spec.checkpointEvery.help) var checkpointEvery: Int?
    @Flag(name: Spec.dryRun.long, help: Spec.dryRun.help) var dryRun = false

    /// (`resume`, `checkpoint-every` and `dry-run` do not change results: they stay out of config.yaml.)
    var values: [(String, OptionValue?)] {
        [("out", .text(out)), ("checkpoint-every", checkpointEvery.map { .integer($0) })]
    }

    /// The checkpoint to continue from, when resuming and one was written.
    var checkpoint: String? {
        guard resume != nil else { return nil }
        let path = Trainer.checkpointPath(in: out)
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }
}

/// Writes `value` as pretty JSON to `path` atomically.
func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try AtomicFile.write(try encoder.encode(value), to: path)
}

/// A model from a run folder, a safetensors file (Distill's, or a PyTorch state dict of a zoo
/// architecture named by `architecture`), or an ONNX file (or a run folder holding
/// `model.onnx`: `SavedModel.onnxFile(at:)`). `name` is the zoo name when known.
func loadModel(_ path: String, architecture: String? = nil, role: String) throws -> (model: any Module, name: String?) {
    do {
        if let file = SavedModel.onnxFile(at: path) {
            return (try ONNXNetwork(contentsOf: file), nil)
        }
        let loaded = try SavedModel.load(path, name: architecture)
        return (loaded.model, loaded.name)
    } catch let error as ModelFormatError {
        throw UserError("\(role): \(error)")
    }
}

extension TabledCommand {
    /// The values that decide a run's numbers, as text, for the trainer to keep in its
    /// checkpoints: resuming after config.yaml changed names each value that differs. Output,
    /// the run folder and checkpoint frequency cannot change the numbers and stay out.
    var recordedSettings: [String: String] {
        var settings: [String: String] = [:]
        for (name, value) in values where !["quiet", "json", "out", "checkpoint-every"].contains(name) {
            guard let value else { continue }
            switch value {
            case let .text(text): settings["--" + name] = text
            case let .integer(number): settings["--" + name] = String(number)
            case let .number(number): settings["--" + name] = String(number)
            case let .flag(flag): settings["--" + name] = String(flag)
            case let .list(items): settings["--" + name] = items.joined(separator: ",")
            case let .weights(pairs): settings["--" + name] = pairs.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
            }
        }
        return settings
    }
}

/// A command that trains (train, distill): its options map to one training per seed.
protocol TrainingCommand: TabledCommand {
    var training: TrainingOptions { get }
    var output: OutputOptions { get }
    /// One run with `seed` in `folder`, continuing from `checkpoint` when given.
    func train(seed: UInt64, folder: String, checkpoint: String?, console: Console) throws -> RunOutcome
}

extension TrainingCommand {
    func run() throws {
        let console = Console(output)
        if training.run.dryRun { return console.result("options are valid", ["valid": true]) }
        try Experiment.writeResolved(Self.self, values, to: training.run.out)
        try runSeeds(training, console: console) { seed, folder, checkpoint in
            try train(seed: seed, folder: folder, checkpoint: checkpoint, console: console)
        }
    }
}

/// Runs one training per seed — one run for `--seed`, or each of `--seeds` in `OUT/seed-N` —
/// and reports the result, with mean ± std over seeds and a report comparing them when
/// there are several. When resuming, a seed that had finished keeps its results and an
/// unfinished one continues from its checkpoint.
func runSeeds(_ training: TrainingOptions, console: Console,
              _ train: (_ seed: UInt64, _ folder: String, _ checkpoint: String?) throws -> RunOutcome) throws {
    let out = training.run.out
    guard let text = training.seeds else {
        let outcome = try train(training.seed, out, training.run.checkpoint)
        return console.result(outcome.summary(out: out), outcome.fields(out: out))
    }
    var reports: [DistillationReport] = []
    var folders: [String] = []
    for seed in try OptionTable.parseNumbers(text, spec: Spec.seeds).map(UInt64.init) {
        let folder = (out as NSString).appendingPathComponent("seed-\(seed)")
        folders.append(folder)
        let evaluation = (folder as NSString).appendingPathComponent("evaluation.json")
        if training.run.resume != nil, let data = FileManager.default.contents(atPath: evaluation),
           let finished = try? JSONDecoder().decode(DistillationReport.self, from: data) {
            reports.append(finished)
            continue
        }
        let checkpoint = Trainer.checkpointPath(in: folder)
        let outcome = try train(seed, folder, training.run.resume != nil && FileManager.default.fileExists(atPath: checkpoint) ? checkpoint : nil)
        console.say("seed \(seed): " + outcome.summary(out: folder))
        reports.append(outcome.report)
    }
    try HTMLReport.write(try folders.map { try HTMLReport.Run.load($0) }, to: (out as NSString).appendingPathComponent("report.html"),
                         title: "\(folders.count) seeds")
    let final = reports.map(\.student.top1), selected = reports.compactMap { $0.selected?.top1 }
    try writeJSON(["final_test_accuracy": final, "selected_test_accuracy": selected], to: (out as NSString).appendingPathComponent("results.json"))
    var line = "test accuracy over \(reports.count) seeds: \(meanAndDeviation(final)) (final models)"
    if selected.count == final.count { line += ", \(meanAndDeviation(selected)) (models selected on validation)" }
    console.result(line + "; wrote \(out)/results.json and report.html", ["final_test_accuracies": final, "selected_test_accuracies": selected, "out": out])
}
