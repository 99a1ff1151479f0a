import Foundation
import NeuralNet
import Tensors
import Training
import XCTest

/// Quantization-aware training: fake quantization rounds to the int8 model's grid with
/// clipped straight-through gradients, and the int8 model converted after training computes
/// what the training forward pass computed.
final class QuantizationAwareTrainingTests: XCTestCase {
    func testFakeQuantizationRoundsToTheGridAndPassesGradientsInsideTheRange() {
        // scale 0.1, zero point 10: the grid is −1.0, −0.9, …, 24.5.
        let p = QuantizationParameters(scale: 0.1, zeroPoint: 10)
        let x = Tensor([-3, -1.0, -0.04, 0.26, 24.5, 30], shape: [6], requiresGrad: true)
        let y = x.fakeQuantized(scale: p.scale, zeroPoint: Float(p.zeroPoint))
        let expected: [Float] = [-1.0, -1.0, 0, 0.3, 24.5, 24.5]
        for (a, b) in zip(y.scalars, expected) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        (y * Tensor([1, 2, 3, 4, 5, 6], shape: [6])).sum().backward()
        XCTAssertEqual(x.grad!.scalars, [0, 2, 3, 4, 5, 0])

        // Weights: per row, multiples of max|w|/127 in −127…127; gradients pass unchanged; a
        // zero row stays zero.
        let w = Tensor([1.27, -0.5, 0.013, 0, 0, 0], shape: [2, 3], requiresGrad: true)
        let q = w.fakeQuantizedPerChannel()
        XCTAssertEqual(q.scalars[0], 1.27, accuracy: 1e-6)
        XCTAssertEqual(q.scalars[1], -0.5, accuracy: 1e-6)
        XCTAssertEqual(q.scalars[2], 0.01, accuracy: 1e-6)
        XCTAssertEqual(Array(q.scalars[3...]), [0, 0, 0])
        q.sum().backward()
        XCTAssertEqual(w.grad!.scalars, [1, 1, 1, 1, 1, 1])
    }

    /// A chain with batch norm: a few training steps with fake quantization, then the int8
    /// model converted from it gives the fake-quantized model's logits (up to the int32
    /// rounding of biases and rare one-step flips where float sums differ in order), and
    /// detaching gives the float model back.
    func testTheConvertedModelComputesWhatTrainingSaw() throws {
        var g = RandomGenerator(seed: 5)
        let norm = BatchNorm(4)
        let model = Sequential([
            Conv2d(1, 4, kernelSize: 3, padding: 1, using: &g), norm, Activation(.relu), MaxPool2d(kernelSize: 2),
            Flatten(), Linear(4 * 7 * 7, 16, using: &g), Activation(.relu), Linear(16, 10, using: &g),
        ])
        // Running statistics of a trained model (not 0 and 1), which training must keep.
        norm.runningMean.storage.pointer.update(from: [0.3, -0.2, 0.1, 0.5], count: 4)
        norm.runningVariance.storage.pointer.update(from: [2.0, 0.5, 1.5, 0.8], count: 4)
        let x = Tensor.randomNormal([32, 1, 14, 14], using: &g)
        let labels = (0..<32).map { $0 % 10 }
        model.eval()
        let floatLogits = model(x).scalars

        let qat = try QuantizationAwareTraining(model)
        model.train()
        let optimizer = Adam([ParameterGroup(parameters: model.parameters, learningRate: 0.003)])
        for step in 0..<6 {
            if step == 3 { qat.freezeRanges() }
            optimizer.zeroGrad()
            Tensor.crossEntropy(logits: model(x), labels: labels).backward()
            XCTAssertTrue(model.parameters.allSatisfy { $0.grad != nil }, "every parameter gets a gradient through the fake quantization")
            optimizer.step()
        }
        XCTAssertEqual(norm.runningMean.scalars, [0.3, -0.2, 0.1, 0.5], "batch norm's statistics stay frozen")
        model.eval()
        let fake = model(x).scalars
        let int8 = try qat.convert(exampleShape: [1, 14, 14])
        let quantized = int8(x).scalars
        let range = (fake.max()! - fake.min()!)
        let worst = zip(fake, quantized).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(worst, range / 255, "int8 logits within one step of the logits' range of the fake-quantized ones")

        qat.detach()
        let trainedFloat = model(x).scalars
        XCTAssertNotEqual(trainedFloat, fake, "detached, the model computes in float again")
        XCTAssertNotEqual(trainedFloat, floatLogits, "training moved the weights")
        XCTAssertFalse(norm.state.freezesStatistics)
    }

    /// The zoo's residual networks, a depthwise network and one with layers that stay float:
    /// after a few fake-quantized training steps the converted int8 model gives the logits
    /// the fake-quantized model gives, up to values that round the other way in float and in
    /// integers (measured: largest differences 0.37, 0.008 and 2.1 steps of the logits'
    /// range, means 0.08, 0.0003 and 0.5), so within 4 steps, with the same classes.
    func testResidualDepthwiseAndFloatLayersTrainAndConvert() throws {
        for (name, width) in [("resnet8", 0.5), ("mobilenetv2", 0.25), ("wrn-16-2", 0.25)] {
            var g = RandomGenerator(seed: 9)
            let model = try ModelZoo.make(name, options: try ModelOptions(classes: 10, exampleShape: [1, 16, 16], width: Float(width)), using: &g)
            let x = Tensor.randomNormal([16, 1, 16, 16], using: &g)
            let labels = (0..<16).map { $0 % 10 }
            let qat = try QuantizationAwareTraining(model)
            model.train()
            let optimizer = Adam([ParameterGroup(parameters: model.parameters, learningRate: 0.002)])
            for step in 0..<4 {
                if step == 2 { qat.freezeRanges() }
                optimizer.zeroGrad()
                Tensor.crossEntropy(logits: model(x), labels: labels).backward()
                optimizer.step()
            }
            model.eval()
            let fake = model(x).scalars
            let quantized = try qat.convert(exampleShape: [1, 16, 16])(x).scalars
            let step = (fake.max()! - fake.min()!) / 255
            let differences = zip(fake, quantized).map { abs($0 - $1) }
            let (worst, mean) = (differences.max()!, differences.reduce(0, +) / Float(differences.count))
            print("QuantizationAwareTrainingTests: \(name): int8 against fake-quantized logits, largest difference \(worst / step) steps, mean \(mean / step)")
            XCTAssertLessThan(worst, 4 * step, name)
            let classes = { (v: [Float]) in stride(from: 0, to: v.count, by: 10).map { r in (0..<10).max { v[r + $0] < v[r + $1] }! } }
            XCTAssertEqual(classes(fake), classes(quantized), name)
        }
    }

    func testModelsWithNothingToQuantizeAreOneLineErrors() throws {
        var g = RandomGenerator(seed: 1)
        XCTAssertThrowsError(try QuantizationAwareTraining(Sequential([Flatten(), Activation(.tanh)]))) { error in
            XCTAssertTrue("\(error)".contains("no convolution or linear layer"), "\(error)")
        }
        let model = Sequential([Flatten(), Linear(4, 2, using: &g)])
        let qat = try QuantizationAwareTraining(model)
        XCTAssertThrowsError(try qat.convert(exampleShape: [4])) { error in
            XCTAssertTrue("\(error)".contains("no finite value"), "\(error)")
        }
    }
}
