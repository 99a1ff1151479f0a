import Datasets
import DistillInference
import Distillation
import Foundation
import ModelFormats
import NeuralNet
import Tensors

extension DistillCommand {
    /// Logit distillation of a text classifier into a text student on labelled texts (`--method
    /// kd`, or `dkd`), run exactly as image KD: the teacher is a text classifier run folder (a
    /// `distill train` text run, or a `distill transfer` one: a sentence encoder with a new head)
    /// and the student a `text-bag` or `text-transformer` classifier of the teacher's classes,
    /// reading the teacher's tokenizer. The data is read and split as `train` and `evaluate`
    /// read it (`DataOptions.loadTexts`: the same --min-class-size and --test-fraction give the
    /// teacher's own test texts); its classes must be the teacher's. The one Trainer computes the
    /// teacher's logits on the training texts once (kept under --cache-directory) and trains with
    /// α·T²·KL(teacher ‖ student at temperature T) + (1 − α)·cross-entropy; the run folder is a
    /// text classifier like `train`'s (model.safetensors with the class names, tokenizer.json
    /// cutting at the run's --max-tokens, evaluation.json with the teacher's accuracy and the
    /// agreement, report.html), which evaluate, predict and export read.
    func trainTextClassifier(seed: UInt64, folder: String, checkpoint: String?, console: Console) throws -> RunOutcome {
        let path = teachers[0]
        let teacher = try TextModel.load(path, role: "--teacher")
        guard let classNames = teacher.classNames else {
            throw UserError("--method \(method): --teacher \(path) is a sentence encoder (it gives embeddings, not classes): distil it with --method embedding, or give a text classifier (a `distill train` or `distill transfer` text run)")
        }
        let tokenizer = try text.tokenizer(for: teacher)
        let maxTokens = tokenizer.truncation?.maxLength ?? 128
        let data = try dataOptions.loadTexts(text, tokenizer: tokenizer, minClassSize: textClasses.minClassSize, seed: seed, unlabeled: unlabeled,
                                             recordedClasses: classNames, role: "teacher", cacheFolder: cache.directory)
        // The student reads the teacher's tokenizer and gives one logit per teacher class.
        var options = try textStudent.options(student: student, hidden: try size.hiddenSizes()?.first, tokenizer: tokenizer,
                                              outputs: classNames.count, teacher: teacher)
        options.classifies = true
        if options.maxTokens == nil { options.maxTokens = maxTokens }
        let studentModel = try makeTextStudent(options: options, seed: seed, teacher: teacher, console: console)
        let methodList = methods.compactMap(DistillationMethod.init(rawValue:))
        let weights = Dictionary(try parsedWeights().compactMap { name, weight in DistillationMethod(rawValue: name).map { ($0, Float(weight)) } },
                                 uniquingKeysWith: { _, last in last })
        let noLayers = TapLayers(hint: "", attention: [], embedding: "")  // logit methods tap none
        let objective = try DistillationMethod.objective(methodList, student: noLayers, teacher: noLayers, temperature: temperature,
                                                         alpha: alpha, weights: weights)
        var configuration = training.configuration(seed: seed, folder: folder)
        configuration.crossEntropyWeight = objective.crossEntropyWeight
        configuration.cacheDirectory = cache.directory
        configuration.lengthBuckets = true
        configuration.classWeights = try resolvedClassWeights(training.classWeights, labeled: data.labeledTrain)
        if let weights = configuration.classWeights { console.say(classWeightsLine(weights, classNames: classNames)) }
        if plain {
            configuration.clipNorm = nil
            configuration.warmupSteps = 0
        }
        if Processes.isWriter {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try teacher.saveTokenizer(into: folder, maxTokens: maxTokens)
        }
        let trainer = try Trainer(model: studentModel, teachers: [Teacher(.model(teacher.model))], losses: objective.losses, configuration: configuration)
        trainer.shouldStop = StopRequest.isRequested
        trainer.runSettings.merge(recordedSettings) { _, command in command }
        let labeledCount = data.labeled.map { $0.filter { $0 }.count }
        console.say("distill \((path as NSString).lastPathComponent) (\(teacher.model.parameterCount) parameters) → \(student) (\(studentModel.parameterCount) parameters) "
            + "with \(method) on \(classNames.count) classes; \(data.train.count) texts\(labeledCount.map { ", \($0) labelled" } ?? "")"
            + "\(data.validation.map { ", \($0.count) held out for validation" } ?? ""), \(data.test.count) for the test, at most \(maxTokens) tokens each")
        return try trainer.run(train: data.train, labeled: data.labeled, validation: data.validation, test: data.test, resumingFrom: checkpoint,
                               teacher: teacher.model, saveModel: TextClassifierRecord.saver(name: student, options: options, classNames: classNames),
                               loadModel: { try SavedModel.load($0).model }) { console.training($0, batchSize: training.batch) }
    }
}
