import Datasets
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import TestSupport
import XCTest

/// `distill export` of a quantized model: an ONNX graph in QDQ form that our importer and
/// onnxruntime (scripts/check_qdq.py) run as our int8 kernels do.
extension CommandLineTests {
    /// The largest |a − b| in steps of b's range in 255 (a logit "quantization step").
    private func steps(_ a: Tensor, _ b: Tensor) -> Float {
        let range = b.scalars.max()! - b.scalars.min()!
        return zip(a.scalars, b.scalars).map { abs($0 - $1) }.max()! / (range / 255)
    }

    /// A cnn-student trained on classes 0-4 and quantized, exported as QDQ ONNX: our import of
    /// the file gives our int8 logits and the same test accuracy through `distill evaluate`;
    /// onnx.checker accepts it, and onnxruntime (its integer kernels, and the graph as
    /// written) agrees with our logits within one step of their range in 255 and with our
    /// int8 accuracy on the 5,000 test images within 0.1 point.
    func testQuantizedModelExportsToQDQThatOnnxRuntimeRunsLikeOurs() throws {
        try requireData()
        let run = folder("qdq-float"), quantized = folder("qdq-int8"), checks = folder("qdq-checks")
        _ = try assertSucceeds(["train", "--model", "cnn-student", "--classes", "0-4", "--labels-per-class", "300", "--epochs", "2",
                                "--out", run.path])
        _ = try assertSucceeds(["quantize", run.path, "--calibration", "128", "--classes", "0-4", "--out", quantized.path])
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: quantized.appendingPathComponent("quantization.json"))) as? [String: Any])
        let int8Accuracy = try XCTUnwrap(report["int8Accuracy"] as? Double)
        XCTAssertGreaterThan(int8Accuracy, 0.6, "the student learned something: \(report)")
        try FileManager.default.createDirectory(at: checks, withIntermediateDirectories: true)
        let exported = checks.appendingPathComponent("student-int8.onnx").path
        let output = try assertSucceeds(["export", quantized.path, "--out", exported])
        XCTAssertTrue(output.contains("int8 as ONNX in QDQ form (opset 17"), output)
        try assertFails(["export", quantized.path, "--out", checks.appendingPathComponent("x.safetensors").path], mentioning: "exports to ONNX only")

        // Our import of the file: the QDQ graph run in float gives our int8 logits.
        let (model, _) = try QuantizedModelFile.read(quantized.appendingPathComponent("model.safetensors").path)
        let network = try ONNXNetwork(contentsOf: exported)
        var g = RandomGenerator(seed: 4)
        let probe = Tensor.randomNormal([64, 1, 28, 28], using: &g)
        let imported = try withoutGradients { try network.run(probe) }
        XCTAssertLessThanOrEqual(steps(imported, model(probe)), 1, "our import against our int8 kernels")
        let evaluated = try assertSucceeds(["evaluate", exported, "--classes", "0-4"])
        let line = try XCTUnwrap(evaluated.split(separator: "\n").first { $0.hasPrefix("accuracy ") }, evaluated)
        let accuracy = try XCTUnwrap(Double(line.dropFirst("accuracy ".count).prefix { $0 != "%" }), evaluated) / 100
        XCTAssertEqual(accuracy, int8Accuracy, accuracy: 0.001, "distill evaluate of the exported file: \(evaluated)")
        // The exported int8 file as a teacher: the run reports the teacher's accuracy, which is the int8 model's.
        let taught = try assertSucceeds(["distill", "--teacher", exported, "--student", "mlp", "--classes", "0-4", "--labels-per-class", "50",
                                         "--epochs", "1", "--out", folder("qdq-taught").path])
        XCTAssertTrue(taught.contains(String(format: "teacher %.2f%%", int8Accuracy * 100)), taught)

        try requireTool(pythonCanImport("onnx", "onnxruntime", "numpy"), "python3 with onnx, onnxruntime and numpy is not installed (make test installs them)")
        let (status, text) = try runPython([Self.root.appendingPathComponent("scripts/check_qdq.py").path, exported,
                                            "/usr/share/datasets/fashion-mnist", "0-4", checks.path])
        XCTAssertEqual(status, 0, text)
        let checked = try XCTUnwrap(text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.last, text)
        XCTAssertEqual(checked["count"] as? Int, 5000, text)
        let inputs = try NPY.read(checks.appendingPathComponent("inputs.npy").path).tensor
        let ours = model(inputs)
        for name in ["optimized", "as_written"] {
            let theirs = try NPY.read(checks.appendingPathComponent("\(name).npy").path).tensor
            XCTAssertEqual(theirs.shape, ours.shape)
            let worst = steps(theirs, ours)
            let agreement = zip(theirs.max(alongAxis: 1).indices, ours.max(alongAxis: 1).indices).filter { $0 == $1 }.count
            print("QDQ export, onnxruntime \(name): max logit difference \(worst) steps, argmax agreement \(agreement)/\(ours.shape[0])")
            XCTAssertLessThanOrEqual(worst, 1, "onnxruntime \(name) against our int8 logits")
        }
        let theirAccuracy = try XCTUnwrap(checked["accuracy"] as? Double)
        print("QDQ export: int8 accuracy ours \(int8Accuracy), onnxruntime \(theirAccuracy) (as written \(checked["accuracy_as_written"] ?? "?"))")
        XCTAssertEqual(theirAccuracy, int8Accuracy, accuracy: 0.001, text)
    }
}
