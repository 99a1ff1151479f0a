import ArgumentParser
import Datasets
import Foundation
import Tensors

/// `distill demo`: trains a small CNN on Fashion-MNIST with the tensor engine alone and
/// reports loss, accuracy and throughput. (Teacher → student distillation joins this
/// command once the distillation module lands.)
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a small CNN on Fashion-MNIST and report accuracy and speed.")

    @Option(help: "Folder with the four Fashion-MNIST IDX files (gzip or raw).")
    var data: String = FashionMNIST.defaultDirectory

    @Option(help: "Training epochs.")
    var epochs: Int = 1

    @Option(help: "Batch size.")
    var batch: Int = 128

    @Option(help: "Learning rate (SGD, momentum 0.9).")
    var lr: Float = 0.05

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    @Flag(help: "Train on the first 10,000 images only.")
    var quick = false

    func validate() throws {
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1, got \(epochs)") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1, got \(batch)") }
        guard lr > 0 && lr.isFinite else { throw ValidationError("--lr must be a positive number, got \(lr)") }
    }

    func run() throws {
        let dataset: FashionMNIST
        do { dataset = try FashionMNIST(directory: data) } catch let error as DatasetError {
            throw ValidationError("\(error)")
        }
        let trainCount = quick ? 10_000 : dataset.train.count
        var generator = RandomGenerator(seed: seed)
        let model = DemoNetwork(using: &generator)
        print("Fashion-MNIST: \(trainCount) training and \(dataset.test.count) test images; model: \(model.parameters.reduce(0) { $0 + $1.count }) parameters; \(Compute.threadCount) threads")
        for epoch in 1...epochs {
            let start = Date()
            var order = Array(0..<trainCount)
            order.shuffle(using: &generator)
            var lossTotal: Float = 0, steps = 0
            for first in stride(from: 0, to: trainCount, by: batch) {
                let indices = Array(order[first..<min(first + batch, trainCount)])
                let images = dataset.train.images.indexSelect(alongAxis: 0, indices: indices)
                let labels = indices.map { dataset.train.labels[$0] }
                let loss = Tensor.crossEntropy(logits: model(images), labels: labels)
                loss.backward()
                model.step(learningRate: lr)
                lossTotal += loss.item
                steps += 1
            }
            let seconds = Date().timeIntervalSince(start)
            let accuracy = model.accuracy(dataset.test)
            print(String(format: "epoch %d  loss %.4f  test accuracy %.2f%%  %.1f s  %.0f images/s",
                         epoch, lossTotal / Float(steps), accuracy * 100, seconds, Double(trainCount) / seconds))
        }
    }
}

/// Conv(1→8)-ReLU-MaxPool-Conv(8→16)-ReLU-MaxPool-Linear(784→64)-ReLU-Linear(64→10),
/// written directly against the engine, trained by SGD with momentum.
private final class DemoNetwork {
    let parameters: [Tensor]
    private var velocity: [Tensor]

    init(using generator: inout RandomGenerator) {
        func uniform(_ shape: Shape, fanIn: Int) -> Tensor {
            let bound = 1 / Float(fanIn).squareRoot()
            let t = Tensor.randomUniform(shape, low: -bound, high: bound, using: &generator)
            t.requiresGrad = true
            return t
        }
        parameters = [uniform([8, 1, 3, 3], fanIn: 9), uniform([8], fanIn: 9),
                      uniform([16, 8, 3, 3], fanIn: 72), uniform([16], fanIn: 72),
                      uniform([64, 784], fanIn: 784), uniform([64], fanIn: 784),
                      uniform([10, 64], fanIn: 64), uniform([10], fanIn: 64)]
        velocity = parameters.map { Tensor.zeros($0.shape) }
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let p = parameters
        var h = Tensor.conv2d(x, weight: p[0], bias: p[1], padding: (1, 1)).relu()
        h = Tensor.maxPool2d(h, kernel: (2, 2))
        h = Tensor.conv2d(h, weight: p[2], bias: p[3], padding: (1, 1)).relu()
        h = Tensor.maxPool2d(h, kernel: (2, 2)).flattened()
        h = Tensor.linear(h, weight: p[4], bias: p[5]).relu()
        return Tensor.linear(h, weight: p[6], bias: p[7])
    }

    func step(learningRate: Float) {
        for (parameter, v) in zip(parameters, velocity) {
            guard let grad = parameter.grad else { continue }
            parameter.withUnsafeMutableBufferPointer { w in
                v.withUnsafeMutableBufferPointer { m in
                    grad.withUnsafeBufferPointer { g in
                        for i in 0..<w.count {
                            m[i] = 0.9 * m[i] + g[i]
                            w[i] -= learningRate * m[i]
                        }
                    }
                }
            }
            parameter.zeroGrad()
        }
    }

    func accuracy(_ split: FashionMNIST.Split) -> Double {
        var correct = 0
        withoutGradients {
            for first in stride(from: 0, to: split.count, by: 1000) {
                let indices = Array(first..<min(first + 1000, split.count))
                let predictions = self(split.images.indexSelect(alongAxis: 0, indices: indices)).max(alongAxis: 1).indices
                correct += zip(predictions, indices).filter { $0 == split.labels[$1] }.count
            }
        }
        return Double(correct) / Double(split.count)
    }
}
