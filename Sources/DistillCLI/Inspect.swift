import ArgumentParser
import ModelFormats
import NeuralNet
import Tensors

/// `distill inspect NAME`: a zoo model's summary (layers, output shapes, parameters,
/// multiply-adds, size).
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a zoo model's layers, output shapes, parameters and multiply-adds.")

    @Argument(help: "Zoo model (\(ModelZoo.names.joined(separator: ", "))), run folder, .safetensors or .onnx file.")
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
        if model.contains("/") || model.contains(".") {
            let loaded = try loadModel(model, role: "model")
            if let network = loaded.model as? ONNXNetwork {
                print(ModelSummary(network, inputShape: Shape(network.inputShape)))
                let ops = Dictionary(grouping: network.model.graph.nodes, by: \.opType).map { "\($0.key) ×\($0.value.count)" }.sorted()
                print("ONNX opset \(network.model.opset), producer \(network.model.producerName.isEmpty ? "unknown" : network.model.producerName); input '\(network.inputName)' [batch, \(network.inputShape.map(String.init).joined(separator: ", "))]; operators: \(ops.joined(separator: ", "))")
            } else if let saved = try? SavedModel.load(model) {
                print(ModelSummary(saved.model, inputShape: [saved.options.inputChannels, saved.options.inputSize, saved.options.inputSize]))
            }
            return
        }
        var generator = RandomGenerator(seed: 0)
        let options = ModelOptions(classes: classes, inputChannels: inputChannels, inputSize: inputSize, width: width)
        let network: any Module
        do { network = try ModelZoo.make(model, options: options, using: &generator) } catch let error as ModuleError {
            throw UserError("\(error)")
        }
        print(ModelSummary(network, inputShape: [inputChannels, inputSize, inputSize]))
    }
}
