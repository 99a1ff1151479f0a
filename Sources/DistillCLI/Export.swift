import ArgumentParser
import Foundation
import ModelFormats
import NeuralNet

/// `distill export`: writes a trained model for deployment (ONNX) or for PyTorch (safetensors).
struct Export: TabledCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a trained model: an ONNX graph for deployment, or a safetensors state dict PyTorch loads.")

    @Argument(help: "Run folder, model file (.safetensors) or ONNX file (an imported or transferred model, re-exported with its current weights).")
    var model: String

    static let formatSpec = OptionSpec("format", .choice(["onnx", "safetensors"]), "Output format (default: from the --out extension, else safetensors).")
    static let outSpec = OptionSpec("out", .text, "File to write.")
    static let opsetSpec = OptionSpec("opset", .integer(13...20), "ONNX operator set (default 17; a model holding an imported ONNX graph keeps that graph's).")
    static let foldSpec = OptionSpec("fold-batchnorm", .flag, "ONNX: fold each batch norm that follows a convolution into the convolution's weights.")
    static let softmaxSpec = OptionSpec("softmax", .flag, "ONNX: end the graph with a softmax (probabilities instead of logits).")
    static let experimentName = "export"
    static let options = [formatSpec, outSpec, opsetSpec, foldSpec, softmaxSpec]

    @Option(name: formatSpec.long, help: formatSpec.help) var format: String?
    @Option(name: outSpec.long, help: outSpec.help) var out: String
    @Option(name: opsetSpec.long, help: opsetSpec.help) var opset: Int?
    @Flag(name: foldSpec.long, help: foldSpec.help) var foldBatchnorm = false
    @Flag(name: softmaxSpec.long, help: softmaxSpec.help) var softmax = false

    var values: [(String, OptionValue?)] {
        [("format", .text(resolvedFormat)), ("out", .text(out)), ("opset", opset.map { .integer($0) }), ("fold-batchnorm", .flag(foldBatchnorm)),
         ("softmax", .flag(softmax))]
    }

    var resolvedFormat: String { format ?? (out.lowercased().hasSuffix(".onnx") ? "onnx" : "safetensors") }

    func validate() throws {
        try checkOptions()
    }

    func run() throws {
        do {
            if let file = SavedModel.onnxFile(at: model) { return try exportImported(file) }
            let loaded = try SavedModel.load(model)
            if resolvedFormat == "onnx" {
                let opset = opset ?? 17
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

    /// An ONNX model (a file, or a transfer run's `model.onnx`) written again as ONNX, at its own opset.
    func exportImported(_ file: String) throws {
        let network = try ONNXNetwork(contentsOf: file)
        guard resolvedFormat == "onnx" else {
            throw UserError("\(model) is an ONNX model, which exports to ONNX only (no zoo architecture rebuilds it from safetensors)")
        }
        if let opset, opset != network.model.opset {
            throw UserError("--opset \(opset): \(model) holds an ONNX graph of opset \(network.model.opset), which is written as it is (Distill does not convert operators between opsets)")
        }
        let options = ONNXExportOptions(opset: network.model.opset, foldBatchNorm: foldBatchnorm, appendSoftmax: softmax)
        let onnx = try ONNXExport.model(network, inputShape: network.inputShape, options: options, metadata: network.model.metadata)
        try onnx.write(to: out)
        Console().text("wrote \(out): \((file as NSString).lastPathComponent) as ONNX (opset \(onnx.opset), \(onnx.graph.nodes.count) nodes, input [batch, \(network.inputShape.map(String.init).joined(separator: ", "))])")
    }
}
