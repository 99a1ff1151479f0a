import ArgumentParser
import CBLAS
import Distillation
import Foundation
import Tensors

/// The `distill` command.
@main
struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distill",
        abstract: "Knowledge distillation and transfer on a Swift-native CPU engine.",
        subcommands: [Train.self, DistillCommand.self, TransferCommand.self, RunExperiment.self, Evaluate.self, Predict.self, Embed.self, Report.self, Export.self, Quantize.self, Inspect.self, Demo.self, OptionsCommand.self]
    )

    /// Parses, runs, and turns every error into one line on standard error: the one place
    /// errors become messages. Exit codes: 0 success (and help), 1 any error, 128 + the
    /// signal when SIGINT or SIGTERM stopped training after a checkpoint.
    static func main() {
        // Standard output a line at a time, also into a file or pipe (a log, CI, nohup): C's
        // default there is a 4 KiB block, which held every progress line of a long run back
        // until it ended.
        distill_line_buffered_stdout()
        StopRequest.install()
        Compute.keepFreedMemory()
        do {
            try Processes.start()
            var command = try parseAsRoot(try Experiment.resolvingResume(Array(CommandLine.arguments.dropFirst())))
            (command as? any ComputingCommand)?.compute.apply()
            try command.run()
            Processes.finish()
        } catch let stop as TrainingInterrupted {
            FileHandle.standardError.write(Data("\(Processes.errorPrefix)Stopped: \(stop)\n".utf8))
            Foundation.exit(128 + (StopRequest.signal == 0 ? SIGINT : StopRequest.signal))
        } catch {
            // Help and version requests, and ArgumentParser's own errors (with their usage hint).
            if exitCode(for: error) == .success { exit(withError: error) }
            let message: String
            if String(reflecting: type(of: error)).hasPrefix("ArgumentParser.") {
                message = fullMessage(for: error).trimmingCharacters(in: .whitespacesAndNewlines)
            } else {
                message = Processes.errorPrefix + "Error: " + String(describing: error).replacingOccurrences(of: "\n", with: " ")
            }
            FileHandle.standardError.write(Data((message + "\n").utf8))
            Foundation.exit(1)
        }
    }
}
