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
        do { try model.loadStateDict(contents.tensors, strict: true) } catch let error as StateDictError {
            throw FileError(file: file, "\(error)")
        }
        return Loaded(model: model, name: name, options: options, metadata: contents.metadata, file: file)
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
