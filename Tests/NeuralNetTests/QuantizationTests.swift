import Foundation
import NeuralNet
import Tensors
import Training
import XCTest

/// Post-training static quantization (Quantizer, QuantizedModel): a briefly trained
/// cnn-student quantized to int8 agrees with its float self, answers the same bits on every
/// kernel path and thread count, folds batch norm correctly, and refuses what it cannot take.
final class QuantizationTests: XCTestCase {
    override func tearDown() {
        Compute.forceKernelPath(nil)
        Compute.threadCount = ProcessInfo.processInfo.activeProcessorCount
    }

    /// Ten classes of 28×28 images: a fixed random template per class plus noise.
    private struct Synthetic {
        let templates: [Tensor]
        init(seed: UInt64) {
            var g = RandomGenerator(seed: seed)
            templates = (0..<10).map { _ in Tensor.randomNormal([1, 28, 28], using: &g) }
        }
        func batch(_ count: Int, seed: UInt64) -> (Tensor, [Int]) {
            var g = RandomGenerator(seed: seed)
            let labels = (0..<count).map { _ in Int(g.next() % 10) }
            let noise = Tensor.randomNormal([count, 1, 28, 28], using: &g).scalars
            var values = [Float](repeating: 0, count: count * 784)
            for (i, label) in labels.enumerated() {
                let t = templates[label].scalars
                for p in 0..<784 { values[i * 784 + p] = t[p] + 1.5 * noise[i * 784 + p] }
            }
            return (Tensor(values, shape: [count, 1, 28, 28]), labels)
        }
    }

    /// cnn-student after `steps` Adam steps on the synthetic classes.
    private func trainedStudent(_ data: Synthetic, steps: Int) throws -> any Module {
        var g = RandomGenerator(seed: 3)
        let model = try ModelZoo.make("cnn-student", using: &g)
        let optimizer = Adam([ParameterGroup(parameters: model.parameters, learningRate: 0.003)])
        for step in 0..<steps {
            let (x, y) = data.batch(64, seed: UInt64(1000 + step))
            optimizer.zeroGrad()
            Tensor.crossEntropy(logits: model(x), labels: y).backward()
            optimizer.step()
        }
        model.eval()
        return model
    }

    private func argmax(_ logits: [Float], classes: Int) -> [Int] {
        stride(from: 0, to: logits.count, by: classes).map { start in
            (0..<classes).max { logits[start + $0] < logits[start + $1] }!
        }
    }

    /// The quantized student's logits against the float student's on 512 unseen images: the
    /// same class for at least 98% of them, and no logit further than 5 quantization steps of
    /// the float logits' range (range / 255 a step; measured: 1.5 steps min-max, 3.4
    /// percentile). Both calibration methods. Then the same bits again, on one thread and on
    /// every kernel path.
    func testQuantizedCNNStudentAgreesWithFloatAndIsDeterministic() throws {
        let data = Synthetic(seed: 11)
        let model = try trainedStudent(data, steps: 40)
        let (calibration, _) = data.batch(256, seed: 1)
        let (test, labels) = data.batch(512, seed: 2)
        let float = model.predictions(test).scalars
        let floatAccuracy = zip(argmax(float, classes: 10), labels).filter { $0 == $1 }.count
        XCTAssertGreaterThan(floatAccuracy, 400, "the float student learned the synthetic classes")
        let range = float.max()! - float.min()!
        for method in CalibrationMethod.allCases {
            let quantized = try Quantizer.quantize(model, calibration: calibration, method: method)
            let q = quantized(test).scalars
            XCTAssertEqual(q.count, float.count)
            let agreement = zip(argmax(q, classes: 10), argmax(float, classes: 10)).filter { $0 == $1 }.count
            let worst = zip(q, float).map { abs($0 - $1) }.max()!
            print("QuantizationTests: \(method): agreement \(agreement)/512, max logit error \(worst) (float range \(range)), weights \(quantized.weightBytes) bytes")
            XCTAssertGreaterThanOrEqual(agreement, 502, "\(method): argmax agreement")
            XCTAssertLessThan(worst, 5 * range / 255, "\(method): max logit error")
            // Deterministic: again, on one thread, and on every kernel path: the same bits.
            XCTAssertEqual(quantized(test).scalars.map(\.bitPattern), q.map(\.bitPattern))
            Compute.threadCount = 1
            XCTAssertEqual(quantized(test).scalars.map(\.bitPattern), q.map(\.bitPattern), "\(method): one thread")
            Compute.threadCount = ProcessInfo.processInfo.activeProcessorCount
            for path in KernelPath.allCases where path.isSupported {
                Compute.forceKernelPath(path)
                XCTAssertEqual(quantized(test).scalars.map(\.bitPattern), q.map(\.bitPattern), "\(method): \(path) path")
            }
            Compute.forceKernelPath(nil)
            // A batch runs in passes of 32 images: 512 at once, 45 and one by one give the same bits.
            XCTAssertEqual(quantized(test.sliced(alongAxis: 0, 0..<45)).scalars.map(\.bitPattern), Array(q[0..<450]).map(\.bitPattern))
            XCTAssertEqual(quantized(test.sliced(alongAxis: 0, 100..<101)).scalars.map(\.bitPattern), Array(q[1000..<1010]).map(\.bitPattern))
        }
        // An empty batch gives an empty answer of the right shape.
        XCTAssertEqual(try Quantizer.quantize(model, calibration: calibration)(Tensor.zeros([0, 1, 28, 28])).shape, [0, 10])
        // Weights: int8 plus a scale and an int32 bias per channel, under 30% of the float bytes.
        let quantized = try Quantizer.quantize(model, calibration: calibration)
        XCTAssertLessThan(Double(quantized.weightBytes), 0.3 * Double(4 * model.parameterCount))
    }

