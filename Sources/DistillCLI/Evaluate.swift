import ArgumentParser
import Datasets
import Distillation
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// `distill evaluate`: accuracy, per-class accuracy, calibration, agreement with a teacher and
/// latency of a saved model on the Fashion-MNIST test set.
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate a saved model on the test set.")

    @Argument(help: "Run folder, .safetensors or .onnx model file.")
    var model: String

    @Option(help: "Zoo architecture of a .safetensors file that does not name one (a PyTorch state dict).")
    var architecture: String?

    @Option(help: "A teacher (run folder or model file) to measure agreement and cost ratios against.")
    var teacher: String?

    @OptionGroup var dataOptions: DataOptions

    @Flag(help: "Print the full report as JSON.")
    var json = false

    func run() throws {
        let student = try loadModel(model, architecture: architecture, role: "model").model
        let teacherModel = try teacher.map { try loadModel($0, role: "teacher").model }
        let (_, test, _) = try dataOptions.load(seed: 0)
        let report = DistillationReport(student: student, teacher: teacherModel, images: test.inputs, labels: test.labels, classNames: test.classNames)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        let m = report.student
        print(String(format: "accuracy %.2f%%  top-5 %.2f%%  calibration error %.4f", m.top1 * 100, m.top5 * 100, m.expectedCalibrationError))
        for (name, accuracy) in zip(m.classNames, m.perClassAccuracy) {
            print(String(format: "  %-12@ %.2f%%", name as NSString, accuracy * 100))
        }
        print(String(format: "latency %.3f ms at batch 1, %.1f ms at batch 256; %d parameters", report.studentCost.latencyBatch1Milliseconds,
                     report.studentCost.latencyBatch256Milliseconds, report.studentCost.parameters))
        if let t = report.teacher, let agreement = m.agreement {
            print(String(format: "teacher accuracy %.2f%%; agreement %.2f%%; teacher/student: %.1f× parameters, %.1f× multiply-adds, %.1f× latency at batch 1, %.1f× at 256",
                         t.top1 * 100, agreement * 100, report.parameterRatio ?? 0, report.multiplyAddRatio ?? 0,
                         report.latencyBatch1Ratio ?? 0, report.latencyBatch256Ratio ?? 0))
        }
    }
}
