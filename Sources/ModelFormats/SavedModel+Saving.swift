import DistillInference
import Foundation
import NeuralNet
import Tensors

/// Saving model files (loading is DistillInference's `SavedModel.load`).
extension SavedModel {
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
}