    /// Batch norm with non-trivial statistics folded into the convolution: the folded float
    /// convolution matches conv → batch norm, and a quantized small cnn-teacher (three conv-BN
    /// pairs) stays close to its float self.
    func testBatchNormIsFoldedBeforeQuantization() throws {
        var g = RandomGenerator(seed: 5)
        let model = try ModelZoo.make("cnn-teacher", options: ModelOptions(width: 0.25), using: &g)
        perturbNorms(model)
        let x = Tensor.randomNormal([64, 1, 28, 28], using: &g)
        let quantized = try Quantizer.quantize(model, calibration: x)
        let float = model.predictions(x).scalars, q = quantized(x).scalars
        let range = float.max()! - float.min()!
        let worst = zip(q, float).map { abs($0 - $1) }.max()!
        print("QuantizationTests: cnn-teacher ×0.25 with batch norm: max logit error \(worst) (float range \(range))")
        XCTAssertLessThan(worst, 5 * range / 255, "within 5 steps of the logits' range in 255 (measured 1.5)")
        XCTAssertEqual(quantized.layers.filter { if case .conv2d = $0 { return true }; return false }.count, 3, "three convolutions, batch norms folded")
    }

    /// Every zoo model that is a chain of layers (ReLU after linear layers, max pooling,
    /// feature-vector inputs) quantizes, with random weights, within 5 steps of its logits'
    /// range in 255 on its calibration inputs.
    func testEveryChainZooModelQuantizes() throws {
        var g = RandomGenerator(seed: 9)
        let cases: [(String, ModelOptions, [Int])] = [
            ("mlp", ModelOptions(), [1, 28, 28]), ("mlp", ModelOptions(inputFeatures: 12, hiddenSizes: [16, 8]), [12]),
            ("lenet5", ModelOptions(), [1, 28, 28]), ("cnn-student", ModelOptions(inputChannels: 3, inputSize: 12, width: 0.5), [3, 12, 12]),
        ]
        for (name, options, shape) in cases {
            let model = try ModelZoo.make(name, options: options, using: &g)
            let x = Tensor.randomNormal(Shape([48] + shape), using: &g)
            let quantized = try Quantizer.quantize(model, calibration: x)
            let float = model.predictions(x).scalars, q = quantized(x).scalars
            let range = float.max()! - float.min()!, worst = zip(q, float).map { abs($0 - $1) }.max()!
            print("QuantizationTests: \(name) \(shape): max logit error \(worst) (float range \(range))")
            XCTAssertLessThan(worst, 5 * range / 255, "\(name) \(shape)")
        }
    }

    func testObserversGiveTheRangeOrItsPercentiles() {
        var minMax = RangeObserver(method: .minMax)
        minMax.observe([-1, 0.5, 3])
        let p = minMax.parameters()!
        XCTAssertEqual(p.scale, 4 / 255, accuracy: 1e-7)
        XCTAssertEqual(p.zeroPoint, 64) // 1 / (4/255) = 63.75
        XCTAssertEqual(p.dequantize(p.quantize(0)), 0, "0 is exact")
        // One outlier among 100,000 values in [0, 1]: the percentile ignores it.
        var percentile = RangeObserver(method: .percentile, percentile: 99.9)
        var values = (0..<100_000).map { Float($0 % 1000) / 999 }
        values[500] = 1000
        percentile.observe(values)
        XCTAssertEqual(percentile.parameters()!.scale, 1 / 255, accuracy: 1e-4)
        XCTAssertEqual(percentile.parameters()!.zeroPoint, 0)
        XCTAssertNil(RangeObserver(method: .minMax).parameters())
        XCTAssertEqual(QuantizationParameters(low: 0, high: 0), QuantizationParameters(scale: 1, zeroPoint: 0))
    }

    func testUnquantizableModelsAndBadCalibrationAreOneLineErrors() throws {
        var g = RandomGenerator(seed: 6)
        let student = try ModelZoo.make("cnn-student", using: &g)
        func message(_ body: () throws -> Void) -> String {
            do {
                try body()
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        let resnet = try ModelZoo.make("resnet8", using: &g)
        let wrongShape = message { _ = try Quantizer.quantize(student, calibration: Tensor.zeros([4, 3, 28, 28])) }
        XCTAssertTrue(wrongShape.contains("do not fit the model") && wrongShape.contains("takes images of 1 channels") && !wrongShape.contains("\n"), wrongShape)
        XCTAssertTrue(message { _ = try Quantizer.quantize(student, calibration: Tensor.zeros([4, 1, 20, 28])) }.contains("takes 784 features"))
        XCTAssertTrue(message { _ = try Quantizer.quantize(student, calibration: Tensor.zeros([4])) }.contains("[N, ...]"))
        var nan = [Float](repeating: 0, count: 2 * 784)
        nan[7] = .nan
        XCTAssertTrue(message { _ = try Quantizer.quantize(student, calibration: Tensor(nan, shape: [2, 1, 28, 28])) }.contains("not finite"))
        XCTAssertTrue(message { _ = try Quantizer.quantize(resnet, calibration: Tensor.zeros([2, 3, 28, 28])) }.contains("'conv1' takes images of 1 channels"))
        let nothing = Sequential([Activation(.tanh), Flatten()])
        XCTAssertTrue(message { _ = try Quantizer.quantize(nothing, calibration: Tensor.zeros([2, 2, 5, 5])) }.contains("no convolution or linear layer"))
    }
}
