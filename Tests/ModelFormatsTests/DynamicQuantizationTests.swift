import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import XCTest

/// Dynamically quantized text models (`DynamicQuantization`): close to the float model, int8
/// in the file (a round trip gives the same bits), float again once trained, and damaged
/// int8 files are one-line errors naming the file.
final class DynamicQuantizationTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("distill-dynamic-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    private static let options = ModelOptions.text(vocabularySize: 60, paddingId: 0, outputs: 24, hidden: 32, layers: 2, heads: 4, maxTokens: 16)

    private func model(_ name: String = "text-transformer") throws -> any Module {
        var g = RandomGenerator(seed: 11)
        let model = try ModelZoo.make(name, options: Self.options, using: &g)
        model.eval()
        return model
    }

    private let batch = TokenBatch(ids: [2, 7, 9, 3, 11, 40, 3, 0, 2, 5, 3, 0, 0, 0, 0, 0, 2, 59, 18, 22, 31, 8, 3, 0],
                                   attentionMask: [1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0], batchSize: 3, length: 8)

    func testQuantizedModelsStayCloseToFloatAndRoundTripThroughTheirFile() throws {
        for name in ModelZoo.textNames {
            let float = try model(name), int8 = try model(name)
            let paths = DynamicQuantization.quantize(int8)
            let linears = int8.namedModules().filter { $0.module is Linear }.count, tables = int8.namedModules().filter { $0.module is Embedding }.count
            XCTAssertEqual(paths.count, linears + tables, name)
            let (f, q) = (withoutGradients { float(batch.packed()) }, withoutGradients { int8(batch.packed()) })
            for row in 0..<3 {
                let a = Array(f.scalars[(row * 24)..<((row + 1) * 24)]), b = Array(q.scalars[(row * 24)..<((row + 1) * 24)])
                let cosine = zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } / (a.map { $0 * $0 }.reduce(0, +) * b.map { $0 * $0 }.reduce(0, +)).squareRoot()
                XCTAssertGreaterThan(cosine, 0.995, "\(name) text \(row)")
                XCTAssertNotEqual(a, b, "\(name): the int8 model computes in int8")
            }

            let file = scratch.appendingPathComponent("\(name)-int8.safetensors").path
            try SavedModel.save(int8, name: name, options: Self.options, to: file)
            let raw = try SafeTensors.parseRaw(try Data(contentsOf: URL(fileURLWithPath: file)), file: file)
            XCTAssertEqual(raw.metadata[DynamicQuantization.metadataKey], "dynamic")
            XCTAssertEqual(raw.tensors.filter { $0.value.dtype == "I8" }.count, paths.count, name)
            XCTAssertEqual(raw.tensors.keys.filter { $0.hasSuffix(".weight_scale") }.count, paths.count, name)
            let loaded = try SavedModel.load(file).model
            loaded.eval()
            XCTAssertTrue(DynamicQuantization.isQuantized(loaded))
            XCTAssertEqual(withoutGradients { loaded(batch.packed()) }.scalars.map(\.bitPattern), q.scalars.map(\.bitPattern), name)

            let floatFile = scratch.appendingPathComponent("\(name).safetensors").path
            try SavedModel.save(float, name: name, options: Self.options, to: floatFile)
            let sizes = try [file, floatFile].map { try XCTUnwrap(FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int) }
            XCTAssertLessThan(Double(sizes[0]), 0.4 * Double(sizes[1]), "\(name): int8 \(sizes[0]) bytes, float \(sizes[1])")
        }
    }

    func testTrainingALayerMakesItFloatAgain() throws {
        let int8 = try model()
        DynamicQuantization.quantize(int8)
        let before = DynamicQuantization.int8Weights(of: int8).count
        int8.train()
        let out = int8(batch.packed())  // recording gradients in training mode: the float path
        XCTAssertFalse(DynamicQuantization.isQuantized(int8))
        out.sum().backward()
        XCTAssertNotNil(int8.namedParameters().first { $0.name == "encoder.layer.0.attention.self.query.weight" }?.tensor.grad)
        XCTAssertGreaterThan(before, 0)
        XCTAssertTrue(DynamicQuantization.int8Weights(of: int8).isEmpty)
    }

    func testDamagedInt8FilesAreOneLineErrors() throws {
        let int8 = try model()
        DynamicQuantization.quantize(int8)
        let file = scratch.appendingPathComponent("good.safetensors").path
        try SavedModel.save(int8, name: "text-transformer", options: Self.options, to: file)
        let good = try SafeTensors.parseRaw(try Data(contentsOf: URL(fileURLWithPath: file)), file: file)
        let query = "encoder.layer.0.attention.self.query.weight"
        func damaged(_ change: (inout [String: SafeTensors.RawTensor], inout [String: String]) -> Void) throws -> String {
            var (tensors, metadata) = (good.tensors, good.metadata)
            change(&tensors, &metadata)
            let path = scratch.appendingPathComponent("bad.safetensors").path
            try SafeTensors.encode(raw: tensors.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, metadata: metadata).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try SavedModel.load(path)) { XCTAssertTrue("\($0)".contains("bad.safetensors"), "\($0)") }
            do { _ = try SavedModel.load(path) } catch { return "\(error)" }
            return ""
        }
        let zeroScale = try damaged { tensors, _ in tensors[query + "_scale"] = SafeTensors.float32(Tensor([Float](repeating: 0, count: 32))) }
        XCTAssertTrue(zeroScale.contains("\(query): scale 0.0 of output 0 is not a positive normal float"), zeroScale)
        let notIntegers = try damaged { tensors, _ in tensors[query] = SafeTensors.float32(Tensor([Float](repeating: 0.5, count: 32 * 32), shape: [32, 32])) }
        XCTAssertTrue(notIntegers.contains("\(query) of an int8 model holds values that are not integers in -128...127"), notIntegers)
        let orphan = try damaged { tensors, _ in tensors["nothing.weight_scale"] = SafeTensors.float32(Tensor([1])) }
        XCTAssertTrue(orphan.contains("nothing.weight_scale has no int8 tensor nothing.weight"), orphan)
        let shortScales = try damaged { tensors, _ in tensors[query + "_scale"] = SafeTensors.float32(Tensor([1, 1])) }
        XCTAssertTrue(shortScales.contains("\(query)_scale has no int8 tensor \(query) of 2 rows"), shortScales)
        let scheme = try damaged { _, metadata in metadata[DynamicQuantization.metadataKey] = "static" }
        XCTAssertTrue(scheme.contains("distill.int8 is \"static\": this Distill reads \"dynamic\" int8 models only"), scheme)
        let wrongLayer = try damaged { tensors, _ in
            tensors["encoder.layer.0.attention.output.LayerNorm.weight_scale"] = SafeTensors.float32(Tensor([Float](repeating: 1, count: 32)))
            tensors["encoder.layer.0.attention.output.LayerNorm.weight"] = .init(dtype: "I8", shape: [32, 1], bytes: [UInt8](repeating: 1, count: 32))
        }
        XCTAssertTrue(wrongLayer.contains("LayerNorm.weight"), wrongLayer)
    }
}
