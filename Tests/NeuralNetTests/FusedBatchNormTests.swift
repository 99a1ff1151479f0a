import NeuralNet
import Tensors
import XCTest

/// Batch norm with its ReLU / ReLU6 in one op (`BatchNorm.callAsFunction(_:then:)`, which the
/// zoo's blocks and `Sequential` use) gives the outputs, gradients and running statistics of
/// the two ops one after the other.
final class FusedBatchNormTests: XCTestCase {
    override func tearDown() { BatchNorm.fusesActivations = true }

    /// (output, dx, dγ, dβ, running mean, running variance) of norm → activation on x, fused or not.
    private func run(fused: Bool, activation: FusedActivation, training: Bool, seed: UInt64)
        -> (y: [Float], dx: [Float], dGamma: [Float], dBeta: [Float], mean: [Float], variance: [Float]) {
        BatchNorm.fusesActivations = fused
        var g = RandomGenerator(seed: seed)
        let norm = BatchNorm(6)
        norm.weight.withUnsafeMutableBufferPointer { for i in $0.indices { $0[i] = 0.5 + Float(i) * 0.3 } }
        norm.bias.withUnsafeMutableBufferPointer { for i in $0.indices { $0[i] = Float(i) * 0.4 - 1 } }
        norm.runningVariance.withUnsafeMutableBufferPointer { for i in $0.indices { $0[i] = 0.5 + Float(i) * 0.2 } }
        if !training { norm.eval() }
        // Scaled so that ReLU6 clamps at 6 as well as at 0.
        let x = (Tensor.randomNormal([4, 6, 5, 5], using: &g) * 4).detached()
        x.requiresGrad = true
        let y = norm(x, then: activation)
        let weights = Tensor.randomNormal(y.shape, using: &g)
        (y * weights).sum().backward()
        return (y.scalars, x.grad!.scalars, norm.weight.grad!.scalars, norm.bias.grad!.scalars,
                norm.runningMean.scalars, norm.runningVariance.scalars)
    }

    func testFusedActivationMatchesTheTwoOps() {
        for activation in [FusedActivation.relu, .relu6] {
            for training in [true, false] {
                let a = run(fused: true, activation: activation, training: training, seed: 3)
                let b = run(fused: false, activation: activation, training: training, seed: 3)
                let what = "\(activation), \(training ? "training" : "evaluation")"
                // Forward: the same arithmetic, then the clamp: the same bits.
                XCTAssertEqual(a.y, b.y, what)
                XCTAssertEqual(a.mean, b.mean, what)
                XCTAssertEqual(a.variance, b.variance, what)
                // Backward: ReLU masks where y > 0 either way (the same bits); ReLU6's gradient
                // passes where 0 < y < 6 fused and where 0 ≤ x ≤ 6 unfused (clamp's rule), which
                // differ only for pre-activations exactly at 0 or 6.
                XCTAssertEqual(a.dx, b.dx, what)
                XCTAssertEqual(a.dGamma, b.dGamma, what)
                XCTAssertEqual(a.dBeta, b.dBeta, what)
                XCTAssertTrue(a.y.contains(0) && (activation == .relu || a.y.contains(6)), "the clamps are exercised (\(what))")
            }
        }
    }

    /// A tapped batch norm (feature distillation, quantization-aware training) is not fused:
    /// its tap sees the values before the activation.
    func testATappedBatchNormIsNotFused() throws {
        var g = RandomGenerator(seed: 5)
        let model = Sequential([Conv2d(2, 4, kernelSize: 3, padding: 1, using: &g), BatchNorm(4), Activation(.relu)])
        let x = Tensor.randomNormal([3, 2, 6, 6], using: &g)
        let (output, features) = try model.forward(x, capturing: ["1"])
        XCTAssertTrue(features["1"]!.scalars.contains { $0 < 0 }, "the batch norm's output before the ReLU")
        XCTAssertFalse(output.scalars.contains { $0 < 0 })
        XCTAssertEqual(output.scalars, features["1"]!.relu().scalars)
    }

    /// A residual block's add and ReLU in one pass: the bits of `(a + b).relu()`, forward and
    /// backward, for both inputs.
    func testAddThenReLUMatchesTheTwoOps() {
        var g = RandomGenerator(seed: 6)
        let a = Tensor.randomNormal([3, 4, 5, 5], using: &g), b = Tensor.randomNormal([3, 4, 5, 5], using: &g)
        let weights = Tensor.randomNormal([3, 4, 5, 5], using: &g)
        func gradients(_ body: (Tensor, Tensor) -> Tensor) -> ([Float], [Float], [Float]) {
            let x = a.detached(), y = b.detached()
            x.requiresGrad = true
            y.requiresGrad = true
            let out = body(x, y)
            (out * weights).sum().backward()
            return (out.scalars, x.grad!.scalars, y.grad!.scalars)
        }
        let fused = gradients { Tensor.add($0, $1, then: .relu) }, unfused = gradients { ($0 + $1).relu() }
        XCTAssertEqual(fused.0, unfused.0)
        XCTAssertEqual(fused.1, unfused.1)
        XCTAssertEqual(fused.2, unfused.2)
        XCTAssertTrue(fused.0.contains(0) && fused.0.contains { $0 > 0 })
    }
}
