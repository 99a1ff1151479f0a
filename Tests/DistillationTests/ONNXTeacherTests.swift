import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import XCTest

/// A teacher trained in PyTorch (scripts/generate_onnx_fixtures.py) teaches a Swift
/// cnn-student through its ONNX export as well as through its native safetensors weights.
final class ONNXTeacherTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("ModelFormatsTests/Fixtures/onnx")

    func testPyTorchTeacherThroughONNXDistilsLikeTheNativeTeacher() throws {
        let data = try FashionMNIST()
        let train = data.train.subset(Array(0..<8_000)), test = data.test.subset(Array(0..<2_000))
        let native = try SavedModel.load(fixtures.appendingPathComponent("teacher.safetensors").path).model
        let onnx = try ONNXNetwork(contentsOf: fixtures.appendingPathComponent("teacher.onnx").path)
        let legacy = try ONNXNetwork(contentsOf: fixtures.appendingPathComponent("teacher_legacy.onnx").path)
        let teacherAccuracy = try Evaluation.accuracy(native, on: test)
        XCTAssertEqual(try Evaluation.accuracy(onnx, on: test), teacherAccuracy, accuracy: 0.001)

        var accuracies: [Double] = []
        for teacher in [native, onnx, legacy] as [any Module] {
            var g = RandomGenerator(seed: 7)
            let student = try ModelZoo.make("cnn-student", using: &g)
            var configuration = TrainerConfiguration()
            configuration.epochs = 1
            configuration.batchSize = 64
            configuration.seed = 7
            configuration.cacheTeacher = false
            let kd = WeightedLoss(KnowledgeDistillation(temperature: 4), weight: 0.9)
            configuration.crossEntropyWeight = 0.1
            let distiller = try Trainer(model: student, teachers: [Teacher(.model(teacher))], losses: [kd], configuration: configuration)
            try distiller.fit(train: train)
            accuracies.append(try Evaluation.accuracy(student, on: test))
        }
        print("teacher \(teacherAccuracy); students from native, ONNX, legacy ONNX teachers: \(accuracies)")
        XCTAssertGreaterThan(accuracies[0], 0.70, "the distilled student learns")
        XCTAssertEqual(accuracies[1], accuracies[0], accuracy: 0.02)
        XCTAssertEqual(accuracies[2], accuracies[0], accuracy: 0.02)
    }
}
