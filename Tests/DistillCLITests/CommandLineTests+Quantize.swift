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

    /// A resnet8 run (1,500 images of classes 0-4, 3 epochs; residual blocks, global average
    /// pooling) quantizes whole, its int8 accuracy within 1 point of the float model's on the
    /// 5,000 test images of those classes (measured: 73.96% float, 73.98% int8);
    /// a Wide ResNet's pre-activation batch norms cannot be folded into a convolution, stay
    /// float, and the command and its report list them by module path.
    func testQuantizeResidualNetworksAndListTheLayersThatStayFloat() throws {
        try requireData()
        let run = folder("resnet"), quantized = folder("resnet-int8")
        _ = try assertSucceeds(["train", "--model", "resnet8", "--classes", "0-4", "--labels-per-class", "300", "--epochs", "3",
                                "--out", run.path])
        let output = try assertSucceeds(["quantize", run.path, "--calibration", "128", "--classes", "0-4", "--out", quantized.path])
        XCTAssertTrue(output.contains("every layer quantized"), output)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: quantized.appendingPathComponent("quantization.json"))) as? [String: Any])
        let (float, int8) = (try XCTUnwrap(report["floatAccuracy"] as? Double), try XCTUnwrap(report["int8Accuracy"] as? Double))
        print("resnet8: float \(float), int8 \(int8), agreement \(report["agreement"] ?? "?")")
        XCTAssertGreaterThan(float, 0.6, "the float resnet8 learned something: \(report)")
        XCTAssertLessThanOrEqual(abs(int8 - float), 0.01, "\(report)")
        XCTAssertEqual(report["floatLayers"] as? [String], [])

        let wide = folder("wide"), wideQuantized = folder("wide-int8")
        _ = try assertSucceeds(["train", "--model", "wrn-16-2", "--width", "0.25", "--classes", "0-4", "--labels-per-class", "20",
                                "--epochs", "1", "--out", wide.path])
        let wideOutput = try assertSucceeds(["quantize", wide.path, "--calibration", "64", "--classes", "0-4", "--out", wideQuantized.path])
        XCTAssertTrue(wideOutput.contains("stay float (dequantized before, quantized after): block1.0.bn1, block1.1.bn1, block2.0.bn1"), wideOutput)
        let wideReport = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: wideQuantized.appendingPathComponent("quantization.json"))) as? [String: Any])
        XCTAssertEqual((wideReport["floatLayers"] as? [String])?.last, "bn1")
    }
}
