import Foundation
import NeuralNet
import Tensors

/// A zoo model saved with what rebuilds it: the weights as a safetensors state dict (loadable
/// by PyTorch as is) and, in its metadata, the zoo name and options and the format version.
/// The one model file of every command (`model.safetensors`, `best.safetensors`); the full
/// training state is `TrainingCheckpoint`'s. Files without a version (written before it
/// existed) are version 1 and load the same way. Loading is here, in the inference library;
/// saving is ModelFormats' (`SavedModel.save`).
public enum SavedModel {
    package static let nameKey = "distill.model", optionsKey = "distill.options", formatKey = "distill.model-format"
    /// The format this version writes; `load` refuses newer ones.
    public static let formatVersion = 2

    /// Rebuilds and loads the model at `path`: a `.safetensors` file, or a run folder holding
    /// `model.safetensors`. A file without Distill's metadata needs `name` (and `options`).
    public static func load(_ path: String, name given: String? = nil, options givenOptions: ModelOptions? = nil) throws -> Loaded {
        let file = try modelFile(at: path)
        return try load(SafeTensors.bytes(of: file), file: file, name: given, options: givenOptions)
    }

    /// The model file `path` stands for: itself, or a run folder's `model.safetensors`.
    public static func modelFile(at path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw FileError(file: path, "does not exist")
        }
        return isDirectory.boolValue ? (path as NSString).appendingPathComponent("model.safetensors") : path
    }

    /// Rebuilds and loads the model in `data`, the bytes of `file` (named in errors).
    public static func load(_ data: Data, file: String, name given: String? = nil, options givenOptions: ModelOptions? = nil) throws -> Loaded {
        let contents = try SafeTensors.parse(data, file: file)
        if let version = contents.metadata[formatKey], (Int(version) ?? Int.max) > formatVersion {
            throw FileError(file: file, "is a model file of format \(version); this Distill reads formats up to \(formatVersion)")
        }
        guard let name = given ?? contents.metadata[nameKey] else {
            throw FileError(file: file, "does not say which zoo model it holds; name the architecture")
        }
        var options = givenOptions ?? ModelOptions()
        if givenOptions == nil, let text = contents.metadata[optionsKey] {
            do { options = try JSONDecoder().decode(ModelOptions.self, from: Data(text.utf8)) } catch {
                throw FileError(file: file, "model options in the metadata are not valid: \(text)")
            }
        }
        var generator = RandomGenerator(seed: 0)
        let model: any Module
        // The strict load below overwrites every parameter and buffer: no random values drawn for them.
        do { model = try Tensor.$drawsRandomValues.withValue(false) { try ModelZoo.make(name, options: options, using: &generator) } }
        catch let error as ModuleError {
            throw FileError(file: file, "\(error)")
        }
        let (tensors, int8) = try int8Layers(contents, file: file)
        do { try model.loadStateDict(tensors, strict: true) } catch let error as StateDictError {
            throw FileError(file: file, "\(error)")
        }
        for (name, weights) in int8 {
            do { try DynamicQuantization.setInt8(weights, parameter: name, in: model) } catch let error as ModuleError {
                throw FileError(file: file, "\(error)")
            }
        }
        return Loaded(model: model, name: name, options: options, metadata: contents.metadata, file: file)
    }

    /// The state dict of a file, with the int8 layers of a dynamically quantized model
    /// (`DynamicQuantization`: `X.weight` int8, `X.weight_scale` its scales) as the float
    /// values they stand for, and those layers' int8 weights by parameter name.
    static func int8Layers(_ contents: SafeTensors.Contents, file: String) throws -> ([String: Tensor], [(String, DynamicInt8Weights)]) {
        var tensors = contents.tensors
        guard let scheme = contents.metadata[DynamicQuantization.metadataKey] else { return (tensors, []) }
        guard scheme == DynamicQuantization.metadataValue else {
            throw FileError(file: file, "\(DynamicQuantization.metadataKey) is \"\(scheme)\": this Distill reads \"\(DynamicQuantization.metadataValue)\" int8 models only")
        }
        var int8: [(String, DynamicInt8Weights)] = []
        for scaleName in tensors.keys.sorted() where scaleName.hasSuffix(DynamicQuantization.scaleSuffix) {
            let name = String(scaleName.dropLast(DynamicQuantization.scaleSuffix.count))
            guard let weight = tensors[name], weight.rank == 2, let scales = tensors[scaleName], scales.shape == [weight.shape[0]] else {
                throw FileError(file: file, "\(scaleName) has no int8 tensor \(name) of \(tensors[scaleName]?.shape.count ?? 0) rows beside it")
            }
            let values = weight.scalars
            guard values.allSatisfy({ $0 == $0.rounded() && $0 >= -128 && $0 <= 127 }) else {
                throw FileError(file: file, "\(name) of an int8 model holds values that are not integers in -128...127")
            }
            switch DynamicInt8Weights.make(values.map { Int8($0) }, scales: scales.scalars, outputs: weight.shape[0], inputs: weight.shape[1]) {
            case let .failure(error): throw FileError(file: file, "\(name): \(error)")
            case let .success(weights):
                tensors[name] = Tensor(weights.dequantized, shape: weight.shape)
                tensors[scaleName] = nil
                int8.append((name, weights))
            }
        }
        return (tensors, int8)
    }

    /// A model file read back: the model, its zoo name and options, and the file's metadata
    /// (what else the run recorded, such as its preprocessing).
    public struct Loaded {
        public var model: any Module
        public var name: String
        public var options: ModelOptions
        public var metadata: [String: String]
        /// The file read (`model.safetensors` inside a run folder).
        public var file: String
    }
}
