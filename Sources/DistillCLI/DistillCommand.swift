import ArgumentParser
import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// `distill distill`: teaches a student from one or more teachers.
struct DistillCommand: TrainingCommand {
    static let configuration = CommandConfiguration(commandName: "distill", abstract: "Distil teachers into a student on your data (Fashion-MNIST by default).")
    static let experimentName = "distill"
    static let options = [Spec.teacher, Spec.teacherArchitecture, Spec.teacherHint, Spec.teacherAttention, Spec.teacherEmbedding,
                          Spec.teacherOutputs] + Spec.teacherPreprocessingOptions + [
                          Spec.student, Spec.width, Spec.hidden, Spec.method, Spec.temperature, Spec.alpha, Spec.weight, Spec.unlabeled,
                          Spec.plain, Spec.augment, Spec.cacheDirectory] + QuantizationAwareOptions.specs + Spec.servedTeacherOptions + Spec.dataOptions
                          + Spec.textDataOptions + [Spec.minClassSize] + Spec.textStudentOptions + Spec.trainingOptions + Spec.outputOptions

    @Option(name: Spec.teacher.long, help: Spec.teacher.help) var teachers: [String] = []
    @Option(name: Spec.teacherArchitecture.long, help: Spec.teacherArchitecture.help) var teacherArchitecture: String?
    @Option(name: Spec.teacherHint.long, help: Spec.teacherHint.help) var teacherHint: String?
    @Option(name: Spec.teacherAttention.long, help: Spec.teacherAttention.help) var teacherAttention: [String] = []
    @Option(name: Spec.teacherEmbedding.long, help: Spec.teacherEmbedding.help) var teacherEmbedding: String?
    @Option(name: Spec.teacherOutputs.long, help: Spec.teacherOutputs.help) var teacherOutputs: String?
    @OptionGroup var teacherPreprocessing: TeacherPreprocessingOptions
    @Option(name: Spec.student.long, help: Spec.student.help) var student: String = "cnn-student"
    @OptionGroup var size: ModelSizeOptions
    @Option(name: Spec.method.long, help: Spec.method.help) var method: String = "kd"
    @Option(name: Spec.temperature.long, help: Spec.temperature.help) var temperature: Float = TrainingDefaults.temperature
    @Option(name: Spec.alpha.long, help: Spec.alpha.help) var alpha: Float = TrainingDefaults.alpha
    @Option(name: Spec.weight.long, help: Spec.weight.help) var weight: [String] = []
    @Flag(name: Spec.unlabeled.long, help: Spec.unlabeled.help) var unlabeled = false
    @Flag(name: Spec.plain.long, help: Spec.plain.help) var plain = false
    @Flag(name: Spec.augment.long, help: Spec.augment.help) var augment = false
    @OptionGroup var cache: CacheDirectoryOption
    @OptionGroup var quantization: QuantizationAwareOptions

    @OptionGroup var served: ServedTeacherOptions
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var text: TextDataOptions
    @OptionGroup var textClasses: TextClassesOption
    @OptionGroup var textStudent: TextStudentOptions
    @OptionGroup var training: TrainingOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var compute: ComputeOptions

