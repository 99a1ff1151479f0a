import ArgumentParser
import ModelFormats
import NeuralNet
import Tensors

/// `distill inspect NAME`: a zoo model's summary (layers, output shapes, parameters,
/// multiply-adds, size).
struct Inspect: TabledCommand {
    static let configuration = CommandConfiguration(abstract: "Print a zoo model's layers, output shapes, parameters and multiply-adds.")
    static let experimentName = "inspect"
    static let classesSpec = OptionSpec("classes", .integer(1...100_000), "Output classes.")
    static let channelsSpec = OptionSpec("input-channels", .integer(1...64), "Input channels.")
    static let sizeSpec = OptionSpec("input-size", .integer(4...1_024), "Input height and width.")
    static let widthSpec = OptionSpec("width", .positive(upTo: 16), "Channel width multiplier.")
    static let options = [classesSpec, channelsSpec, sizeSpec, widthSpec]

    @Argument(help: "Zoo model (\(ModelZoo.names.joined(separator: ", "))), run folder, .safetensors or .onnx file.")
    var model: String

    @Option(name: classesSpec.long, help: classesSpec.help) var classes: Int = 10
    @Option(name: channelsSpec.long, help: channelsSpec.help) var inputChannels: Int = 1
    @Option(name: sizeSpec.long, help: sizeSpec.help) var inputSize: Int = 28
    @Option(name: widthSpec.long, help: widthSpec.help) var width: Float = 1

    var values: [(String, OptionValue?)] {
        [("classes", .integer(classes)), ("input-channels", .integer(inputChannels)), ("input-size", .integer(inputSize)), ("width", .number(width))]
    }

    func validate() throws { try checkOptions() }

    func run() throws {
        if model.contains("/") || model.contains(".") {
            let loaded = try loadModel(model, role: "model")
            if let network = loaded.model as? ONNXNetwork {
                Console().text(String(describing: ModelSummary(network, inputShape: Shape(network.inputShape))))
                let ops = Dictionary(grouping: network.model.graph.nodes, by: \.opType).map { "\($0.key) ×\($0.value.count)" }.sorted()
                Console().text("ONNX opset \(network.model.opset), producer \(network.model.producerName.isEmpty ? "unknown" : network.model.producerName); input '\(network.inputName)' [batch, \(network.inputShape.map(String.init).joined(separator: ", "))]; operators: \(ops.joined(separator: ", "))")
            } else if let saved = try? SavedModel.load(model) {
                Console().text(String(describing: ModelSummary(saved.model, inputShape: [saved.options.inputChannels, saved.options.inputSize, saved.options.inputSize])))
            }
            return
        }
        var generator = RandomGenerator(seed: 0)
        let options = ModelOptions(classes: classes, inputChannels: inputChannels, inputSize: inputSize, width: width)
        let network: any Module
        do { network = try ModelZoo.make(model, options: options, using: &generator) } catch let error as ModuleError {
            throw UserError("\(error)")
        }
        Console().text(String(describing: ModelSummary(network, inputShape: [inputChannels, inputSize, inputSize])))
    }
}
