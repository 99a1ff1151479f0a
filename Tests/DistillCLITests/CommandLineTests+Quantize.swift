import Foundation
import ModelFormats
import TestSupport
import XCTest

/// `distill quantize` end to end on a Fashion-MNIST subset, and its one-line errors.
extension CommandLineTests {
    /// A cnn-student trained for one epoch on classes 0-4, quantized on 64 calibration
    /// examples: the folder holds the int8 model (readable, under 30% of the float file) and
    /// the report, and the int8 model agrees with the float one on almost every test image.
    func testQuantizeWritesTheInt8ModelAndItsReport() throws {
        try requireData()
        let run = folder("float"), quantized = folder("int8")
        _ = try assertSucceeds(["train", "--model", "cnn-student", "--classes", "0-4", "--labels-per-class", "100", "--epochs", "1",
                                "--out", run.path])
        let output = try assertSucceeds(["quantize", run.path, "--calibration", "64", "--classes", "0-4", "--out", quantized.path])
        for fragment in ["calibrated on 64 training examples (minmax)", "accuracy", "agreement", "latency float"] {
            XCTAssertTrue(output.contains(fragment), "\(fragment): \(output)")
        }
        let (model, metadata) = try QuantizedModelFile.read(quantized.appendingPathComponent("model.safetensors").path)
        XCTAssertEqual(metadata["distill.model"], "cnn-student")
        XCTAssertEqual(model.exampleShape, [1, 28, 28])
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: quantized.appendingPathComponent("quantization.json"))) as? [String: Any])
        XCTAssertEqual(report["testExamples"] as? Int, 5000)
        XCTAssertGreaterThan(try XCTUnwrap(report["agreement"] as? Double), 0.97, "\(report)")
        XCTAssertLessThan(abs(try XCTUnwrap(report["int8Accuracy"] as? Double) - (report["floatAccuracy"] as! Double)), 0.02, "\(report)")
        XCTAssertLessThan(Double(report["int8FileBytes"] as! Int), 0.3 * Double(report["floatFileBytes"] as! Int), "\(report)")
        for key in ["int8LatencyBatch1Milliseconds", "int8LatencyBatch256Milliseconds", "floatLatencyBatch256Milliseconds"] {
            XCTAssertGreaterThan(try XCTUnwrap(report[key] as? Double), 0, key)
        }
        // One-line errors: an unknown method, and a model whose data does not fit.
        try assertFails(["quantize", run.path, "--calibration-method", "mean", "--out", folder("bad").path], mentioning: "--calibration-method")
        try assertFails(["quantize", "/nonexistent/run", "--out", folder("bad").path], mentioning: "does not exist")
    }
}
