import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import Training
import XCTest

final class TrainingCheckpointTests: XCTestCase {
    /// Random images and labels, batches drawn by a data generator, SGD with Nesterov momentum,
    /// a warm-up + cosine schedule, batch norm and dropout: `steps` training steps.
    struct Run {
        let model: any Module
        let optimizer: SGD
        var data: RandomGenerator
        var step = 0
        let images: Tensor
        let labels: [Int]
        let schedule = WarmupSchedule(warmupSteps: 3, then: CosineSchedule(totalSteps: 9))

        init(seed: UInt64) throws {
            var g = RandomGenerator(seed: seed)
            model = try ModelZoo.make("cnn-teacher", options: ModelOptions(inputSize: 12, width: 0.25), using: &g)
            optimizer = SGD(ParameterGroup.decayingWeightsOnly(model, learningRate: 0.05, weightDecay: 5e-4), momentum: 0.9, nesterov: true)
            var fixed = RandomGenerator(seed: 99)
            images = Tensor.randomNormal([64, 1, 12, 12], using: &fixed)
            labels = (0..<64).map { $0 % 10 }
            data = RandomGenerator(seed: 7)
        }

        mutating func train(until last: Int) {
            model.train()
            while step < last {
                let indices = (0..<16).map { _ in Int(data.next() % 64) }
                optimizer.setLearningRateFactor(schedule.factor(atStep: step))
                optimizer.zeroGrad()
                let loss = Tensor.crossEntropy(logits: model(images.indexSelect(alongAxis: 0, indices: indices)),
                                               labels: indices.map { labels[$0] })
                loss.backward()
                optimizer.step()
                step += 1
            }
        }
    }

    func testResumedRunMatchesUninterruptedRunExactly() throws {
        var straight = try Run(seed: 1)
        straight.train(until: 12)

        var first = try Run(seed: 1)
        first.train(until: 5)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("resume-\(UUID()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try TrainingCheckpoint(model: first.model, optimizer: first.optimizer, epoch: 0, step: first.step,
                               generators: ["data": first.data], metadata: ["note": "test"]).save(to: path)

        var resumed = try Run(seed: 2)  // different initial weights: everything must come from the file
        let checkpoint = try TrainingCheckpoint.load(from: path)
        try checkpoint.restore(model: resumed.model, optimizer: resumed.optimizer)
        resumed.data = try XCTUnwrap(checkpoint.generators["data"])
        resumed.step = checkpoint.step
        XCTAssertEqual(checkpoint.metadata["note"], "test")
        XCTAssertEqual(checkpoint.step, 5)
        resumed.train(until: 12)

        for ((name, a), (_, b)) in zip(straight.model.stateDict(), resumed.model.stateDict()) {
            XCTAssertEqual(a.scalars, b.scalars, "\(name) differs after resuming")
        }
    }

    func testLoadingAPlainModelFileAsCheckpointIsAClearError() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("plain-\(UUID()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SafeTensors.write([("w", Tensor([1]))], to: path)
        XCTAssertThrowsError(try TrainingCheckpoint.load(from: path)) { error in
            XCTAssertTrue("\(error)".contains("not a Distill training checkpoint"), "\(error)")
        }
    }

    func testOptimizerStateOfTheWrongShapeIsRejected() throws {
        let p = Tensor.zeros([3])
        p.requiresGrad = true
        let optimizer = SGD(parameters: [p], learningRate: 0.1, momentum: 0.9)
        XCTAssertThrowsError(try optimizer.loadStateTensors(["0.momentum_buffer": Tensor.zeros([4])])) { error in
            XCTAssertTrue("\(error)".contains("has shape [4] but parameter 0 has [3]"), "\(error)")
        }
        XCTAssertThrowsError(try optimizer.loadStateTensors(["5.momentum_buffer": Tensor.zeros([3])]))
    }
}
