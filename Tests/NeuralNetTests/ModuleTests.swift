import NeuralNet
import Tensors
import XCTest

final class ModuleTests: XCTestCase {
    func testEveryZooModelBuildsAndClassifies() throws {
        var g = RandomGenerator(seed: 0)
        let x = Tensor.randomNormal([2, 1, 28, 28], using: &g)
        for name in ModelZoo.names {
            let model = try ModelZoo.make(name, using: &g)
            model.eval()
            let y = withoutGradients { model(x) }
            XCTAssertEqual(y.shape, [2, 10], name)
            XCTAssertTrue(y.scalars.allSatisfy(\.isFinite), name)
            let summary = ModelSummary(model, inputShape: [1, 28, 28])
            XCTAssertEqual(summary.totalParameters, model.parameterCount, name)
            XCTAssertGreaterThan(summary.totalMultiplyAdds, 0, name)
        }
        XCTAssertEqual(try ModelZoo.make("cnn-teacher", using: &g).parameterCount, 1_701_578)
        XCTAssertEqual(try ModelZoo.make("cnn-student", using: &g).parameterCount, 52_138)
        XCTAssertEqual(try ModelZoo.make("mlp", using: &g).parameterCount, 784 * 128 + 128 + 128 * 10 + 10)
        let options = ModelOptions(classes: 5, inputChannels: 3, inputSize: 32, width: 2)
        let wide = try ModelZoo.make("resnet8", options: options, using: &g)
        let wideOutput = withoutGradients { wide(Tensor.zeros([1, 3, 32, 32])) }
        XCTAssertEqual(wideOutput.shape, [1, 5])
    }

    func testUnknownModelAndBadOptionsAreErrors() {
        var g = RandomGenerator(seed: 0)
        XCTAssertThrowsError(try ModelZoo.make("resnet9000", using: &g)) { error in
            XCTAssertTrue("\(error)".hasPrefix("unknown model 'resnet9000' (available: mlp, lenet5"), "\(error)")
        }
        XCTAssertThrowsError(try ModelZoo.make("cnn-student", options: ModelOptions(inputSize: 30), using: &g))
        XCTAssertThrowsError(try ModelZoo.make("mlp", options: ModelOptions(hiddenSizes: [0]), using: &g))
    }

    func testSummaryCountsParametersAndMultiplyAdds() throws {
        var g = RandomGenerator(seed: 0)
        let summary = ModelSummary(try ModelZoo.make("cnn-student", using: &g), inputShape: [1, 28, 28])
        let conv1 = try XCTUnwrap(summary.rows.first { $0.name == "features.0" })
        XCTAssertEqual(conv1.outputShape, [1, 8, 28, 28])
        XCTAssertEqual(conv1.parameters, 80)
        XCTAssertEqual(conv1.multiplyAdds, 8 * 28 * 28 * 9)
        let fc = try XCTUnwrap(summary.rows.first { $0.name == "classifier.1" })
        XCTAssertEqual(fc.multiplyAdds, 784 * 64)
        XCTAssertEqual(summary.bytes, 52_138 * 4)
        XCTAssertTrue(summary.description.contains("total parameters: 52,138"), summary.description)
    }

    func testPyTorchStyleNames() throws {
        var g = RandomGenerator(seed: 0)
        let resnet = try ModelZoo.make("resnet20", using: &g)
        let names = Set(resnet.stateDict().map(\.name))
        for expected in ["conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                         "layer2.0.downsample.1.num_batches_tracked", "layer3.2.bn2.bias", "fc.weight"] {
            XCTAssertTrue(names.contains(expected), expected)
        }
    }

    func testFreezingByPrefixStopsGradientsAndStatistics() throws {
        var g = RandomGenerator(seed: 0)
        let model = try ModelZoo.make("cnn-teacher", options: ModelOptions(inputSize: 8, width: 0.25), using: &g)
        try model.freeze(["features"])
        XCTAssertTrue(model.namedParameters().filter { $0.name.hasPrefix("features.") }.allSatisfy { !$0.tensor.requiresGrad })
        XCTAssertTrue(model.namedParameters().filter { $0.name.hasPrefix("classifier.") }.allSatisfy { $0.tensor.requiresGrad })
        let runningMean = try XCTUnwrap(model.stateDict().first { $0.name == "features.1.running_mean" }).tensor
        let before = runningMean.scalars
        model.train()
        let loss = model(Tensor.randomNormal([4, 1, 8, 8], using: &g)).sum()
        loss.backward()
        XCTAssertEqual(runningMean.scalars, before, "frozen batch norm keeps its running statistics")
        XCTAssertNil(model.namedParameters().first { $0.name == "features.0.weight" }!.tensor.grad)
        XCTAssertNotNil(model.namedParameters().first { $0.name == "classifier.4.weight" }!.tensor.grad)
        try model.unfreeze(["features.0"])
        XCTAssertTrue(model.namedParameters().first { $0.name == "features.0.weight" }!.tensor.requiresGrad)
        XCTAssertThrowsError(try model.freeze(["backbone"])) { error in
            XCTAssertTrue("\(error)".hasPrefix("no module or parameter named 'backbone'"), "\(error)")
        }
    }

    func testTapsCaptureNamedOutputsWithoutChangingTheModel() throws {
        var g = RandomGenerator(seed: 0)
        let model = try ModelZoo.make("cnn-student", using: &g)
        let x = Tensor.randomNormal([3, 1, 28, 28], using: &g)
        let (output, features) = try model.forward(x, capturing: ["features", "features.2", "classifier.2"])
        XCTAssertEqual(features["features"]?.shape, [3, 16, 7, 7])
        XCTAssertEqual(features["features.2"]?.shape, [3, 8, 14, 14])
        XCTAssertEqual(features["classifier.2"]?.shape, [3, 64])
        XCTAssertEqual(output.scalars, withoutGradients { model(x) }.scalars)
        XCTAssertTrue(features["features.2"]!.isRecorded, "tapped features carry gradients for feature losses")
        XCTAssertThrowsError(try model.forward(x, capturing: ["nope"]))
    }

    func testTrainAndEvalModesReachEveryLayer() throws {
        var g = RandomGenerator(seed: 0)
        let model = try ModelZoo.make("cnn-teacher", options: ModelOptions(inputSize: 8, width: 0.25), using: &g)
        let x = Tensor.randomNormal([4, 1, 8, 8], using: &g)
        model.eval()
        XCTAssertTrue(model.namedModules().allSatisfy { !$0.module.isTraining })
        let a = withoutGradients { model(x) }.scalars, b = withoutGradients { model(x) }.scalars
        XCTAssertEqual(a, b, "evaluation is deterministic (no dropout, running statistics)")
        model.train()
        XCTAssertTrue(model.namedModules().allSatisfy { $0.module.isTraining })
    }

    func testSequentialHeadReplacement() throws {
        var g = RandomGenerator(seed: 0)
        let model = try ModelZoo.make("cnn-student", using: &g) as! Sequential
        let classifier = try XCTUnwrap(model.module(named: "classifier") as? Sequential)
        try classifier.replace("3", with: Linear(64, 5, using: &g))
        XCTAssertEqual(withoutGradients { model(Tensor.zeros([1, 1, 28, 28])) }.shape, [1, 5])
        XCTAssertThrowsError(try classifier.replace("9", with: Identity()))
    }
}
