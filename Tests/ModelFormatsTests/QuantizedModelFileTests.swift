import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import XCTest

/// Quantized models as safetensors files (QuantizedModelFile): a round trip gives the same
/// bits, and damaged files (truncated, zero or non-finite scales, another version, layers
/// that do not fit) are one-line errors naming the file.
final class QuantizedModelFileTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("distill-quantized-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    private func quantizedStudent() throws -> (any Module, QuantizedModel, Tensor) {
        var g = RandomGenerator(seed: 31)
        let model = try ModelZoo.make("cnn-student", using: &g)
        let x = Tensor.randomNormal([32, 1, 28, 28], using: &g)
        return (model, try Quantizer.quantize(model, calibration: x), x)
    }

    func testRoundTripGivesTheSameBitsAndKeepsMetadata() throws {
        let (model, quantized, x) = try quantizedStudent()
        let path = scratch.appendingPathComponent("student-int8.safetensors").path
        try QuantizedModelFile.write(quantized, metadata: ["distill.model": "cnn-student"], to: path)
        let (loaded, metadata) = try QuantizedModelFile.read(path)
        XCTAssertEqual(metadata["distill.model"], "cnn-student")
        XCTAssertEqual(metadata["distill.quantized.version"], "2")
        XCTAssertEqual(loaded(x).scalars.map(\.bitPattern), quantized(x).scalars.map(\.bitPattern))
        XCTAssertEqual(loaded.layers.count, quantized.layers.count)
        // Int8 weights: the file is at most 30% of the float model's.
        let floatPath = scratch.appendingPathComponent("student.safetensors").path
        try SafeTensors.write(model.namedParameters(), to: floatPath)
        let sizes = try [path, floatPath].map { try FileManager.default.attributesOfItem(atPath: $0)[.size] as! Int }
        XCTAssertLessThan(Double(sizes[0]), 0.3 * Double(sizes[1]), "int8 file \(sizes[0]) bytes, float \(sizes[1])")
    }

    /// A resnet8 (residual blocks nested in the file) and a Wide ResNet whose pre-activation
    /// batch norms stay float (their weights in the file, their modules from a float model of
    /// the same architecture with other weights) read back to the same bits; without a float
    /// model, the float stages are a one-line error.
    func testResidualBlocksAndFloatStagesRoundTrip() throws {
        var g = RandomGenerator(seed: 32)
        let x = Tensor.randomNormal([16, 1, 28, 28], using: &g)
        for name in ["resnet8", "wrn-16-2"] {
            let model = try ModelZoo.make(name, options: ModelOptions(width: 0.25), using: &g)
            for case let norm as BatchNorm in model.namedModules().map(\.module) {
                norm.runningMean.withUnsafeMutableBufferPointer { for i in $0.indices { $0[i] = Float(i % 3) * 0.1 } }
            }
            model.eval()
            let quantized = try Quantizer.quantize(model, calibration: x)
            let path = scratch.appendingPathComponent("\(name)-int8.safetensors").path
            try QuantizedModelFile.write(quantized, to: path)
            let fresh = try ModelZoo.make(name, options: ModelOptions(width: 0.25), using: &g)
            let (loaded, _) = try QuantizedModelFile.read(path, floatModel: fresh)
            XCTAssertEqual(loaded(x).scalars.map(\.bitPattern), quantized(x).scalars.map(\.bitPattern), name)
            XCTAssertEqual(loaded.floatLayers, quantized.floatLayers, name)
            // A damaged branch or float stage names its tensor.
            let (tensors, metadata) = try SafeTensors.parseRaw(try QuantizedModelFile.encode(quantized), file: path)
            let missing = name == "resnet8" ? "layers.1.main.0.bias" : "layers.1.main.0.float.weight"
            let damaged = try SafeTensors.encode(raw: tensors.filter { $0.key != missing }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                                                 metadata: metadata)
            XCTAssertThrowsError(try QuantizedModelFile.parse(damaged, file: "m.safetensors", floatModel: fresh)) { error in
                XCTAssertEqual("\(error)", "m.safetensors: tensor '\(missing)' is missing")
            }
            if quantized.floatLayers.isEmpty { continue }
            do {
                _ = try QuantizedModelFile.read(path)
                XCTFail("\(name): read without its float model")
            } catch {
                XCTAssertTrue("\(error)".contains("runs 'block1.0.bn1' in float: reading it needs the float model"), "\(error)")
            }
        }
    }

    /// Each damage gives an error naming the file and the problem, on one line.
    func testDamagedFilesAreOneLineErrors() throws {
        let (_, quantized, _) = try quantizedStudent()
        let good = try QuantizedModelFile.encode(quantized)
        let (tensors, metadata) = try SafeTensors.parseRaw(good, file: "good")
        func variant(_ change: (inout [String: SafeTensors.RawTensor], inout [String: String]) -> Void) throws -> Data {
            var (t, m) = (tensors, metadata)
            change(&t, &m)
            return try SafeTensors.encode(raw: t.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, metadata: m)
        }
        func scale(_ value: Float) -> (inout [String: SafeTensors.RawTensor], inout [String: String]) -> Void {
            { t, _ in withUnsafeBytes(of: value.bitPattern.littleEndian) { t["layers.0.weight_scale"]!.bytes.replaceSubrange(4..<8, with: $0) } }
        }
        let cases: [(String, Data, String)] = [
            ("truncated", good.prefix(good.count - 10), "data_offsets"),
            ("header only", good.prefix(20), "header length"),
            ("zero scale", try variant(scale(0)), "scale 0.0 of output channel 1 is not a positive finite number"),
            ("NaN scale", try variant(scale(.nan)), "scale nan of output channel 1"),
            ("infinite scale", try variant(scale(.infinity)), "scale inf of output channel 1"),
            ("version", try variant { _, m in m["distill.quantized.version"] = "7" }, "quantized format version 7; this build reads versions 1...2"),
            ("not quantized", try variant { _, m in m["distill.quantized.version"] = nil }, "is not a quantized model"),
            ("input zero scale", try variant { _, m in m["distill.quantized.input"] = #"{"scale":0,"zeroPoint":3}"# }, "input scale 0.0"),
            ("layers", try variant { _, m in m["distill.quantized.layers"] = "[{" }, "metadata distill.quantized.layers is not valid"),
            ("missing bias", try variant { t, _ in t["layers.0.bias"] = nil }, "tensor 'layers.0.bias' is missing"),
            ("wrong dtype", try variant { t, _ in t["layers.0.bias"]!.dtype = "F32" }, "tensor 'layers.0.bias' is F32, expected I32"),
            ("example shape", try variant { _, m in m["distill.quantized.example_shape"] = "[3, 28, 28]" }, "does not fit"),
        ]
        for (name, data, expected) in cases {
            do {
                _ = try QuantizedModelFile.parse(data, file: "m.safetensors")
                XCTFail("\(name): no error")
            } catch {
                let message = "\(error)"
                XCTAssertTrue(message.hasPrefix("m.safetensors: ") && message.contains(expected) && !message.contains("\n"), "\(name): \(message)")
            }
        }
    }
}
