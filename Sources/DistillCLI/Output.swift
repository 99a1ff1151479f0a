import ArgumentParser
import Foundation
import NeuralNet

/// How much a long-running command prints.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print only the final result line (errors still go to standard error).")
    var quiet = false

    @Flag(help: "Print one JSON object a line (each epoch, then the result) instead of text, for machines.")
    var json = false

    func validate() throws {
        guard !(quiet && json) else { throw UserError("--quiet and --json exclude each other") }
    }
}

/// Where a command's messages go: text with a progress bar, only the result (`--quiet`), or
/// JSON lines (`--json`). Commands print through this and nothing else.
final class Console {
    let quiet: Bool, json: Bool
    private var progress = ProgressReporter()

    /// (A plain value, not `OutputOptions`: an ArgumentParser type built without parsing
    /// traps when its flags are read, which the demo once did.)
    init(quiet: Bool = false, json: Bool = false) {
        self.quiet = quiet
        self.json = json
    }

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

    /// The final result: shown in every mode.
    func result(_ text: String, _ fields: [String: Any]) {
        if json { emit(["event": "result"].merging(fields) { a, _ in a }) } else { print(text) }
    }

    private func emit(_ object: [String: Any]) {
        let cleaned = object.mapValues { value -> Any in
            if let d = value as? Double, !d.isFinite { return NSNull() }
            if let f = value as? Float, !f.isFinite { return NSNull() }
            return value
        }
        guard let data = try? JSONSerialization.data(withJSONObject: cleaned, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        print(String(decoding: data, as: UTF8.self))
    }
}

extension OptimizerChoice: ExpressibleByArgument {}
extension ScheduleChoice: ExpressibleByArgument {}

/// A user mistake found while running (a missing file, bad data, a diverged run): printed
/// as one line, "Error: …", with exit code 1. (ArgumentParser's ValidationError would add
/// the usage text; the mistake is not in the usage.)
struct UserError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
