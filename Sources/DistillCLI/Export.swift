import ArgumentParser
import Foundation
import ModelFormats
import NeuralNet

/// `distill export`: writes a trained model for deployment (ONNX) or for PyTorch (safetensors).
struct Export: TabledCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a trained model: an ONNX graph for deployment, or a safetensors state dict PyTorch loads.")

    @Argument(help: "Run folder or model file.")
    var model: String

    static let formatSpec = OptionSpec("format", .choice(["onnx", "safetensors"]), "Output format (default: from the --out extension, else safetensors).")
    static let outSpec = OptionSpec("out", .text, "File to write.")
    static let opsetSpec = OptionSpec("opset", .integer(13...20), "ONNX operator set.")
    static let foldSpec = OptionSpec("fold-batchnorm", .flag, "ONNX: fold each batch norm that follows a convolution into the convolution's weights.")
    static let softmaxSpec = OptionSpec("softmax", .flag, "ONNX: end the graph with a softmax (probabilities instead of logits).")
    static let experimentName = "export"
    static let options = [formatSpec, outSpec, opsetSpec, foldSpec, softmaxSpec]

    @Option(name: formatSpec.long, help: formatSpec.help) var format: String?
    @Option(name: outSpec.long, help: outSpec.help) var out: String
    @Option(name: opsetSpec.long, help: opsetSpec.help) var opset: Int = 17
    @Flag(name: foldSpec.long, help: foldSpec.help) var foldBatchnorm = false
    @Flag(name: softmaxSpec.long, help: softmaxSpec.help) var softmax = false

    var values: [(String, OptionValue?)] {
        [("format", .text(resolvedFormat)), ("out", .text(out)), ("opset", .integer(opset)), ("fold-batchnorm", .flag(foldBatchnorm)),
         ("softmax", .flag(softmax))]
    }

    var resolvedFormat: String { format ?? (out.lowercased().hasSuffix(".onnx") ? "onnx" : "safetensors") }

    func validate() throws {
        try checkOptions()
    }

    func run() throws {
        do {
            let loaded = try SavedModel.load(model)
            if resolvedFormat == "onnx" {
                let options = ONNXExportOptions(opset: opset, foldBatchNorm: foldBatchnorm, appendSoftmax: softmax)
                let shape = [loaded.options.inputChannels, loaded.options.inputSize, loaded.options.inputSize]
                let onnx = try ONNXExport.model(loaded.model, inputShape: shape, options: options, metadata: ["distill.model": loaded.name])
                try onnx.write(to: out)
                Console().text("wrote \(out): \(loaded.name) as ONNX (opset \(opset), \(onnx.graph.nodes.count) nodes, input [batch, \(shape.map(String.init).joined(separator: ", "))])")
            } else {
                // Only the model's own tensors: a distillation run's teachers and loss parts never travel.
                try SavedModel.save(loaded.model, name: loaded.name, options: loaded.options, to: out)
                Console().text("wrote \(out): \(loaded.name), \(loaded.model.parameterCount) parameters")
            }
        } catch let error as ModelFormatError { throw UserError("\(error)") }
    }
}
