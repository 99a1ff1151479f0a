import Datasets
import Foundation
import NeuralNet
import Tensors

/// What a quantization-aware run ships beside its float weights (`DistillationReport.int8`):
/// the int8 model's file, how it answers against the fake-quantized float model it was
/// trained as, and the kernels its latency was measured on.
public struct Int8StudentReport: Codable, Equatable, Sendable {
    /// The int8 model's file name in the run folder (`model-int8.safetensors`) and its size.
    public var file: String
    public var fileBytes: Int
    /// The float model's file (`model.safetensors`) in bytes.
    public var floatFileBytes: Int
    /// The fake-quantized float model the run trained, on the same test set (its agreement is
    /// with the teacher, as the student's is).
    public var fakeQuantized: ClassificationMetrics
    /// The fraction of test examples where the int8 model and the fake-quantized one rank the
    /// same class first.
    public var agreementWithFakeQuantized: Double
    /// The int8 kernel path and threads the int8 latency was measured with.
    public var kernelPath: String
    public var threads: Int
    /// The module paths of the layers that run in float between a dequantization and a
    /// quantization (`QuantizedModel.floatLayers`).
    public var floatLayers: [String]
}

extension DistillationReport {
    /// Makes the report describe `int8`, the model a quantization-aware run ships, instead of
    /// `fakeQuantized` (the float model with its rounding faked, which the report scored):
    /// `student` becomes the int8 model's scores on `test` (agreement with the teacher from
    /// `teacherLogits`), `studentCost` its cost on the int8 kernels (`ModelCost`, as
    /// `distill quantize` measures it), the ratios follow, and `int8` keeps the fake-quantized
    /// model's scores, the agreement of the two and the sizes of `file` (the int8 model) and
    /// `floatFile`. Throws a `DatasetError` naming a test file that does not decode.
    public mutating func describeInt8(_ int8: QuantizedModel, fakeQuantized: any Module, test: Dataset, teacherLogits: Tensor?,
                                      file: String, floatFile: String) throws {
        let logits = try int8.predictions(on: test), fakeLogits = try fakeQuantized.predictions(on: test)
        let fake = ClassificationMetrics(logits: fakeLogits, labels: test.labels, classNames: test.classNames, reference: teacherLogits)
        let same = zip(logits.max(alongAxis: 1).indices, fakeLogits.max(alongAxis: 1).indices).filter { $0 == $1 }.count
        student = ClassificationMetrics(logits: logits, labels: test.labels, classNames: test.classNames, reference: teacherLogits)
        studentCost = ModelCost(int8, inputShape: test.exampleShape)
        computeRatios()
        func size(_ path: String) -> Int { ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0 }
        self.int8 = Int8StudentReport(file: (file as NSString).lastPathComponent, fileBytes: size(file), floatFileBytes: size(floatFile),
                                      fakeQuantized: fake, agreementWithFakeQuantized: Double(same) / Double(max(test.count, 1)),
                                      kernelPath: Compute.kernelPath.description, threads: Compute.threadCount, floatLayers: int8.floatLayers)
    }
}
