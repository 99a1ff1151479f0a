import Datasets
import Distillation
import Foundation
import NeuralNet
import Tensors
import XCTest

/// The README's distillation example, kept compiling and running (on random images here,
/// where the README loads Fashion-MNIST). Change both together.
final class ReadmeDistillationExampleTests: XCTestCase {
    func testDistillationExample() throws {
        var generator = RandomGenerator(seed: 0)
        let images = Tensor.randomNormal([64, 1, 28, 28], using: &generator)
        let data = (train: Dataset(inputs: images, labels: (0..<64).map { $0 % 10 }, classNames: FashionMNIST.classNames),
                    validation: Dataset(inputs: images, labels: (0..<64).map { $0 % 10 }, classNames: FashionMNIST.classNames),
                    test: Dataset(inputs: images, labels: (0..<64).map { $0 % 10 }, classNames: FashionMNIST.classNames))
        let teacher = try ModelZoo.make("cnn-teacher", using: &generator)   // or SavedModel.load("runs/teacher").model

        let student = try ModelZoo.make("cnn-student", using: &generator)
        var configuration = TrainerConfiguration()                        // defaults: TrainingDefaults
        configuration.epochs = 1
        configuration.crossEntropyWeight = 0.1                            // 1 − α
        let trainer = try Trainer(
            model: student,
            teachers: [Teacher(.model(teacher))],
            losses: [WeightedLoss(KnowledgeDistillation(temperature: 4), weight: 0.9),
                     WeightedLoss(AttentionTransfer(pairs: [(student: "features.5", teacher: "features.10")]), weight: 1000)],
            configuration: configuration)
        let history = try trainer.fit(train: data.train, validation: data.validation) { event in
            if case let .epochFinished(record, _) = event { print("epoch \(record.epoch + 1): \(record.validationAccuracy ?? 0)") }
        }.history
        let report = DistillationReport(student: student, teacher: teacher, images: data.test.inputs,
                                        labels: data.test.labels, classNames: data.test.classNames)
        XCTAssertEqual(history.count, 1)
        XCTAssertGreaterThan(report.parameterRatio!, 30)
    }
}
