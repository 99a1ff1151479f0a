import Datasets
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import TestSupport
import XCTest

final class ONNXTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/onnx")
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("distill-onnx-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    func fixture(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    /// A zoo model with random, non-trivial batch-norm statistics (so folding is tested), in eval mode.
    func zooModel(_ name: String, seed: UInt64 = 1) throws -> any Module {
        var g = RandomGenerator(seed: seed)
        let model = try ModelZoo.make(name, using: &g)
        for (_, module) in model.namedModules() {
            guard let bn = module as? BatchNorm else { continue }
            for (tensor, low, high) in [(bn.runningMean, Float(-0.3), Float(0.3)), (bn.runningVariance, 0.5, 2), (bn.weight, 0.5, 1.5), (bn.bias, -0.2, 0.2)] {
                tensor.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = Float.random(in: low...high, using: &g) } }
            }
        }
        model.eval()
        return model
    }

    func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
        XCTAssertEqual(a.shape, b.shape)
        return zip(a.scalars, b.scalars).map { Swift.abs($0 - $1) }.max() ?? 0
    }


    // MARK: Writing

    func testSerializationRoundTrips() throws {
        let graph = ONNXGraph(
            name: "g",
            nodes: [ONNXNode(name: "n", opType: "Gemm", inputs: ["x", "w"], outputs: ["y"],
                             attributes: [ONNXAttribute("transB", .int(1)), ONNXAttribute("alpha", .float(0.5)),
                                          ONNXAttribute("pads", .ints([-1, 0, 300])), ONNXAttribute("scales", .floats([1.5, -2])),
                                          ONNXAttribute("mode", .string("constant"))])],
            initializers: [ONNXTensor(name: "w", dims: [2, 3], values: .floats([1, 2, 3, 4, 5, -6])),
                           ONNXTensor(name: "shape", dims: [2], values: .ints([-1, 1 << 40]))],
            inputs: [ONNXValueInfo(name: "x", dims: [nil, 3])], outputs: [ONNXValueInfo(name: "y", dims: [nil, 2])])
        let model = ONNXModel(graph: graph, metadata: ["k": "v"])
        XCTAssertEqual(try ONNXModel(parsing: model.serialized()), model)
    }

    /// Every zoo model, exported with and without batch-norm folding (and with a softmax),
    /// passes onnx.checker and gives our outputs in onnxruntime within 1e-4 on 100 test
    /// images; read back by Distill, the file gives the same outputs again.
    func testEveryZooModelMatchesOnnxRuntimeAndReadsBack() throws {
        try requireTool(pythonCanImport("onnx", "onnxruntime", "numpy"),
                        "python3 with onnx, onnxruntime and numpy is not installed (make test installs them)")
        let data = try FashionMNIST()
        let images = data.test.inputs.sliced(alongAxis: 0, 0..<100)
        let inputPath = scratch.appendingPathComponent("input.npy").path
        try NPY.write(images, to: inputPath)
        var arguments = ["scripts/check_onnx.py"]
        var expectedOps: [String: Set<String>] = [:]
        for name in ModelZoo.names {
            let model = try zooModel(name)
            let native = withoutGradients { model(images) }
            for (variant, options) in [("plain", ONNXExportOptions()), ("folded", ONNXExportOptions(opset: 13, foldBatchNorm: true)),
                                       ("softmax", ONNXExportOptions(opset: 20, appendSoftmax: true))] {
                let onnx = try ONNXExport.model(model, inputShape: [1, 28, 28], options: options)
                let path = scratch.appendingPathComponent("\(name)-\(variant).onnx").path
                try onnx.write(to: path)
                let expected = variant == "softmax" ? native.softmax(alongAxis: -1) : native
                let expectedPath = scratch.appendingPathComponent("\(name)-\(variant)-expected.npy").path
                try NPY.write(expected, to: expectedPath)
                arguments += [path, inputPath, expectedPath]
                expectedOps[path] = Set(onnx.graph.nodes.map(\.opType))
                if variant == "folded" {
                    // No batch norm that reads a conv's output survives folding.
                    let producers = Dictionary(onnx.graph.nodes.map { ($0.outputs[0], $0.opType) }, uniquingKeysWith: { a, _ in a })
                    XCTAssertFalse(onnx.graph.nodes.contains { $0.opType == "BatchNormalization" && producers[$0.inputs[0]] == "Conv" }, name)
                }
                // Read back and run on Distill's engine.
                let reread = try ONNXNetwork(contentsOf: path)
                XCTAssertLessThan(maxDifference(withoutGradients { reread(images) }, expected), 1e-4, "\(name) \(variant) read back")
            }
        }
        let (status, output) = try runPython(arguments.map { $0.hasPrefix("scripts/") ? packageRoot + "/" + $0 : $0 })
        XCTAssertEqual(status, 0, output)
        let lines = output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertEqual(lines.count, ModelZoo.names.count * 3, output)
        for line in lines {
            let path = line["model"] as! String
            let difference = line["max_abs_diff"] as? Double
            XCTAssertNotNil(difference, "\(path): output shape \(line["shape"] ?? "?")")
            XCTAssertLessThan(difference ?? 1, 1e-4, path)
            XCTAssertEqual(Set(line["ops"] as! [String]), expectedOps[path])
        }
    }

    var packageRoot: String { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path }

    /// Taps by module path work on a re-imported Distill export, as on the native model (a
    /// module whose output is its last child's output goes by the outer name).
    func testImportedExportKeepsModulePathsForTaps() throws {
        let model = try zooModel("resnet8")
        let path = scratch.appendingPathComponent("resnet8.onnx").path
        try ONNXExport.model(model, inputShape: [1, 28, 28]).write(to: path)
        let network = try ONNXNetwork(contentsOf: path)
        var g = RandomGenerator(seed: 3)
        let x = Tensor.randomNormal([2, 1, 28, 28], using: &g)
        let native = try withoutGradients { try model.forward(x, capturing: ["layer1", "layer2.0.bn1", "layer3"]) }
        let imported = try withoutGradients { try network.forward(x, capturing: ["layer1", "layer2.0.bn1", "layer3"]) }
        for name in ["layer1", "layer2.0.bn1", "layer3"] {
            XCTAssertLessThan(maxDifference(imported.features[name]!, native.features[name]!), 1e-4, name)
        }
        // Parameters by the same names; batch-norm statistics are buffers on both sides.
        XCTAssertEqual(Set(network.namedParameters().map(\.name)), Set(model.namedParameters().map(\.name)))
        XCTAssertEqual(Set(network.namedBuffers().map(\.name)), Set(model.namedBuffers().filter { !$0.name.hasSuffix("num_batches_tracked") }.map(\.name)))
    }

    // MARK: Reading PyTorch's files

    /// Files written by torch.onnx.export (both exporters) run on Distill's engine and give
    /// PyTorch's outputs within 1e-4; the same teacher's safetensors loads natively by name.
    func testPyTorchExportsRunOnDistill() throws {
        let input = try NPY.read(fixture("input.npy")).tensor
        let teacherExpected = try NPY.read(fixture("teacher_expected.npy")).tensor
        let opsExpected = try NPY.read(fixture("ops_expected.npy")).tensor
        for (file, expected) in [("teacher.onnx", teacherExpected), ("teacher_legacy.onnx", teacherExpected),
                                 ("ops.onnx", opsExpected), ("ops_legacy.onnx", opsExpected)] {
            let network = try ONNXNetwork(contentsOf: fixture(file))
            XCTAssertEqual(network.inputShape, [1, 28, 28])
            XCTAssertLessThan(maxDifference(withoutGradients { network(input) }, expected), 1e-4, file)
        }
        let native = try SavedModel.load(fixture("teacher.safetensors"))
        XCTAssertEqual(native.name, "lenet5")
        XCTAssertLessThan(maxDifference(withoutGradients { native.model(input) }, teacherExpected), 1e-4)
    }

    // MARK: Bad files

    func assertThrows(_ model: ONNXModel, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ONNXNetwork(model, file: "bad.onnx"), file: file, line: line) { error in
            let text = "\(error)"
            for fragment in fragments { XCTAssertTrue(text.contains(fragment), "'\(fragment)' not in: \(text)", file: file, line: line) }
        }
    }

    func tinyModel(nodes: [ONNXNode], initializers: [ONNXTensor] = [], output: String = "y") -> ONNXModel {
        ONNXModel(graph: ONNXGraph(name: "t", nodes: nodes, initializers: initializers,
                                   inputs: [ONNXValueInfo(name: "x", dims: [nil, 4])], outputs: [ONNXValueInfo(name: output, dims: [nil, 4])]))
    }

    func testBadFilesGiveClearErrors() throws {
        let good = try Data(contentsOf: URL(fileURLWithPath: fixture("ops_legacy.onnx")))
        // Truncated and garbage bytes.
        XCTAssertThrowsError(try ONNXModel(parsing: [UInt8](good.prefix(good.count / 2)), file: "cut.onnx")) { error in
            XCTAssertTrue("\(error)".contains("cut.onnx"), "\(error)")
            XCTAssertTrue("\(error)".contains("runs past the end"), "\(error)")
        }
        XCTAssertThrowsError(try ONNXModel(parsing: Array("not a model at all".utf8), file: "text.onnx")) { XCTAssertTrue("\($0)".contains("text.onnx")) }
        XCTAssertThrowsError(try ONNXModel(parsing: [], file: "empty.onnx")) { XCTAssertTrue("\($0)".contains("no graph"), "\($0)") }
        XCTAssertThrowsError(try ONNXNetwork(contentsOf: scratch.appendingPathComponent("missing.onnx").path)) {
            XCTAssertTrue("\($0)".contains("does not exist"), "\($0)")
        }
        // Unsupported operator: names the op and the node.
        assertThrows(tinyModel(nodes: [ONNXNode(name: "fancy_node", opType: "NonMaxSuppression", inputs: ["x"], outputs: ["y"])]),
                     ["fancy_node", "NonMaxSuppression", "bad.onnx"])
        // A cycle.
        assertThrows(tinyModel(nodes: [ONNXNode(name: "a", opType: "Relu", inputs: ["b_out"], outputs: ["a_out"]),
                                       ONNXNode(name: "b", opType: "Relu", inputs: ["a_out"], outputs: ["b_out"]),
                                       ONNXNode(name: "c", opType: "Add", inputs: ["x", "a_out"], outputs: ["y"])]), ["cycle"])
        // A missing input.
        assertThrows(tinyModel(nodes: [ONNXNode(name: "adder", opType: "Add", inputs: ["x", "nowhere"], outputs: ["y"])]),
                     ["adder", "'nowhere'", "no node, input or initializer"])
        // An output nobody produces.
        assertThrows(tinyModel(nodes: [ONNXNode(name: "r", opType: "Relu", inputs: ["x"], outputs: ["z"])]), ["graph output 'y'"])
        // Shapes that do not fit: names the node.
        assertThrows(tinyModel(nodes: [ONNXNode(name: "mm", opType: "Gemm", inputs: ["x", "w"], outputs: ["y"])],
                               initializers: [ONNXTensor(name: "w", dims: [3, 4], values: .floats([Float](repeating: 1, count: 12)))]),
                     ["node 'mm' (Gemm)", "inner dimensions"])
        assertThrows(tinyModel(nodes: [ONNXNode(name: "c", opType: "Conv", inputs: ["x", "w"], outputs: ["y"])],
                               initializers: [ONNXTensor(name: "w", dims: [1, 1, 1, 1], values: .floats([1]))]),
                     ["node 'c' (Conv)", "2-D"])
        // A tensor whose data disagrees with its shape.
        let mismatched = tinyModel(nodes: [ONNXNode(name: "r", opType: "Relu", inputs: ["x"], outputs: ["y"])],
                                   initializers: [ONNXTensor(name: "w", dims: [2, 3], values: .floats([1, 2, 3]))])
        XCTAssertThrowsError(try ONNXModel(parsing: mismatched.serialized(), file: "sizes.onnx")) { error in
            XCTAssertTrue("\(error)".contains("sizes.onnx"), "\(error)")
            XCTAssertTrue("\(error)".contains("tensor 'w' has dimensions [2, 3] (6 values) but 12 bytes of data"), "\(error)")
        }
        assertThrows(mismatched, ["'w'", "[2, 3]", "3 values"])
        // Input shapes that differ from the declared one at run time.
        let network = try ONNXNetwork(contentsOf: fixture("teacher.onnx"))
        XCTAssertThrowsError(try network.run(Tensor.zeros([2, 1, 32, 32]))) { XCTAssertTrue("\($0)".contains("[1, 28, 28]"), "\($0)") }
    }

    /// 100,000 mutations of real ONNX files (PyTorch's and ours): parsing and checking
    /// throw or succeed, never trap.
    func testFuzzedONNXFilesNeverCrash() throws {
        var g = RandomGenerator(seed: 5)
        let small = Sequential([Conv2d(1, 2, kernelSize: 3, padding: 1, using: &g), BatchNorm(2), Activation(.relu6), MaxPool2d(kernelSize: 2),
                                AdaptiveAvgPool2d(outputSize: 1), Flatten(), Linear(2, 3, using: &g)])
        let ours = Data(try ONNXExport.model(small, inputShape: [1, 4, 4]).serialized())
        let theirs = try Data(contentsOf: URL(fileURLWithPath: fixture("ops_legacy.onnx")))
        let result = fuzz(seeds: [ours, theirs]) { data in
            let model = try ONNXModel(parsing: [UInt8](data))
            _ = try ONNXNetwork(model)
        }
        XCTAssertGreaterThan(result.accepted, 0)
        XCTAssertLessThan(result.accepted, result.inputs)
    }
}
