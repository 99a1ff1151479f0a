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
}
