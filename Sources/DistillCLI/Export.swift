import ArgumentParser
import Foundation
import ModelFormats
import NeuralNet

/// `distill export`: writes a trained model for deployment or for PyTorch.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Export a trained model (safetensors state dict, loadable by PyTorch).")

    @Argument(help: "Run folder or model file.")
    var model: String

    @Option(help: "Output format: safetensors.")
    var format: String = "safetensors"

    @Option(help: "File to write.")
    var out: String

    func validate() throws {
        guard format == "safetensors" else {
            throw ValidationError("--format '\(format)' is not available; formats: safetensors")
        }
    }

    func run() throws {
        do {
            let loaded = try SavedModel.load(model)
            // Only the model's own tensors: a distillation run's teachers and loss parts never travel.
            try SavedModel.save(loaded.model, name: loaded.name, options: loaded.options, to: out)
            print("wrote \(out): \(loaded.name), \(loaded.model.parameterCount) parameters")
        } catch let error as ModelFormatError { throw ValidationError("\(error)") }
    }
}
