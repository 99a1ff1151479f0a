import ArgumentParser
import Datasets
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// Where the data comes from and which part of it is used (shared by train and distill).
struct DataOptions: ParsableArguments {
    @Option(help: "Folder with the four Fashion-MNIST IDX files (gzip or raw).")
    var data: String = FashionMNIST.defaultDirectory

    @Option(help: "Classes to use, relabelled from 0: a range '5-9' or a list '0,2,4'.")
    var classes: String?

    @Option(help: "Keep labels for only this many training images per class (seeded); the rest stay unlabelled.")
    var labelsPerClass: Int?

    /// Parses "5-9" or "0,2,4".
    static func parseClasses(_ text: String) throws -> [Int] {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        if parts.count == 2, let low = Int(parts[0]), let high = Int(parts[1]) {
            guard low <= high else { throw UserError("--classes '\(text)': the range is empty") }
            return Array(low...high)
        }
        let items = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !items.isEmpty, items.allSatisfy({ $0 != nil }) else {
            throw UserError("--classes '\(text)' is not a range like 5-9 or a list like 0,2,4")
        }
        return items.map { $0! }
    }

    /// These options as resolved-configuration entries.
    var configEntries: [(String, Experiment.Value?)] {
        [("data", .text(data)), ("classes", classes.map { .text($0) }), ("labels-per-class", labelsPerClass.map { .integer($0) })]
    }

    func validate() throws {
        if let classes { _ = try Self.parseClasses(classes) }
        if let labelsPerClass, labelsPerClass < 1 { throw UserError("--labels-per-class must be at least 1, got \(labelsPerClass)") }
    }

    /// Training and test sets after the class selection, and which training examples keep labels.
    func load(seed: UInt64) throws -> (train: Dataset, test: Dataset, labeled: [Bool]?) {
        let dataset: FashionMNIST
        do { dataset = try FashionMNIST(directory: data) } catch let error as DatasetError { throw UserError("\(error)") }
        var train = dataset.train, test = dataset.test
        if let classes {
            let list = try Self.parseClasses(classes)
            do {
                train = try train.selectingClasses(list)
                test = try test.selectingClasses(list)
            } catch let error as DatasetError { throw UserError("--classes: \(error.problem)") }
        }
        var labeled: [Bool]?
        if let labelsPerClass {
            do { labeled = try train.labeledMask(perClass: labelsPerClass, seed: seed) } catch let error as DatasetError {
                throw UserError("--labels-per-class: \(error.problem)")
            }
        }
        return (train, test, labeled)
    }
}

/// How long and how fast to train.
struct TrainingOptions: ParsableArguments {
    @Option(help: "Training epochs.")
    var epochs: Int = 3

    @Option(help: "Batch size.")
    var batch: Int = 128

    @Option(help: "Peak learning rate.")
    var lr: Float = 0.05

    @Option(help: "Random seed (weights, data order, label choice).")
    var seed: UInt64 = 0

    @Option(help: "Optimizer: \(OptimizerChoice.allCases.map(\.rawValue).joined(separator: ", ")) (sgd has Nesterov momentum 0.9).")
    var optimizer: OptimizerChoice = .sgd

    @Option(help: "Learning-rate schedule: \(ScheduleChoice.allCases.map(\.rawValue).joined(separator: ", ")).")
    var schedule: ScheduleChoice = .cosine

    @Option(help: "Weight decay on weights (not biases or normalisation parameters).")
    var weightDecay: Float = 5e-4

    @Option(help: "Run folder to write (config, metrics, checkpoints, model, report).")
    var out: String

    /// These options as resolved-configuration entries.
    var configEntries: [(String, Experiment.Value?)] {
        [("epochs", .integer(epochs)), ("batch", .integer(batch)), ("lr", .number(lr)), ("seed", .integer(Int(seed))),
         ("optimizer", .text(optimizer.rawValue)), ("schedule", .text(schedule.rawValue)), ("weight-decay", .number(weightDecay)),
         ("out", .text(out))]
    }

    func validate() throws {
        guard epochs >= 1 else { throw UserError("--epochs must be at least 1, got \(epochs)") }
        guard batch >= 1 else { throw UserError("--batch must be at least 1, got \(batch)") }
        guard lr > 0 && lr.isFinite else { throw UserError("--lr must be a positive number, got \(lr)") }
        guard weightDecay >= 0 && weightDecay.isFinite else { throw UserError("--weight-decay must be zero or positive, got \(weightDecay)") }
    }
}

/// Writes `value` as pretty JSON to `path` atomically.
func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try AtomicFile.write(try encoder.encode(value), to: path)
}

/// Trains `model` from scratch with the CLI's recipe (by default SGD with Nesterov momentum
/// 0.9, weight decay 5e-4 on weights, cosine schedule; clipping at norm 5), evaluating on
/// `test` about ten times (every epoch for short runs) and reporting each evaluation to `report`.
func trainFromScratch(_ model: any Module, epochs: Int, batchSize: Int, learningRate: Float, optimizer choice: OptimizerChoice = .sgd,
                      schedule scheduleChoice: ScheduleChoice = .cosine, weightDecay: Float = 5e-4, train: Dataset, test: Dataset,
                      console: Console, using generator: inout RandomGenerator,
                      report: (_ epoch: Int, _ result: EpochResult, _ learningRate: Float, _ accuracy: Double) throws -> Void) throws {
    let optimizer = choice.make(model, learningRate: learningRate, weightDecay: weightDecay)
    let schedule = scheduleChoice.make(totalSteps: (train.count + batchSize - 1) / batchSize * epochs)
    var step = 0
    // Long epochs (a teacher's) show progress; the many short epochs of a few-label run do not.
    let showProgress = train.count >= 20_000
    for epoch in 1...epochs {
        let result = ClassifierTraining.trainEpoch(model, optimizer: optimizer, schedule: schedule, images: train.inputs, labels: train.labels,
                                                   batchSize: batchSize, firstStep: step, clipNorm: 5, using: &generator) { batch, total, loss, rate in
            if showProgress { console.step(epoch: epoch, step: batch, of: total, loss: loss, examplesPerSecond: rate, batchSize: batchSize) }
        }
        step = result.steps
        guard result.loss.isFinite else { throw UserError("training diverged in epoch \(epoch) (loss \(result.loss)); lower --lr") }
        guard epoch == epochs || epoch % max(1, epochs / 10) == 0 else { continue }
        try report(epoch, result, learningRate * schedule.factor(atStep: max(step - 1, 0)),
                   ClassifierTraining.accuracy(model, images: test.inputs, labels: test.labels))
    }
}

/// A model from a run folder, a safetensors file (Distill's, or a PyTorch state dict of a zoo
/// architecture named by `architecture`), or an ONNX file. `name` is the zoo name when known.
func loadModel(_ path: String, architecture: String? = nil, role: String) throws -> (model: any Module, name: String?) {
    do {
        if path.lowercased().hasSuffix(".onnx") {
            return (try ONNXNetwork(contentsOf: path), nil)
        }
        let loaded = try SavedModel.load(path, name: architecture)
        return (loaded.model, loaded.name)
    } catch let error as ModelFormatError {
        throw UserError("\(role): \(error)")
    }
}
