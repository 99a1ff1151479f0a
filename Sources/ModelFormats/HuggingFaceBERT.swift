import DistillInference
import Foundation
import NeuralNet
import Tensors

/// Hugging Face BERT encoders (all-MiniLM-L6-v2 and its kin) from a model folder:
/// `config.json` gives the sizes, `model.safetensors` the weights by Hugging Face's names,
/// and sentence-transformers' `modules.json` (when present) the pooling and normalisation.
public enum HuggingFaceBERT {
    /// The encoder sizes in a `config.json`. Errors name the file and the key.
    public static func configuration(file: String) throws -> BertConfiguration {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ModelFormatError(file: file, FileManager.default.fileExists(atPath: file) ? "cannot be read" : "does not exist")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelFormatError(file: file, "is not a JSON object")
        }
        func integer(_ key: String, default fallback: Int? = nil) throws -> Int {
            guard let value = json[key] else {
                if let fallback { return fallback }
                throw ModelFormatError(file: file, "has no '\(key)'")
            }
            guard let number = value as? NSNumber, number.doubleValue == Double(number.intValue) else {
                throw ModelFormatError(file: file, "'\(key)' must be a whole number, got \(value)")
            }
            return number.intValue
        }
        func float(_ key: String, default fallback: Float) throws -> Float {
            guard let value = json[key] else { return fallback }
            guard let number = value as? NSNumber else { throw ModelFormatError(file: file, "'\(key)' must be a number, got \(value)") }
            return number.floatValue
        }
        func expect(_ key: String, _ allowed: [String]) throws {
            guard let value = json[key] else { return }
            guard let text = value as? String, allowed.contains(text) else {
                throw ModelFormatError(file: file, "'\(key)' is \(value); only \(allowed.joined(separator: " or ")) is supported")
            }
        }
        try expect("model_type", ["bert"])
        try expect("hidden_act", ["gelu"])
        try expect("position_embedding_type", ["absolute"])
        let padding: Int? = try json["pad_token_id"] is NSNull ? nil : integer("pad_token_id", default: 0)
        let configuration = BertConfiguration(
            vocabularySize: try integer("vocab_size"), hiddenSize: try integer("hidden_size"),
            layers: try integer("num_hidden_layers"), heads: try integer("num_attention_heads"),
            intermediateSize: try integer("intermediate_size"), maxPositions: try integer("max_position_embeddings", default: 512),
            tokenTypes: try integer("type_vocab_size", default: 2), layerNormEpsilon: try float("layer_norm_eps", default: 1e-12),
            paddingTokenId: padding, hiddenDropout: try float("hidden_dropout_prob", default: 0.1),
            attentionDropout: try float("attention_probs_dropout_prob", default: 0.1))
        if let problem = configuration.problem { throw ModelFormatError(file: file, problem) }
        return configuration
    }

    /// Tensors a BERT checkpoint may hold that the encoder does not use: the position-id
    /// buffer and the [CLS] pooler (sentence embeddings pool the hidden states instead).
    static func isUnused(_ name: String) -> Bool { name == "embeddings.position_ids" || name.hasPrefix("pooler.") }

    /// Copies the tensors of `file` (a safetensors file with Hugging Face BERT names, with or
    /// without a `bert.` prefix) into `model`. A missing tensor, a shape that differs from the
    /// configuration's, or a tensor the encoder has no place for is an error naming the key.
    public static func loadWeights(_ model: BertModel, file: String) throws {
        var tensors = try SafeTensors.read(file).tensors
        if !tensors.isEmpty, tensors.keys.allSatisfy({ $0.hasPrefix("bert.") }) {
            tensors = Dictionary(uniqueKeysWithValues: tensors.map { (String($0.key.dropFirst(5)), $0.value) })
        }
        let expected = model.stateDict()
        for (name, tensor) in expected {
            guard let value = tensors[name] else {
                throw ModelFormatError(file: file, "has no tensor '\(name)' (config.json asks for \(model.configuration.layers) layers of \(model.configuration.hiddenSize))")
            }
            guard value.shape == tensor.shape else {
                throw ModelFormatError(file: file, "tensor '\(name)' has shape \(value.shape), config.json makes it \(tensor.shape)")
            }
        }
        let known = Set(expected.map(\.name))
        if let stray = tensors.keys.sorted().first(where: { !known.contains($0) && !isUnused($0) }) {
            throw ModelFormatError(file: file, "tensor '\(stray)' has no place in a BERT encoder of \(model.configuration.layers) layers")
        }
        try model.loadStateDict(tensors.filter { known.contains($0.key) })
    }

    /// The sentence encoder in `folder`: config.json and model.safetensors, with the pooling
    /// and normalisation of sentence-transformers' modules.json and its Pooling config when
    /// the folder has them, and otherwise mean pooling with L2 normalisation (the pipeline of
    /// all-MiniLM-L6-v2). In evaluation mode.
    public static func sentenceEncoder(folder: String) throws -> SentenceEncoder {
        let root = URL(fileURLWithPath: folder)
        let configuration = try configuration(file: root.appendingPathComponent("config.json").path)
        var generator = RandomGenerator(seed: 0)
        // Every parameter is loaded next: no random values drawn for them.
        let bert = Tensor.$drawsRandomValues.withValue(false) { BertModel(configuration, using: &generator) }
        try loadWeights(bert, file: root.appendingPathComponent("model.safetensors").path)
        let (pooling, normalizes) = try sentencePipeline(folder: root)
        let encoder = SentenceEncoder(bert, pooling: pooling, normalizes: normalizes)
        encoder.eval()
        return encoder
    }

    /// Pooling and normalisation from modules.json (see `sentenceEncoder(folder:)`).
    static func sentencePipeline(folder: URL) throws -> (TextPooling, Bool) {
        let modulesFile = folder.appendingPathComponent("modules.json").path
        guard let data = FileManager.default.contents(atPath: modulesFile) else { return (.mean, true) }
        guard let modules = (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] else {
            throw ModelFormatError(file: modulesFile, "is not a JSON list of modules")
        }
        let types = modules.map { ($0["type"] as? String ?? "").components(separatedBy: ".").last ?? "" }
        for type in types where !["Transformer", "Pooling", "Normalize"].contains(type) {
            throw ModelFormatError(file: modulesFile, "module type '\(type)' is not supported (Transformer, Pooling, Normalize are)")
        }
        var pooling = TextPooling.mean
        if let entry = modules.first(where: { ($0["type"] as? String ?? "").hasSuffix("Pooling") }) {
            let file = folder.appendingPathComponent(entry["path"] as? String ?? "").appendingPathComponent("config.json").path
            guard let data = FileManager.default.contents(atPath: file),
                  let config = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw ModelFormatError(file: file, "is missing or not a JSON object (modules.json names a Pooling module)")
            }
            let modes = config.filter { $0.key.hasPrefix("pooling_mode_") && ($0.value as? Bool) == true }.map(\.key).sorted()
            switch modes {
            case ["pooling_mode_mean_tokens"]: pooling = .mean
            case ["pooling_mode_cls_token"]: pooling = .cls
            default: throw ModelFormatError(file: file, "pooling \(modes) is not supported (one of mean_tokens or cls_token is)")
            }
        }
        return (pooling, types.contains("Normalize"))
    }
}
