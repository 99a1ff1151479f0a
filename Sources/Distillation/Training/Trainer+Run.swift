import Datasets
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// What a whole run gave: the training history and the test-set report.
public struct RunOutcome {
    public var result: TrainingResult
    /// The final model (`student`) and the selected one (`selected`) on the test set.
    public var report: DistillationReport
    public var seconds: Double
}

extension Trainer {
    /// A whole run in its folder: continues from `checkpoint` when given, trains, writes the
    /// final model (`model.safetensors`, through `saveModel`), then scores on `test` — once,
    /// after training — the final model and the model selected on the validation split
    /// (`best.safetensors`, read back through `loadModel`), and writes `evaluation.json` and
    /// `report.html`. `teacher` is the model the report compares with. `shipped`, when given,
    /// writes what the run ships beside the float model and makes the final model's report
    /// describe it (a quantization-aware run's int8 model: `DistillationReport.describeInt8`),
    /// given the teacher's test logits; the process that writes the run folder calls it once,
    /// after `model.safetensors` is written and before the selected model is scored.
    public func run(train: Dataset, labeled: [Bool]? = nil, validation: Dataset? = nil, test: Dataset, resumingFrom checkpoint: String? = nil,
                    teacher: (any Module)? = nil, shipped: ((inout DistillationReport, _ teacherLogits: Tensor?) throws -> Void)? = nil,
                    saveModel: @escaping (any Module, String) throws -> Void, loadModel: (String) throws -> any Module,
                    events: (TrainingEvent) -> Void = { _ in }) throws -> RunOutcome {
        let start = Date()
        let exported = model
        self.saveModel = { path in try saveModel(exported, path) }
        if let checkpoint { try resume(from: checkpoint, train: train) }
        let result = try fit(train: train, labeled: labeled, validation: validation, events: events)
        let teacherLogits = try teacher.map { try teacherTestLogits($0, test: test) }
        var report = try DistillationReport(student: model, teacher: teacher, test: test, teacherLogits: teacherLogits)
        guard let directory = outputDirectory else { return RunOutcome(result: result, report: report, seconds: Date().timeIntervalSince(start)) }
        func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        try saveModel(model, path("model.safetensors"))
        try shipped?(&report, teacherLogits)
        if let bestEpoch = result.bestEpoch, bestEpoch == result.history.last?.epoch {
            // The last epoch was the best: the selected model is the final one, already scored.
            report.selected = report.student
            report.selectedEpoch = bestEpoch
        } else if let bestEpoch = result.bestEpoch, FileManager.default.fileExists(atPath: path("best.safetensors")) {
            let best = try loadModel(path("best.safetensors"))
            report.selected = ClassificationMetrics(logits: try best.predictions(on: test), labels: test.labels, classNames: test.classNames)
            report.selectedEpoch = bestEpoch
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(report), to: path("evaluation.json"))
        try HTMLReport.write([try HTMLReport.Run.load(directory)], to: path("report.html"))
        return RunOutcome(result: result, report: report, seconds: Date().timeIntervalSince(start))
    }
}
