import ArgumentParser
import Datasets
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

    func validate() throws {
        guard ModelZoo.names.contains(model) else {
            throw ValidationError("unknown model '\(model)' (available: \(ModelZoo.names.joined(separator: ", ")))")
        }
    }

    func run() throws {
        let (fullTrain, test, labeled) = try dataOptions.load(seed: training.seed)
        let train = labeled.map { mask in fullTrain.subset(mask.indices.filter { mask[$0] }) } ?? fullTrain
        var generator = RandomGenerator(seed: training.seed)
        let options = ModelOptions(classes: train.classCount, inputChannels: train.exampleShape[0], inputSize: train.exampleShape[1])
        let network = try ModelZoo.make(model, options: options, using: &generator)
        try FileManager.default.createDirectory(atPath: training.out, withIntermediateDirectories: true)
        print("train \(model) (\(network.parameterCount) parameters) on \(train.count) images, \(training.epochs) epochs")
        var lines = ""
        try trainFromScratch(network, epochs: training.epochs, batchSize: training.batch, learningRate: training.lr, train: train, test: test,
                             using: &generator) { epoch, result, accuracy in
            print(String(format: "epoch %d  loss %.4f  test accuracy %.2f%%  %.1f s", epoch, result.loss, accuracy * 100, result.seconds))
            lines += String(format: "{\"epoch\": %d, \"loss\": %.6f, \"test_accuracy\": %.6f, \"seconds\": %.3f}\n", epoch, result.loss, accuracy, result.seconds)
            try AtomicFile.write(Data(lines.utf8), to: (training.out as NSString).appendingPathComponent("metrics.jsonl"))
        }
        try SavedModel.save(network, name: model, options: options, to: (training.out as NSString).appendingPathComponent("model.safetensors"))
        print("wrote \(training.out)/model.safetensors")
    }
}
