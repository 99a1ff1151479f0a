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

    func training(steps: Int = 12) -> TrainerConfiguration {
        var c = TrainerConfiguration()
        c.steps = steps
        c.batchSize = 8
        c.learningRate = 0.03
        return c
    }

    /// Trains `model` with `strategy` through the one Trainer; returns the last epoch's loss.
    @discardableResult
    func train(_ model: MultiHeadModel, _ strategy: TransferConfiguration, new: Dataset, old: Dataset? = nil, steps: Int = 12) throws -> Float {
        let trainer = try KnowledgeTransfer.trainer(model, strategy: strategy, training: training(steps: steps),
                                                    oldModel: strategy.strategy == .lwf ? try oldModel() : nil, oldTask: old)
        return try trainer.fit(train: new).history.last!.loss
    }

    func outputs(_ model: MultiHeadModel, _ x: Tensor) throws -> [String: Tensor] {
        ["old": try model.predictions(x, output: "old_head"), "new": model.predictions(x)]
    }

    func testMultiHeadModelKeepsTheOldHeadAndAddsANewOne() throws {
        let model = try reheaded()
        let x = tasks().new.inputs.sliced(alongAxis: 0, 0..<2)
        let heads = try outputs(model, x)
        XCTAssertEqual(heads["old"]?.shape, [2, 4])
        XCTAssertEqual(heads["new"]?.shape, [2, 3])
        let old = try oldModel()
        old.eval()
        XCTAssertEqual(try outputs(model, x)["old"]!.scalars, withoutGradients { old(x) }.scalars,
                       "the old head on the shared backbone is the old model")
        XCTAssertTrue(model.stateDict().contains { $0.name == "backbone.features.0.weight" })
        XCTAssertTrue(model.stateDict().contains { $0.name == "new_head.weight" })
    }

    func testFeatureExtractionLeavesTheOldTaskExactlyUnchanged() throws {
        let (old, new) = tasks()
        let model = try reheaded()
        let before = try Evaluation.accuracy(model, on: old, output: "old_head")
        let backboneBefore = model.backbone.stateDict().map(\.tensor.scalars)
        let headBefore = model.head("new").weight.scalars
        try train(model, TransferConfiguration(strategy: .freeze), new: new)
        XCTAssertTrue(model.backbone.stateDict().map(\.tensor.scalars) == backboneBefore, "weights and batch-norm statistics unchanged")
        XCTAssertEqual(try Evaluation.accuracy(model, on: old, output: "old_head"), before)
        XCTAssertNotEqual(model.head("new").weight.scalars, headBefore, "the new head trained")
    }

    func testEveryStrategyTrainsAndFineTuningMovesTheBackbone() throws {
        let (old, new) = tasks()
        for strategy in TransferStrategy.allCases {
            let model = try reheaded()
            let before = model.backbone.stateDict().map(\.tensor.scalars)
            let loss = try train(model, TransferConfiguration(strategy: strategy), new: new, old: old)
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
        var c = TransferConfiguration(strategy: .gradual)
        c.groups = 3
        try train(model, c, new: new, steps: 3)  // stage 0 only: (step · 4 / 3) < 1 for step 0; the deepest layers unfreeze last
        XCTAssertEqual(firstConv.scalars, before, "the first layer is still frozen early in gradual unfreezing")
    }

    /// A sentence encoder (a text-bag giving unit-length embeddings of 6) re-headed: the old head
    /// is the identity and stays frozen, so its output is the encoder's embedding; LwF's term is
    /// the embedding loss against the original encoder, and keeps the embedding closer to it
    /// than plain fine-tuning does.
    func testEncoderTransferKeepsTheEmbeddingAsTheOldTask() throws {
        var g = RandomGenerator(seed: 5)
        let sequences: [[Int32]] = (0..<48).map { (i: Int) -> [Int32] in
            let words: [Int32] = (0..<(2 + i % 5)).map { (k: Int) -> Int32 in Int32(2 + (i * 3 + k * 7) % 18) }
            return [1] + words
        }
        let texts = Dataset(tokenSequences: sequences, labels: (0..<48).map { $0 % 3 }, classNames: ["x", "y", "z"])
        let options = ModelOptions.text(vocabularySize: 20, paddingId: 0, outputs: 6, hidden: 8)
        var h = RandomGenerator(seed: 4)
        let original = try ModelZoo.make("text-bag", options: options, using: &h)
        let originalState = Dictionary(original.stateDict().map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        func encoder() throws -> any Module {
            var k = RandomGenerator(seed: 9)
            let model = try ModelZoo.make("text-bag", options: options, using: &k)
            try model.loadStateDict(originalState)
            return model
        }
        let reference = try original.embeddings(ofTexts: texts)
        var drift: [TransferStrategy: Double] = [:]
        for strategy in [TransferStrategy.finetune, .lwf] {
            let model = try MultiHeadModel(encoder: try encoder(), dimension: 6, newClasses: 3, using: &g)
            XCTAssertEqual(try model.embeddings(ofTexts: texts, output: "old_head").scalars, reference.scalars, "the identity old head gives the embedding")
            var c = TransferConfiguration(strategy: strategy)
            c.oldOutput = .embedding
            c.backboneLearningRateScale = 1
            var configuration = training(steps: 30)
            configuration.learningRate = 0.5
            let trainer = try KnowledgeTransfer.trainer(model, strategy: c, training: configuration, oldModel: strategy == .lwf ? try encoder() : nil)
            XCTAssertEqual(trainer.losses.map(\.loss.name), strategy == .lwf ? ["lwf"] : [])
            XCTAssertEqual(trainer.losses.map { $0.loss is EmbeddingDistillation }, strategy == .lwf ? [true] : [])
            let history = try trainer.fit(train: texts).history
            if strategy == .lwf { XCTAssertNotNil(history.last?.terms["lwf"]) }
            XCTAssertEqual(model.head("old").weight.scalars, (0..<36).map { $0 % 7 == 0 ? Float(1) : Float(0) }, "the old head stays the identity")
            let agreement = try EmbeddingAgreement(student: try model.backbone.embeddings(ofTexts: texts), teacher: reference, pairs: 500)
            drift[strategy] = agreement.meanCosine
        }
        XCTAssertGreaterThan(drift[.lwf]!, drift[.finetune]!, "LwF keeps the embedding closer to the original's")
        var c = TransferConfiguration(strategy: .joint)
        c.oldOutput = .embedding
        XCTAssertThrowsError(try KnowledgeTransfer.trainer(try MultiHeadModel(encoder: try encoder(), dimension: 6, newClasses: 3, using: &g),
                                                           strategy: c, training: training(), oldTask: texts))
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
        XCTAssertThrowsError(try KnowledgeTransfer.trainer(reheaded(), strategy: TransferConfiguration(strategy: .joint), training: training())) {
            XCTAssertTrue("\($0)".contains("joint training needs the old task's data"), "\($0)")
        }
        XCTAssertThrowsError(try oldModel().freeze(["backbone.layer9"]))
        var negative = TransferConfiguration(strategy: .finetune)
        negative.backboneLearningRateScale = -1
        XCTAssertThrowsError(try KnowledgeTransfer.trainer(reheaded(), strategy: negative, training: training())) {
            XCTAssertTrue("\($0)".contains("backbone learning-rate scale"), "\($0)")
        }
    }

    /// LwF is a KnowledgeDistillation term on the old head against the old model's outputs,
    /// and keeps the old task closer to the old model than fine-tuning without it.
    func testLearningWithoutForgettingDistilsTheOldHead() throws {
        let (old, new) = tasks()
        let lwf = try reheaded()
        let trainer = try KnowledgeTransfer.trainer(lwf, strategy: TransferConfiguration(strategy: .lwf), training: training(steps: 24), oldModel: try oldModel())
        XCTAssertEqual(trainer.losses.map(\.loss.name), ["lwf"])
        XCTAssertEqual((trainer.losses[0].loss as? KnowledgeDistillation)?.studentOutput, "old_head")
        let history = try trainer.fit(train: new).history
        XCTAssertNotNil(history.last?.terms["lwf"])
        var scale = TransferConfiguration(strategy: .finetune)
        scale.backboneLearningRateScale = 1
        let tuned = try reheaded()
        try train(tuned, scale, new: new, steps: 24)
        let reference = try oldModel().predictions(old.inputs)
        func drift(_ model: MultiHeadModel) throws -> Float {
            ((try model.predictions(old.inputs, output: "old_head")) - reference).abs().mean().item
        }
        XCTAssertLessThan(try drift(lwf), try drift(tuned), "LwF keeps the old head's answers closer to the old model's")
    }
}
