import ArgumentParser
import Datasets
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// `distill inspect MODEL`: a zoo model's summary (layers, output shapes, parameters,
/// multiply-adds, size) for given input sizes or for the user's data, or a saved model's
/// summary with the preprocessing its run recorded.
struct Inspect: TabledCommand {
    static let configuration = CommandConfiguration(abstract: "Print a model's layers, output shapes, parameters and multiply-adds (for your data with --data).")
    static let experimentName = "inspect"
    static let classesSpec = OptionSpec("classes", .integer(1...100_000), "Output classes (default: the data's, or 10).")
    static let featuresSpec = OptionSpec("features", .integer(1...1_000_000), "Feature-vector inputs of this length (a table's row) instead of images: mlp only.")
    static let dataSpec = OptionSpec("data", .text, "Take input shape and classes from this data (any kind --data of train accepts).")
    static let options = [classesSpec, Spec.channels, Spec.imageSize, featuresSpec, Spec.width, Spec.hidden, dataSpec]

    @Argument(help: "Zoo model (\(ModelZoo.names.joined(separator: ", "))), run folder, .safetensors or .onnx file.")
    var model: String

    @Option(name: classesSpec.long, help: classesSpec.help) var classes: Int?
    @Option(name: Spec.channels.long, help: Spec.channels.help) var channels: Int?
    @Option(name: Spec.imageSize.long, help: Spec.imageSize.help) var imageSize: String?
    @Option(name: featuresSpec.long, help: featuresSpec.help) var features: Int?
    @OptionGroup var size: ModelSizeOptions
    @Option(name: dataSpec.long, help: dataSpec.help) var data: String?

    var values: [(String, OptionValue?)] {
        [("classes", classes.map { .integer($0) }), ("channels", channels.map { .integer($0) }), ("image-size", imageSize.map { .text($0) }),
         ("features", features.map { .integer($0) })] + size.values + [("data", data.map { .text($0) })]
    }

    func validate() throws {
        try checkOptions()
        _ = try size.hiddenSizes()
        if let imageSize { _ = try parseImageSize(imageSize, flag: "image-size") }
        guard features == nil || (channels == nil && imageSize == nil) else { throw UserError("--features excludes --channels and --image-size") }
        guard data == nil || (features == nil && classes == nil) else { throw UserError("--data gives the input shape and classes: leave out --features and --classes") }
    }

    func run() throws {
        if !ModelZoo.names.contains(model) && (FileManager.default.fileExists(atPath: model) || model.contains("/") || model.contains(".")) {
            // An ONNX model with open input sizes takes them from --channels and --image-size.
            let size = try imageSize.map { try parseImageSize($0, flag: "image-size") }
            let loaded = try loadModel(model, inputShape: size.map { [channels ?? 3, $0.height, $0.width] }, role: "model")
            if let network = loaded.model as? ONNXNetwork {
                Console().text(String(describing: ModelSummary(network, inputShape: Shape(network.inputShape))))
                let ops = Dictionary(grouping: network.model.graph.nodes, by: \.opType).map { "\($0.key) ×\($0.value.count)" }.sorted()
                Console().text("ONNX opset \(network.model.opset), producer \(network.model.producerName.isEmpty ? "unknown" : network.model.producerName); input '\(network.inputName)' [batch, \(network.inputShape.map(String.init).joined(separator: ", "))]; operators: \(ops.joined(separator: ", "))")
            } else if let int8 = loaded.model as? QuantizedModel {
                Console().text("int8 model\(loaded.name.map { " of \($0)" } ?? ""): input [batch, \(int8.exampleShape.map(String.init).joined(separator: ", "))], \(int8.layers.count) layers, \(int8.storedParameterCount) parameters, \(int8.multiplyAddsPerExample) multiply-adds per example, \(int8.weightBytes + int8.floatStageBytes) bytes of weights"
                               + (int8.floatLayers.isEmpty ? "; every layer quantized" : "; stay float: " + int8.floatLayers.joined(separator: ", ")))
            } else if let options = loaded.options {
                Console().text(String(describing: ModelSummary(loaded.model, inputShape: Shape(options.exampleShape))))
            }
            if let p = loaded.preprocessing { Console().text(Self.describe(p)) }
            return
        }
        let options = try modelOptions()
        var generator = RandomGenerator(seed: 0)
        let network: any Module
        do { network = try ModelZoo.make(model, options: options, using: &generator) } catch let error as ModuleError {
            throw UserError("\(error)")
        }
        Console().text(String(describing: ModelSummary(network, inputShape: Shape(options.exampleShape))))
    }

    /// The zoo options: from the data (shape, classes; nothing decoded), else from the flags.
    func modelOptions() throws -> ModelOptions {
        let imageSize = try self.imageSize.map { try parseImageSize($0, flag: "image-size") }
        let hidden = try size.hiddenSizes() ?? ModelOptions().hiddenSizes
        do {
            if let data {
                let user: UserData
                do {
                    user = try UserData.load(UserData.Request(path: data, imageHeight: imageSize?.height, imageWidth: imageSize?.width, channels: channels))
                } catch let error as DatasetError { throw UserError("--data: \(error)") }
                return try ModelOptions(classes: user.train.classCount, exampleShape: user.train.exampleShape.dimensions, width: size.width, hiddenSizes: hidden)
            }
            let shape = features.map { [$0] } ?? [channels ?? 1, imageSize?.height ?? 28, imageSize?.width ?? 28]
            return try ModelOptions(classes: classes ?? 10, exampleShape: shape, width: size.width, hiddenSizes: hidden)
        } catch let error as ModuleError { throw UserError("\(error)") }
    }

    /// The preprocessing a run recorded, in one line.
    static func describe(_ p: Preprocessing) -> String {
        func list(_ values: [Float]) -> String { values.prefix(8).map { String(format: "%.4g", $0) }.joined(separator: ", ") + (values.count > 8 ? ", …" : "") }
        let colours = p.channels == 1 ? "gray" : (p.channelOrder ?? .rgb).rawValue.uppercased()  // one channel has no order
        let input = p.kind == .images ? "images \(p.channels)×\(p.height)×\(p.width) \(colours)" : "\(p.exampleShape[0]) features"
        return "preprocessing: \(input), mean [\(list(p.normalization.mean))], std [\(list(p.normalization.standardDeviation))]; \(p.classNames.count) classes: \(p.classNames.prefix(12).joined(separator: ", "))\(p.classNames.count > 12 ? ", …" : "")"
    }
}
