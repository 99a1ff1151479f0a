import Datasets
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import TestSupport
import Training
import XCTest

/// Loading Hugging Face BERT encoders by name, and the all-MiniLM-L6-v2 teacher's sentence
/// embeddings against transformers' (fixture: scripts/generate_minilm_reference.py).
final class HuggingFaceBERTTests: XCTestCase {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/minilm_reference.npz").path

    /// 1,000 fortunes quotes, tokenised by the Python tokenizer, through our encoder in
    /// batches of 32 (similar lengths together) padded to their longest: every embedding within cosine 0.99999 and 1e-4
    /// per dimension of transformers' (the fixture stores those to 3.9e-6).
    func testMiniLMEmbeddingsMatchTransformersOnFortunes() throws {
        let encoder = try HuggingFaceBERT.sentenceEncoder(folder: try MiniLM.requireFolder().path)
        XCTAssertEqual(encoder.pooling, .mean)
        XCTAssertTrue(encoder.normalizes)
        let arrays = try NPZ.read(Self.fixture)
        let lengths = try XCTUnwrap(arrays["lengths"]).integers(file: Self.fixture)
        let ids = try XCTUnwrap(arrays["ids"]).integers(file: Self.fixture)
        let reference = try XCTUnwrap(arrays["embeddings"])
        let step = try XCTUnwrap(arrays["step"]).values[0]
        XCTAssertEqual(lengths.count, 1000)
        XCTAssertEqual(reference.shape, [1000, 384])
        var starts = [0]
        for length in lengths { starts.append(starts.last! + length) }
        XCTAssertEqual(starts.last, ids.count)
        var worstCosine: Float = 1, worstDifference: Float = 0
        // Batches of quotes of similar lengths (less padding to compute; most batches still pad).
        let order = lengths.indices.sorted { (lengths[$0], $0) < (lengths[$1], $1) }
        for first in stride(from: 0, to: order.count, by: 32) {
            let rows = order[first..<min(first + 32, order.count)]
            let batch = TokenBatch(sequences: rows.map { Array(ids[starts[$0]..<starts[$0 + 1]]) })
            let embedded = try withoutGradients { try encoder.embed(batch) }.scalars
            for (offset, row) in rows.enumerated() {
                let ours = embedded[offset * 384..<(offset + 1) * 384]
                let theirs = reference.values[row * 384..<(row + 1) * 384].map { $0 * step }
                let (cosine, difference) = cosineAndLargestDifference(ours, theirs)
                worstCosine = min(worstCosine, cosine)
                worstDifference = max(worstDifference, difference)
            }
        }
        print("MiniLM against transformers on 1,000 quotes: worst cosine \(worstCosine), max abs difference \(worstDifference)")
        XCTAssertGreaterThanOrEqual(worstCosine, 0.99999)
        XCTAssertLessThanOrEqual(worstDifference, 1e-4)
    }

    // MARK: Errors that name the file and the key

    nonisolated(unsafe) static let smallConfig: [String: Any] = ["model_type": "bert", "vocab_size": 30, "hidden_size": 8, "num_hidden_layers": 2,
                                             "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 10,
                                             "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu", "pad_token_id": 0]

