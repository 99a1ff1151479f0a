import ArgumentParser
import Distillation
import Foundation
import NeuralNet
import Tensors
import Training

/// How much a long-running command prints.
struct OutputOptions: ParsableArguments {
    @Flag(name: Spec.quiet.long, help: Spec.quiet.help)
    var quiet = false

    @Flag(name: Spec.json.long, help: Spec.json.help)
    var json = false

    var values: [(String, OptionValue?)] { [("quiet", .flag(quiet)), ("json", .flag(json))] }

    func validate() throws {
        guard !(quiet && json) else { throw UserError("--quiet and --json exclude each other") }
    }
}

/// How many threads a command computes on (`--threads`); applied once, by `Distill.main`,
/// after parsing and before the command runs.
struct ComputeOptions: ParsableArguments {
    @Option(name: Spec.threads.long, help: Spec.threads.help) var threads: Int?

    var values: [(String, OptionValue?)] { [("threads", threads.map { .integer($0) })] }

    func apply() {
        if let threads { Compute.threadCount = threads }
    }
}

/// A command that computes, and so takes `--threads`.
protocol ComputingCommand {
    var compute: ComputeOptions { get }
}

/// Where a command's messages go: text with a progress bar, only the result (`--quiet`), or
/// JSON lines (`--json`). Commands print through this and nothing else.
final class Console {
    let quiet: Bool, json: Bool
    private var progress = ProgressReporter()

    /// (A plain value, not `OutputOptions`: an ArgumentParser type built without parsing
    /// traps when its flags are read, which the demo once did.)
    /// In a data-parallel run only rank 0 prints: the other ranks are as quiet as can be.
    init(quiet: Bool = false, json: Bool = false) {
        self.quiet = quiet || !Processes.isWriter
        self.json = json && Processes.isWriter
        muted = !Processes.isWriter
    }
    private let muted: Bool

    convenience init(_ options: OutputOptions) { self.init(quiet: options.quiet, json: options.json) }

    var isText: Bool { !quiet && !json }

    /// A progress message (hidden by --quiet and --json).
    func say(_ text: String) { if isText { print(text) } }

    func step(epoch: Int, step: Int, of total: Int, loss: Float, examplesPerSecond: Double, batchSize: Int) {
        if isText { progress.step(epoch: epoch, step: step, of: total, loss: loss, examplesPerSecond: examplesPerSecond, batchSize: batchSize) }
    }

    /// An epoch's line, or its JSON object.
    func epoch(_ text: String, _ fields: [String: Any]) {
        if json { emit(["event": "epoch"].merging(fields) { a, _ in a }) } else { say(text) }
    }

    /// Output that is the command's result itself (a summary, a table, JSON it was asked for):
    /// printed in every mode.
    func text(_ value: String, terminator: String = "\n") { if !muted { print(value, terminator: terminator) } }

    /// The final result: shown in every mode.
    func result(_ text: String, _ fields: [String: Any]) {
        if json { emit(["event": "result"].merging(fields) { a, _ in a }) } else if !muted { print(text) }
    }

    /// A training event: progress bar and epoch lines as text, every step, checkpoint and
    /// epoch as a JSON line.
    func training(_ event: TrainingEvent, batchSize: Int, label: String = "") {
        switch event {
        case let .step(epoch, step, total, globalStep, loss, rate):
            if json { emit(["event": "step", "epoch": epoch + 1, "step": globalStep, "loss": Double(loss)]) }
            // Short epochs (a few-label run's) end within a blink: their epoch lines are enough.
            if total >= 50 { self.step(epoch: epoch + 1, step: step, of: total, loss: loss, examplesPerSecond: rate, batchSize: batchSize) }
        case let .checkpoint(globalStep, written):
            if json { emit(["event": "checkpoint", "step": globalStep, "written": written]) }
        case let .cachingTeacher(done, total) where done == total:
            say("\(label)cached teacher outputs for \(total) images")
        case let .epochFinished(record, isBest):
            let validation = record.validationAccuracy.map { String(format: "  validation accuracy %.2f%%%@", $0 * 100, isBest ? " (best)" : "") } ?? ""
            let skipped = record.skippedFiles.flatMap { $0 > 0 ? "  \($0) bad file\($0 == 1 ? "" : "s") skipped" : nil } ?? ""
            epoch(String(format: "%@epoch %d  loss %.4f%@  %.1f s%@", label, record.epoch + 1, record.loss, validation, record.seconds, skipped),
                  ["epoch": record.epoch + 1, "loss": Double(record.loss), "terms": record.terms.mapValues(Double.init),
                   "validation_accuracy": record.validationAccuracy ?? Double.nan, "seconds": record.seconds, "best": isBest, "skipped_files": record.skippedFiles ?? 0]
                    .merging(record.allReduceWaitSeconds.map { ["all_reduce_wait_seconds": $0] } ?? [:]) { a, _ in a })
        case let .rolledBack(epoch, step, factor):
            say("\(label)non-finite loss at epoch \(epoch + 1), step \(step + 1): rolled back, learning rate × \(factor)")
        case let .stoppedEarly(epoch):
            say("\(label)stopped early after epoch \(epoch + 1): no better validation accuracy for --patience epochs")
        case let .skippedFile(epoch, error):
            // Skipped files are worth a line each, also when quiet: the user's data has a problem.
            if json { emit(["event": "skipped_file", "epoch": epoch + 1, "file": error.file, "problem": error.problem]) }
            else { FileHandle.standardError.write(Data("\(label)skipped \(error.file): \(error.problem) (--skip-bad-files)\n".utf8)) }
        default: break
        }
    }

    private func emit(_ object: [String: Any]) {
        // JSON has no NaN: a missing score (a scratch run's old task, say), at any depth, is null.
        func clean(_ value: Any) -> Any {
            if let d = value as? Double, !d.isFinite { return NSNull() }
            if let f = value as? Float, !f.isFinite { return NSNull() }
            if let list = value as? [Any] { return list.map(clean) }
            if let fields = value as? [String: Any] { return fields.mapValues(clean) }
            return value
        }
        let cleaned = object.mapValues(clean)
        guard let data = try? JSONSerialization.data(withJSONObject: cleaned, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        // Unbuffered: a reader of the pipe sees each line as it happens.
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}

extension OptimizerChoice: ExpressibleByArgument {}
extension ScheduleChoice: ExpressibleByArgument {}
extension MatmulPrecision: ExpressibleByArgument {}

/// A user mistake found while running (a missing file, bad data, a diverged run): printed
/// as one line, "Error: …", with exit code 1. (ArgumentParser's ValidationError would add
/// the usage text; the mistake is not in the usage.)
struct UserError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
