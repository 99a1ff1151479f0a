import Datasets
import Distillation
import DistillInference
import Foundation
import NeuralNet
import Tensors
import TestSupport
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

    /// The README's your-data example, on a folder of small PNGs made here (the README's
    /// "photos"): two classes, a dark and a bright one.
    func testYourDataExample() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("readme-photos-\(UUID())")
        defer { try? FileManager.default.removeItem(at: root) }
        for (label, name) in ["dark", "bright"].enumerated() {
            let folder = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for i in 0..<20 {
                try PNGWriter.write([UInt8](repeating: UInt8(40 + label * 150 + i), count: 3 * 40 * 40), width: 40, height: 40, channels: 3,
                                    to: folder.appendingPathComponent("\(i).png").path)
            }
        }
        var generator = RandomGenerator(seed: 0)

        let photos = try UserData.load(UserData.Request(path: root.path, imageHeight: 32, imageWidth: 32))
        let preprocessing = try photos.preprocessing(fittedOn: photos.train)      // record it with the model
        let (train, test) = (try photos.train.normalized(preprocessing.normalization), try photos.test.normalized(preprocessing.normalization))
        let model = try ModelZoo.make("resnet8", options: ModelOptions(classes: train.classCount, exampleShape: preprocessing.exampleShape),
                                      using: &generator)
        try Trainer(model: model).fit(train: train)
        let scores = try DistillationReport(student: model, teacher: nil, test: test).student   // precision, recall, F1 per class

        XCTAssertTrue(train.isStreamed)
        XCTAssertEqual(test.count, 8, "a fifth of each class")
        XCTAssertEqual(scores.classNames, ["bright", "dark"])
        XCTAssertEqual(scores.f1.count, 2)
    }
}
