import ArgumentParser
import Datasets
import Foundation
import NeuralNet
import Tensors

/// `distill demo`: trains a zoo model on Fashion-MNIST and reports loss, accuracy and
/// throughput per epoch. (Teacher → student distillation joins this command once the
/// distillation module lands.)
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a zoo model on Fashion-MNIST and report accuracy and speed.")

    @Option(help: "Folder with the four Fashion-MNIST IDX files (gzip or raw).")
    var data: String = FashionMNIST.defaultDirectory

    @Option(help: "Zoo model to train (\(ModelZoo.names.joined(separator: ", "))).")
    var model: String = "cnn-student"

    @Option(help: "Training epochs.")
    var epochs: Int = 1

    @Option(help: "Batch size.")
    var batch: Int = 128

    @Option(help: "Learning rate (SGD, momentum 0.9, cosine schedule).")
    var lr: Float = 0.05

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    @Flag(help: "Train on the first 10,000 images only.")
    var quick = false

    func validate() throws {
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1, got \(epochs)") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1, got \(batch)") }
        guard lr > 0 && lr.isFinite else { throw ValidationError("--lr must be a positive number, got \(lr)") }
        guard ModelZoo.names.contains(model) else {
            throw ValidationError("unknown model '\(model)' (available: \(ModelZoo.names.joined(separator: ", ")))")
        }
    }

    func run() throws {
        let dataset: FashionMNIST
        do { dataset = try FashionMNIST(directory: data) } catch let error as DatasetError {
            throw ValidationError("\(error)")
        }
        let trainCount = quick ? 10_000 : dataset.train.count
        let images = quick ? dataset.train.inputs.sliced(alongAxis: 0, 0..<trainCount) : dataset.train.inputs
        let labels = Array(dataset.train.labels.prefix(trainCount))
        var generator = RandomGenerator(seed: seed)
        let network = try ModelZoo.make(model, using: &generator)
        let optimizer = SGD(parameters: network.parameters, learningRate: lr, momentum: 0.9)
        let stepsPerEpoch = (trainCount + batch - 1) / batch
        let schedule = CosineSchedule(totalSteps: stepsPerEpoch * epochs)
        print("Fashion-MNIST: \(trainCount) training and \(dataset.test.count) test images; \(model): \(network.parameterCount) parameters; \(Compute.threadCount) threads")
        var step = 0
        for epoch in 1...epochs {
            let result = ClassifierTraining.trainEpoch(network, optimizer: optimizer, schedule: schedule, images: images, labels: labels,
                                                       batchSize: batch, firstStep: step, using: &generator)
            step = result.steps
            let accuracy = ClassifierTraining.accuracy(network, images: dataset.test.inputs, labels: dataset.test.labels)
            print(String(format: "epoch %d  loss %.4f  test accuracy %.2f%%  %.1f s  %.0f images/s",
                         epoch, result.loss, accuracy * 100, result.seconds, result.examplesPerSecond))
        }
    }
}
