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

    /// Writes the int8 model of the trained student beside the run's float one and says how
    /// it scores on the test set against the fake-quantized model it was trained as.
    static func finish(_ qat: QuantizationAwareTraining, folder: String, data: DataOptions.Loaded, say: (String) -> Void) throws {
        let shape = data.preprocessing.exampleShape
        let int8: QuantizedModel
        do { int8 = try qat.convert(exampleShape: shape) } catch let error as QuantizationError { throw UserError("--quantize int8: \(error)") }
        let path = (folder as NSString).appendingPathComponent("model-int8.safetensors")
        do {
            try QuantizedModelFile.write(int8, metadata: [Preprocessing.metadataKey: data.preprocessing.json], to: path)
        } catch let error as FileError { throw UserError("\(error)") }
        let test = data.test
        var int8Correct = 0, fakeCorrect = 0, agree = 0
        for start in stride(from: 0, to: test.count, by: 1000) {
            let range = Array(start..<min(start + 1000, test.count))
            let x = try test.batch(range)
            let q = int8(x).argmaxRows(), f = qat.model.predictions(x).argmaxRows()
            for (i, index) in range.enumerated() {
                int8Correct += q[i] == test.labels[index] ? 1 : 0
                fakeCorrect += f[i] == test.labels[index] ? 1 : 0
                agree += q[i] == f[i] ? 1 : 0
            }
        }
        let n = Double(max(test.count, 1))
        say(String(format: "wrote %@: int8 test accuracy %.2f%% (the fake-quantized student %.2f%%, same class for %.2f%%)",
                   path, 100 * Double(int8Correct) / n, 100 * Double(fakeCorrect) / n, 100 * Double(agree) / n))
    }
}

extension Tensor {
    /// The index of each row's largest value, for [N, classes] logits.
    func argmaxRows() -> [Int] {
        let classes = shape[1], values = scalars
        return (0..<shape[0]).map { row in (0..<classes).max { values[row * classes + $0] < values[row * classes + $1] }! }
    }
}