    var methods: [String] { method.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    /// `--weight` items as (method, weight); a malformed item is an error naming it.
    func parsedWeights() throws -> [(String, Double)] {
        try weight.map { item in
            let parts = item.split(separator: "=")
            guard parts.count == 2, let w = Double(parts[1]) else { throw UserError("--weight '\(item)' must be METHOD=NUMBER") }
            return (String(parts[0]), w)
        }
    }

    var values: [(String, OptionValue?)] {
        [("teacher", teachers.isEmpty ? nil : .list(teachers)), ("teacher-architecture", teacherArchitecture.map { .text($0) }),
         ("teacher-hint", teacherHint.map { .text($0) }), ("teacher-attention", teacherAttention.isEmpty ? nil : .list(teacherAttention)),
         ("teacher-embedding", teacherEmbedding.map { .text($0) }), ("teacher-outputs", teacherOutputs.map { .text($0) }),
         ] + teacherPreprocessing.values + [
         ("student", .text(student))] + size.values + [("method", .list(methods)), ("temperature", .number(temperature)), ("alpha", .number(alpha)),
         ("weight", weight.isEmpty ? nil : .weights((try? parsedWeights()) ?? [])), ("unlabeled", .flag(unlabeled)), ("plain", .flag(plain)),
         ("augment", .flag(augment))] + cache.values + quantization.values
            + served.values + dataOptions.values + text.values + textClasses.values + textStudent.values + training.values + output.values + compute.values
    }

    func validate() throws {
        _ = try parsedWeights()
        try checkOptions()
        _ = try size.hiddenSizes()
        _ = try dataOptions.parsedImageSize()
        _ = try teacherPreprocessing.overrides(teachers: teachers.count)
        _ = try served.answers()
        guard !teachers.isEmpty || teacherOutputs != nil else { throw UserError("give --teacher or --teacher-outputs") }
        if isText { try validateText() } else {
            try textStudent.check(student: student)
            if textClasses.minClassSize != nil { throw UserError("--min-class-size is for labelled texts, and this run distils images or tables") }
        }
        if augment, let url = teachers.first(where: ServedTeacherOptions.isServed) {
            throw UserError("--augment: the served teacher \(url) answers for fixed examples, and augmentation makes new ones every epoch; drop --augment")
        }
        guard !(unlabeled && dataOptions.labelsPerClass != nil) else {
            throw UserError("--unlabeled and --labels-per-class exclude each other (no labels, or some)")
        }
    }

    func run() throws {
        guard isText, !isTextKD else { return try runTraining() }
        let console = Console(output)
        if training.run.dryRun { return console.result("options are valid", ["valid": true]) }
        try Experiment.writeResolved(Self.self, values, to: training.run.out)
        guard training.seeds != nil else {
            let report = try trainText(seed: training.seed, folder: training.run.out, checkpoint: training.run.checkpoint, console: console)
            return reportText(report, out: training.run.out, console: console)
        }
        try runTextSeeds(console: console)
    }

    func train(seed: UInt64, folder: String, checkpoint: String?, console: Console) throws -> RunOutcome {
        if isText { return try trainTextClassifier(seed: seed, folder: folder, checkpoint: checkpoint, console: console) }
        let methodList = methods.map { DistillationMethod(rawValue: $0)! }
        let weights = Dictionary(try parsedWeights().map { (DistillationMethod(rawValue: $0.0)!, Float($0.1)) }, uniquingKeysWith: { _, last in last })
        let data = try dataOptions.load(seed: seed, unlabeled: unlabeled, skippingBadFiles: training.skipBadFiles)
        var teacherList: [Teacher] = []
        var teacherNames: [String] = []
        let overrideList = try teacherPreprocessing.overrides(teachers: teachers.count)
        for (index, path) in teachers.enumerated() {
            let overrides = overrideList[index]
            if ServedTeacherOptions.isServed(path) {
                // Asked once for every training example (or read from its kept answers): then an outputs teacher like any other.
                let logits = try served.logits(path, for: data.train, preprocessing: data.preprocessing, overrides: overrides,
                                               directory: cache.directory, say: console.say)
                teacherList.append(Teacher(.outputs(logits)))
                teacherNames.append(path)
                continue
            }
            // A teacher's own record (a Distill run or export) gives its input size; else the data's or --teacher-input-size.
            let recorded = try recordedPreprocessing(path, role: "teacher")
            let loaded = try loadModel(path, architecture: teacherArchitecture,
                                       inputShape: recorded?.exampleShape ?? overrides.inputShape(for: data.preprocessing), role: "teacher")
            // The teacher's own preprocessing (its run's record), or the student's with the --teacher-* overrides.
            let model = try adapted(loaded, to: data.preprocessing, overriding: overrides, role: "teacher \(path)")
            teacherList.append(Teacher(.model(model)))
            teacherNames.append(loaded.name ?? (path as NSString).lastPathComponent)
        }
        if let file = teacherOutputs {
            // Rows follow the training examples as read (after the test split is carved, for data
            // without one); the rows of a validation split held out from them are dropped.
            let all = try TeacherOutputs.load(file, examples: data.train.count + (data.trainPositions == nil ? 0 : data.validation?.count ?? 0),
                                              classes: data.train.classCount)
            teacherList.append(Teacher(.outputs(data.trainPositions.map { all.indexSelect(alongAxis: 0, indices: $0) } ?? all)))
        }
        var generator = RandomGenerator(seed: seed)
        let options = try size.modelOptions(for: data)
        let studentModel: any Module
        do { studentModel = try ModelZoo.make(student, options: options, using: &generator) } catch let error as ModuleError {
            throw UserError("--student: \(error)")
        }
        let fakeQuantization = try quantization.prepare(studentModel, name: student)
        guard let studentTaps = TapLayers.defaults(for: student) else { throw UserError("no default layers for student '\(student)'") }
        // An ONNX teacher has no default layers: they are node output names (see `distill inspect`).
        let teacherTaps = TapLayers.resolve(model: teacherNames.first, hint: teacherHint, attention: teacherAttention, embedding: teacherEmbedding)
        let objective = try DistillationMethod.objective(methodList, student: studentTaps, teacher: teacherTaps, temperature: temperature,
                                                         alpha: alpha, weights: weights)
        var configuration = training.configuration(seed: seed, folder: folder)
        configuration.crossEntropyWeight = objective.crossEntropyWeight
        configuration.cacheDirectory = cache.directory
        configuration.classWeights = try resolvedClassWeights(training.classWeights, labeled: data.labeledTrain)
        if augment {
            configuration.augmentation = try data.augmentation()
        }
        if plain {
            configuration.clipNorm = nil
            configuration.warmupSteps = 0
        }
        let trainer = try Trainer(model: studentModel, teachers: teacherList, losses: objective.losses, configuration: configuration)
        trainer.shouldStop = StopRequest.isRequested
        trainer.runSettings.merge(recordedSettings) { _, command in command }
        if let fakeQuantization { try QuantizationAwareOptions.attach(fakeQuantization, to: trainer) }
        console.say("distill \(teacherNames.isEmpty ? "teacher outputs" : teacherNames.joined(separator: " + ")) → \(student) with \(method); \(data.train.count) \(data.noun)\(data.labeled.map { ", \($0.filter { $0 }.count) labelled" } ?? "")\(data.validation.map { ", \($0.count) held out for validation" } ?? "")")
        if let weights = configuration.classWeights { console.say(classWeightsLine(weights, classNames: data.train.classNames)) }
        let name = student
        // A quantization-aware run ships its int8 model, and its report describes that one.
        let shipped = fakeQuantization.map { qat in { (report: inout DistillationReport, teacherLogits: Tensor?) throws in
            try QuantizationAwareOptions.finish(qat, report: &report, teacherLogits: teacherLogits, folder: folder, data: data, name: name,
                                                options: options, say: console.say)
        } }
        return try trainer.run(train: data.train, labeled: data.labeled, validation: data.validation, test: data.test,
                               resumingFrom: checkpoint, teacher: teacherList.first?.model, shipped: shipped,
                               saveModel: modelSaver(name: name, options: options, preprocessing: data.preprocessing),
                               loadModel: { try SavedModel.load($0).model }) { console.training($0, batchSize: training.batch) }
    }
}

/// How a served teacher (`--teacher http(s)://…`) is queried, and its token.
struct ServedTeacherOptions: ParsableArguments {
    @Option(name: Spec.queryBatch.long, help: Spec.queryBatch.help) var queryBatch: Int = ServedTeacher.defaultQueryBatch
    @Option(name: Spec.concurrency.long, help: Spec.concurrency.help) var concurrency: Int = ServedTeacher.defaultConcurrency
    @Option(name: Spec.requestsPerSecond.long, help: Spec.requestsPerSecond.help) var requestsPerSecond: Double = 0
    @Option(name: Spec.maxQueries.long, help: Spec.maxQueries.help) var maxQueries: Int?
    @Option(name: Spec.queryTimeout.long, help: Spec.queryTimeout.help) var queryTimeout: Double = ServedTeacher.defaultTimeout
    @Option(name: Spec.teacherTokenEnv.long, help: Spec.teacherTokenEnv.help) var teacherTokenEnv: String?
    @Option(name: Spec.teacherTokenFile.long, help: Spec.teacherTokenFile.help) var teacherTokenFile: String?
    @Option(name: Spec.teacherCAFile.long, help: Spec.teacherCAFile.help) var teacherCAFile: String?
    @Option(name: Spec.teacherAnswers.long, help: Spec.teacherAnswers.help) var teacherAnswers: String?

