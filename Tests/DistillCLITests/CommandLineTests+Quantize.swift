import Datasets
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
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
        try assertFails(["quantize", quantized.path, "--classes", "0-4", "--out", folder("bad").path], mentioning: "is an int8 model already")
        try assertEvaluateAndPredictRunTheInt8Model(quantized, int8Accuracy: try XCTUnwrap(report["int8Accuracy"] as? Double))
    }

    /// `distill evaluate` and `distill predict` of a `distill quantize` folder and its file run
    /// the int8 model: evaluate's test accuracy is the one quantize reported, predict's classes
    /// for the 5,000 test images of classes 0-4 (an .npy of their pixels in [0, 1]) are the
    /// int8 model's own; a truncated file and a zero scale are one-line errors.
    private func assertEvaluateAndPredictRunTheInt8Model(_ quantized: URL, int8Accuracy: Double) throws {
        let file = quantized.appendingPathComponent("model.safetensors")
        for model in [quantized.path, file.path] {
            let evaluated = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try assertSucceeds(["evaluate", model, "--classes", "0-4", "--json"]).utf8))
                as? [String: Any])
            XCTAssertEqual((evaluated["student"] as? [String: Any])?["top1"] as? Double, int8Accuracy, "distill evaluate \(model)")
            let cost = try XCTUnwrap(evaluated["studentCost"] as? [String: Any])
            XCTAssertGreaterThan(try XCTUnwrap(cost["latencyBatch256Milliseconds"] as? Double), 0)
            XCTAssertLessThan(try XCTUnwrap(cost["bytes"] as? Int), 60_000, "int8 weights, not float32: \(cost)")
        }
        XCTAssertTrue(try assertSucceeds(["evaluate", quantized.path, "--classes", "0-4"]).contains("(int8 model on the "))

        let images = try IDX.read(FashionMNIST.defaultDirectory + "/t10k-images-idx3-ubyte.gz")
        let labels = try IDX.read(FashionMNIST.defaultDirectory + "/t10k-labels-idx1-ubyte.gz").bytes.map(Int.init)
        let kept = labels.indices.filter { labels[$0] < 5 }
        let pixels = kept.flatMap { i in images.bytes[(i * 784)..<((i + 1) * 784)].map { Float($0) / 255 } }
        let inputs = quantized.appendingPathComponent("test-0-4.npy")
        try Self.npy(pixels, shape: [kept.count, 1, 28, 28]).write(to: inputs)
        let (int8, metadata) = try QuantizedModelFile.read(file.path)
        let preprocessing = try Preprocessing.decode(try XCTUnwrap(metadata[Preprocessing.metadataKey]), file: file.path)
        let expected = int8(try preprocessing.batch(try preprocessing.inputs([inputs.path])[...])).max(alongAxis: 1).indices
        let rows = try assertSucceeds(["predict", file.path, inputs.path, "--format", "csv", "--batch", "500"])
            .split(separator: "\n").dropFirst().map { $0.split(separator: ",").map(String.init) }
        XCTAssertEqual(rows.count, kept.count)
        XCTAssertEqual(rows.map { $0[1] }, expected.map { preprocessing.classNames[$0] }, "predict gives the int8 model's classes")
        let correct = zip(rows, kept).filter { $0.0[1] == FashionMNIST.classNames[labels[$0.1]] }.count
        print("int8 predict: \(correct) of \(kept.count) correct (quantize reported \(int8Accuracy))")
        XCTAssertEqual(Double(correct) / Double(kept.count), int8Accuracy, accuracy: 0.001)

        let truncated = quantized.appendingPathComponent("truncated.safetensors"), zeroScale = quantized.appendingPathComponent("zero-scale.safetensors")
        let good = try Data(contentsOf: file)
        try good.prefix(good.count / 2).write(to: truncated)
        let (stored, fileMetadata) = try SafeTensors.parseRaw(good, file: file.path)
        var tensors = stored
        tensors["layers.0.weight_scale"]!.bytes.replaceSubrange(0..<4, with: [0, 0, 0, 0])
        try SafeTensors.encode(raw: tensors.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, metadata: fileMetadata).write(to: zeroScale)
        for (bad, problem) in [(truncated, "data_offsets"), (zeroScale, "scale 0.0 of output channel 0 is not a positive finite number")] {
            for arguments in [["evaluate", bad.path, "--classes", "0-4"], ["predict", bad.path, inputs.path]] {
                try assertFails(arguments, mentioning: bad.path + ": ")
                let errors = try run(arguments).errors.trimmingCharacters(in: .whitespacesAndNewlines)
                XCTAssertTrue(errors.contains(problem) && !errors.contains("\n"), "\(arguments): one line naming the problem: \(errors)")
            }
        }
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

