import Foundation
import ModelFormats
import NeuralNet
import Tensors
import TestSupport
import XCTest

/// ONNX text models with integer inputs `input_ids`, `attention_mask` and `token_type_ids`:
/// a tiny BERT with random weights exported by torch's exporter with dynamic batch and
/// sequence axes, against onnxruntime (fixture: scripts/generate_bert_onnx_fixture.py).
final class ONNXTextModelTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/onnx")
    static let modelPath = fixtures.appendingPathComponent("tiny_bert.onnx").path

    struct Case {
        let batch: TokenBatch
        let embedding: Tensor
        let hidden: Tensor
    }

    func cases() throws -> [Case] {
        let data = try Data(contentsOf: Self.fixtures.appendingPathComponent("tiny_bert.json"))
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        func tensor(_ object: Any?) throws -> Tensor {
            let dictionary = try XCTUnwrap(object as? [String: Any])
            return Tensor(try XCTUnwrap(dictionary["data"] as? [NSNumber]).map(\.floatValue), shape: Shape(try XCTUnwrap(dictionary["shape"] as? [Int])))
        }
        return try XCTUnwrap(root["batches"] as? [[String: Any]]).map { entry in
            let rows = try ["input_ids", "attention_mask", "token_type_ids"].map { try XCTUnwrap(entry[$0] as? [[Int]]) }
            let batch = TokenBatch(ids: rows[0].flatMap { $0 }, attentionMask: rows[1].flatMap { $0 }, tokenTypes: rows[2].flatMap { $0 },
                                   batchSize: rows[0].count, length: rows[0][0].count)
            return Case(batch: batch, embedding: try tensor(entry["sentence_embedding"]), hidden: try tensor(entry["last_hidden_state"]))
        }
    }

    /// The largest |Δ|, failing above `tolerance`.
    @discardableResult
    func assertClose(_ actual: Tensor, _ expected: Tensor, _ tolerance: Float, _ message: String,
                     file: StaticString = #filePath, line: UInt = #line) -> Float {
        XCTAssertEqual(actual.shape, expected.shape, message, file: file, line: line)
        guard actual.shape == expected.shape else { return .infinity }
        let worst = zip(actual.scalars, expected.scalars).map { Swift.abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, tolerance, message, file: file, line: line)
        return worst
    }

    /// Both exports (torch.export-based, torch's default, with GatherND, Max and Range in its
    /// mask; TorchScript) load as text models (three int64 inputs, open batch and sequence)
    /// and, fed packed token batches of 1 to 4 sequences of 1 to 40 tokens (padded rows, both
    /// token types), give onnxruntime's sentence embeddings and last hidden states.
    func testTinyBertExportsMatchOnnxRuntime() throws {
        let cases = try cases()
        XCTAssertEqual(cases.map(\.batch.batchSize), [2, 3, 1, 4])
        XCTAssertEqual(cases.map(\.batch.length), [5, 12, 1, 40])
        for file in ["tiny_bert.onnx", "tiny_bert_legacy.onnx"] {
            let network = try ONNXNetwork(contentsOf: Self.fixtures.appendingPathComponent(file).path)
            XCTAssertEqual(network.tokenInputs?.inputs, ["input_ids", "attention_mask", "token_type_ids"], file)
            XCTAssertNil(network.tokenInputs?.length, "\(file): the sequence axis is open")
            XCTAssertEqual(network.inputName, "input_ids", file)
            XCTAssertEqual(network.inputShape, [3, 8], "\(file): loading ran at 8 tokens")
            XCTAssertEqual(network.model.graph.outputs.map(\.name), ["sentence_embedding", "last_hidden_state"], file)
            var worstEmbedding: Float = 0, worstHidden: Float = 0
            for (index, c) in cases.enumerated() {
                let outputs = try withoutGradients { try network.run(c.batch.packed(), outputs: ["sentence_embedding", "last_hidden_state"]) }
                worstEmbedding = max(worstEmbedding, assertClose(outputs[0], c.embedding, 1e-5, "\(file) batch \(index): sentence_embedding"))
                worstHidden = max(worstHidden, assertClose(outputs[1], c.hidden, 1e-4, "\(file) batch \(index): last_hidden_state"))
                XCTAssertEqual(try withoutGradients { try network.run(c.batch.packed()) }.scalars, outputs[0].scalars, "run gives the first output")
            }
            print("\(file) against onnxruntime: largest |Δ| sentence_embedding \(worstEmbedding), last_hidden_state \(worstHidden)")
        }
    }

    /// More padding changes nothing the mask hides: each sequence's embedding is the same
    /// alone, in a batch, and padded to the longest position the model has.
    func testPaddingDoesNotChangeTheEmbeddings() throws {
        let network = try ONNXNetwork(contentsOf: Self.modelPath)
        let sequences = [[2, 17, 33, 3], [2, 40, 41, 42, 43, 44, 3]]
        let together = try withoutGradients { try network.run(TokenBatch(sequences: sequences).packed()) }
        for (row, sequence) in sequences.enumerated() {
            let alone = try withoutGradients { try network.run(TokenBatch(sequences: [sequence]).packed()) }
            let padded = TokenBatch(ids: sequence + [Int](repeating: 0, count: 40 - sequence.count),
                                    attentionMask: [Int](repeating: 1, count: sequence.count) + [Int](repeating: 0, count: 40 - sequence.count),
                                    batchSize: 1, length: 40)
            let long = try withoutGradients { try network.run(padded.packed()) }
            let inBatch = together.sliced(alongAxis: 0, row..<(row + 1))
            assertClose(inBatch, alone, 1e-5, "sequence \(row) in a batch")
            assertClose(long, alone, 1e-5, "sequence \(row) padded to 40")
        }
    }

    /// The imported graph trains: a loss on its embedding sends gradients to the rows of the
    /// word-embedding table that the batch's tokens read, and to no other row.
    func testGradientsReachTheWordEmbeddingsTheBatchReads() throws {
        let network = try ONNXNetwork(contentsOf: Self.modelPath)
        let table = try XCTUnwrap(network.localParameters.first { $0.name.hasSuffix("word_embeddings.weight") }?.tensor, "\(network.localParameters.map(\.name))")
        XCTAssertEqual(table.shape, [96, 32])
        table.requiresGrad = true
        let batch = TokenBatch(sequences: [[2, 17, 33, 3], [2, 50, 3]])
        let output = try network.run(batch.packed())
        (output * Tensor((0..<output.count).map { Float($0 % 7) - 3 }, shape: output.shape)).sum().backward()
        let gradient = try XCTUnwrap(table.grad)
        let touched = (0..<96).filter { row in (0..<32).contains { gradient.scalars[row * 32 + $0] != 0 } }
        XCTAssertEqual(touched, [2, 3, 17, 33, 50], "the ids the mask keeps; the padding (id 0) has exactly zero weight")
    }

    /// Written back out through Distill's exporter, the text model takes the packed batch
    /// [batch, 3, length] as its one float input and gives the same embeddings.
    func testExportedTextModelTakesThePackedBatch() throws {
        let network = try ONNXNetwork(contentsOf: Self.modelPath)
        let c = try cases()[1]
        let exported = try ONNXExport.model(network, inputShape: [3, c.batch.length])
        XCTAssertEqual(exported.graph.inputs.map(\.dims), [[nil, 3, 12]])
        let reloaded = try ONNXNetwork(try ONNXModel(parsing: exported.serialized(), file: "exported.onnx"), file: "exported.onnx")
        XCTAssertNil(reloaded.tokenInputs)
        assertClose(try withoutGradients { try reloaded.run(c.batch.packed()) }, c.embedding, 1e-5, "re-imported export")
    }

    /// `ONNXSentenceEncoder`: the graph's `sentence_embedding` taken as it is; its
    /// `last_hidden_state` alone mean-pooled over the mask and L2-normalised (the pipeline
    /// without modules.json) gives the same embeddings; a graph that fixes the sequence
    /// length gets shorter batches padded to it; the word and position tables are found by name.
    func testSentenceEncoderPoolsHiddenStatesAndPadsToAFixedLength() throws {
        let c = try cases()[1]
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("onnx-sentence-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        func write(_ edit: (inout ONNXGraph) -> Void) throws -> String {
            let path = folder.appendingPathComponent("\(UUID()).onnx").path
            try editedModel(edit).write(to: path)
            return path
        }
        let embedding = try ONNXSentenceEncoder(contentsOf: Self.modelPath, pipeline: folder.path)
        XCTAssertNil(embedding.pooling)
        XCTAssertEqual(embedding.tableRows(endingIn: "word_embeddings.weight"), 96)
        XCTAssertEqual(embedding.tableRows(endingIn: "position_embeddings.weight"), 40)
        assertClose(try embedding.predictions(c.batch), c.embedding, 1e-5, "sentence_embedding as it is")
        let hidden = try ONNXSentenceEncoder(contentsOf: try write { $0.outputs.removeFirst() }, pipeline: folder.path)
        XCTAssertEqual(hidden.pooling, .mean)
        XCTAssertTrue(hidden.normalizes)
        assertClose(try hidden.predictions(c.batch), c.embedding, 1e-5, "last_hidden_state, mean-pooled and normalised")
        let fixed = try ONNXSentenceEncoder(contentsOf: try write { graph in for i in graph.inputs.indices { graph.inputs[i].dims = [nil, 16] } },
                                            pipeline: folder.path)
        assertClose(try fixed.predictions(c.batch), c.embedding, 1e-5, "12 tokens padded to the 16 the graph fixes")
        XCTAssertThrowsError(try fixed.predictions(TokenBatch(sequences: [[Int](repeating: 5, count: 20)]))) { error in
            XCTAssertTrue("\(error)".hasSuffix("takes sequences of at most 16 tokens (its inputs fix the length), got 20"), "\(error)")
        }
        // Attention probabilities [batch, heads, length, length] as the first output: neither an embedding nor token vectors.
        let probabilities = try write { graph in
            graph.outputs = [ONNXValueInfo(name: graph.nodes.first { $0.opType == "Softmax" }!.outputs[0], dims: [])]
        }
        XCTAssertThrowsError(try ONNXSentenceEncoder(contentsOf: probabilities, pipeline: folder.path)) { error in
            XCTAssertTrue("\(error)".contains("is [2, 4, 2, 2] for 2 texts of 2 tokens; a text model gives one embedding per text [batch, dimension], "
                                              + "or one vector per token [batch, length, hidden] to pool"), "\(error)")
        }
        let image = Self.fixtures.appendingPathComponent("branchnet.onnx").path
        XCTAssertThrowsError(try ONNXSentenceEncoder(contentsOf: image, pipeline: folder.path)) { error in
            XCTAssertTrue("\(error)".hasSuffix("(an image or feature batch), not token inputs input_ids, attention_mask, token_type_ids: it is not a text model"), "\(error)")
        }
    }

    // MARK: Inputs that cannot be fed

    /// The fixture with its graph inputs changed by `edit`.
    func editedModel(_ edit: (inout ONNXGraph) -> Void) throws -> ONNXModel {
        var model = try ONNXModel.read(Self.modelPath)
        edit(&model.graph)
        return model
    }

    func assertRefused(_ model: ONNXModel, inputShape: [Int]? = nil, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ONNXNetwork(model, file: "bert.onnx", inputShape: inputShape), file: file, line: line) { error in
            XCTAssertEqual("\(error)", "bert.onnx: " + expected, file: file, line: line)
        }
    }

    /// A graph input Distill cannot feed, a token input of a float type, a text model given
    /// an image shape: one line naming the file and the input, and saying what can be fed.
    func testInputsThatCannotBeFedAreOneLineErrors() throws {
        let renamed = try editedModel { graph in
            graph.inputs[2].name = "segment_ids"
            for n in graph.nodes.indices { graph.nodes[n].inputs = graph.nodes[n].inputs.map { $0 == "token_type_ids" ? "segment_ids" : $0 } }
        }
        assertRefused(renamed, "has graph input 'segment_ids' (int64), which Distill cannot feed: it feeds one float input (an image batch), "
                      + "or token inputs named input_ids, attention_mask, token_type_ids")
        assertRefused(try editedModel { $0.inputs[0].elementType = ONNXTensor.float },
                      "input 'input_ids' has element type float; token inputs are int64 or int32")
        assertRefused(try editedModel { $0.inputs[1].dims = [nil, nil, nil] }, "input 'attention_mask' has 3 axes; token inputs are [batch, sequence]")
        assertRefused(try editedModel { $0.inputs[0].dims = [nil, 16]; $0.inputs[1].dims = [nil, 12] }, "token inputs fix different sequence lengths [12, 16]")
        assertRefused(try editedModel { $0.inputs.append(ONNXValueInfo(name: "pixels", dims: [nil, 3, 8, 8])) },
                      "has graph input 'pixels' (float), which Distill cannot feed: it feeds one float input (an image batch), "
                      + "or token inputs named input_ids, attention_mask, token_type_ids")
        let original = try ONNXModel.read(Self.modelPath)
        assertRefused(original, inputShape: [3, 48, 192], "is a text model: it takes examples [3, length] (token ids, attention mask, token types), not [3, 48, 192]")
        assertRefused(try editedModel { $0.inputs[0].dims = [nil, 16] }, inputShape: [3, 12], "input 'input_ids' takes sequences of exactly 16 tokens, not 12")
        // A graph that fixes the length runs at that length only.
        let fixed = try ONNXNetwork(try editedModel { graph in for i in graph.inputs.indices { graph.inputs[i].dims = [nil, 6] } }, file: "bert.onnx")
        XCTAssertEqual(fixed.inputShape, [3, 6])
        XCTAssertThrowsError(try fixed.run(TokenBatch(sequences: [[2, 3]]).packed())) { error in
            XCTAssertEqual("\(error)", "bert.onnx: input 'input_ids' takes sequences of exactly 6 tokens, got a batch of 2")
        }
    }

    /// Batches a text model cannot run: ids that are not whole numbers, ids outside the
    /// vocabulary, sequences longer than the learned positions, an image batch. Each is a
    /// thrown one-line error, never a trap.
    func testBadBatchesAreOneLineErrors() throws {
        let network = try ONNXNetwork(contentsOf: Self.modelPath)
        let fragments: [(Tensor, [String])] = [
            (Tensor([2, 1.5, 3, 1, 1, 1, 0, 0, 0], shape: [1, 3, 3]), ["token inputs", "1.5", "not a token id"]),
            (TokenBatch(sequences: [[2, 96, 3]]).packed(), ["node '", "Gather", "96"]),
            (TokenBatch(sequences: [[Int](repeating: 5, count: 41)]).packed(), ["node '"]),
            (Tensor.zeros([2, 1, 28, 28]), ["token inputs", "[2, 1, 28, 28]"]),
        ]
        for (input, expected) in fragments {
            XCTAssertThrowsError(try withoutGradients { try network.run(input) }) { error in
                let message = "\(error)"
                XCTAssertTrue(message.hasPrefix(Self.modelPath + ": "), message)
                XCTAssertFalse(message.contains("\n"), message)
                for fragment in expected { XCTAssertTrue(message.contains(fragment), "'\(fragment)' not in: \(message)") }
            }
        }
        XCTAssertThrowsError(try network.run(TokenBatch(sequences: [[2, 3]]).packed(), outputs: ["no_such_value"])) { error in
            XCTAssertEqual("\(error)", "\(Self.modelPath): has no value 'no_such_value' (graph outputs: sentence_embedding, last_hidden_state)")
        }
    }
}
