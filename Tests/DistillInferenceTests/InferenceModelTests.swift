import DistillInference
import Foundation
import ModelFormats  // only to write the model files the tests read back
import NeuralNet
import Tensors
import XCTest

/// The inference-only library: `InferenceModel` reads a run folder, a float model file and an
/// int8 one, applies the recorded preprocessing and gives what the full library computes, bit
/// for bit; bad files and bad inputs are one-line errors.
final class InferenceModelTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("distill-inference-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    /// A 3-channel image student whose run expects BGR input, and its preprocessing.
    private func imageStudent(_ name: String = "cnn-student", width: Float = 1) throws -> (any Module, ModelOptions, Preprocessing) {
        var g = RandomGenerator(seed: 5)
        let options = try ModelOptions(classes: 4, exampleShape: [3, 12, 12], width: width)
        let model = try ModelZoo.make(name, options: options, using: &g)
        var preprocessing = Preprocessing.images(channels: 3, height: 12, width: 12,
                                                 normalization: Normalization(mean: [0.4, 0.5, 0.6], standardDeviation: [0.2, 0.25, 0.3]),
                                                 classNames: ["ant", "bee", "cat", "dog"])
        preprocessing.channelOrder = .bgr
        return (model, options, preprocessing)
    }

    /// `count` raw RGB images in [0, 1], and the same as the model takes them, prepared here
    /// by hand (channels reversed to BGR, then normalised), independently of `prepare`.
    private func images(_ count: Int, _ p: Preprocessing) -> (raw: [Float], prepared: Tensor) {
        var g = RandomGenerator(seed: 9)
        let raw = Tensor.randomUniform([count, 3, 12, 12], using: &g).scalars
        let plane = 12 * 12
        var prepared = [Float](repeating: 0, count: raw.count)
        for n in 0..<count {
            for c in 0..<3 {
                let source = 2 - c  // BGR: the model's channel 0 is the image's blue
                for i in 0..<plane {
                    prepared[(n * 3 + c) * plane + i] = (raw[(n * 3 + source) * plane + i] - p.normalization.mean[c]) / p.normalization.standardDeviation[c]
                }
            }
        }
        return (raw, Tensor(prepared, shape: [count, 3, 12, 12]))
    }

    func testARunFolderPredictsAsTheFullLibraryBitForBit() throws {
        let (model, options, preprocessing) = try imageStudent()
        let run = scratch.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        try SavedModel.save(model, name: "cnn-student", options: options, to: run.appendingPathComponent("model.safetensors").path,
                            metadata: [Preprocessing.metadataKey: preprocessing.json])

        let loaded = try InferenceModel(contentsOf: run)
        XCTAssertEqual(loaded.inputShape, [3, 12, 12])
        XCTAssertEqual(loaded.classNames, ["ant", "bee", "cat", "dog"])
        XCTAssertEqual(loaded.architecture, "cnn-student")
        XCTAssertFalse(loaded.isQuantized)
        XCTAssertEqual(loaded.preprocessing, preprocessing)

        let (raw, prepared) = images(6, preprocessing)
        // Bit for bit what the library's FusedModel gives (where the build has oneDNN), and
        // the trained model's own probabilities up to float rounding.
        let fused = (try? FusedModel(model, exampleShape: [3, 12, 12])) ?? model
        let expected = fused.predictions(prepared).softmax(alongAxis: 1).scalars
        XCTAssertEqual(try loaded.probabilities(batch: raw).map(\.bitPattern), expected.map(\.bitPattern))
        let unfused = model.predictions(prepared).softmax(alongAxis: 1).scalars
        XCTAssertLessThan(zip(expected, unfused).map { abs($0 - $1) }.max()!, 1e-6)
        let predictions = try loaded.predict(batch: raw)
        XCTAssertEqual(predictions.count, 6)
        for (n, prediction) in predictions.enumerated() {
            let row = Array(expected[(4 * n)..<(4 * n + 4)])
            XCTAssertEqual(prediction.probabilities, row)
            XCTAssertEqual(prediction.className, loaded.classNames?[prediction.classIndex])
            XCTAssertEqual(prediction.probability, row.max())
        }
        // One example alone: the same model file, the same code.
        let single = try loaded.predict(Array(raw[0..<(3 * 144)]))
        XCTAssertEqual(single.probabilities, try InferenceModel(path: run.path).predict(Array(raw[0..<(3 * 144)])).probabilities)
        XCTAssertEqual(single.probabilities.reduce(0, +), 1, accuracy: 1e-5)
    }

    func testAnInt8FileIsBitIdenticalToTheQuantizedModel() throws {
        let (model, options, preprocessing) = try imageStudent()
        let (raw, prepared) = images(8, preprocessing)
        let quantized = try Quantizer.quantize(model, calibration: prepared)
        let path = scratch.appendingPathComponent("student-int8.safetensors").path
        let metadata = try QuantizedModelFile.architectureMetadata(name: "cnn-student", options: options)
            .merging([Preprocessing.metadataKey: preprocessing.json]) { a, _ in a }
        try QuantizedModelFile.write(quantized, metadata: metadata, to: path)

        let loaded = try InferenceModel(path: path)
        XCTAssertTrue(loaded.isQuantized)
        XCTAssertEqual(loaded.inputShape, [3, 12, 12])
        XCTAssertEqual(loaded.classCount, 4)
        XCTAssertEqual(loaded.architecture, "cnn-student")
        let expected = quantized(prepared).softmax(alongAxis: 1).scalars
        XCTAssertEqual(try loaded.probabilities(batch: raw).map(\.bitPattern), expected.map(\.bitPattern))
    }

    /// A Wide ResNet's pre-activation batch norms stay float: the file names the zoo model,
    /// and the library rebuilds those stages from it.
    func testAnInt8FileWithFloatStagesRebuildsThemFromTheZoo() throws {
        let (model, options, preprocessing) = try imageStudent("wrn-16-2", width: 0.25)
        let (raw, prepared) = images(4, preprocessing)
        let quantized = try Quantizer.quantize(model, calibration: prepared)
        XCTAssertFalse(quantized.floatLayers.isEmpty)
        let path = scratch.appendingPathComponent("wide-int8.safetensors").path
        let metadata = try QuantizedModelFile.architectureMetadata(name: "wrn-16-2", options: options)
            .merging([Preprocessing.metadataKey: preprocessing.json]) { a, _ in a }
        try QuantizedModelFile.write(quantized, metadata: metadata, to: path)
        let expected = quantized(prepared).softmax(alongAxis: 1).scalars
        XCTAssertEqual(try InferenceModel(path: path).probabilities(batch: raw).map(\.bitPattern), expected.map(\.bitPattern))
    }

    func testATableModelStandardisesItsFeatures() throws {
        var g = RandomGenerator(seed: 3)
        let options = try ModelOptions(classes: 3, exampleShape: [5], hiddenSizes: [16])
        let model = try ModelZoo.make("mlp", options: options, using: &g)
        let normalization = Normalization(mean: [1, 2, 3, 4, 5], standardDeviation: [0.5, 1, 2, 4, 8])
        let preprocessing = Preprocessing.features(5, names: ["a", "b", "c", "d", "e"], normalization: normalization, classNames: ["x", "y", "z"])
        let path = scratch.appendingPathComponent("table.safetensors").path
        try SavedModel.save(model, name: "mlp", options: options, to: path, metadata: [Preprocessing.metadataKey: preprocessing.json])
        let raw: [Float] = [1.5, -2, 30, 4, 0.25, 0, 0, 0, 0, 0]
        let prepared = raw.enumerated().map { i, v in (v - normalization.mean[i % 5]) / normalization.standardDeviation[i % 5] }
        let loaded = try InferenceModel(path: path)
        XCTAssertEqual(loaded.inputShape, [5])
        XCTAssertEqual(try loaded.probabilities(batch: raw),
                       model.predictions(Tensor(prepared, shape: [2, 5])).softmax(alongAxis: 1).scalars)
    }

    /// A model saved by a program records no preprocessing: inputs are fed as they are.
    func testAModelWithoutPreprocessingTakesItsInputsAsTheyAre() throws {
        let (model, options, _) = try imageStudent()
        let path = scratch.appendingPathComponent("bare.safetensors").path
        try SavedModel.save(model, name: "cnn-student", options: options, to: path)
        let loaded = try InferenceModel(path: path)
        XCTAssertNil(loaded.preprocessing)
        XCTAssertNil(loaded.classNames)
        var g = RandomGenerator(seed: 4)
        let x = Tensor.randomNormal([2, 3, 12, 12], using: &g)
        let predictions = try loaded.predict(batch: x.scalars)
        let fused = (try? FusedModel(model, exampleShape: [3, 12, 12])) ?? model
        XCTAssertEqual(predictions.flatMap(\.probabilities), fused.predictions(x).softmax(alongAxis: 1).scalars)
        XCTAssertNil(predictions[0].className)
    }

    func testPredictionsRankLikeDistillPredict() {
        let prediction = Prediction(probabilities: [0.2, 0.4, 0.4], classNames: ["a", "b", "c"])
        XCTAssertEqual(prediction.classIndex, 1)
        XCTAssertEqual(prediction.className, "b")
        XCTAssertEqual(prediction.probability, 0.4)
        XCTAssertEqual(prediction.top(3), [1, 2, 0])
        XCTAssertEqual(prediction.top(1), [1])
        XCTAssertEqual(Prediction(probabilities: [0.7, 0.3], classNames: nil).className, nil)
    }

    /// `body` throws a `FileError` of one line that contains `fragment`.
    private func assertFails<T>(_ body: @autoclosure () throws -> T, _ fragment: String, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { error in
            XCTAssertTrue(error is FileError, "\(type(of: error)): \(error)", line: line)
            let text = "\(error)"
            XCTAssertTrue(text.contains(fragment), "expected '\(fragment)' in: \(text)", line: line)
            XCTAssertFalse(text.contains("\n"), "one line: \(text)", line: line)
        }
    }

    func testBadFilesAreOneLineErrors() throws {
        let (model, options, preprocessing) = try imageStudent()
        let good = scratch.appendingPathComponent("good.safetensors").path
        try SavedModel.save(model, name: "cnn-student", options: options, to: good, metadata: [Preprocessing.metadataKey: preprocessing.json])
        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))
        func write(_ data: Data, _ name: String) throws -> String {
            let path = scratch.appendingPathComponent(name).path
            try data.write(to: URL(fileURLWithPath: path))
            return path
        }

        assertFails(try InferenceModel(path: scratch.appendingPathComponent("missing").path), "missing: does not exist")
        assertFails(try InferenceModel(path: scratch.path), "model.safetensors: does not exist")
        assertFails(try InferenceModel(path: "teacher.onnx"), "is an ONNX model")
        assertFails(try InferenceModel(path: try write(Data("hello".utf8), "short.safetensors")), "too short for a safetensors header")
        assertFails(try InferenceModel(path: try write(bytes.prefix(bytes.count - 100), "truncated.safetensors")), "truncated.safetensors")
        let anonymous = try write(try SafeTensors.encode(model.stateDict()), "anonymous.safetensors")
        assertFails(try InferenceModel(path: anonymous), "does not say which zoo model it holds")
        var gray = preprocessing
        gray.channels = 1
        gray.normalization = Normalization(mean: [0.5], standardDeviation: [0.25])
        let mismatched = scratch.appendingPathComponent("mismatched.safetensors").path
        try SavedModel.save(model, name: "cnn-student", options: options, to: mismatched, metadata: [Preprocessing.metadataKey: gray.json])
        assertFails(try InferenceModel(path: mismatched), "records preprocessing for examples of shape [1, 12, 12], and the model takes [3, 12, 12]")

        var g = RandomGenerator(seed: 1)
        let quantized = try Quantizer.quantize(model, calibration: Tensor.randomNormal([4, 3, 12, 12], using: &g))
        let int8 = try QuantizedModelFile.encode(quantized, metadata: [Preprocessing.metadataKey: preprocessing.json])
        assertFails(try InferenceModel(path: try write(int8.prefix(int8.count - 7), "int8-truncated.safetensors")), "int8-truncated.safetensors")
    }

    func testWrongInputsAreOneLineErrors() throws {
        let (model, options, preprocessing) = try imageStudent()
        let path = scratch.appendingPathComponent("model.safetensors").path
        try SavedModel.save(model, name: "cnn-student", options: options, to: path, metadata: [Preprocessing.metadataKey: preprocessing.json])
        let loaded = try InferenceModel(path: path)
        assertFails(try loaded.predict([Float](repeating: 0.5, count: 144)), "has 144 values; the model takes examples of shape [3, 12, 12] (432 values)")
        assertFails(try loaded.predict(batch: []), "not a positive multiple of the 432 values")
        assertFails(try loaded.predict(batch: [Float](repeating: 0.5, count: 600)), "has 600 values")
        var values = [Float](repeating: 0.5, count: 864)
        values[500] = .nan
        assertFails(try loaded.predict(batch: values), "value 500 (example 1) is not finite")
    }
}
