import ArgumentParser
import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import Training

/// `distill distill --quantize int8` (quantization-aware distillation, docs/quantization.md)
/// and `--student-weights` (the trained float student it usually starts from).
struct QuantizationAwareOptions: ParsableArguments {
    static let studentWeightsSpec = OptionSpec("student-weights", .text,
        "Start the student from these weights instead of random ones: a run folder or .safetensors file of the same --student architecture and size (the float student that --quantize int8 fine-tunes).")
    static let quantizeSpec = OptionSpec("quantize", .choice(["int8"]),
        "Quantization-aware distillation: the student trains with its int8 model's rounding faked in every forward pass (activation ranges observed during the first 10% of the steps, then fixed; batch-norm statistics frozen), and the run folder also gets model-int8.safetensors.")
    static let specs = [studentWeightsSpec, quantizeSpec]

    @Option(name: studentWeightsSpec.long, help: studentWeightsSpec.help) var studentWeights: String?
    @Option(name: quantizeSpec.long, help: quantizeSpec.help) var quantize: String?

    var values: [(String, OptionValue?)] {
        [("student-weights", studentWeights.map { .text($0) }), ("quantize", quantize.map { .text($0) })]
    }

    /// Loads `--student-weights` into `student`, and attaches fake quantization when asked
    /// (nil otherwise).
    func prepare(_ student: any Module, name: String) throws -> QuantizationAwareTraining? {
        if let path = studentWeights {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { throw UserError("--student-weights: \(path) does not exist") }
            let file = isFolder.boolValue ? (path as NSString).appendingPathComponent("model.safetensors") : path
            do { try ModelWeights.load(into: student, from: file) } catch {
                throw UserError("--student-weights \(path): \(error) (it must be a --student \(name) of the same size)")
            }
        }
        guard quantize != nil else { return nil }
        do { return try QuantizationAwareTraining(student) } catch let error as QuantizationError {
            throw UserError("--quantize int8: --student \(name): \(error)")
        }
    }

    /// Keeps the observed ranges in the run's checkpoints and fixes them after the first 10%
    /// of the steps (at least one); until then, data-parallel processes agree on them before
    /// every step.
    static func attach(_ qat: QuantizationAwareTraining, to trainer: Trainer) throws {
        try trainer.keepInCheckpoints("quantization", qat.state)
        let communicator = trainer.communicator
        trainer.beforeStep = { step, total in
            guard !qat.rangesAreFrozen else { return }
            qat.agreeOnRanges(over: communicator)
            if step >= max(1, total / 10) { qat.freezeRanges() }
        }
    }

    /// Writes the int8 model of the trained student beside the run's float one (with the
    /// architecture, so that layers that stay float are rebuilt when it is read), makes the
    /// run's report describe it (`DistillationReport.describeInt8`: its test accuracy, cost on
    /// the int8 kernels and file size; the fake-quantized model's accuracy beside them), and
    /// says so.
    static func finish(_ qat: QuantizationAwareTraining, report: inout DistillationReport, teacherLogits: Tensor?, folder: String,
                       data: DataOptions.Loaded, name: String, options: ModelOptions, say: (String) -> Void) throws {
        let int8: QuantizedModel
        do { int8 = try qat.convert(exampleShape: data.preprocessing.exampleShape) } catch let error as QuantizationError {
            throw UserError("--quantize int8: \(error)")
        }
        let path = (folder as NSString).appendingPathComponent("model-int8.safetensors")
        do {
            var metadata = try QuantizedModelFile.architectureMetadata(name: name, options: options)
            metadata[Preprocessing.metadataKey] = data.preprocessing.json
            try QuantizedModelFile.write(int8, metadata: metadata, to: path)
            try report.describeInt8(int8, fakeQuantized: qat.model, test: data.test, teacherLogits: teacherLogits, file: path,
                                    floatFile: (folder as NSString).appendingPathComponent("model.safetensors"))
        } catch let error as FileError { throw UserError("\(error)") }
        guard let q = report.int8 else { return }
        let cost = report.studentCost
        say(String(format: "wrote %@: int8 test accuracy %.2f%% (the fake-quantized student %.2f%%, same class for %.2f%%); %d bytes (%.1f%% of model.safetensors); latency %.3f ms at batch 1, %.1f ms at batch 256 (%@ kernels, %d threads)",
                   path, 100 * report.student.top1, 100 * q.fakeQuantized.top1, 100 * q.agreementWithFakeQuantized, q.fileBytes,
                   100 * Double(q.fileBytes) / Double(max(q.floatFileBytes, 1)), cost.latencyBatch1Milliseconds, cost.latencyBatch256Milliseconds,
                   q.kernelPath, q.threads))
    }
}

extension Tensor {
    /// The index of each row's largest value, for [N, classes] logits.
    func argmaxRows() -> [Int] {
        let classes = shape[1], values = scalars
        return (0..<shape[0]).map { row in (0..<classes).max { values[row * classes + $0] < values[row * classes + $1] }! }
    }
}
