import NeuralNet
import Tensors
import XCTest

/// FusedModel (batch norm folded, activations and residual sums fused, NHWC activations)
/// gives each zoo model's evaluation-mode outputs, on oneDNN's path and on its fallback.
final class FusedModelTests: XCTestCase {
    override func setUpWithError() throws {
        guard PackedConvolution.isAvailable else { throw XCTSkip("this build has no oneDNN: FusedModel is not available") }
    }

    /// The largest difference relative to the outputs' largest magnitude (at least 1).
    private func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
        XCTAssertEqual(a.shape, b.shape)
        let scale = max(1, b.scalars.map(abs).max() ?? 1)
        return zip(a.scalars, b.scalars).map { abs($0 - $1) }.max()! / scale
    }

    private func check(_ name: String, _ options: ModelOptions, batches: [Int], file: StaticString = #filePath, line: UInt = #line) throws {
        var g = RandomGenerator(seed: 11)
        let model = try ModelZoo.make(name, options: options, using: &g)
        perturbNorms(model)
        let fused = try FusedModel(model, exampleShape: options.exampleShape)
        for batch in batches {
            let x = Tensor.randomNormal(Shape([batch] + options.exampleShape), using: &g)
            let error = relativeError(fused(x), model.predictions(x))
            XCTAssertLessThan(error, 2e-5, "\(name) at batch \(batch)", file: file, line: line)
        }
    }

    /// Every zoo model at batch 1 (one thread's primitive, or bands of rows on two threads), 3
    /// and 70 (split over the threads, and into chunks of images): ResNet's fused residual sums, Wide ResNet's pre-activation
    /// batch norms, MobileNetV2's depthwise convolutions and ReLU6, max pooling and flatten.
    func testZooModelsMatchTheirEvaluationOutputs() throws {
        let (savedThreads, savedSplit) = (Compute.threadCount, PackedConvolution.minimumSplitMultiplyAdds)
        defer { (Compute.threadCount, PackedConvolution.minimumSplitMultiplyAdds) = (savedThreads, savedSplit) }
        Compute.threadCount = 2
        // Split: every convolution of a single image is cut into bands of rows, one a thread.
        for split in [savedSplit, 0] {
            PackedConvolution.minimumSplitMultiplyAdds = split
            let small = ModelOptions(inputChannels: 3, inputSize: 32, width: 0.5)
            for name in ["resnet8", "wrn-16-2", "mobilenetv2"] { try check(name, small, batches: [1, 3, 70]) }
            for name in ["cnn-student", "cnn-teacher", "lenet5"] { try check(name, ModelOptions(), batches: [1, 70]) }
        }
        try check("mlp", ModelOptions(), batches: [1, 5])
    }

    /// When oneDNN fails at run time, each convolution's fallback (Tensor.conv2d in NCHW)
    /// gives the same outputs, residual sums included.
    func testFallbackGivesTheSameOutputs() throws {
        var g = RandomGenerator(seed: 3)
        let options = ModelOptions(inputChannels: 3, inputSize: 32, width: 0.5)
        let model = try ModelZoo.make("resnet8", options: options, using: &g)
        perturbNorms(model)
        let fused = try FusedModel(model, exampleShape: options.exampleShape)
        let x = Tensor.randomNormal([4, 3, 32, 32], using: &g)
        let packed = fused(x)
        PackedConvolution.failsForTesting = true
        defer { PackedConvolution.failsForTesting = false }
        XCTAssertLessThan(relativeError(fused(x), packed), 2e-5)
        XCTAssertLessThan(relativeError(fused(x), model.predictions(x)), 2e-5)
    }

    /// A snapshot: changing the model afterwards does not change the fused model's outputs;
    /// examples of another shape are refused with a message naming it.
    func testSnapshotAndShapeErrors() throws {
        var g = RandomGenerator(seed: 4)
        let model = try ModelZoo.make("cnn-student", using: &g)
        let fused = try FusedModel(model, exampleShape: [1, 28, 28])
        let x = Tensor.randomNormal([2, 1, 28, 28], using: &g)
        let before = fused(x).scalars
        for parameter in model.parameters { parameter.withUnsafeMutableBufferPointer { for i in $0.indices { $0[i] = 0 } } }
        XCTAssertEqual(fused(x).scalars, before)
        XCTAssertThrowsError(try FusedModel(model, exampleShape: [3, 28, 28])) { error in
            XCTAssertTrue("\(error)".contains("does not fit"), "\(error)")
        }
        XCTAssertThrowsError(try FusedModel(model, exampleShape: [28, 28]))
        // Nothing to fuse (no convolution or linear layer): refused, the caller runs the model itself.
        XCTAssertThrowsError(try FusedModel(Sequential([Flatten(), Activation(.tanh)]), exampleShape: [1, 2, 2])) { error in
            XCTAssertTrue("\(error)".contains("no layer it can fuse"), "\(error)")
        }
    }
}
