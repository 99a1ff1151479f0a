import Distillation
import NeuralNet
import Tensors
import XCTest

final class EvaluationTests: XCTestCase {
    func testMetricsOnAHandWorkedExample() {
        // Three classes, four examples. Softmax confidences: rows 0-2 put 0.8 on one class.
        let l8 = Float(log(8.0))  // with logits [l8, 0, 0]: p = 8/10 = 0.8
        let logits = Tensor([l8, 0, 0,   0, l8, 0,   0, 0, l8,   l8, 0, 0], shape: [4, 3])
        let labels = [0, 1, 0, 2]
        let reference = Tensor([1, 0, 0,  0, 1, 0,  1, 0, 0,  0, 0, 1], shape: [4, 3])
        let m = ClassificationMetrics(logits: logits, labels: labels, classNames: ["a", "b", "c"], reference: reference)
        XCTAssertEqual(m.top1, 0.5)
        XCTAssertEqual(m.top5, 1, "with three classes every label is in the top five")
        XCTAssertEqual(m.confusion, [[1, 0, 1], [0, 1, 0], [1, 0, 0]])
        XCTAssertEqual(m.perClassAccuracy, [0.5, 1, 0])
        XCTAssertEqual(m.agreement, 0.5)
        // All four in the 0.8 bin with accuracy 0.5: ECE = |0.5 − 0.8| = 0.3.
        XCTAssertEqual(m.expectedCalibrationError, 0.3, accuracy: 1e-6)
        XCTAssertEqual(m.reliability.map(\.count).reduce(0, +), 4)
    }

    func testReportComparesTeacherAndStudentCost() throws {
        var g = RandomGenerator(seed: 0)
        let teacher = try ModelZoo.make("cnn-teacher", options: ModelOptions(inputSize: 8, width: 0.5), using: &g)
        let student = try ModelZoo.make("cnn-student", options: ModelOptions(inputSize: 8), using: &g)
        let images = Tensor.randomNormal([20, 1, 8, 8], using: &g)
        let report = DistillationReport(student: student, teacher: teacher, images: images, labels: (0..<20).map { $0 % 10 },
                                        classNames: (0..<10).map(String.init))
        XCTAssertEqual(report.parameterRatio!, Double(teacher.parameterCount) / Double(student.parameterCount), accuracy: 1e-9)
        XCTAssertGreaterThan(report.multiplyAddRatio!, 1)
        XCTAssertGreaterThan(report.studentCost.latencyBatch1Milliseconds, 0)
        XCTAssertNotNil(report.student.agreement)
    }
}
