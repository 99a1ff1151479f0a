import ArgumentParser
import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import Training

/// Where the data comes from and which part of it is used.
struct DataOptions: ParsableArguments {
    @Option(name: Spec.data.long, help: Spec.data.help)
    var data: String = FashionMNIST.defaultDirectory

    @Option(name: Spec.testData.long, help: Spec.testData.help) var testData: String?
    @Option(name: Spec.testFraction.long, help: Spec.testFraction.help) var testFraction: Double?
    @Option(name: Spec.imageSize.long, help: Spec.imageSize.help) var imageSize: String?
    @Option(name: Spec.channels.long, help: Spec.channels.help) var channels: Int?
    @Option(name: Spec.inputs.long, help: Spec.inputs.help) var inputs: String?
    @Option(name: Spec.labels.long, help: Spec.labels.help) var labels: String?

    @Option(name: Spec.classes.long, help: Spec.classes.help)
    var classes: String?

    @Option(name: Spec.labelsPerClass.long, help: Spec.labelsPerClass.help)
    var labelsPerClass: Int?

    @Option(name: Spec.validationFraction.long, help: Spec.validationFraction.help)
    var validationFraction: Double?

    var values: [(String, OptionValue?)] {
        [("data", .text(data)), ("test-data", testData.map { .text($0) }), ("test-fraction", testFraction.map { .number($0) }),
         ("image-size", imageSize.map { .text($0) }), ("channels", channels.map { .integer($0) }), ("inputs", inputs.map { .text($0) }),
         ("labels", labels.map { .text($0) }),
         ("classes", classes.map { .text($0) }), ("labels-per-class", labelsPerClass.map { .integer($0) }),
         ("validation-fraction", validationFraction.map { .number($0) })]
    }

    /// The data a run uses: training examples (with the labelled mask, when only some keep
    /// their labels), the validation split, the test set, and the preprocessing fitted on the
    /// training examples — all three sets normalised with it.
    struct Loaded {
        var train: Dataset
        var labeled: [Bool]?
        var validation: Dataset?
        var test: Dataset
        /// Where the training examples sit in the data as read (before the validation split).
        var trainPositions: [Int]?
        var preprocessing: Preprocessing
        var kind: UserData.Kind
        /// What one example is, for messages.
        var noun: String { preprocessing.kind == .images ? "images" : "examples" }
        /// The labelled training examples alone.
        var labeledTrain: Dataset { labeled.map { mask in train.subset(mask.indices.filter { mask[$0] }) } ?? train }

        /// The options of a zoo model that fits this data.
        func modelOptions(width: Float = 1, hidden: [Int]? = nil) throws -> ModelOptions {
            do {
                return try ModelOptions(classes: train.classCount, exampleShape: train.exampleShape.dimensions, width: width,
                                        hiddenSizes: hidden ?? ModelOptions().hiddenSizes)
            } catch let error as ModuleError { throw UserError("\(error)") }
        }

        /// Training-time augmentation for `--augment`: for grayscale 28×28 images (Fashion-MNIST)
        /// random crops with 2-pixel padding and random erasing; for colour images random crops
        /// padded by an eighth of the side (4 pixels at 32) and horizontal flips, as CIFAR recipes do.
        func augmentation() throws -> Augmentation {
            guard preprocessing.kind == .images else { throw UserError("--augment applies to images, and this data is a table of features") }
            let n = preprocessing.normalization
            let black = zip(n.mean, n.standardDeviation).map { -$0 / $1 }.reduce(0, +) / Float(max(n.mean.count, 1))
            if preprocessing.channels == 3 {
                return Augmentation(cropPadding: max(2, min(preprocessing.height, preprocessing.width) / 8), horizontalFlip: true, fillValue: black)
            }
            return Augmentation(cropPadding: 2, erasingProbability: 0.25, fillValue: black)
        }
    }

    /// The image size as (height, width).
    func parsedImageSize() throws -> (height: Int, width: Int)? { try imageSize.map { try parseImageSize($0, flag: "image-size") } }

