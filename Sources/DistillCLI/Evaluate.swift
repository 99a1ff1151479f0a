import ArgumentParser
import Datasets
import Distillation
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// `distill evaluate`: accuracy, per-class accuracy, calibration, agreement with a teacher and
/// latency of a saved model on the Fashion-MNIST test set; an int8 model (`distill quantize`'s
/// folder or file, a quantization-aware run's `model-int8.safetensors`) runs on the int8 kernels.
struct Evaluate: TabledCommand, ComputingCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate a saved model on the test set.")
    static let experimentName = "evaluate"
    static let architectureSpec = OptionSpec("architecture", .choice(ModelZoo.names), "Zoo architecture of a .safetensors file that does not name one (a PyTorch state dict).")
    static let teacherSpec = OptionSpec("teacher", .text, "A teacher to measure agreement and cost ratios against: a run folder, a model file, or a served model http(s)://HOST:PORT/v2/models/NAME (asked for the test examples, its answers kept under --cache-directory; no cost ratios).")
    static let jsonSpec = OptionSpec("json", .flag, "Print the full report as JSON.")
    static let options = [architectureSpec, teacherSpec] + Spec.teacherPreprocessingOptions + [Spec.cacheDirectory] + Spec.servedTeacherOptions
        + [jsonSpec] + Spec.dataOptions + [Spec.minClassSize] + Spec.textDataOptions + [Spec.threads]

    @Argument(help: "Run folder, .safetensors or .onnx model file; an int8 model (a `distill quantize` folder, or a quantization-aware run's model-int8.safetensors) runs on the int8 kernels.")
    var model: String
    @Option(name: architectureSpec.long, help: architectureSpec.help) var architecture: String?
    @Option(name: teacherSpec.long, help: teacherSpec.help) var teacher: String?
    @OptionGroup var teacherPreprocessing: TeacherPreprocessingOptions
    @OptionGroup var cache: CacheDirectoryOption
    @OptionGroup var served: ServedTeacherOptions
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var textClasses: TextClassesOption
    @OptionGroup var text: TextDataOptions
    @Flag(name: jsonSpec.long, help: jsonSpec.help) var json = false
    @OptionGroup var compute: ComputeOptions

    var values: [(String, OptionValue?)] {
        [("architecture", architecture.map { .text($0) }), ("teacher", teacher.map { .text($0) })] + teacherPreprocessing.values
            + cache.values + served.values + [("json", .flag(json))] + dataOptions.values + textClasses.values + text.values + compute.values
    }

    func validate() throws {
        try checkOptions()
        _ = try teacherPreprocessing.overrides(teachers: 1)
    }

    func run() throws {
        if TextModel.isTextModel(model) { return try evaluateText() }
        let data = try dataOptions.load(seed: 0, recorded: try recordedPreprocessing(model, role: "model"))
        let loaded = try loadModel(model, architecture: architecture, inputShape: data.preprocessing.exampleShape, role: "model")
        try checkFits(loaded, shape: data.preprocessing.exampleShape, classNames: data.preprocessing.classNames, role: "model \(model)")
        let student = loaded.model
        let test = data.test
        let overrides = try teacherPreprocessing.overrides(teachers: 1)[0]
        if let url = teacher, ServedTeacherOptions.isServed(url) {
            // Asked once for every test example (or read from its kept answers): agreement and
            // the teacher's accuracy; a served model has no cost to measure.
            let logits = try served.logits(url, for: test, preprocessing: data.preprocessing, overrides: overrides, directory: cache.directory,
                                           say: { if !json { Console().text($0) } })
            return try show(DistillationReport(student: student, teacherLogits: logits, test: test), int8: student is QuantizedModel)
        }
        let teacherModel = try teacher.map { path in
            let recorded = try recordedPreprocessing(path, role: "teacher")
            let teacherLoaded = try loadModel(path, inputShape: recorded?.exampleShape ?? overrides.inputShape(for: data.preprocessing), role: "teacher")
            return try adapted(teacherLoaded, to: data.preprocessing, overriding: overrides, role: "teacher \(path)")
        }
        try show(DistillationReport(student: student, teacher: teacherModel, test: test), int8: student is QuantizedModel)
    }

    /// A text classifier (a folder with model.safetensors and tokenizer.json: a `distill train`
    /// or `distill transfer` text run) on the test texts of --data, carved as its run carved
    /// them (the same --test-fraction and --min-class-size give the same test set).
    func evaluateText() throws {
        if teacher != nil { throw UserError("--teacher: comparing a text classifier with a teacher is not supported yet") }
        let loaded = try TextModel.load(model, role: "model")
        guard let classNames = loaded.classNames else {
            throw UserError("model \(model) is a sentence encoder (it gives embeddings, not classes): evaluate a text classifier, such as a `distill train` or `distill transfer` text run")
        }
        let data = try dataOptions.loadTexts(text, tokenizer: try text.tokenizer(for: loaded), minClassSize: textClasses.minClassSize, seed: 0,
                                             recordedClasses: classNames, holdingOutValidation: false)
        try show(DistillationReport(student: loaded.model, teacher: nil, test: data.test), int8: false)
    }

    /// Prints `report`: as JSON with --json, else as lines (`int8`: the model ran on the int8
    /// kernels, and its cost counts stored int8 weights).
    func show(_ report: DistillationReport, int8: Bool) throws {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            Console().text(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        let m = report.student
        Console().text(String(format: "accuracy %.2f%%  macro-F1 %.4f  top-5 %.2f%%  calibration error %.4f", m.top1 * 100, m.macroF1, m.top5 * 100,
                              m.expectedCalibrationError))
        let width = max(12, m.classNames.map(\.count).max() ?? 0) + 2
        func padded(_ name: String) -> String { name + String(repeating: " ", count: max(0, width - name.count)) }
        Console().text("  " + padded("class") + "precision  recall      F1  support")
        for c in m.classNames.indices {
            Console().text("  " + padded(m.classNames[c]) + String(format: "%9.4f %7.4f %7.4f %8d", m.precision[c], m.recall[c], m.f1[c], m.support[c]))
        }
        let cost = report.studentCost
        Console().text(String(format: "latency %.3f ms at batch 1, %.1f ms at batch 256; %d parameters", cost.latencyBatch1Milliseconds,
                              cost.latencyBatch256Milliseconds, cost.parameters)
                       + (int8 ? " (int8 model on the \(Compute.kernelPath) kernels, \(Compute.threadCount) threads; \(cost.bytes) bytes of weights)" : ""))
        if let t = report.teacher, let agreement = m.agreement, report.teacherCost == nil {
            Console().text(String(format: "teacher accuracy %.2f%%; agreement %.2f%%", t.top1 * 100, agreement * 100))
        } else if let t = report.teacher, let agreement = m.agreement {
            Console().text(String(format: "teacher accuracy %.2f%%; agreement %.2f%%; teacher/student: %.1f× parameters, %.1f× multiply-adds, %.1f× latency at batch 1, %.1f× at 256",
                         t.top1 * 100, agreement * 100, report.parameterRatio ?? 0, report.multiplyAddRatio ?? 0,
                         report.latencyBatch1Ratio ?? 0, report.latencyBatch256Ratio ?? 0))
        }
    }
}
