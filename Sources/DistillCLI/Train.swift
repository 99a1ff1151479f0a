import ArgumentParser
import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// `distill train`: trains a zoo model from scratch (teachers are trained this way).
struct Train: TrainingCommand {
    static let configuration = CommandConfiguration(abstract: "Train a zoo model from scratch on your data (Fashion-MNIST by default).")
    static let experimentName = "train"
    static let options = [Spec.model, Spec.width, Spec.hidden, Spec.augment] + Spec.dataOptions
        + [Spec.tokenizer, Spec.minClassSize, Spec.layers, Spec.heads, Spec.feedForward, Spec.dropout] + Spec.textDataOptions + Spec.trainingOptions + Spec.outputOptions

    @Option(name: Spec.model.long, help: Spec.model.help) var model: String
    @OptionGroup var size: ModelSizeOptions
    @Flag(name: Spec.augment.long, help: Spec.augment.help) var augment = false
    @OptionGroup var dataOptions: DataOptions
    @Option(name: Spec.tokenizer.long, help: Spec.tokenizer.help) var tokenizer: String?
    @OptionGroup var textClasses: TextClassesOption
    @Option(name: Spec.layers.long, help: Spec.layers.help) var layers: Int?
    @Option(name: Spec.heads.long, help: Spec.heads.help) var heads: Int?
    @Option(name: Spec.feedForward.long, help: Spec.feedForward.help) var feedForward: Int?
    @Option(name: Spec.dropout.long, help: Spec.dropout.help) var dropout: Float?
    @OptionGroup var text: TextDataOptions
    @OptionGroup var training: TrainingOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var compute: ComputeOptions

    /// (The text options are absent unless given, so that image runs record nothing new.)
    var values: [(String, OptionValue?)] {
        [("model", .text(model))] + size.values + [("augment", .flag(augment))] + dataOptions.values
            + [("tokenizer", tokenizer.map { .text($0) })] + textClasses.values + [("layers", layers.map { .integer($0) }), ("heads", heads.map { .integer($0) }),
                                                                                           ("feed-forward", feedForward.map { .integer($0) }),
                                                                                           ("dropout", dropout.map { .number($0) })]
            + text.values + training.values + output.values + compute.values
    }

    /// Whether this run trains a text classifier.
    var isText: Bool { ModelZoo.textNames.contains(model) }

    func validate() throws {
        try checkOptions()
        _ = try size.hiddenSizes()
        _ = try dataOptions.parsedImageSize()
        if isText {
            guard tokenizer != nil else {
                throw UserError("--model \(model) reads texts: give --tokenizer, a tokenizer.json or a folder holding one (such as a teacher's)")
            }
            if augment { throw UserError("--augment applies to images, not texts") }
            if let sizes = try size.hiddenSizes(), sizes.count != 1 { throw UserError("--hidden: \(model) takes one size, got \(sizes.count)") }
            if model != "text-transformer" {
                for (name, given) in [("layers", layers != nil), ("heads", heads != nil), ("feed-forward", feedForward != nil), ("dropout", dropout != nil)] where given { throw UserError("--\(name) applies to text-transformer, not \(model)") }
            }
        } else {
            let given = [("tokenizer", tokenizer != nil), ("min-class-size", textClasses.minClassSize != nil), ("layers", layers != nil), ("heads", heads != nil),
                         ("feed-forward", feedForward != nil), ("dropout", dropout != nil), ("text-separator", text.textSeparator != nil), ("text-column", text.textColumn != nil), ("max-tokens", text.maxTokens != nil)]
            if let first = given.first(where: { $0.1 }) {
                throw UserError("--\(first.0) is for texts, and --model \(model) takes images or tables; texts train \(ModelZoo.textNames.joined(separator: " or "))")
            }
        }
    }

    func train(seed: UInt64, folder: String, checkpoint: String?, console: Console) throws -> RunOutcome {
        if isText { return try trainText(seed: seed, folder: folder, checkpoint: checkpoint, console: console) }
        let data = try dataOptions.load(seed: seed, skippingBadFiles: training.skipBadFiles)
        let train = data.labeledTrain
        var generator = RandomGenerator(seed: seed)
        let options = try size.modelOptions(for: data)
        let network: any Module
        do { network = try ModelZoo.make(model, options: options, using: &generator) } catch let error as ModuleError { throw UserError("--model: \(error)") }
        console.say("train \(model) (\(network.parameterCount) parameters) on \(train.count) \(data.noun)\(data.validation.map { ", \($0.count) held out for validation" } ?? ""), \(training.epochs) epochs")
        var configuration = training.configuration(seed: seed, folder: folder)
        if augment { configuration.augmentation = try data.augmentation() }
        configuration.classWeights = try resolvedClassWeights(training.classWeights, labeled: train)
        if let weights = configuration.classWeights { console.say(classWeightsLine(weights, classNames: train.classNames)) }
        let trainer = try Trainer(model: network, configuration: configuration)
        trainer.shouldStop = StopRequest.isRequested
        trainer.runSettings.merge(recordedSettings) { _, command in command }
        let name = model
        return try trainer.run(train: train, validation: data.validation, test: data.test, resumingFrom: checkpoint,
                               saveModel: modelSaver(name: name, options: options, preprocessing: data.preprocessing),
                               loadModel: { try SavedModel.load($0).model }) { console.training($0, batchSize: training.batch) }
    }
}

