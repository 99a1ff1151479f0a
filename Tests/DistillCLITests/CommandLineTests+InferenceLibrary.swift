import DistillInference
import Foundation
import ModelFormats
import Tensors
import TestSupport
import XCTest

/// The inference-only library's example app (`distill-predict-example`, built with the
/// package): it answers as `distill predict` does for a trained run, and as the full
/// library's int8 runtime does for that run quantized, to the last bit.
extension CommandLineTests {
    static var example: URL { binary.deletingLastPathComponent().appendingPathComponent("distill-predict-example") }

    /// Runs the example app on `model` and the raw float32 examples in `input`: each line's
    /// class name and every class's probability, or the exit status and standard error.
    func runExample(_ model: String, _ input: String) throws -> (status: Int32, lines: [(name: String, probabilities: [Float])], errors: String) {
        let (status, output, errors) = try run([model, input], executable: Self.example)
        let lines = output.split(separator: "\n").map { line -> (String, [Float]) in
            let fields = line.split(separator: "\t")
            return (String(fields[1]), fields[3].split(separator: " ").map { Float(String($0)) ?? .nan })
        }
        return (status, lines, errors)
    }

    func testTheInferenceLibraryExampleAnswersAsDistillPredictAndTheInt8Runtime() throws {
        let data = try writeDistributedData()  // 12×12 gray images of 4 classes
        let run = folder("library-float"), int8 = folder("library-int8"), inputs = folder("library-inputs")
        let common = ["--data", data.train, "--test-data", data.test, "--validation-fraction", "0"]
        _ = try assertSucceeds(["train", "--model", "cnn-student", "--epochs", "1", "--batch", "64", "--quiet", "--out", run.path] + common)
        _ = try assertSucceeds(["quantize", run.path, "--calibration", "64", "--out", int8.path] + common)
        try FileManager.default.createDirectory(at: inputs, withIntermediateDirectories: true)
        let npy = inputs.appendingPathComponent("x.npy").path, raw = inputs.appendingPathComponent("x.f32").path
        let script = "import numpy as np\nx = np.random.default_rng(1).normal(size=(5, 1, 12, 12)).astype(np.float32)\nnp.save('\(npy)', x); x.astype('<f4').tofile('\(raw)')"
        XCTAssertEqual(try runPython(["-c", script]).status, 0)

        // Float: the probabilities `distill predict` prints, every class of every input.
        let classNames = try XCTUnwrap(try InferenceModel(path: run.path).classNames)
        let jsonl = try assertSucceeds(["predict", run.path, npy, "--format", "jsonl", "--top-k", "4"])
        let example = try runExample(run.path, raw)
        XCTAssertEqual(example.status, 0, example.errors)
        let rows = jsonl.split(separator: "\n")
        XCTAssertEqual(rows.count, 5)
        XCTAssertEqual(example.lines.count, 5)
        for (row, line) in zip(rows, example.lines) {
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(row.utf8)) as? [String: Any])
            XCTAssertEqual(object["class"] as? String, line.name)
            for entry in try XCTUnwrap(object["top"] as? [[String: Any]]) {
                let index = try XCTUnwrap(classNames.firstIndex(of: try XCTUnwrap(entry["class"] as? String)))
                XCTAssertEqual(Float(try XCTUnwrap(entry["probability"] as? Double)), line.probabilities[index], "\(row)")
            }
        }

        // Int8: the full library's reader and runtime, with the recorded preprocessing.
        let file = int8.appendingPathComponent("model.safetensors").path
        let (quantized, metadata) = try QuantizedModelFile.read(file)
        let preprocessing = try Preprocessing.decode(try XCTUnwrap(metadata[Preprocessing.metadataKey]), file: file)
        let values = try Data(contentsOf: URL(fileURLWithPath: raw)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        var prepared: [Float] = []
        for n in 0..<5 {
            var example = Array(values[(n * 144)..<((n + 1) * 144)])
            preprocessing.prepare(&example)
            prepared += example
        }
        let expected = quantized(Tensor(prepared, shape: [5, 1, 12, 12])).softmax(alongAxis: 1).scalars
        let answered = try runExample(int8.path, raw)
        XCTAssertEqual(answered.status, 0, answered.errors)
        XCTAssertEqual(answered.lines.flatMap(\.probabilities).map(\.bitPattern), expected.map(\.bitPattern))

        // An input of the wrong size: one line, no trap.
        let short = inputs.appendingPathComponent("short.f32").path
        try Data(count: 4 * 100).write(to: URL(fileURLWithPath: short))
        let failed = try runExample(int8.path, short)
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertEqual(failed.errors, "error: input: has 100 values, not a positive multiple of the 144 values of one example of shape [1, 12, 12]\n")
    }
}
