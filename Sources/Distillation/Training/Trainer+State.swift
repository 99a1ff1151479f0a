import Datasets
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// Where a run is and what it has seen: everything besides the weights and the optimizer
/// that a resumed run needs to go on exactly as an uninterrupted one (kept in the checkpoint).
struct RunState: Codable, Equatable {
    var epoch = 0
    /// Batches of `epoch` already trained (the loader's position).
    var batchInEpoch = 0
    /// Optimizer steps taken in the run.
    var step = 0
    /// The rollback policy's learning-rate factor and the rollbacks used.
    var learningRateFactor: Float = 1
    var retries = 0
    var bestAccuracy: Double?
    var bestEpoch: Int?
    var epochsSinceBest = 0
    var stoppedEarly = false
    /// The current epoch's sums so far.
    var lossSum: Float = 0
    var termSums: [String: Float] = [:]
    var batches = 0
    var seconds: Double = 0
    /// Files of the current epoch skipped as undecodable (nil: none).
    var skippedFiles: Int?
    var history: [EpochRecord] = []

    /// Counts a step; `loss` nil for a batch with nothing left to train on (every file skipped).
    mutating func add(loss: Float?, terms: [String: Float]) {
        if let loss {
            lossSum += loss
            for (k, v) in terms { termSums[k, default: 0] += v }
            batches += 1
        }
        batchInEpoch += 1
        step += 1
    }

    mutating func nextEpoch() {
        epoch += 1
        batchInEpoch = 0
        lossSum = 0
        termSums = [:]
        batches = 0
        seconds = 0
        skippedFiles = nil
    }
}

/// The state a rollback returns to, in memory.
struct Snapshot {
    let checkpoint: TrainingCheckpoint
    let state: RunState

    init(_ trainer: Trainer) {
        checkpoint = TrainingCheckpoint(model: trainer.trainable, optimizer: trainer.optimizer!, epoch: trainer.state.epoch, step: trainer.state.step)
        state = trainer.state
    }

    func restore(into trainer: Trainer) throws {
        try checkpoint.restore(model: trainer.trainable, optimizer: trainer.optimizer!)
        trainer.state = state
    }
}

extension Trainer {
    static let stateKey = "distill.run-state", settingsPrefix = "setting."

    /// The run folder's checkpoint file.
    public static func checkpointPath(in directory: String) -> String {
        (directory as NSString).appendingPathComponent("checkpoint.safetensors")
    }

    /// Writes the full training state to the run folder's checkpoint, atomically (a run killed
    /// while writing keeps the previous checkpoint). Returns its path, or nil without a run folder.
    @discardableResult
    func writeCheckpoint(events: (TrainingEvent) -> Void) throws -> String? {
        guard let directory = configuration.runDirectory, let optimizer else { return nil }
        // Data parallel: rank 0 writes; the others hold the same state and report its path.
        guard communicator.isWriter else { return Self.checkpointPath(in: directory) }
        events(.checkpoint(globalStep: state.step, written: false))
        // The time of the epoch so far goes into the checkpoint (a resumed epoch adds to it).
        // At an epoch's end the state is already the next epoch's (nothing done yet): adding
        // there would count the finished epoch's time again in the next one.
        if state.batchInEpoch > 0 { state.seconds += Date().timeIntervalSince(segmentStart) }
        segmentStart = Date()
        var metadata = Dictionary(uniqueKeysWithValues: settings.map { (Self.settingsPrefix + $0.key, $0.value) })
        metadata[Self.stateKey] = String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = Self.checkpointPath(in: directory)
        try TrainingCheckpoint(model: trainable, optimizer: optimizer, epoch: state.epoch, step: state.step, metadata: metadata).save(to: path)
        events(.checkpoint(globalStep: state.step, written: true))
        return path
    }

    /// The trainer's and the caller's settings that decide the numbers.
    var settings: [String: String] {
        var result = configuration.fingerprint.merging(runSettings) { _, caller in caller }
        result["losses"] = losses.map { "\($0.loss.name)×\($0.weight)" }.joined(separator: ",")
        result["teachers"] = String(teachers.count)
        return result
    }

    /// Continues the run whose checkpoint is at `path` (a run folder's `checkpoint.safetensors`):
    /// the next `fit` starts at the step after it, with the same data order, schedule, optimizer
    /// state, rollback factor and best-so-far, and ends with the same weights as an
    /// uninterrupted run. Call with the same training set, teachers and losses; a checkpoint
    /// written with other settings is refused, naming each that differs.
    public func resume(from path: String, train: Dataset) throws {
        let checkpoint = try TrainingCheckpoint.load(from: path)
        var stored: [String: String] = [:]
        for (key, value) in checkpoint.metadata where key.hasPrefix(Self.settingsPrefix) { stored[String(key.dropFirst(Self.settingsPrefix.count))] = value }
        let current = settings
        let differences = Set(stored.keys).union(current.keys).sorted().filter { stored[$0] != current[$0] }
        guard differences.isEmpty else {
            throw DistillationError("\(path): the checkpoint does not match this run's configuration: "
                + differences.map { "\($0) is \(current[$0] ?? "unset") here but \(stored[$0] ?? "unset") in the checkpoint" }.joined(separator: "; "))
        }
        guard let text = checkpoint.metadata[Self.stateKey], let decoded = try? JSONDecoder().decode(RunState.self, from: Data(text.utf8)) else {
            throw DistillationError("\(path): the checkpoint has no run state (written by an older version: start the run again)")
        }
        try check(train: train, labeled: nil)
        if optimizer == nil { try prepare(train: train) }
        try checkpoint.restore(model: trainable, optimizer: optimizer!)
        state = decoded
    }

    /// Appends the epoch to `metrics.jsonl` (rewritten whole and atomically from the history,
    /// so a resumed run's file holds each epoch once) and to the TensorBoard event file.
    func writeMetrics(_ record: EpochRecord) throws {
        guard let directory = outputDirectory else { return }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let lines = try state.history.map { String(decoding: try encoder.encode($0), as: UTF8.self) + "\n" }.joined()
        try AtomicFile.write(Data(lines.utf8), to: (directory as NSString).appendingPathComponent("metrics.jsonl"))
        if tensorBoard == nil { tensorBoard = try TensorBoardWriter(directory: directory) }
        let board = tensorBoard!, step = state.step
        board.addScalar("loss/total", value: record.loss, step: step)
        for (term, value) in record.terms.sorted(by: { $0.key < $1.key }) { board.addScalar("loss/\(term)", value: value, step: step) }
        board.addScalar("learning_rate", value: record.learningRate, step: step)
        if let accuracy = record.validationAccuracy { board.addScalar("accuracy/validation", value: Float(accuracy), step: step) }
        try board.flush()
    }
}
