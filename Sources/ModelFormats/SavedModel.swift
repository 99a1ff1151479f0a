import Foundation
import NeuralNet
import Tensors

/// A zoo model saved with what rebuilds it: the weights as a safetensors state dict (loadable
/// by PyTorch as is) and, in its metadata, the zoo name and options and the format version.
/// The one model file of every command (`model.safetensors`, `best.safetensors`); the full
/// training state is `TrainingCheckpoint`'s. Files without a version (written before it
/// existed) are version 1 and load the same way.
public enum SavedModel {
    static let nameKey = "distill.model", optionsKey = "distill.options", formatKey = "distill.model-format"
    /// The format this version writes; `load` refuses newer ones.
    public static let formatVersion = 2

    /// Writes `model` (built as `name` with `options`) to `path` atomically.
    public static func save(_ model: any Module, name: String, options: ModelOptions, to path: String, metadata: [String: String] = [:]) throws {
        var meta = metadata
        meta[nameKey] = name
        meta[formatKey] = String(formatVersion)
        // Sorted keys: the same model gives the same bytes (a resumed run's file equals an uninterrupted run's).
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        meta[optionsKey] = String(decoding: try encoder.encode(options), as: UTF8.self)
        try ModelWeights.save(model, to: path, metadata: meta)
    }

    /// Rebuilds and loads the model at `path`: a `.safetensors` file, or a run folder holding
    /// `model.safetensors`. A file without Distill's metadata needs `name` (and `options`).
    public static func load(_ path: String, name given: String? = nil, options givenOptions: ModelOptions? = nil) throws -> Loaded {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ModelFormatError(file: path, "does not exist")
        }
        let file = isDirectory.boolValue ? (path as NSString).appendingPathComponent("model.safetensors") : path
        let contents = try SafeTensors.read(file)
        if let version = contents.metadata[formatKey], (Int(version) ?? Int.max) > formatVersion {
            throw ModelFormatError(file: file, "is a model file of format \(version); this Distill reads formats up to \(formatVersion)")
        }
        guard let name = given ?? contents.metadata[nameKey] else {
            throw ModelFormatError(file: file, "does not say which zoo model it holds; name the architecture")
        }
        var options = givenOptions ?? ModelOptions()
        if givenOptions == nil, let text = contents.metadata[optionsKey] {
            do { options = try JSONDecoder().decode(ModelOptions.self, from: Data(text.utf8)) } catch {
                throw ModelFormatError(file: file, "model options in the metadata are not valid: \(text)")
            }
        }
        var generator = RandomGenerator(seed: 0)
        let model: any Module
        do { model = try ModelZoo.make(name, options: options, using: &generator) } catch let error as ModuleError {
            throw ModelFormatError(file: file, "\(error)")
        }
        do { try model.loadStateDict(contents.tensors, strict: true) } catch let error as StateDictError {
            throw ModelFormatError(file: file, "\(error)")
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
