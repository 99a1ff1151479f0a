import Datasets
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import TestSupport
import XCTest

extension ONNXTextModelTests {
    /// A by-hand check, run when `DISTILL_MINILM_ONNX` names all-MiniLM-L6-v2 exported by
    /// scripts/generate_bert_onnx_fixture.py --model (90 MB, not committed; the script writes
    /// onnxruntime's embeddings beside it). On the 1,000 fortunes quotes of
    /// minilm_reference.npz, in batches of 32 of similar lengths padded to their longest, the
    /// imported graph's sentence embeddings match onnxruntime's, our safetensors encoder's
    /// (`HuggingFaceBERT.sentenceEncoder(folder:)`) and transformers': cosine ≥ 0.99999 and
    /// |Δ| ≤ 1e-4 per dimension for every quote.
    func testMiniLMExportMatchesOnnxRuntimeAndTheSafetensorsEncoder() throws {
        guard let path = ProcessInfo.processInfo.environment["DISTILL_MINILM_ONNX"], !path.isEmpty else {
            throw XCTSkip("a by-hand check: set DISTILL_MINILM_ONNX to the export of scripts/generate_bert_onnx_fixture.py --model")
        }
        let network = try ONNXNetwork(contentsOf: path)
        XCTAssertEqual(network.tokenInputs?.inputs, ["input_ids", "attention_mask", "token_type_ids"])
        let encoder = try HuggingFaceBERT.sentenceEncoder(folder: try MiniLM.requireFolder().path)
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/minilm_reference.npz").path
        let arrays = try NPZ.read(fixture)
        let lengths = try XCTUnwrap(arrays["lengths"]).integers(file: fixture)
        let ids = try XCTUnwrap(arrays["ids"]).integers(file: fixture)
        let step = try XCTUnwrap(arrays["step"]).values[0]
        let transformers = try XCTUnwrap(arrays["embeddings"]).values.map { $0 * step }
        let referencePath = (path.hasSuffix(".onnx") ? String(path.dropLast(5)) : path) + "-reference.npz"
        let onnxruntime = try XCTUnwrap(try NPZ.read(referencePath)["embeddings"]).values
        let width = 384
        XCTAssertEqual(onnxruntime.count, lengths.count * width)
        var starts = [0]
        for length in lengths { starts.append(starts.last! + length) }

        var imported = [Float](repeating: 0, count: lengths.count * width), native = imported
        var importedSeconds = 0.0, nativeSeconds = 0.0
        let order = lengths.indices.sorted { (lengths[$0], $0) < (lengths[$1], $1) }
        for first in stride(from: 0, to: order.count, by: 32) {
            let rows = Array(order[first..<min(first + 32, order.count)])
            let batch = TokenBatch(sequences: rows.map { Array(ids[starts[$0]..<starts[$0 + 1]]) })
            var start = Date()
            let fromGraph = try withoutGradients { try network.run(batch.packed()) }.scalars
            importedSeconds += Date().timeIntervalSince(start)
            start = Date()
            let fromEncoder = try withoutGradients { try encoder.embed(batch) }.scalars
            nativeSeconds += Date().timeIntervalSince(start)
            for (offset, row) in rows.enumerated() {
                imported.replaceSubrange(row * width..<(row + 1) * width, with: fromGraph[offset * width..<(offset + 1) * width])
                native.replaceSubrange(row * width..<(row + 1) * width, with: fromEncoder[offset * width..<(offset + 1) * width])
            }
        }
        for (name, reference) in [("onnxruntime", onnxruntime), ("our safetensors encoder", native), ("transformers", transformers)] {
            var worstCosine: Float = 1, worstDifference: Float = 0
            for row in lengths.indices {
                let (cosine, difference) = cosineAndLargestDifference(imported[row * width..<(row + 1) * width], reference[row * width..<(row + 1) * width])
                worstCosine = min(worstCosine, cosine)
                worstDifference = max(worstDifference, difference)
            }
            print("MiniLM ONNX import against \(name) on \(lengths.count) quotes: worst cosine \(worstCosine), max abs difference \(worstDifference)")
            XCTAssertGreaterThanOrEqual(worstCosine, 0.99999, name)
            XCTAssertLessThanOrEqual(worstDifference, 1e-4, name)
        }
        print(String(format: "seconds for the 1,000 quotes: imported graph %.2f, safetensors encoder %.2f", importedSeconds, nativeSeconds))
    }
}
