import Distillation
import Foundation
import NeuralNet
import Tensors
import XCTest

final class HTMLReportTests: XCTestCase {
    func testReportIsSelfContainedAndDrawsEveryChart() throws {
        var g = RandomGenerator(seed: 0)
        let teacher = try ModelZoo.make("cnn-teacher", options: ModelOptions(inputSize: 8, width: 0.25), using: &g)
        let student = try ModelZoo.make("cnn-student", options: ModelOptions(inputSize: 8), using: &g)
        let images = Tensor.randomNormal([30, 1, 8, 8], using: &g)
        let evaluation = DistillationReport(student: student, teacher: teacher, images: images, labels: (0..<30).map { $0 % 10 },
                                            classNames: (0..<10).map { "class <\($0)>" })
        let epochs = (0..<3).map { EpochRecord(epoch: $0, loss: 1 / Float($0 + 1), terms: ["kd": 0.5], seconds: 1, learningRate: 0.1,
                                               validationAccuracy: 0.8 + 0.05 * Double($0)) }
        let html = HTMLReport.render([HTMLReport.Run(name: "kd", epochs: epochs, evaluation: evaluation),
                                      HTMLReport.Run(name: "rkd & co", epochs: epochs, evaluation: nil)])
        XCTAssertEqual(html.components(separatedBy: "<polyline class=\"series\"").count - 1, 4, "loss and accuracy lines for two runs")
        XCTAssertEqual(html.components(separatedBy: "class=\"cell\"").count - 1, 100, "a 10 × 10 confusion matrix")
        XCTAssertTrue(html.contains("Reliability (ECE"))
        XCTAssertTrue(html.contains("class &lt;3&gt;") && html.contains("rkd &amp; co"), "names are escaped")
        XCTAssertFalse(html.contains("http://") && html.contains("<script"), "no scripts or remote resources")
        XCTAssertFalse(html.contains("<script"))
        XCTAssertFalse(html.contains("src=\"http"))
    }

    func testLoadingAFolderThatIsNotARunNamesIt() {
        XCTAssertThrowsError(try HTMLReport.Run.load("/nonexistent/run")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/run/metrics.jsonl"), "\(error)")
        }
    }

    /// The per-class table (class, support, precision, recall, F1) and macro-F1 in the run's
    /// summary and in the comparison of runs, with the numbers of a hand-worked case.
    func testReportShowsPerClassScoresAndMacroF1() {
        // Predictions [0, 0, 1, 2, 1, 1, 2, 0, 0, 0] of labels [0, 0, 0, 0, 1, 1, 2, 2, 2, 3] (see EvaluationTests).
        let predicted = [0, 0, 1, 2, 1, 1, 2, 0, 0, 0]
        let logits = Tensor(predicted.flatMap { p in (0..<4).map { $0 == p ? Float(3) : 0 } }, shape: [10, 4])
        var g = RandomGenerator(seed: 0)
        let student = try! ModelZoo.make("mlp", options: ModelOptions(classes: 4, inputChannels: 1, inputSize: 2), using: &g)
        var evaluation = DistillationReport(student: student, teacher: nil, images: Tensor.zeros([10, 1, 2, 2]),
                                            labels: [0, 0, 0, 0, 1, 1, 2, 2, 2, 3], classNames: ["a", "b", "c", "rare"])
        evaluation.student = ClassificationMetrics(logits: logits, labels: [0, 0, 0, 0, 1, 1, 2, 2, 2, 3], classNames: ["a", "b", "c", "rare"])
        var other = evaluation
        other.student.macroF1 = 0.5
        let html = HTMLReport.render([HTMLReport.Run(name: "one", epochs: [], evaluation: evaluation),
                                      HTMLReport.Run(name: "two", epochs: [], evaluation: other)])
        XCTAssertTrue(html.contains("<th>class</th><th>support</th><th>precision</th><th>recall</th><th>F1</th>"), html)
        XCTAssertTrue(html.contains("<tr><td>a</td><td>4</td><td>0.4000</td><td>0.5000</td><td>0.4444</td></tr>"), html)
        XCTAssertTrue(html.contains("<tr><td>rare</td><td>1</td><td>0.0000</td><td>0.0000</td><td>0.0000</td></tr>"), html)
        XCTAssertTrue(html.contains("<td>macro average</td><td>10</td><td></td><td></td><td>0.4111</td>"), html)
        XCTAssertTrue(html.contains("<th>accuracy</th><th>macro-F1</th>") && html.contains("<td>50.00%</td><td>0.4111</td>"), "the run's summary")
        XCTAssertTrue(html.contains("<th>macro-F1, final model</th>"), "the comparison table")
        XCTAssertTrue(html.contains("<td>0.4556 ± 0.0629</td>"), "mean ± std of 0.4111 and 0.5")
    }
}
