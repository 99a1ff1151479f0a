import Datasets
import Foundation
import ModelFormats
import Tensors
import TestSupport
import XCTest

/// `distill transfer --from model.onnx`: the user's own PyTorch model (branchnet.onnx, see
/// scripts/generate_transfer_fixture.py) re-headed for Fashion-MNIST classes 5-9, fine-tuned,
/// then exported to ONNX again: Distill's forward pass of the run's model, of the exported
/// file and onnxruntime's all agree.
extension CommandLineTests {
    static var onnxFixtures: URL { root.appendingPathComponent("Tests/ModelFormatsTests/Fixtures/onnx") }

    func testTransferFromAnONNXModelExportsAndRunsInOnnxRuntime() throws {
        try requireData()
        let source = Self.onnxFixtures.appendingPathComponent("branchnet.onnx").path
        let run = folder("onnx-transfer")
        try assertFails(["transfer", "--from", source, "--head", "node_relu", "--classes", "5-9", "--out", run.path],
                        mentioning: "--from: \(source): node 'node_relu' is a Relu; a classifier head is a Gemm or MatMul (here: node_linear (Gemm → linear))")
        try assertFails(["transfer", "--from", source, "--freeze", "nope", "--classes", "5-9", "--steps", "1", "--out", run.path],
                        mentioning: "has no node named 'nope' (nodes: node_conv2d, node_relu")
        var output = try assertSucceeds(["transfer", "--from", source, "--classes", "5-9", "--labels-per-class", "20", "--strategy", "finetune",
                                         "--freeze", "node_conv2d", "--steps", "40", "--out", run.path])
        XCTAssertTrue(output.contains("old model branchnet.onnx on classes 0-4: old-task test accuracy 80.52%"), output)
        XCTAssertTrue(output.contains("head: Gemm node 'node_linear', 16 features → 5 classes; the Softmax after it is dropped"), output)
        XCTAssertTrue(output.contains("finetune: new task"), output)
        let modelFile = run.appendingPathComponent("model.onnx").path
        XCTAssertTrue(FileManager.default.fileExists(atPath: modelFile))
        XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent("finetune.onnx").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.appendingPathComponent("model.safetensors").path))
        let trained = try ONNXNetwork(contentsOf: modelFile)
        let original = try ONNXNetwork(contentsOf: source)
        let weight = { (network: ONNXNetwork, name: String) in network.stateDict().first { $0.name == name }!.tensor.scalars }
        XCTAssertEqual(weight(trained, "backbone.stem.weight"), weight(original, "stem.weight"), "--freeze node_conv2d kept the stem")
        XCTAssertNotEqual(weight(trained, "backbone.mix.weight"), weight(original, "mix.weight"), "the rest fine-tuned")

        // evaluate reads the run folder; export writes it again as ONNX at the source's opset.
        let evaluated = try assertSucceeds(["evaluate", run.path, "--classes", "5-9"])
        XCTAssertTrue(evaluated.contains("Sandal"), evaluated)
        try assertFails(["export", run.path, "--opset", "13", "--out", run.appendingPathComponent("x.onnx").path],
                        mentioning: "holds an ONNX graph of opset 18, which is written as it is")
        let exported = run.appendingPathComponent("exported.onnx").path
        output = try assertSucceeds(["export", run.path, "--out", exported])
        XCTAssertTrue(output.contains("as ONNX (opset 18, 15 nodes, input [batch, 1, 28, 28])"), output)
        XCTAssertEqual(try assertSucceeds(["evaluate", exported, "--classes", "5-9"]).split(separator: "\n").first,
                       evaluated.split(separator: "\n").first, "the same accuracy from the exported file")

        // Distill's forward pass of the run's model and of the exported file, then onnxruntime's.
        let images = try NPY.read(Self.onnxFixtures.appendingPathComponent("input.npy").path).tensor
        let expected = withoutGradients { trained(images) }
        XCTAssertEqual(expected.shape, [16, 5])
        let reread = try ONNXNetwork(contentsOf: exported)
        XCTAssertEqual(withoutGradients { reread(images) }.scalars, expected.scalars)
        try requireTool(pythonCanImport("onnx", "onnxruntime", "numpy"), "python3 with onnx, onnxruntime and numpy is not installed (make test installs them)")
        let expectedPath = run.appendingPathComponent("expected.npy").path
        try NPY.write(expected, to: expectedPath)
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        check.arguments = ["python3", Self.root.appendingPathComponent("scripts/check_onnx.py").path, exported,
                           Self.onnxFixtures.appendingPathComponent("input.npy").path, expectedPath]
        let pipe = Pipe()
        check.standardOutput = pipe
        check.standardError = pipe
        try check.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        check.waitUntilExit()
        XCTAssertEqual(check.terminationStatus, 0, text)
        let line = try XCTUnwrap(text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.last, text)
        XCTAssertLessThan(line["max_abs_diff"] as? Double ?? 1, 1e-4, text)
    }
}