    /// Reads the data; carves the test set (when the data has none), selects classes, keeps
    /// `labels-per-class` labels, holds out the validation split from the labelled examples
    /// (unless the data brings one), then fits the preprocessing on the training examples
    /// and applies it to every set. With `recorded` (a trained model's preprocessing: evaluate,
    /// predict) images take its size and channels, and its normalisation is applied, never refitted.
    /// With `sameClasses` false (a new task for an old model) the recorded class names are not
    /// held against the data's, and the data's own are kept.
    func load(seed: UInt64, unlabeled: Bool = false, recorded: Preprocessing? = nil, sameClasses: Bool = true,
              skippingBadFiles: Bool = false, holdingOutValidation: Bool = true) throws -> Loaded {
        var size = try parsedImageSize()
        var channels = self.channels
        if let recorded, recorded.kind == .images, UserData.isImageFolder(data) {
            size = size ?? (recorded.height, recorded.width)
            channels = channels ?? recorded.channels
        }
        let user: UserData
        do {
            user = try UserData.load(UserData.Request(path: data, testPath: testData, testFraction: testFraction, imageHeight: size?.height,
                                                      imageWidth: size?.width, channels: channels, inputs: inputs, labels: labels))
        } catch let error as DatasetError { throw UserError("--data: \(error)") }
        let parts = try splitting(train: user.train, validation: user.validation, test: user.test, seed: seed, unlabeled: unlabeled,
                                  holdingOutValidation: holdingOutValidation)
        var train = parts.train, test = parts.test, validation = parts.validation
        let labeled = parts.labeled, positions = parts.positions
        do {
            if let recorded, recorded.exampleShape != train.exampleShape.dimensions {
                throw UserError("--data: the model takes examples of shape \(recorded.exampleShape), \(data) has \(train.exampleShape.dimensions)")
            }
            var preprocessing = try user.preprocessing(fittedOn: train, skippingBadFiles: skippingBadFiles, normalization: recorded?.normalization)
            if let recorded {
                if let fixed = user.fixedNormalization, fixed != recorded.normalization {
                    throw UserError("--data: \(data) comes normalised with Fashion-MNIST's statistics, and the model was trained with others (\(recorded.normalization.mean))")
                }
                if let names = recorded.featureNames, let given = preprocessing.featureNames, names != given {
                    throw UserError("--data: the model was trained on the columns \(names.joined(separator: ", ")), and \(data) has \(given.joined(separator: ", "))")
                }
                guard recorded.exampleShape == preprocessing.exampleShape else {
                    throw UserError("--data: the model takes examples of shape \(recorded.exampleShape), \(data) has \(preprocessing.exampleShape)")
                }
                guard !sameClasses || recorded.classNames == preprocessing.classNames else {
                    throw UserError("--data: the model's classes (\(recorded.classNames.prefix(12).joined(separator: ", "))) are not \(data)'s (\(preprocessing.classNames.prefix(12).joined(separator: ", "))); select them with --classes")
                }
                let classNames = preprocessing.classNames
                preprocessing = recorded
                preprocessing.classNames = classNames
            }
            if user.fixedNormalization == nil {
                train = try train.normalized(preprocessing.normalization)
                test = try test.normalized(preprocessing.normalization)
                validation = try validation?.normalized(preprocessing.normalization)
            }
            return Loaded(train: train, labeled: labeled, validation: validation, test: test, trainPositions: positions,
                          preprocessing: preprocessing, kind: user.kind)
        } catch let error as DatasetError { throw UserError("--data: \(error)") }
    }
    /// What every kind of data goes through once read: selects `--classes`, keeps
    /// `--labels-per-class` labels, and holds out the validation split from the labelled
    /// training examples (unless the data brings one, or `holdingOutValidation` is false).
    func splitting(train: Dataset, validation: Dataset?, test: Dataset, seed: UInt64, unlabeled: Bool = false, holdingOutValidation: Bool = true) throws
        -> (train: Dataset, labeled: [Bool]?, validation: Dataset?, test: Dataset, positions: [Int]?) {
        var train = train, test = test, validation = validation
        if let classes {
            let list = try OptionTable.parseNumbers(classes, spec: Spec.classes)
            do {
                train = try train.selectingClasses(list)
                test = try test.selectingClasses(list)
                validation = try validation?.selectingClasses(list)
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
        var positions: [Int]?
        if !holdingOutValidation {
            validation = nil
        } else if validation == nil {
            let fewest = unlabeled ? 0 : (labelsPerClass ?? train.classCounts.min() ?? 0)
            let fraction = validationFraction ?? (fewest >= TrainingDefaults.minimumLabelsPerClassForValidation ? TrainingDefaults.validationFraction : 0)
            if fraction > 0 {
                do {
                    let split = try train.holdingOutValidation(fraction: fraction, labeled: labeled, seed: seed)
                    (train, labeled, validation, positions) = (split.train, split.labeled, split.validation, split.kept)
                } catch let error as DatasetError { throw UserError("--validation-fraction: \(error.problem)") }
            }
        } else if validationFraction != nil {
            throw UserError("--validation-fraction: \(data) brings its own validation folder (val/)")
        }
        return (train, labeled, validation, test, positions)
    }
}

/// An image size from "32" (square) or "48x192" (height × width), sides 1 to 4096.
func parseImageSize(_ text: String, flag: String) throws -> (height: Int, width: Int) {
    let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard (1...2).contains(parts.count), parts.allSatisfy({ $0.map { (1...4_096).contains($0) } ?? false }) else {
        throw UserError("--\(flag) '\(text)' must be a side like 32 or HEIGHTxWIDTH like 48x192, sides 1 to 4096")
    }
    return (parts[0]!, parts.count == 2 ? parts[1]! : parts[0]!)
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
    @Option(name: Spec.matmulPrecision.long, help: Spec.matmulPrecision.help) var matmulPrecision: MatmulPrecision = TrainingDefaults.matmulPrecision
    @Option(name: Spec.classWeights.long, help: Spec.classWeights.help) var classWeights: String?
    @Option(name: Spec.patience.long, help: Spec.patience.help) var patience: Int?
    @Flag(name: Spec.skipBadFiles.long, help: Spec.skipBadFiles.help) var skipBadFiles = false
    @Flag(name: Spec.noSyncBatchNorm.long, help: Spec.noSyncBatchNorm.help) var noSyncBatchNorm = false
    @Flag(name: Spec.noOverlapAllReduce.long, help: Spec.noOverlapAllReduce.help) var noOverlapAllReduce = false
    @Option(name: Spec.deterministic.long, help: Spec.deterministic.help) var deterministic: Int?
    @Option(name: Spec.seeds.long, help: Spec.seeds.help) var seeds: String?
    @OptionGroup var run: RunOptions

    var values: [(String, OptionValue?)] {
        [("epochs", .integer(epochs)), ("batch", .integer(batch)), ("lr", .number(lr)), ("seed", .integer(Int(clamping: seed))),
         ("optimizer", .text(optimizer.rawValue)), ("schedule", .text(schedule.rawValue)), ("weight-decay", .number(weightDecay)),
         ("clip-norm", .number(clipNorm)), ("warmup-steps", .integer(warmupSteps)), ("on-nonfinite", .text(onNonFinite)),
         ("matmul-precision", .text(matmulPrecision.rawValue)), ("class-weights", classWeights.map { .text($0) }),
         ("patience", patience.map { .integer($0) }), ("skip-bad-files", .flag(skipBadFiles)),
         ("no-sync-batch-norm", .flag(noSyncBatchNorm)), ("no-overlap-all-reduce", .flag(noOverlapAllReduce)), ("deterministic", deterministic.map { .integer($0) }), ("seeds", seeds.map { .text($0) })] + run.values
    }

    func validate() throws {
        guard matmulPrecision.isSupported else {
            throw UserError("--matmul-precision \(matmulPrecision.rawValue): this CPU has no bfloat16 matrix products in oneDNN (they need AVX-512; fast with AMX or AVX512-BF16); leave it at float32")
        }
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
        c.matmulPrecision = matmulPrecision
        c.patience = patience
        c.skipBadFiles = skipBadFiles
        c.synchronizeBatchNorm = !noSyncBatchNorm
        c.overlapAllReduce = !noOverlapAllReduce
        c.deterministicParts = deterministic
        c.communicator = Processes.communicator
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
    guard Processes.isWriter else { return }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try AtomicFile.write(try encoder.encode(value), to: path)
}

/// The zoo model's size: its width multiplier and the MLP's hidden layers.
struct ModelSizeOptions: ParsableArguments {
    @Option(name: Spec.width.long, help: Spec.width.help) var width: Float = 1
    @Option(name: Spec.hidden.long, help: Spec.hidden.help) var hidden: String?

    var values: [(String, OptionValue?)] { [("width", .number(width)), ("hidden", hidden.map { .text($0) })] }

    /// The hidden sizes from "256,128".
    func hiddenSizes() throws -> [Int]? {
        guard let hidden else { return nil }
        let sizes = hidden.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !sizes.isEmpty, sizes.count <= 16, sizes.allSatisfy({ $0.map { (1...65_536).contains($0) } ?? false }) else {
            throw UserError("--hidden '\(hidden)' must be 1 to 16 layer sizes like 256,128, each 1 to 65536")
        }
        return sizes.map { $0! }
    }

    /// Options of a zoo model of this size for `data`.
    func modelOptions(for data: DataOptions.Loaded) throws -> ModelOptions {
        try data.modelOptions(width: width, hidden: try hiddenSizes())
    }
}

extension TabledCommand {
    /// The values that decide a run's numbers, as text, for the trainer to keep in its
    /// checkpoints: resuming after config.yaml changed names each value that differs. Output,
    /// the run folder and checkpoint frequency cannot change the numbers and stay out.
    var recordedSettings: [String: String] {
        var settings: [String: String] = [:]
        for (name, value) in values where !["quiet", "json", "out", "checkpoint-every", "threads"].contains(name) {
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
protocol TrainingCommand: TabledCommand, ComputingCommand {
    var training: TrainingOptions { get }
    var output: OutputOptions { get }
    /// One run with `seed` in `folder`, continuing from `checkpoint` when given.
    func train(seed: UInt64, folder: String, checkpoint: String?, console: Console) throws -> RunOutcome
}

extension TrainingCommand {
    func run() throws { try runTraining() }

    /// Writes config.yaml and trains once per seed.
    func runTraining() throws {
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
    if Processes.isWriter {
        try HTMLReport.write(try folders.map { try HTMLReport.Run.load($0) }, to: (out as NSString).appendingPathComponent("report.html"),
                             title: "\(folders.count) seeds")
    }
    let final = reports.map(\.student.top1), selected = reports.compactMap { $0.selected?.top1 }
    let finalF1 = reports.map(\.student.macroF1), selectedF1 = reports.compactMap { $0.selected?.macroF1 }
    try writeJSON(["final_test_accuracy": final, "selected_test_accuracy": selected, "final_macro_f1": finalF1, "selected_macro_f1": selectedF1],
                  to: (out as NSString).appendingPathComponent("results.json"))
    var line = "test accuracy over \(reports.count) seeds: \(meanAndDeviation(final)) (final models)"
    if selected.count == final.count { line += ", \(meanAndDeviation(selected)) (models selected on validation)" }
    line += "; macro-F1 \(meanAndDeviation(finalF1, percent: false)) (final models)"
    console.result(line + "; wrote \(out)/results.json and report.html", ["final_test_accuracies": final, "selected_test_accuracies": selected,
                                                                         "final_macro_f1": finalF1, "selected_macro_f1": selectedF1, "out": out])
}
