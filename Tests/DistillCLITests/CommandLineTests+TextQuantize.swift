import Datasets
import DistillInference
import Foundation
import NeuralNet
import Tensors
import XCTest

extension CommandLineTests {
    /// `distill quantize` of text runs: a sentence encoder and a text classifier become int8
    /// folders that embed, evaluate and predict like their float runs, with the comparison in
    /// quantization.json; what it cannot quantize is a one-line error.
    func testTextRunsQuantizeToInt8AndStillEmbedAndClassify() throws {
        let (teacher, texts) = try makeTinyTextTeacher()
        let run = folder("quantize-text-run"), int8 = folder("quantize-text-int8")
        _ = try assertSucceeds(["distill", "--data", texts.path, "--teacher", teacher.path, "--student", "text-transformer", "--method", "embedding",
                                "--init-from-teacher", "--init-layers", "0,3", "--epochs", "1", "--batch", "8", "--optimizer", "adam", "--lr", "0.001",
                                "--out", run.path, "--quiet"])
        let output = try assertSucceeds(["quantize", run.path, "--data", texts.path, "--teacher", teacher.path, "--out", int8.path])
        XCTAssertTrue(output.contains("linear layers and embedding tables in int8 (dynamic: no calibration)"), output)
        XCTAssertTrue(output.contains("against the teacher on the same texts: float mean cosine"), output)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: int8.appendingPathComponent("quantization.json"))) as? [String: Any])
        XCTAssertEqual(report["texts"] as? Int, 48)
        XCTAssertGreaterThan(try XCTUnwrap(report["meanCosine"] as? Double), 0.99)
        XCTAssertGreaterThan(try XCTUnwrap(report["similaritySpearman"] as? Double), 0.9)
        XCTAssertLessThan(try XCTUnwrap(report["int8FileBytes"] as? Int), try XCTUnwrap(report["floatFileBytes"] as? Int) / 2)
        XCTAssertNotNil(report["int8LatencyMilliseconds"] as? Double)
        let floatScore = try XCTUnwrap(report["floatAgainstTeacher"] as? [String: Any]), int8Score = try XCTUnwrap(report["int8AgainstTeacher"] as? [String: Any])
        XCTAssertEqual(try XCTUnwrap(int8Score["similaritySpearman"] as? Double), try XCTUnwrap(floatScore["similaritySpearman"] as? Double), accuracy: 0.05)
        XCTAssertTrue(FileManager.default.fileExists(atPath: int8.appendingPathComponent("tokenizer.json").path))
        // The folder is a text model: its embeddings are the int8 model's, as the library gives them.
        let embedded = int8.appendingPathComponent("embedded.npy")
        XCTAssertTrue(try assertSucceeds(["embed", int8.path, texts.path, "--out", embedded.path]).contains("wrote 48 embeddings"))
        let loaded = try SavedModel.load(int8.path)
        XCTAssertTrue(DynamicQuantization.isQuantized(loaded.model))
        XCTAssertEqual(try NPY.read(embedded.path).tensor.shape, [48, 16])

        // A text classifier: the same class for (nearly) every text, and evaluate reads the folder.
        let topics = try makeTopicFolder()
        let common = ["--data", topics.path, "--text-separator", "%", "--min-class-size", "20"]
        let classifier = folder("quantize-text-classifier"), classifierInt8 = folder("quantize-text-classifier-int8")
        _ = try assertSucceeds(["train", "--model", "text-bag", "--tokenizer", teacher.path, "--hidden", "16", "--epochs", "4", "--batch", "8",
                                "--optimizer", "adam", "--lr", "0.05", "--max-tokens", "7", "--out", classifier.path, "--quiet"] + common)
        let classified = try assertSucceeds(["quantize", classifier.path, "--data", topics.path, "--text-separator", "%", "--out", classifierInt8.path])
        XCTAssertTrue(classified.contains("the same class for"), classified)
        let agreement = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(contentsOf: classifierInt8.appendingPathComponent("quantization.json"))) as? [String: Any])?["agreement"] as? Double)
        XCTAssertGreaterThan(agreement, 0.9)
        XCTAssertTrue(try assertSucceeds(["evaluate", classifierInt8.path] + common).contains("accuracy"))
        try assertFails(["quantize", classifier.path, "--data", topics.path, "--text-separator", "%", "--teacher", teacher.path, "--out", folder("kd").path],
                        mentioning: "--teacher: \(classifier.path) is a text classifier")

        try assertFails(["quantize", run.path, "--out", folder("nowhere").path], mentioning: "--data: give texts to compare the int8 text model with the float one on")
        try assertFails(["quantize", int8.path, "--data", texts.path, "--out", folder("again").path], mentioning: "is an int8 model already")
        try assertFails(["quantize", run.path, "--data", texts.path, "--calibration", "64", "--out", folder("cal").path],
                        mentioning: "--calibration: a text model is quantized dynamically")
        try assertFails(["export", int8.path, "--out", folder("onnx").appendingPathComponent("model.onnx").path], mentioning: "is an int8 text model (distill quantize)")
    }
}