    /// (The token's source is recorded, never the token.)
    var values: [(String, OptionValue?)] {
        [("query-batch", .integer(queryBatch)), ("concurrency", .integer(concurrency)), ("requests-per-second", .number(requestsPerSecond)),
         ("max-queries", maxQueries.map { .integer($0) }), ("query-timeout", .number(queryTimeout)),
         ("teacher-token-env", teacherTokenEnv.map { .text($0) }), ("teacher-token-file", teacherTokenFile.map { .text($0) }),
         ("teacher-ca-file", teacherCAFile.map { .text($0) }), ("teacher-answers", teacherAnswers.map { .text($0) })]
    }

    /// `--teacher-answers` parsed; nil when not given (implied by the model's metadata).
    func answers() throws -> ServedAnswerKind? {
        guard let text = teacherAnswers else { return nil }
        guard let kind = ServedAnswerKind(text) else {
            throw UserError("--teacher-answers '\(text)' must be logits, probabilities, top-K (K a whole number ≥ 1, e.g. top-5) or label")
        }
        return kind
    }

    /// Whether `teacher` names a served model rather than a file.
    static func isServed(_ teacher: String) -> Bool {
        let lower = teacher.lowercased()
        return lower.hasPrefix("http://") || lower.hasPrefix("https://")
    }

