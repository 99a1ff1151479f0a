import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import TestSupport
import XCTest

final class SafeTensorsTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("distill-safetensors-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    /// A PyTorch state_dict saved with safetensors loads by name and gives PyTorch's logits.
    func testPyTorchZooWeightsGiveTheSameLogits() throws {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("zoo_logits.json"))) as! [String: Any]
        let input = json["input"] as! [String: Any]
        let x = Tensor((input["data"] as! [NSNumber]).map(\.floatValue), shape: Shape(input["shape"] as! [Int]))
        let cases = json["cases"] as! [[String: Any]]
        XCTAssertEqual(cases.count, 7)
        for c in cases {
            let name = c["name"] as! String, options = c["options"] as! [String: Any]
            var modelOptions = ModelOptions()
            if let width = options["width"] as? NSNumber { modelOptions.width = width.floatValue }
            if let hidden = options["hidden"] as? [Int] { modelOptions.hiddenSizes = hidden }
            var g = RandomGenerator(seed: 1)
            let model = try ModelZoo.make(name, options: modelOptions, using: &g)
            XCTAssertEqual(model.parameterCount, c["parameters"] as! Int, "\(name) parameter count")
            try ModelWeights.load(into: model, from: fixtures.appendingPathComponent("\(name).safetensors").path)
            model.eval()
            let logits = withoutGradients { model(x) }
            assertClose(logits.scalars, (c["logits"] as! [NSNumber]).map(\.floatValue), absolute: 1e-5, relative: 1e-5, "\(name) logits")
        }
    }

    func testRoundTripKeepsValuesShapesAndMetadata() throws {
        let path = scratch.appendingPathComponent("round.safetensors").path
        let a = Tensor([1, -2.5, 3e-8, .infinity, 0, 7], shape: [2, 3]), b = Tensor(scalar: 42), empty = Tensor([], shape: [0, 4])
        try SafeTensors.write([("layer.a", a), ("b", b), ("empty", empty)], metadata: ["note": "hello"], to: path)
        let read = try SafeTensors.read(path)
        XCTAssertEqual(read.tensors["layer.a"]?.shape, [2, 3])
        XCTAssertEqual(read.tensors["layer.a"]?.scalars, a.scalars)
        XCTAssertEqual(read.tensors["b"]?.shape, [])
        XCTAssertEqual(read.tensors["b"]?.item, 42)
        XCTAssertEqual(read.tensors["empty"]?.shape, [0, 4])
        XCTAssertEqual(read.metadata, ["note": "hello"])
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: scratch.path).filter { $0.hasSuffix(".tmp") }
        XCTAssertEqual(leftovers, [], "atomic write leaves no temporary file")
    }

    /// Python's safetensors reads what Distill writes.
    func testPythonSafetensorsReadsOurFiles() throws {
        try requireTool(pythonCanImport("safetensors", "numpy"),
                        "python3 with safetensors and numpy is not installed (make test installs them)")
        let path = scratch.appendingPathComponent("for-python.safetensors").path
        try SafeTensors.write([("w", Tensor([0.5, -1, 2, 4], shape: [2, 2])), ("bias", Tensor([3]))], metadata: ["from": "distill"], to: path)
        let script = """
        import json, sys
        from safetensors import safe_open
        from safetensors.numpy import load_file
        t = load_file(sys.argv[1])
        with safe_open(sys.argv[1], framework="numpy") as f: meta = f.metadata()
        print(json.dumps({k: {"shape": list(v.shape), "dtype": str(v.dtype), "data": v.reshape(-1).tolist()} for k, v in t.items()} | {"meta": meta}))
        """
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", script, path]
        let output = Pipe()
        python.standardOutput = output
        try python.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        python.waitUntilExit()
        XCTAssertEqual(python.terminationStatus, 0)
        let parsed = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let w = parsed["w"] as! [String: Any]
        XCTAssertEqual(w["shape"] as! [Int], [2, 2])
        XCTAssertEqual(w["dtype"] as! String, "float32")
        XCTAssertEqual((w["data"] as! [NSNumber]).map(\.floatValue), [0.5, -1, 2, 4])
        XCTAssertEqual(parsed["meta"] as! [String: String], ["from": "distill"])
    }

    // MARK: Bad files: each a thrown error that says what and where.

    func header(_ json: String, data: [UInt8] = [], length: UInt64? = nil) -> Data {
        let bytes = Array(json.utf8)
        var out = Data()
        withUnsafeBytes(of: (length ?? UInt64(bytes.count)).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: bytes)
        out.append(contentsOf: data)
        return out
    }

    func assertRejects(_ data: Data, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensors.parse(data, file: "bad.safetensors"), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("bad.safetensors: ") && text.contains(fragment), "got: \(text)", file: file, line: line)
        }
    }

    func testRejectsBrokenFiles() {
        let good = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        assertRejects(Data([1, 2, 3]), "too short")
        assertRejects(header(good, data: [0, 0, 0, 0]), "lie outside the 4-byte data section")  // truncated: 4 of 8 bytes
        assertRejects(header(good, data: Array(repeating: 0, count: 8), length: 1 << 40), "runs beyond the end of the file")
        assertRejects(header("{not json", data: []), "not valid JSON")
        assertRejects(header("[1, 2]"), "not a JSON object")
        assertRejects(header(#"{"a":{"dtype":"Q8","shape":[2],"data_offsets":[0,2]}}"#, data: [0, 0]), "unknown dtype 'Q8'")
        assertRejects(header(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)),
                      "shape [3] of F32 needs 12 bytes but data_offsets give 8")
        assertRejects(header(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                             data: Array(repeating: 0, count: 12)), "overlap")
        assertRejects(header(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, data: Array(repeating: 0, count: 8)),
                      "lie outside the 8-byte data section")
        assertRejects(header(#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)),
                      "shape must be a list of non-negative integers")
        assertRejects(header(#"{"__metadata__":{"k":3}}"#), "__metadata__ must map strings to strings")
    }

    /// A header that claims an enormous tensor is refused before anything is allocated.
    func testHostileShapeDoesNotAllocate() {
        let hostile = #"{"a":{"dtype":"F32","shape":[100000,100000,100000],"data_offsets":[0,8]}}"#
        assertRejects(header(hostile, data: Array(repeating: 0, count: 8)), "needs more than 8 bytes")
    }

    func testMissingFileIsNamed() {
        XCTAssertThrowsError(try SafeTensors.read("/nonexistent/model.safetensors")) { error in
            XCTAssertEqual("\(error)", "/nonexistent/model.safetensors: does not exist")
        }
    }

    func testStrictAndNonStrictLoading() throws {
        var g = RandomGenerator(seed: 2)
        let model = try ModelZoo.make("cnn-student", using: &g)
        let path = scratch.appendingPathComponent("student.safetensors").path
        var state = model.stateDict().filter { $0.name != "classifier.3.bias" }
        state.append(("extra.weight", Tensor([1])))
        try SafeTensors.write(state, to: path)
        XCTAssertThrowsError(try ModelWeights.load(into: model, from: path)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("missing from the source: classifier.3.bias") && text.contains("not in the model: extra.weight"), text)
        }
        let report = try ModelWeights.load(into: model, from: path, strict: false)
        XCTAssertEqual(report.missing, ["classifier.3.bias"])
        XCTAssertEqual(report.unexpected, ["extra.weight"])

        try SafeTensors.write([("features.0.weight", Tensor.zeros([8, 1, 5, 5]))], to: path)
        XCTAssertThrowsError(try ModelWeights.load(into: model, from: path, strict: false)) { error in
            XCTAssertTrue("\(error)".contains("'features.0.weight' has shape [8, 1, 5, 5] in the source but [8, 1, 3, 3] in the model"), "\(error)")
        }
    }

    func testAtomicWriteIntoMissingFolderFails() {
        XCTAssertThrowsError(try SafeTensors.write([("a", Tensor([1]))], to: "/nonexistent-folder/x.safetensors")) { error in
            XCTAssertTrue("\(error)".contains("folder /nonexistent-folder does not exist"), "\(error)")
        }
    }
}

/// 100,000 mutated safetensors files in release builds: no crash, trap or huge allocation.
final class SafeTensorsFuzzTests: XCTestCase {
    func testSafeTensorsReader() throws {
        let seed = try SafeTensors.encode([("a.weight", Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])), ("b", Tensor(scalar: 7))],
                                          metadata: ["k": "v"])
        let run = fuzz(seeds: [seed], seed: 11) { data in _ = try SafeTensors.parse(data, file: "fuzz.safetensors") }
        XCTAssertGreaterThan(run.accepted, 0)
    }
}
