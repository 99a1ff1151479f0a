import ArgumentParser
import Datasets
import Distillation
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// `distill distill`: teaches a student from one or more teachers.
struct DistillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "distill", abstract: "Distil teachers into a student on Fashion-MNIST.")

    @Option(name: .customLong("teacher"), help: "Teacher: a run folder, a .safetensors file or an ONNX classifier (.onnx); repeat for an ensemble.")
    var teachers: [String] = []

    @Option(help: "Zoo architecture of teacher .safetensors files that do not name one (PyTorch state dicts).")
    var teacherArchitecture: String?

    @Option(help: "Teacher layer for the FitNets hint (a module path, or an ONNX node's output name); default: the zoo teacher's.")
    var teacherHint: String?

    @Option(help: "Teacher layers for attention transfer, shallow to deep (repeatable); default: the zoo teacher's.")
    var teacherAttention: [String] = []

    @Option(help: "Teacher layer giving the embedding for rkd, sp, pkt and crd; default: the zoo teacher's.")
    var teacherEmbedding: String?

    @Option(help: "Black-box teacher outputs: an .npy of [training images, classes] logits or probabilities.")
    var teacherOutputs: String?

    @Option(help: "Student zoo model.")
    var student: String = "cnn-student"

    @Option(help: "Methods, comma-separated: \(DistillationMethod.allCases.map(\.rawValue).joined(separator: ", ")).")
    var method: String = "kd"

    @Option(help: "Softmax temperature for kd and dkd.")
    var temperature: Float = 4

    @Option(help: "KD's α: kd weight α, cross-entropy weight 1 − α.")
    var alpha: Float = 0.9

    @Option(help: "Override a method's weight: METHOD=W (repeatable).")
    var weight: [String] = []

    @Flag(help: "Use no labels at all: the student learns from the teacher's outputs alone (the data is an unlabelled transfer set).")
    var unlabeled = false

    @Flag(help: "Turn off gradient clipping and learning-rate warm-up (the plain recipe).")
    var plain = false

    @Flag(help: "Augment training images (random crop with 2-pixel padding, random erasing); the teacher then runs online.")
    var augment = false

    @Option(help: "Folder where teacher outputs are cached between runs (keyed by teacher weights and data).")
    var cacheDirectory: String = (ProcessInfo.processInfo.environment["XDG_CACHE_HOME"] ?? (NSHomeDirectory() + "/.cache")) + "/distill"

    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var training: TrainingOptions
    @OptionGroup var output: OutputOptions

    /// The resolved configuration, defaults included.
    var configEntries: [(String, Experiment.Value?)] {
        [("teacher", teachers.isEmpty ? nil : .list(teachers)), ("teacher-architecture", teacherArchitecture.map { .text($0) }),
         ("teacher-hint", teacherHint.map { .text($0) }), ("teacher-attention", teacherAttention.isEmpty ? nil : .list(teacherAttention)),
         ("teacher-embedding", teacherEmbedding.map { .text($0) }),
         ("teacher-outputs", teacherOutputs.map { .text($0) }), ("student", .text(student)),
         ("method", .list(method.split(separator: ",").map(String.init))), ("temperature", .number(temperature)),
         ("alpha", .number(alpha)),
         ("weight", weight.isEmpty ? nil : .weights(weight.compactMap { item in
             let parts = item.split(separator: "=")
             return parts.count == 2 ? Double(parts[1]).map { (String(parts[0]), $0) } : nil
         })),
         ("unlabeled", .flag(unlabeled)), ("plain", .flag(plain)), ("augment", .flag(augment)), ("cache-directory", .text(cacheDirectory))]
            + dataOptions.configEntries + training.configEntries
    }

    func run() throws {
        let methods = try method.split(separator: ",").map { name -> DistillationMethod in
            guard let m = DistillationMethod(rawValue: String(name)) else {
                throw UserError("unknown method '\(name)' (available: \(DistillationMethod.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return m
        }
        var weights: [DistillationMethod: Float] = [:]
        for item in weight {
            let parts = item.split(separator: "=")
            guard parts.count == 2, let m = DistillationMethod(rawValue: String(parts[0])), let w = Float(parts[1]), w >= 0 else {
                throw UserError("--weight '\(item)' must be METHOD=NUMBER with a known method")
            }
            weights[m] = w
        }
        guard !teachers.isEmpty || teacherOutputs != nil else { throw UserError("give --teacher or --teacher-outputs") }
        guard !(unlabeled && dataOptions.labelsPerClass != nil) else {
            throw UserError("--unlabeled and --labels-per-class exclude each other (no labels, or some)")
        }
        let (train, test, someLabeled) = try dataOptions.load(seed: training.seed)
        let labeled = unlabeled ? [Bool](repeating: false, count: train.count) : someLabeled
        var teacherList: [Teacher] = []
        var teacherNames: [String] = []
        for path in teachers {
            let loaded = try loadModel(path, architecture: teacherArchitecture, role: "teacher")
            if let network = loaded.model as? ONNXNetwork, network.inputShape != train.exampleShape.dimensions {
                throw UserError("teacher \(path) takes examples of shape \(network.inputShape), the data has \(train.exampleShape)")
            }
            teacherList.append(Teacher(.model(loaded.model)))
            teacherNames.append(loaded.name ?? (path as NSString).lastPathComponent)
        }
        if let file = teacherOutputs {
            do {
                teacherList.append(Teacher(.outputs(try TeacherOutputs.load(file, examples: train.count, classes: train.classCount))))
            } catch let error as DistillationError { throw UserError("\(error)") }
        }
        var generator = RandomGenerator(seed: training.seed)
        let options = ModelOptions(classes: train.classCount, inputChannels: train.exampleShape[0], inputSize: train.exampleShape[1])
        let studentModel = try ModelZoo.make(student, options: options, using: &generator)
        guard let studentTaps = TapLayers.defaults(for: student) else { throw UserError("no default layers for student '\(student)'") }
        // The zoo teacher's layers, with any given on the command line in their place (an ONNX
        // teacher has no defaults: its layers are node output names, see `distill inspect`).
        var teacherTaps = teacherNames.first.flatMap(TapLayers.defaults(for:))
        if teacherHint != nil || !teacherAttention.isEmpty || teacherEmbedding != nil {
            let base = teacherTaps ?? TapLayers(hint: "", attention: [], embedding: "")
            teacherTaps = TapLayers(hint: teacherHint ?? base.hint, attention: teacherAttention.isEmpty ? base.attention : teacherAttention,
                                    embedding: teacherEmbedding ?? base.embedding)
        }
        let losses = try methods.map { m -> WeightedLoss in
            guard !m.usesFeatures || teacherTaps != nil else {
                throw UserError("\(m.rawValue) compares intermediate features: use a zoo teacher, or name the teacher's layers with --teacher-hint, --teacher-attention and --teacher-embedding")
            }
            let loss = try m.makeLoss(student: studentTaps, teacher: teacherTaps ?? studentTaps, temperature: temperature)
            return WeightedLoss(loss, weight: weights[m] ?? (m == .kd ? alpha : m.defaultWeight))
        }
        var configuration = DistillerConfiguration()
        configuration.epochs = training.epochs
        configuration.batchSize = training.batch
        configuration.seed = training.seed
        configuration.crossEntropyWeight = methods.contains(.kd) ? 1 - (weights[.kd] ?? alpha) : 1
        configuration.runDirectory = training.out
        configuration.cacheDirectory = cacheDirectory
        configuration.optimizer = training.optimizer
        configuration.schedule = training.schedule
        configuration.weightDecay = training.weightDecay
        if augment {
            configuration.augmentation = Augmentation(cropPadding: 2, erasingProbability: 0.25, fillValue: FashionMNIST.normalizedBlack)
        }
        if plain {
            configuration.clipNorm = nil
            configuration.warmupSteps = 0
        }
        let distiller = try Distiller(student: studentModel, teachers: teacherList, losses: losses, configuration: configuration)
        try Experiment.writeResolved(command: "distill", configEntries, to: training.out)
        let console = Console(output)
        console.say("distill \(teacherNames.isEmpty ? "teacher outputs" : teacherNames.joined(separator: " + ")) → \(student) with \(method); \(train.count) images\(labeled.map { ", \($0.filter { $0 }.count) labelled" } ?? "")")
        let start = Date()
        do {
            try distiller.fit(train: train, labeled: labeled, validation: test, learningRate: training.lr) { event in
                switch event {
                case let .step(epoch, step, total, loss, rate):
                    console.step(epoch: epoch + 1, step: step, of: total, loss: loss, examplesPerSecond: rate, batchSize: training.batch)
                case let .cachingTeacher(done, total) where done == total: console.say("cached teacher outputs for \(total) images")
                case let .epochFinished(record):
                    console.epoch(String(format: "epoch %d  loss %.4f  test accuracy %.2f%%  %.1f s", record.epoch + 1, record.loss,
                                         (record.validationAccuracy ?? 0) * 100, record.seconds),
                                  ["epoch": record.epoch + 1, "loss": Double(record.loss), "terms": record.terms.mapValues(Double.init),
                                   "test_accuracy": record.validationAccuracy ?? Double.nan, "seconds": record.seconds])
                case let .rolledBack(epoch, step, factor):
                    console.say("non-finite loss at epoch \(epoch + 1), step \(step + 1): rolled back, learning rate × \(factor)")
                default: break
                }
            }
        } catch let error as DistillationError { throw UserError("\(error)") }
        try SavedModel.save(studentModel, name: student, options: options, to: (training.out as NSString).appendingPathComponent("model.safetensors"))
        let seconds = Date().timeIntervalSince(start)
        let report = DistillationReport(student: studentModel, teacher: teacherList.first?.model, images: test.inputs, labels: test.labels,
                                        classNames: test.classNames)
        try writeJSON(report, to: (training.out as NSString).appendingPathComponent("evaluation.json"))
        try HTMLReport.write([try HTMLReport.Run.load(training.out)], to: (training.out as NSString).appendingPathComponent("report.html"))
        var summary = String(format: "student test accuracy %.2f%% (top-5 %.2f%%, calibration error %.3f)", report.student.top1 * 100,
                             report.student.top5 * 100, report.student.expectedCalibrationError)
        if let teacher = report.teacher, let agreement = report.student.agreement, let ratio = report.parameterRatio, let speed = report.latencyBatch1Ratio {
            summary += String(format: "; teacher %.2f%%; agreement %.2f%%; %.1f× fewer parameters, %.1f× faster at batch 1",
                              teacher.top1 * 100, agreement * 100, ratio, speed)
        }
        summary += String(format: "; distilled in %.1f s; wrote %@/model.safetensors, evaluation.json and report.html", seconds, training.out)
        var fields: [String: Any] = ["test_accuracy": report.student.top1, "top5": report.student.top5,
                                     "calibration_error": report.student.expectedCalibrationError, "seconds": seconds, "out": training.out]
        if let teacher = report.teacher { fields["teacher_test_accuracy"] = teacher.top1 }
        if let agreement = report.student.agreement { fields["agreement"] = agreement }
        console.result(summary, fields)
    }
}
