import ArgumentParser

/// The `distill` command.
@main
struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distill",
        abstract: "Knowledge distillation and transfer on a Swift-native CPU engine.",
        subcommands: [Train.self, DistillCommand.self, TransferCommand.self, RunExperiment.self, Evaluate.self, Report.self, Export.self, Inspect.self, Demo.self]
    )
}
