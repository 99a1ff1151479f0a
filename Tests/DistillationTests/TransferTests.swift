import Datasets
import Distillation
import Foundation
import NeuralNet
import Tensors
import XCTest

final class TransferTests: XCTestCase {
    /// Old task: 4 classes; new task: 3 classes; random 8×8 images.
    func tasks() -> (old: Dataset, new: Dataset) {
        var g = RandomGenerator(seed: 3)
        return (Dataset(inputs: Tensor.randomNormal([64, 1, 8, 8], using: &g), labels: (0..<64).map { $0 % 4 }, classNames: ["a", "b", "c", "d"]),
                Dataset(inputs: Tensor.randomNormal([48, 1, 8, 8], using: &g), labels: (0..<48).map { $0 % 3 }, classNames: ["x", "y", "z"]))
    }

    func oldModel() throws -> any Module {
        var g = RandomGenerator(seed: 1)
        return try ModelZoo.make("cnn-teacher", options: ModelOptions(classes: 4, inputSize: 8, width: 0.25), using: &g)
    }

    func reheaded() throws -> MultiHeadModel {
        var g = RandomGenerator(seed: 2)
        return try MultiHeadModel(from: oldModel(), headPath: "classifier.4", newClasses: 3, using: &g)
    }

    func configuration(_ strategy: TransferStrategy) -> TransferConfiguration {
        var c = TransferConfiguration(strategy: strategy)
        c.steps = 12
        c.batchSize = 8
        return c
    }

    func testMultiHeadModelKeepsTheOldHeadAndAddsANewOne() throws {
        let model = try reheaded()
        model.eval()  // a training-mode pass would move batch-norm statistics
        let x = tasks().new.inputs.sliced(alongAxis: 0, 0..<2)
        let outputs = withoutGradients { model.outputs(x) }
        XCTAssertEqual(outputs["old"]?.shape, [2, 4])
        XCTAssertEqual(outputs["new"]?.shape, [2, 3])
        let old = try oldModel()
        old.eval()
        XCTAssertEqual(withoutGradients { model.outputs(x)["old"]! }.scalars, withoutGradients { old(x) }.scalars,
                       "the old head on the shared backbone is the old model")
        XCTAssertTrue(model.stateDict().contains { $0.name == "backbone.features.0.weight" })
        XCTAssertTrue(model.stateDict().contains { $0.name == "new_head.weight" })
    }

    func testFeatureExtractionLeavesTheOldTaskExactlyUnchanged() throws {
        let (old, new) = tasks()
        let model = try reheaded()
        let before = KnowledgeTransfer.accuracy(model, head: "old", data: old)
        let backboneBefore = model.backbone.stateDict().map(\.tensor.scalars)
        let headBefore = model.head("new").weight.scalars
        try KnowledgeTransfer.train(model, newTask: new, configuration: configuration(.freeze))
        XCTAssertTrue(model.backbone.stateDict().map(\.tensor.scalars) == backboneBefore, "weights and batch-norm statistics unchanged")
        XCTAssertEqual(KnowledgeTransfer.accuracy(model, head: "old", data: old), before)
        XCTAssertNotEqual(model.head("new").weight.scalars, headBefore, "the new head trained")
    }

    func testEveryStrategyTrainsAndFineTuningMovesTheBackbone() throws {
        let (old, new) = tasks()
        for strategy in TransferStrategy.allCases {
            let model = try reheaded()
            let before = model.backbone.stateDict().map(\.tensor.scalars)
            let loss = try KnowledgeTransfer.train(model, newTask: new, oldTask: old, configuration: configuration(strategy))
            XCTAssertTrue(loss.isFinite, "\(strategy)")
            let after = model.backbone.stateDict().map(\.tensor.scalars)
            XCTAssertEqual(after == before, strategy == .freeze, "\(strategy): backbone \(strategy == .freeze ? "frozen" : "trained")")
        }
    }

    func testGradualUnfreezingStartsWithTheHeadOnly() throws {
        let (_, new) = tasks()
        let model = try reheaded()
        let firstConv = model.backbone.namedParameters().first { $0.name == "features.0.weight" }!.tensor
        let before = firstConv.scalars
        var c = configuration(.gradual)
        c.steps = 3  // stage 0 only: (step · 4 / 3) < 1 for step 0; the deepest layers unfreeze last
        c.groups = 3
        try KnowledgeTransfer.train(model, newTask: new, configuration: c)
        XCTAssertEqual(firstConv.scalars, before, "the first layer is still frozen early in gradual unfreezing")
    }

    func testClearErrors() throws {
        var g = RandomGenerator(seed: 0)
        XCTAssertThrowsError(try MultiHeadModel(from: oldModel(), headPath: "classifier.9", newClasses: 3, using: &g)) {
            XCTAssertTrue("\($0)".hasPrefix("no module or parameter named 'classifier.9'"), "\($0)")
        }
        XCTAssertThrowsError(try MultiHeadModel(from: oldModel(), headPath: "features.0", newClasses: 3, using: &g)) {
            XCTAssertTrue("\($0)".contains("is a Conv2d, not a Linear layer"), "\($0)")
        }
        XCTAssertThrowsError(try MultiHeadModel(from: oldModel(), headPath: "classifier.4", newClasses: 0, using: &g))
        XCTAssertThrowsError(try KnowledgeTransfer.train(reheaded(), newTask: tasks().new, configuration: configuration(.joint))) {
            XCTAssertTrue("\($0)".contains("joint training needs the old task's data"), "\($0)")
        }
        XCTAssertThrowsError(try oldModel().freeze(["backbone.layer9"]))
    }
}
