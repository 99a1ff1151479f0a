import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// A model read by a command: the model, its zoo name when known, and the preprocessing its
/// run recorded (absent for PyTorch state dicts and ONNX files from other projects).
struct LoadedModel {
    var model: any Module
    var name: String?
    var preprocessing: Preprocessing?
    /// The zoo options, for Distill's own model files.
    var options: ModelOptions?
}

/// A model from a run folder, a safetensors file (Distill's, or a PyTorch state dict of a zoo
/// architecture named by `architecture`), an int8 model (`distill quantize`'s folder or its
/// `model.safetensors`, a quantization-aware run's `model-int8.safetensors`: a
/// `QuantizedModel`, run on the int8 kernels), or an ONNX file (or a run folder holding
/// `model.onnx`: `SavedModel.onnxFile(at:)`; symbolic input axes fixed to `inputShape`, per example).
func loadModel(_ path: String, architecture: String? = nil, inputShape: [Int]? = nil, role: String) throws -> LoadedModel {
    do {
        if let file = SavedModel.onnxFile(at: path) {
            let network = try ONNXNetwork(contentsOf: file, inputShape: inputShape)
            let preprocessing = try network.model.metadata[Preprocessing.metadataKey].map { try Preprocessing.decode($0, file: file) }
            return LoadedModel(model: network, name: nil, preprocessing: preprocessing)
        }
        if let file = QuantizedModelFile.file(at: path) {
            let (model, metadata) = try QuantizedModelFile.read(file)
            let preprocessing = try metadata[Preprocessing.metadataKey].map { try Preprocessing.decode($0, file: file) }
            return LoadedModel(model: model, name: metadata["distill.model"], preprocessing: preprocessing)
        }
        let loaded = try SavedModel.load(path, name: architecture)
        let preprocessing = try loaded.metadata[Preprocessing.metadataKey].map { try Preprocessing.decode($0, file: loaded.file) }
        return LoadedModel(model: loaded.model, name: loaded.name, preprocessing: preprocessing, options: loaded.options)
    } catch let error as FileError {
        throw UserError("\(role): \(error)")
    }
}

/// The preprocessing a model file records, read without building the model (an ONNX model
/// with open input sizes needs them from the data first).
func recordedPreprocessing(_ path: String, role: String) throws -> Preprocessing? {
    do {
        if let file = SavedModel.onnxFile(at: path) {
            return try ONNXModel.read(file).metadata[Preprocessing.metadataKey].map { try Preprocessing.decode($0, file: file) }
        }
        let file = try SavedModel.modelFile(at: path)
        return try SafeTensors.read(file).metadata[Preprocessing.metadataKey].map { try Preprocessing.decode($0, file: file) }
    } catch let error as FileError {
        throw UserError("\(role): \(error)")
    }
}

/// Checks that `loaded` takes examples of `shape` and gives one score per class of
/// `classNames` (by name, when it recorded them): a model that does not fit the data is an
/// error naming it, before anything runs.
func checkFits(_ loaded: LoadedModel, shape: [Int], classNames: [String], role: String) throws {
    if let options = loaded.options {
        guard options.exampleShape == shape else {
            throw UserError("\(role) takes examples of shape \(options.exampleShape), and the data has \(shape)")
        }
        guard options.outputCount == classNames.count else {
            throw UserError("\(role) gives \(options.outputCount) class scores, and the data has \(classNames.count) classes")
        }
    }
    if let int8 = loaded.model as? QuantizedModel {
        guard int8.exampleShape == shape else { throw UserError("\(role) takes examples of shape \(int8.exampleShape), and the data has \(shape)") }
        guard int8.outputShape == [classNames.count] else {
            throw UserError("\(role) gives outputs \(int8.outputShape), and the data has \(classNames.count) classes")
        }
    }
    if let network = loaded.model as? ONNXNetwork {
        guard network.inputShape == shape else {
            throw UserError("\(role) takes examples of shape \(network.inputShape), and would be fed \(shape) (give --teacher-input-size or --image-size)")
        }
        let output: Tensor
        do { output = try withoutGradients { try network.run(Tensor.zeros(Shape([1] + shape))) } } catch let error as FileError {
            throw UserError("\(role): \(error)")
        }
        guard output.rank == 2, output.shape[1] == classNames.count else {
            throw UserError("\(role) gives outputs \(Array(output.shape.dimensions.dropFirst())), and the data has \(classNames.count) classes")
        }
    }
    if let recorded = loaded.preprocessing?.classNames, recorded != classNames {
        throw UserError("\(role) was trained on classes \(recorded.prefix(12).joined(separator: ", ")), and the data's are \(classNames.prefix(12).joined(separator: ", "))")
    }
}

/// `loaded` (a teacher) fed batches prepared with `data`: converted to the preprocessing it
/// recorded, or for models that recorded none (ONNX files from other projects) to `data`'s
/// with the `--teacher-*` overrides.
func adapted(_ loaded: LoadedModel, to data: Preprocessing, overriding overrides: TeacherPreprocessing = TeacherPreprocessing(),
             role: String) throws -> any Module {
    let expected = try loaded.preprocessing ?? overrides.applied(to: data)
    try checkFits(loaded, shape: expected.exampleShape, classNames: data.classNames, role: role)
    do {
        return try expected.conversion(from: data).map { AdaptedModel(loaded.model, conversion: $0) } ?? loaded.model
    } catch let error as DatasetError { throw UserError("\(role): \(error.problem)") }
}

/// Saves a run's model: weights, zoo name and options, and the run's preprocessing.
func modelSaver(name: String, options: ModelOptions, preprocessing: Preprocessing) -> (any Module, String) throws -> Void {
    { model, path in
        try SavedModel.save(model, name: name, options: options, to: path, metadata: [Preprocessing.metadataKey: preprocessing.json])
    }
}