    /// The served teacher at `url`, with these settings and the token (errors name the
    /// variable or file, never the token).
    func teacher(_ url: String) throws -> ServedTeacher {
        var teacher: ServedTeacher
        do { teacher = try ServedTeacher(url: url) } catch let error as DistillationError { throw UserError(error.description) }
        teacher.queryBatch = queryBatch
        teacher.concurrency = concurrency
        teacher.requestsPerSecond = requestsPerSecond
        teacher.maxQueries = maxQueries
        teacher.timeout = queryTimeout
        teacher.answers = try answers()
        teacher.shouldStop = { StopRequest.isRequested() }
        guard teacherTokenEnv == nil || teacherTokenFile == nil else { throw UserError("--teacher-token-env and --teacher-token-file exclude each other") }
        if let name = teacherTokenEnv {
            guard let token = ProcessInfo.processInfo.environment[name], !token.isEmpty else {
                throw UserError("--teacher-token-env: the environment variable \(name) is not set")
            }
            teacher.token = token.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if let file = teacherTokenFile {
            guard let data = FileManager.default.contents(atPath: file) else { throw UserError("--teacher-token-file: cannot read \(file)") }
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty, !token.contains("\n") else { throw UserError("--teacher-token-file: \(file) must hold one token on one line") }
            teacher.token = token
        }
        if let file = teacherCAFile {
            guard let data = FileManager.default.contents(atPath: file) else { throw UserError("--teacher-ca-file: cannot read \(file)") }
            guard data.range(of: Data("-----BEGIN CERTIFICATE-----".utf8)) != nil else {
                throw UserError("--teacher-ca-file: \(file) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
            }
            teacher.caFile = file
        }
        return teacher
    }

    /// The served teacher's logits for `data` (asked, or read from the answers kept in
    /// `directory`), its inputs converted to the teacher's preprocessing (`overrides` applied
    /// to the data's); `say` hears how many were asked and kept.
    func logits(_ url: String, for data: Dataset, preprocessing: Preprocessing, overrides: TeacherPreprocessing, directory: String,
                say: (String) -> Void) throws -> Tensor {
        let expected = try overrides.applied(to: preprocessing)
        let conversion: InputConversion?
        do { conversion = try expected.conversion(from: preprocessing) } catch let error as DatasetError { throw UserError("teacher \(url): \(error.problem)") }
        let outcome = try teacher(url).logits(for: data, conversion: conversion, directory: directory)
        say("teacher \(url): \(data.count) answers, \(outcome.asked) asked now, \(outcome.kept) kept from earlier (\(outcome.path)); answers: \(outcome.answers)")
        return outcome.logits
    }
}

/// Where teacher outputs are cached between runs (and a served teacher's answers are kept):
/// declared once, for `distill` and `evaluate`.
struct CacheDirectoryOption: ParsableArguments {
    @Option(name: Spec.cacheDirectory.long, help: Spec.cacheDirectory.help)
    var directory: String = (ProcessInfo.processInfo.environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache"))
        + "/distill"

    var values: [(String, OptionValue?)] { [("cache-directory", .text(directory))] }
}
