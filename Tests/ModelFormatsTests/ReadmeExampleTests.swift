import Foundation
import ModelFormats
import NeuralNet
import Tensors
import Training
import XCTest

/// The README's library examples, kept compiling and running (file paths moved to a
/// temporary folder). Change both together.
final class ReadmeExampleTests: XCTestCase {
    func testEngineExample() {
        // The README's imports: Tensors and Training (the losses).
        var generator = RandomGenerator(seed: 0)
        let x = Tensor.randomNormal([64, 1, 28, 28], using: &generator)
        let weight = Tensor.randomNormal([8, 1, 3, 3], standardDeviation: 0.1, using: &generator)
        weight.requiresGrad = true

        let logits = Tensor.conv2d(x, weight: weight, padding: (1, 1))
            .relu()
            .mean(alongAxes: [2, 3])                      // [64, 8]
        let loss = Tensor.crossEntropy(logits: logits, labels: Array(repeating: 3, count: 64))
        loss.backward()                                   // weight.grad now holds dLoss/dWeight

        let probabilities = withoutGradients { logits.softmax(alongAxis: 1) }  // records nothing
        XCTAssertEqual(weight.grad?.shape, [8, 1, 3, 3])
        XCTAssertFalse(probabilities.isRecorded)
    }

    func testModelsExample() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("readme-\(UUID())").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }

        var generator = RandomGenerator(seed: 0)
        let model = try ModelZoo.make("cnn-student", using: &generator)
        let optimizer = SGD(parameters: model.parameters, learningRate: 0.05, momentum: 0.9, nesterov: true)
        let images = Tensor.randomNormal([256, 1, 28, 28], using: &generator)   // or FashionMNIST().train.inputs
        let labels = (0..<256).map { $0 % 10 }
        optimizer.zeroGrad()                                                    // one step by hand; Trainer runs whole runs
        Tensor.crossEntropy(logits: model(images), labels: labels).backward()
        optimizer.step()
        try ModelWeights.save(model, to: folder + "/student.safetensors")            // loads in PyTorch too
        try TrainingCheckpoint(model: model, optimizer: optimizer, epoch: 0, step: 1).save(to: folder + "/checkpoint.safetensors")

        XCTAssertEqual(try TrainingCheckpoint.load(from: folder + "/checkpoint.safetensors").step, 1)
    }
}