    func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("hf-bert-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func writeConfig(_ config: [String: Any], in folder: URL) throws -> String {
        let path = folder.appendingPathComponent("config.json").path
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testConfigurationErrorsNameTheKey() throws {
        let folder = try temporaryFolder()
        let configuration = try HuggingFaceBERT.configuration(file: try writeConfig(Self.smallConfig, in: folder))
        XCTAssertEqual(configuration, BertConfiguration(vocabularySize: 30, hiddenSize: 8, layers: 2, heads: 2, intermediateSize: 16,
                                                        maxPositions: 10, tokenTypes: 2, layerNormEpsilon: 1e-12))
        let cases: [(String, Any?, String)] = [
            ("num_attention_heads", nil, "has no 'num_attention_heads'"),
            ("hidden_size", "big", "'hidden_size' must be a whole number, got big"),
            ("hidden_size", 9, "hidden_size 9 is not a multiple of num_attention_heads 2"),
            ("hidden_act", "relu", "'hidden_act' is relu; only gelu is supported"),
            ("model_type", "distilbert", "'model_type' is distilbert; only bert is supported"),
            ("vocab_size", 0, "vocab_size must be positive, got 0"),
            ("pad_token_id", 30, "pad_token_id 30 is outside the vocabulary of 30"),
        ]
        for (key, value, message) in cases {
            var config = Self.smallConfig
            config[key] = value
            let path = try writeConfig(config, in: folder)
            XCTAssertThrowsError(try HuggingFaceBERT.configuration(file: path), key) { error in
                XCTAssertEqual("\(error)", "\(path): \(message)")
            }
        }
    }

    func testWeightsLoadByHuggingFaceNamesAndMismatchesNameTheKey() throws {
        let folder = try temporaryFolder()
        _ = try writeConfig(Self.smallConfig, in: folder)
        let configuration = try HuggingFaceBERT.configuration(file: folder.appendingPathComponent("config.json").path)
        var g = RandomGenerator(seed: 8)
        let source = BertModel(configuration, using: &g)
        let weights = folder.appendingPathComponent("model.safetensors").path
        func write(_ tensors: [(name: String, tensor: Tensor)]) throws { try SafeTensors.write(tensors, to: weights) }
        // What a Hugging Face checkpoint holds besides the encoder loads and is left unused.
        try write(source.stateDict() + [("embeddings.position_ids", Tensor.arange(0, 10).reshaped([1, 10])),
                                        ("pooler.dense.weight", Tensor.zeros([8, 8])), ("pooler.dense.bias", Tensor.zeros([8]))])
        let encoder = try HuggingFaceBERT.sentenceEncoder(folder: folder.path)
        let batch = TokenBatch(sequences: [[2, 5, 7], [4, 1]])
        source.eval()
        XCTAssertEqual(try encoder.embed(batch).scalars,
                       TextPooling.mean.pool(try source.hiddenStates(batch), mask: batch.maskTensor).l2Normalized(alongAxis: 1).scalars)
        // A task model's "bert." prefix is taken off.
        try write(source.stateDict().map { ("bert." + $0.name, $0.tensor) })
        XCTAssertNoThrow(try HuggingFaceBERT.sentenceEncoder(folder: folder.path))

        let key = "encoder.layer.1.attention.self.query.weight"
        try write(source.stateDict().filter { $0.name != key })
        XCTAssertThrowsError(try HuggingFaceBERT.sentenceEncoder(folder: folder.path)) { error in
            XCTAssertEqual("\(error)", "\(weights): has no tensor '\(key)' (config.json asks for 2 layers of 8)")
        }
        try write(source.stateDict().map { $0.name == key ? ($0.name, Tensor.zeros([8, 4])) : $0 })
        XCTAssertThrowsError(try HuggingFaceBERT.sentenceEncoder(folder: folder.path)) { error in
            XCTAssertEqual("\(error)", "\(weights): tensor '\(key)' has shape [8, 4], config.json makes it [8, 8]")
        }
        try write(source.stateDict() + [("encoder.layer.2.output.dense.bias", Tensor.zeros([8]))])
        XCTAssertThrowsError(try HuggingFaceBERT.sentenceEncoder(folder: folder.path)) { error in
            XCTAssertEqual("\(error)", "\(weights): tensor 'encoder.layer.2.output.dense.bias' has no place in a BERT encoder of 2 layers")
        }
    }

    func testSentencePipelineFollowsModulesJSON() throws {
        let folder = try temporaryFolder()
        _ = try writeConfig(Self.smallConfig, in: folder)
        var g = RandomGenerator(seed: 9)
        try SafeTensors.write(BertModel(try HuggingFaceBERT.configuration(file: folder.appendingPathComponent("config.json").path),
                                        using: &g).stateDict(), to: folder.appendingPathComponent("model.safetensors").path)
        let modules: [[String: Any]] = [["idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"],
                                        ["idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"]]
        try JSONSerialization.data(withJSONObject: modules).write(to: folder.appendingPathComponent("modules.json"))
        let poolingFolder = folder.appendingPathComponent("1_Pooling")
        try FileManager.default.createDirectory(at: poolingFolder, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: ["pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false])
            .write(to: poolingFolder.appendingPathComponent("config.json"))
        let encoder = try HuggingFaceBERT.sentenceEncoder(folder: folder.path)
        XCTAssertEqual(encoder.pooling, .cls)
        XCTAssertFalse(encoder.normalizes)
        try JSONSerialization.data(withJSONObject: ["pooling_mode_max_tokens": true])
            .write(to: poolingFolder.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try HuggingFaceBERT.sentenceEncoder(folder: folder.path)) { error in
            XCTAssertTrue("\(error)".hasSuffix("pooling [\"pooling_mode_max_tokens\"] is not supported (one of mean_tokens or cls_token is)"), "\(error)")
        }
    }
}
