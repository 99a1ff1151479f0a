import ArgumentParser
import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// `distill quantize`: post-training static quantization of a trained model to int8
/// (docs/quantization.md), with a report of what it keeps and what it saves.
struct Quantize: TabledCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a trained model to int8 (calibrated on training examples) and report accuracy, agreement, size and latency.")
    static let experimentName = "quantize"
    static let calibrationSpec = OptionSpec("calibration", .integer(1...1_000_000),
        "Training examples (evenly spaced through the training set) to calibrate activation ranges on. Default 512.")
    static let methodSpec = OptionSpec("calibration-method", .choice(CalibrationMethod.allCases.map(\.rawValue)),
        "How activation ranges are chosen: minmax (the values seen) or percentile (clip outliers at --percentile). Default minmax.")
    static let percentileSpec = OptionSpec("percentile", .number(lower: 50, upper: 100, lowerOpen: true),
        "With --calibration-method percentile: the upper percentile kept (the lower one is 100 minus it). Default 99.99.")
    static let outSpec = OptionSpec("out", .text, "Folder to write: model.safetensors (the int8 model) and quantization.json (the report).")
    static let teacherSpec = OptionSpec("teacher", .text,
        "Text models: a sentence encoder (the student's teacher) to score both the float and the int8 model against on --data (mean cosine, similarity Spearman on 10,000 pairs drawn with seed 0).")
    static let options = [calibrationSpec, methodSpec, percentileSpec, outSpec, teacherSpec] + Spec.dataOptions + Spec.textDataOptions

    @Argument(help: "Run folder or .safetensors model file of the float model.")
    var model: String
    @Option(name: calibrationSpec.long, help: calibrationSpec.help) var calibration = 512
    @Option(name: methodSpec.long, help: methodSpec.help) var calibrationMethod = CalibrationMethod.minMax.rawValue
    @Option(name: percentileSpec.long, help: percentileSpec.help) var percentile = 99.99
    @Option(name: outSpec.long, help: outSpec.help) var out: String
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var text: TextDataOptions
    @Option(name: teacherSpec.long, help: teacherSpec.help) var teacher: String?

    var values: [(String, OptionValue?)] {
        [("calibration", .integer(calibration)), ("calibration-method", .text(calibrationMethod)), ("percentile", .number(percentile)),
         ("out", .text(out)), ("teacher", teacher.map { .text($0) })] + dataOptions.values + text.values
    }

    func validate() throws { try checkOptions() }

    /// What `distill quantize` found, written as quantization.json.
    struct QuantizationReport: Codable {
        var model: String
        var calibrationExamples: Int
        var calibrationMethod: String
        var percentile: Double?
        var testExamples: Int
        var floatAccuracy: Double
        var int8Accuracy: Double
        /// The fraction of test examples where both models give the same class.
        var agreement: Double
        var floatFileBytes: Int
        var int8FileBytes: Int
        var floatLatencyBatch1Milliseconds: Double
        var floatLatencyBatch256Milliseconds: Double
        var int8LatencyBatch1Milliseconds: Double
        var int8LatencyBatch256Milliseconds: Double
        var kernelPath: String
        var threads: Int
        /// The module paths of the layers the quantizer could not quantize: they run in float,
        /// dequantized before and quantized after.
        var floatLayers: [String]
    }

    func run() throws {
        if TextModel.isTextModel(model) { return try quantizeText() }
        for (name, given) in [("text-separator", text.textSeparator != nil), ("text-column", text.textColumn != nil), ("max-tokens", text.maxTokens != nil),
                              ("teacher", teacher != nil)] where given {
            throw UserError("--\(name) applies to text models; \(model) is not one")
        }
        let method = CalibrationMethod(rawValue: calibrationMethod)!
        let data = try dataOptions.load(seed: 0, recorded: try recordedPreprocessing(model, role: "model"), holdingOutValidation: false)
        let loaded = try loadModel(model, inputShape: data.preprocessing.exampleShape, role: "model")
        try checkFits(loaded, shape: data.preprocessing.exampleShape, classNames: data.preprocessing.classNames, role: "model \(model)")
        guard !(loaded.model is QuantizedModel) else { throw UserError("model \(model) is an int8 model already: quantize the float model it came from") }
        let float = loaded.model
        float.eval()
        let train = data.train, test = data.test
        let count = min(calibration, train.count)
        guard count >= 1 else { throw UserError("the training set is empty: nothing to calibrate on") }
        let indices = (0..<count).map { $0 * train.count / count }
        let quantized: QuantizedModel
        do {
            quantized = try Quantizer.quantize(float, calibration: try train.batch(indices), method: method, percentile: Float(percentile))
        } catch let error as QuantizationError {
            throw UserError("model \(model): \(error)")
        }

        // Accuracy and agreement on the test set, 1,000 examples a batch.
        var floatCorrect = 0, int8Correct = 0, agree = 0
        for start in stride(from: 0, to: test.count, by: 1000) {
            let range = Array(start..<min(start + 1000, test.count))
            let x = try test.batch(range)
            let f = float.predictions(x).argmaxRows(), q = quantized(x).argmaxRows()
            for (i, label) in range.map({ test.labels[$0] }).enumerated() {
                floatCorrect += f[i] == label ? 1 : 0
                int8Correct += q[i] == label ? 1 : 0
                agree += f[i] == q[i] ? 1 : 0
            }
        }

        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let path = (out as NSString).appendingPathComponent("model.safetensors")
        var metadata: [String: String] = [:]
        if let name = loaded.name { metadata["distill.model"] = name }
        if let name = loaded.name, let options = loaded.options {
            // The architecture, so that layers that stay float can be rebuilt when the file is read.
            metadata.merge(try QuantizedModelFile.architectureMetadata(name: name, options: options)) { a, _ in a }
        }
        metadata[Preprocessing.metadataKey] = data.preprocessing.json
        do { try QuantizedModelFile.write(quantized, metadata: metadata, to: path) } catch let error as FileError { throw UserError("\(error)") }

        // Latency: the float model's median forward time and ours, same inputs, same threads.
        let shape = Shape(data.preprocessing.exampleShape)
        let floatCost = ModelCost(float, inputShape: shape), int8Cost = ModelCost(quantized, inputShape: shape)
        let floatFile = SavedModel.onnxFile(at: model) ?? (isFolder(model) ? (model as NSString).appendingPathComponent("model.safetensors") : model)
        let report = QuantizationReport(
            model: model, calibrationExamples: count, calibrationMethod: method.rawValue, percentile: method == .percentile ? percentile : nil,
            testExamples: test.count, floatAccuracy: Double(floatCorrect) / Double(max(test.count, 1)),
            int8Accuracy: Double(int8Correct) / Double(max(test.count, 1)), agreement: Double(agree) / Double(max(test.count, 1)),
            floatFileBytes: fileSize(floatFile), int8FileBytes: fileSize(path),
            floatLatencyBatch1Milliseconds: floatCost.latencyBatch1Milliseconds, floatLatencyBatch256Milliseconds: floatCost.latencyBatch256Milliseconds,
            int8LatencyBatch1Milliseconds: int8Cost.latencyBatch1Milliseconds, int8LatencyBatch256Milliseconds: int8Cost.latencyBatch256Milliseconds,
            kernelPath: Compute.kernelPath.description, threads: Compute.threadCount, floatLayers: quantized.floatLayers)
        try writeJSON(report, to: (out as NSString).appendingPathComponent("quantization.json"))
        let r = report
        Console().text("wrote \(path): int8, \(quantized.layers.count) layers, calibrated on \(count) training examples (\(method.rawValue))")
        Console().text(r.floatLayers.isEmpty ? "every layer quantized"
                       : "stay float (dequantized before, quantized after): " + r.floatLayers.joined(separator: ", "))
        Console().text(String(format: "accuracy %.2f%% float, %.2f%% int8; agreement %.2f%% on %d test examples", r.floatAccuracy * 100,
                              r.int8Accuracy * 100, r.agreement * 100, r.testExamples))
        Console().text(String(format: "file %d bytes float, %d bytes int8 (%.1f%%)", r.floatFileBytes, r.int8FileBytes,
                              100 * Double(r.int8FileBytes) / Double(max(r.floatFileBytes, 1))))
        Console().text(String(format: "latency float %.3f ms at batch 1, %.1f ms at batch 256; int8 %.3f ms, %.1f ms", r.floatLatencyBatch1Milliseconds,
                              r.floatLatencyBatch256Milliseconds, r.int8LatencyBatch1Milliseconds, r.int8LatencyBatch256Milliseconds)
                       + " (\(r.kernelPath) kernels, \(r.threads) threads)")
    }

    func isFolder(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
    }
}
