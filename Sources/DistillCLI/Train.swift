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
    static let options = [Spec.model, Spec.width, Spec.hidden, Spec.augment] + Spec.dataOptions + Spec.trainingOptions + Spec.outputOptions

    @Option(name: Spec.model.long, help: Spec.model.help) var model: String
    @OptionGroup var size: ModelSizeOptions
    @Flag(name: Spec.augment.long, help: Spec.augment.help) var augment = false
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var training: TrainingOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var compute: ComputeOptions

    var values: [(String, OptionValue?)] {
        [("model", .text(model))] + size.values + [("augment", .flag(augment))] + dataOptions.values + training.values + output.values + compute.values
    }

    func validate() throws {
        try checkOptions()
        _ = try size.hiddenSizes()
        _ = try dataOptions.parsedImageSize()
    }

    func train(seed: UInt64, folder: String, checkpoint: String?, console: Console) throws -> RunOutcome {
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