extension Train {
    /// A text classifier trained from scratch on labelled texts: the same Trainer run as images
    /// (validation, test report, evaluation.json, report.html), with batches of similar lengths;
    /// the run folder also keeps the tokenizer.json, so evaluate and predict read it as a text model.
    func trainText(seed: UInt64, folder: String, checkpoint: String?, console: Console) throws -> RunOutcome {
        let (tokenizer, tokenizerFile) = try readTokenizer(self.tokenizer!, maxTokens: text.maxTokens)
        let data = try dataOptions.loadTexts(text, tokenizer: tokenizer, minClassSize: textClasses.minClassSize, seed: seed)
        let train = data.labeledTrain
        let maxTokens = tokenizer.truncation?.maxLength ?? 128
        var options = ModelOptions.text(vocabularySize: tokenizer.vocabulary.count, paddingId: tokenizer.padding?.id ?? tokenizer.vocabulary.firstIndex(of: "[PAD]"),
                                        outputs: data.classNames.count, hidden: try size.hiddenSizes()?.first ?? 256,
                                        layers: model == "text-transformer" ? layers ?? 3 : nil, heads: heads, maxTokens: maxTokens, feedForward: feedForward, dropout: dropout)
        options.classifies = true
        var generator = RandomGenerator(seed: seed)
        let network: any Module
        do { network = try ModelZoo.make(model, options: options, using: &generator) } catch let error as ModuleError { throw UserError("--model: \(error)") }
        console.say("train \(model) (\(network.parameterCount) parameters) on \(train.count) texts of \(data.classNames.count) classes\(data.validation.map { ", \($0.count) held out for validation" } ?? ""), \(data.test.count) for the test, at most \(maxTokens) tokens each, \(training.epochs) epochs")
        var configuration = training.configuration(seed: seed, folder: folder)
        configuration.lengthBuckets = true
        configuration.classWeights = try resolvedClassWeights(training.classWeights, labeled: train)
        if let weights = configuration.classWeights { console.say(classWeightsLine(weights, classNames: train.classNames)) }
        if Processes.isWriter {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try TextModel.writeTokenizer(from: tokenizerFile, maxTokens: maxTokens, into: folder)
        }
        let trainer = try Trainer(model: network, configuration: configuration)
        trainer.shouldStop = StopRequest.isRequested
        trainer.runSettings.merge(recordedSettings) { _, command in command }
        return try trainer.run(train: train, validation: data.validation, test: data.test, resumingFrom: checkpoint,
                               saveModel: TextClassifierRecord.saver(name: model, options: options, classNames: data.classNames),
                               loadModel: { try SavedModel.load($0).model }) { console.training($0, batchSize: training.batch) }
    }
}

extension RunOutcome {
    /// The result line: test accuracy and macro-F1 of the final model and of the one selected on validation.
    func summary(out: String) -> String {
        var text = String(format: "test accuracy %.2f%%, macro-F1 %.4f (final %@model", report.student.top1 * 100, report.student.macroF1,
                          report.int8 == nil ? "" : "int8 ")
        if let selected = report.selected, let epoch = report.selectedEpoch {
            text += String(format: "; %.2f%%, macro-F1 %.4f for the model selected on validation, epoch %d", selected.top1 * 100, selected.macroF1, epoch + 1)
        }
        text += String(format: ")")
        if let teacher = report.teacher, let agreement = report.student.agreement, let ratio = report.parameterRatio, let speed = report.latencyBatch1Ratio {
            // Ratios below 1 read the other way round: a student larger or slower than its teacher says so.
            func compare(_ ratio: Double, _ better: String, _ worse: String) -> String {
                ratio >= 1 ? String(format: "%.1f× %@", ratio, better) : String(format: "%.1f× %@", 1 / ratio, worse)
            }
            text += String(format: "; teacher %.2f%%; agreement %.2f%%; ", teacher.top1 * 100, agreement * 100)
                + compare(ratio, "fewer parameters", "more parameters") + ", " + compare(speed, "faster at batch 1", "slower at batch 1")
        }
        return text + String(format: " in %.1f s; wrote %@/model.safetensors, %@evaluation.json, report.html", seconds, out,
                             report.int8.map { "\($0.file), " } ?? "")
    }

    func fields(out: String) -> [String: Any] {
        var fields: [String: Any] = ["test_accuracy": report.student.top1, "macro_f1": report.student.macroF1, "top5": report.student.top5,
                                     "calibration_error": report.student.expectedCalibrationError, "seconds": seconds, "out": out,
                                     "steps": result.steps]
        if let selected = report.selected {
            fields["selected_test_accuracy"] = selected.top1
            fields["selected_macro_f1"] = selected.macroF1
        }
        if let epoch = report.selectedEpoch { fields["selected_epoch"] = epoch + 1 }
        if let teacher = report.teacher { fields["teacher_test_accuracy"] = teacher.top1 }
        if let agreement = report.student.agreement { fields["agreement"] = agreement }
        return fields
    }
}
