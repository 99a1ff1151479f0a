import ArgumentParser
import Datasets
import Distillation
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// `distill train`: trains a zoo model from scratch (teachers are trained this way).
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a zoo model from scratch on Fashion-MNIST.")

    @Option(help: "Zoo model (\(ModelZoo.names.joined(separator: ", "))).")
    var model: String

    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var training: TrainingOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard ModelZoo.names.contains(model) else {
            throw UserError("unknown model '\(model)' (available: \(ModelZoo.names.joined(separator: ", ")))")
        }
    }

    func run() throws {
        let (fullTrain, test, labeled) = try dataOptions.load(seed: training.seed)
        let train = labeled.map { mask in fullTrain.subset(mask.indices.filter { mask[$0] }) } ?? fullTrain
        var generator = RandomGenerator(seed: training.seed)
        let options = ModelOptions(classes: train.classCount, inputChannels: train.exampleShape[0], inputSize: train.exampleShape[1])
        let network = try ModelZoo.make(model, options: options, using: &generator)
        let out = training.out
        func path(_ name: String) -> String { (out as NSString).appendingPathComponent(name) }
        try Experiment.writeResolved(command: "train", [("model", .text(model))] + dataOptions.configEntries + training.configEntries, to: out)
        let console = Console(output)
        console.say("train \(model) (\(network.parameterCount) parameters) on \(train.count) images, \(training.epochs) epochs")
        var records: [EpochRecord] = [], best = -1.0
        let start = Date()
        try trainFromScratch(network, epochs: training.epochs, batchSize: training.batch, learningRate: training.lr,
                             optimizer: training.optimizer, schedule: training.schedule, weightDecay: training.weightDecay,
                             train: train, test: test, console: console, using: &generator) { epoch, result, rate, accuracy in
            console.epoch(String(format: "epoch %d  loss %.4f  test accuracy %.2f%%  %.1f s", epoch, result.loss, accuracy * 100, result.seconds),
                          ["epoch": epoch, "loss": Double(result.loss), "test_accuracy": accuracy, "seconds": result.seconds])
            records.append(EpochRecord(epoch: epoch - 1, loss: result.loss, terms: ["ce": result.loss], seconds: result.seconds,
                                       learningRate: rate, validationAccuracy: accuracy))
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            let lines = try records.map { String(decoding: try encoder.encode($0), as: UTF8.self) }.joined(separator: "\n") + "\n"
            try AtomicFile.write(Data(lines.utf8), to: path("metrics.jsonl"))
            // Weights after each evaluation, and the best so far by test accuracy.
            try SavedModel.save(network, name: model, options: options, to: path("last.safetensors"), metadata: ["epoch": String(epoch)])
            if accuracy > best {
                best = accuracy
                try SavedModel.save(network, name: model, options: options, to: path("best.safetensors"), metadata: ["epoch": String(epoch)])
            }
        }
        try SavedModel.save(network, name: model, options: options, to: path("model.safetensors"))
        let report = DistillationReport(student: network, teacher: nil, images: test.inputs, labels: test.labels, classNames: test.classNames)
        try writeJSON(report, to: path("evaluation.json"))
        try HTMLReport.write([try HTMLReport.Run.load(out)], to: path("report.html"))
        console.result(String(format: "test accuracy %.2f%% (best %.2f%%) in %.1f s; wrote %@/model.safetensors, metrics.jsonl, evaluation.json, report.html",
                              report.student.top1 * 100, best * 100, Date().timeIntervalSince(start), out),
                       ["test_accuracy": report.student.top1, "best_test_accuracy": best, "seconds": Date().timeIntervalSince(start), "out": out])
    }
}
