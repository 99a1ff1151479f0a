import Datasets
import Distillation
import Foundation
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

    /// Ten examples of four classes; class 3 is never predicted (its precision is 0/0 := 0).
    /// Expected values from scikit-learn 1.x:
    /// `precision_recall_fscore_support(t, p, labels=[0, 1, 2, 3], zero_division=0)` and
    /// `f1_score(t, p, average="macro", labels=[0, 1, 2, 3], zero_division=0)`.
    func testPrecisionRecallAndF1MatchScikitLearn() {
        let truth = [0, 0, 0, 0, 1, 1, 2, 2, 2, 3]
        let predicted = [0, 0, 1, 2, 1, 1, 2, 0, 0, 0]
        let logits = Tensor(predicted.flatMap { p in (0..<4).map { $0 == p ? Float(3) : 0 } }, shape: [10, 4])
        let m = ClassificationMetrics(logits: logits, labels: truth, classNames: ["a", "b", "c", "d"])
        XCTAssertEqual(m.confusion, [[2, 1, 1, 0], [0, 2, 0, 0], [2, 0, 1, 0], [1, 0, 0, 0]])
        XCTAssertEqual(m.support, [4, 2, 3, 1])
        // precision = TP / predicted as the class: 2/5, 2/3, 1/2, 0/0 → 0
        assertNear(m.precision, [0.4, 2.0 / 3, 0.5, 0])
        // recall = TP / support: 2/4, 2/2, 1/3, 0/1
        assertNear(m.recall, [0.5, 1, 1.0 / 3, 0])
        XCTAssertEqual(m.recall, m.perClassAccuracy)
        // F1 = 2·TP / (2·TP + FP + FN): 4/9, 4/5, 2/5, 0
        assertNear(m.f1, [4.0 / 9, 0.8, 0.4, 0])
        XCTAssertEqual(m.macroF1, (4.0 / 9 + 0.8 + 0.4 + 0) / 4, accuracy: 1e-12)  // 0.41111
        XCTAssertEqual(m.top1, 0.5)
    }

    /// An evaluation.json written before precision and recall existed still reads, with the
    /// new scores computed from its confusion matrix; a new one round-trips.
    func testOlderEvaluationFilesDecodeWithTheScoresRecomputed() throws {
        let l8 = Float(log(8.0))
        let m = ClassificationMetrics(logits: Tensor([l8, 0, 0, 0, l8, 0, 0, 0, l8, l8, 0, 0], shape: [4, 3]), labels: [0, 1, 0, 2],
                                      classNames: ["a", "b", "c"])
        let encoded = try JSONSerialization.jsonObject(with: JSONEncoder().encode(m)) as! [String: Any]
        XCTAssertEqual(encoded["macroF1"] as? Double, 0.5)
        var older = encoded
        for key in ["precision", "recall", "f1", "support", "macroF1"] { older[key] = nil }
        let decoded = try JSONDecoder().decode(ClassificationMetrics.self, from: JSONSerialization.data(withJSONObject: older))
        XCTAssertEqual(decoded, m)
        XCTAssertEqual(decoded.precision, [0.5, 1, 0])
        XCTAssertEqual(try JSONDecoder().decode(ClassificationMetrics.self, from: JSONEncoder().encode(m)), m)
    }

    /// scikit-learn's `compute_class_weight("balanced", classes=[0, 1, 2], y=[0]*6 + [1]*3 + [2])`
    /// is [0.5556, 1.1111, 3.3333]: n / (C · n_c) = 10 / (3 · 6), 10 / (3 · 3), 10 / (3 · 1).
    func testBalancedClassWeightsMatchScikitLearn() throws {
        let labels = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2]
        let data = Dataset(inputs: Tensor.zeros([10, 1]), labels: labels, classNames: ["a", "b", "c"])
        let weights = try ClassWeights.balanced(for: data)
        XCTAssertEqual(weights[0], 10.0 / 18, accuracy: 1e-6)
        XCTAssertEqual(weights[1], 10.0 / 9, accuracy: 1e-6)
        XCTAssertEqual(weights[2], 10.0 / 3, accuracy: 1e-6)
        // Only labelled examples count: here 3 of class 0, 3 of class 1, 1 of class 2.
        let mask = [true, true, true, false, false, false, true, true, true, true]
        XCTAssertEqual(try ClassWeights.balanced(for: data, labeled: mask), [7.0 / 9, 7.0 / 9, 7.0 / 3].map { Float($0) })
        XCTAssertThrowsError(try ClassWeights.balanced(for: data, labeled: labels.map { $0 != 1 })) { error in
            XCTAssertTrue("\(error)".contains("class 1 (b) has no labelled training examples"), "\(error)")
        }
    }

    func testClassWeightMistakesAreErrorsNamingThem() {
        let names = ["a", "b", "c"]
        XCTAssertNoThrow(try ClassWeights.validate([1, 2, 0.5], classNames: names))
        for (weights, message) in [([1, 2] as [Float], "2 class weights for 3 classes"), ([1, 0, 1], "class 1 (b) is 0.0"),
                                   ([1, 1, -.infinity], "class 2 (c) is -inf"), ([.nan, 1, 1], "class 0 (a) is nan")] {
            XCTAssertThrowsError(try ClassWeights.validate(weights, classNames: names)) { error in
                XCTAssertTrue("\(error)".contains(message), "\(weights): \(error)")
            }
        }
    }

    func testLatencyMedianStopsAtItsBudgetAfterAtLeastThreeCalls() {
        // Calls of 200 ms: 3 × 200 = 600 ms passes a 0.5 s budget, so three of the 15 run.
        var calls = 0
        let slow = ModelCost.medianMilliseconds(calls: 15, budgetSeconds: 0.5) {
            calls += 1
            return [250, 200, 210][(calls - 1) % 3]
        }
        XCTAssertEqual(calls, 3)
        XCTAssertEqual(slow, 210, "the median of 250, 200, 210")
        // A call of 400 ms alone passes the budget, yet three run: a median needs them.
        calls = 0
        _ = ModelCost.medianMilliseconds(calls: 15, budgetSeconds: 0.5) { calls += 1; return 400 }
        XCTAssertEqual(calls, 3)
        // Calls of 1 ms: all 60 run within the budget; the median is the middle value.
        calls = 0
        let fast = ModelCost.medianMilliseconds(calls: 60, budgetSeconds: 0.5) { calls += 1; return Double(calls) / 1000 }
        XCTAssertEqual(calls, 60)
        XCTAssertEqual(fast, 0.031, "sorted 0.001 … 0.060, element 30")
        // Fewer calls than three asked for: only those.
        calls = 0
        _ = ModelCost.medianMilliseconds(calls: 1, budgetSeconds: 0.5) { calls += 1; return 1 }
        XCTAssertEqual(calls, 1)
    }

    func assertNear(_ actual: [Double], _ expected: [Double], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, file: file, line: line)
        for (a, e) in zip(actual, expected) { XCTAssertEqual(a, e, accuracy: 1e-12, "\(actual) vs \(expected)", file: file, line: line) }
    }
}
