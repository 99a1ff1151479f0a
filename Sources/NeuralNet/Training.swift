import Foundation
import Tensors

/// What one pass over training data did.
public struct EpochResult: Sendable {
    /// Mean cross-entropy over the batches.
    public var loss: Float
    /// Optimizer steps taken (the schedule's position after the epoch).
    public var steps: Int
    public var seconds: Double
    public var examplesPerSecond: Double { seconds > 0 ? Double(examples) / seconds : 0 }
    public var examples: Int
}

/// Supervised training and evaluation of a classifier on in-memory tensors: the plain
/// loop that trains teachers and scratch baselines.
public enum ClassifierTraining {
    /// One epoch of cross-entropy training over `images` [N, ...] and `labels`, in an order
    /// shuffled by `generator`, batches of `batchSize` (the last one smaller). Before each
    /// step the schedule (counted from `firstStep`) sets the learning rates; gradients are
    /// clipped to `clipNorm` when given. `onStep` hears (batch, batches, loss, examples per second).
    public static func trainEpoch(_ model: any Module, optimizer: any Optimizer, schedule: (any LearningRateSchedule)? = nil,
                                  images: Tensor, labels: [Int], batchSize: Int, firstStep: Int = 0,
                                  clipNorm: Float? = nil, labelSmoothing: Float = 0,
                                  using generator: inout RandomGenerator,
                                  onStep: (_ batch: Int, _ of: Int, _ loss: Float, _ examplesPerSecond: Double) -> Void = { _, _, _, _ in }) -> EpochResult {
        require(images.shape[0] == labels.count, "trainEpoch: \(images.shape[0]) images but \(labels.count) labels")
        require(batchSize > 0, "trainEpoch: batch size must be positive")
        let start = Date()
        model.train()
        var order = Array(0..<labels.count)
        order.shuffle(using: &generator)
        var total: Float = 0, step = firstStep
        let parameters = optimizer.groups.flatMap(\.parameters)
        for first in stride(from: 0, to: order.count, by: batchSize) {
            let indices = Array(order[first..<min(first + batchSize, order.count)])
            if let schedule { optimizer.setLearningRateFactor(schedule.factor(atStep: step)) }
            optimizer.zeroGrad()
            let logits = model(images.indexSelect(alongAxis: 0, indices: indices))
            let loss = Tensor.crossEntropy(logits: logits, labels: indices.map { labels[$0] }, labelSmoothing: labelSmoothing)
            loss.backward()
            if let clipNorm { clipGradientNorm(parameters, maxNorm: clipNorm) }
            optimizer.step()
            total += loss.item
            step += 1
            onStep(step - firstStep, (order.count + batchSize - 1) / batchSize, loss.item,
                   Double((step - firstStep) * batchSize) / max(Date().timeIntervalSince(start), 1e-9))
        }
        let batches = step - firstStep
        return EpochResult(loss: total / Float(max(batches, 1)), steps: step, seconds: Date().timeIntervalSince(start), examples: labels.count)
    }

    /// Logits for `images` in evaluation mode, without recording, in batches.
    public static func predict(_ model: any Module, images: Tensor, batchSize: Int = 1000) -> Tensor {
        model.eval()
        let count = images.shape[0]
        return withoutGradients {
            Tensor.concatenating(stride(from: 0, to: count, by: batchSize).map { first in
                model(images.sliced(alongAxis: 0, first..<min(first + batchSize, count)))
            }, alongAxis: 0)
        }
    }

    /// Fraction of `labels` that `model` ranks first.
    public static func accuracy(_ model: any Module, images: Tensor, labels: [Int], batchSize: Int = 1000) -> Double {
        let predictions = predict(model, images: images, batchSize: batchSize).max(alongAxis: 1).indices
        return Double(zip(predictions, labels).filter { $0 == $1 }.count) / Double(max(labels.count, 1))
    }
}
