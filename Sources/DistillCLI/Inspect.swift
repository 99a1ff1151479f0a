import ArgumentParser
import NeuralNet
import Tensors

/// `distill inspect NAME`: a zoo model's summary (layers, output shapes, parameters,
/// multiply-adds, size).
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a zoo model's layers, output shapes, parameters and multiply-adds.")

    @Argument(help: "Zoo model (\(ModelZoo.names.joined(separator: ", "))).")
    var model: String

    @Option(help: "Output classes.")
    var classes: Int = 10

    @Option(help: "Input channels.")
    var inputChannels: Int = 1

    @Option(help: "Input height and width.")
    var inputSize: Int = 28

    @Option(help: "Channel width multiplier.")
    var width: Float = 1

    func run() throws {
        var generator = RandomGenerator(seed: 0)
        let options = ModelOptions(classes: classes, inputChannels: inputChannels, inputSize: inputSize, width: width)
        let network: any Module
        do { network = try ModelZoo.make(model, options: options, using: &generator) } catch let error as ModuleError {
            throw ValidationError("\(error)")
        }
        print(ModelSummary(network, inputShape: [inputChannels, inputSize, inputSize]))
    }
}