extension CommandLineTests {
    /// `distill distill --quantize int8`: a trained cnn-student fine-tuned against itself with
    /// fake quantization writes model-int8.safetensors; a run stopped after its ranges were
    /// fixed and resumed writes the same int8 model, bit for bit, as one never stopped (the
    /// ranges travel in the checkpoint).
    func testQuantizationAwareDistillationResumesToTheSameInt8Model() throws {
        let data = try writeDistributedData()  // 2,560 random 12×12 images of 4 classes
        let common = ["--data", data.train, "--test-data", data.test, "--validation-fraction", "0", "--batch", "64", "--lr", "0.005"]
        let float = folder("qat-float"), straight = folder("qat-straight"), stopped = folder("qat-stopped")
        _ = try assertSucceeds(["train", "--model", "cnn-student", "--epochs", "2", "--quiet", "--out", float.path] + common)
        let arguments = ["distill", "--teacher", float.path, "--student-weights", float.path, "--quantize", "int8", "--epochs", "1",
                         "--checkpoint-every", "5", "--json"] + common
        XCTAssertEqual(try runUntil(arguments + ["--out", straight.path], signal: SIGKILL) { _ in false }, 0)
        var steps = 0
        let status = try runUntil(arguments + ["--out", stopped.path], signal: SIGTERM) { event in
            if event["event"] as? String == "step" { steps += 1 }
            return steps == 12  // past the 10% of 40 steps that observe ranges
        }
        XCTAssertEqual(status, 128 + SIGTERM)
        let resumed = try assertSucceeds(["distill", "--resume", stopped.path])
        XCTAssertTrue(resumed.contains("int8 test accuracy"), resumed)
        let a = try Data(contentsOf: straight.appendingPathComponent("model-int8.safetensors"))
        let b = try Data(contentsOf: stopped.appendingPathComponent("model-int8.safetensors"))
        XCTAssertEqual(a, b, "the resumed run's int8 model is the uninterrupted run's")
        let (model, _) = try QuantizedModelFile.read(straight.appendingPathComponent("model-int8.safetensors").path)
        XCTAssertEqual(model.exampleShape, [1, 12, 12])

        // The run's evaluation.json and report describe the int8 model it ships, with the
        // fake-quantized model's scores beside it; distill evaluate of the file agrees.
        let evaluation = try json(straight.appendingPathComponent("evaluation.json"))
        let student = try XCTUnwrap(evaluation["student"] as? [String: Any]), int8 = try XCTUnwrap(evaluation["int8"] as? [String: Any])
        let fake = try XCTUnwrap(int8["fakeQuantized"] as? [String: Any])
        print("quantization-aware run: int8 \(student["top1"] ?? "?"), fake-quantized \(fake["top1"] ?? "?"), agreement \(int8["agreementWithFakeQuantized"] ?? "?"), "
              + "file \(int8["fileBytes"] ?? "?") of \(int8["floatFileBytes"] ?? "?") bytes, cost \(evaluation["studentCost"] ?? "?")")
        XCTAssertEqual(int8["file"] as? String, "model-int8.safetensors")
        XCTAssertEqual(int8["fileBytes"] as? Int, a.count)
        XCTAssertLessThan(Double(a.count), 0.5 * Double(try XCTUnwrap(int8["floatFileBytes"] as? Int)))
        XCTAssertGreaterThan(try XCTUnwrap(int8["agreementWithFakeQuantized"] as? Double), 0.95)
        XCTAssertLessThan(abs(try XCTUnwrap(fake["top1"] as? Double) - (try XCTUnwrap(student["top1"] as? Double))), 0.05)
        let evaluated = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try assertSucceeds(
            ["evaluate", straight.appendingPathComponent("model-int8.safetensors").path, "--data", data.train, "--test-data", data.test, "--json"]).utf8))
            as? [String: Any])
        XCTAssertEqual((evaluated["student"] as? [String: Any])?["top1"] as? Double, student["top1"] as? Double, "distill evaluate model-int8.safetensors")
        let cost = try XCTUnwrap(evaluation["studentCost"] as? [String: Any]), evaluatedCost = try XCTUnwrap(evaluated["studentCost"] as? [String: Any])
        for key in ["parameters", "multiplyAdds", "bytes"] { XCTAssertEqual(cost[key] as? Int, evaluatedCost[key] as? Int, key) }
        XCTAssertGreaterThan(try XCTUnwrap(cost["latencyBatch256Milliseconds"] as? Double), 0)
        let page = try String(contentsOf: straight.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(page.contains("<td>student, int8</td>") && page.contains("<td>student, fake-quantized (as trained)</td>"), "report.html")

        let bad = folder("qat-bad").path
        try assertFails(["distill", "--teacher", float.path, "--student-weights", "/nonexistent/run", "--quantize", "int8", "--out", bad] + common,
                        mentioning: "--student-weights: /nonexistent/run does not exist")
        try assertFails(["distill", "--teacher", float.path, "--student", "mlp", "--student-weights", float.path, "--out", bad] + common,
                        mentioning: "--student-weights")
        try assertFails(["distill", "--teacher", float.path, "--quantize", "int4", "--out", bad] + common, mentioning: "--quantize")
    }
}

extension CommandLineTests {
    /// Quantization-aware distillation on two processes (which agree on the activation ranges
    /// before every step while observing them): the run ends, only rank 0 writes and reports,
    /// and its int8 model answers as its fake-quantized float model does.
    func testQuantizationAwareDistillationOnTwoProcesses() throws {
        let data = try writeDistributedData()
        let common = ["--data", data.train, "--test-data", data.test, "--validation-fraction", "0", "--batch", "64", "--lr", "0.005"]
        let float = folder("qat-mpi-float"), run = folder("qat-mpi")
        _ = try assertSucceeds(["train", "--model", "cnn-student", "--epochs", "1", "--quiet", "--out", float.path] + common)
        let result = try runMPI(Array(repeating: ["distill", "--teacher", float.path, "--student-weights", float.path, "--quantize", "int8",
                                                  "--epochs", "1", "--out", run.path] + common, count: 2))
        XCTAssertEqual(result.status, 0, result.errors)
        let line = try XCTUnwrap(result.output.split(separator: "\n").first { $0.contains("int8 test accuracy") }, result.output)
        XCTAssertEqual(result.output.components(separatedBy: "int8 test accuracy").count, 2, "only rank 0 reports")
        // "… (the fake-quantized student A%, same class for B%)": B close to 100.
        let agreement = try XCTUnwrap(Double(line.split(separator: "same class for ").last!.prefix { $0 != "%" }))
        XCTAssertGreaterThanOrEqual(agreement, 98, String(line))
        XCTAssertNoThrow(try QuantizedModelFile.read(run.appendingPathComponent("model-int8.safetensors").path))
    }
}
