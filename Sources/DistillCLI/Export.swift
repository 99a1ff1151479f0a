import ArgumentParser
import Foundation
import ModelFormats
import NeuralNet

/// `distill export`: writes a trained model for deployment (ONNX) or for PyTorch (safetensors).
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a trained model: an ONNX graph for deployment, or a safetensors state dict PyTorch loads.")

    @Argument(help: "Run folder or model file.")
    var model: String

    @Option(help: "Output format: onnx or safetensors (default: from the --out extension, else safetensors).")
    var format: String?

    @Option(help: "File to write.")
    var out: String

    @Option(help: "ONNX operator set, 13 to 20.")
    var opset: Int = 17

    @Flag(help: "ONNX: fold each batch norm that follows a convolution into the convolution's weights.")
    var foldBatchnorm = false

    @Flag(help: "ONNX: end the graph with a softmax (probabilities instead of logits).")
    var softmax = false

    var resolvedFormat: String { format ?? (out.lowercased().hasSuffix(".onnx") ? "onnx" : "safetensors") }

    func validate() throws {
        guard ["onnx", "safetensors"].contains(resolvedFormat) else {
            throw UserError("--format '\(resolvedFormat)' is not available; formats: onnx, safetensors")
        }
        guard (13...20).contains(opset) else { throw UserError("--opset \(opset) is not supported (13 to 20)") }
    }

    func run() throws {
        do {
            let loaded = try SavedModel.load(model)
            if resolvedFormat == "onnx" {
                let options = ONNXExportOptions(opset: opset, foldBatchNorm: foldBatchnorm, appendSoftmax: softmax)
                let shape = [loaded.options.inputChannels, loaded.options.inputSize, loaded.options.inputSize]
                let onnx = try ONNXExport.model(loaded.model, inputShape: shape, options: options, metadata: ["distill.model": loaded.name])
                try onnx.write(to: out)
                print("wrote \(out): \(loaded.name) as ONNX (opset \(opset), \(onnx.graph.nodes.count) nodes, input [batch, \(shape.map(String.init).joined(separator: ", "))])")
            } else {
                // Only the model's own tensors: a distillation run's teachers and loss parts never travel.
                try SavedModel.save(loaded.model, name: loaded.name, options: loaded.options, to: out)
                print("wrote \(out): \(loaded.name), \(loaded.model.parameterCount) parameters")
            }
        } catch let error as ModelFormatError { throw UserError("\(error)") }
    }
}
