import Foundation
import TestSupport
import XCTest

/// `distill distill --teacher http://… --teacher-answers …` against scripts/oip_test_server.py
/// answering probabilities, the top k (classification extension), labels, or binary tensors.
extension CommandLineTests {
    func testServedEveryKindOfAnswerTrainsAStudent() throws {
        let folder = try makeServedData()
        for (index, (server, answers, implied)) in [(["--answers", "probabilities"], "probabilities", false), (["--answers", "probabilities"], "top-2", false),
                                           (["--answers", "probabilities"], "top-1", false), (["--answers", "label"], "label", true),
                                           (["--answers", "label-name"], "label", true), (["--binary"], "logits", true)].enumerated() {
            let port = try startOIPServer(folder, server)
            let result = try run(servedArguments(folder, port: port, out: "answers-\(index)", implied ? [] : ["--teacher-answers", answers]))
            XCTAssertEqual(result.status, 0, "\(server) \(answers): \(result.errors)")
            XCTAssertTrue(result.output.contains("600 asked now, 0 kept from earlier"), result.output)
            XCTAssertTrue(result.output.contains("; answers: \(answers)"), result.output)
            // The linear teacher is right on about 95% of these examples; every kind teaches a good student.
            XCTAssertGreaterThan(try studentAccuracy(folder.appendingPathComponent("answers-\(index)")), 0.85, "\(server) \(answers)")
            let config = try String(contentsOf: folder.appendingPathComponent("answers-\(index)/config.yaml"), encoding: .utf8)
            XCTAssertEqual(config.contains("teacher-answers: \(answers)"), !implied, config)
            if server == ["--binary"] { XCTAssertEqual(try servedStats(port)["binary_requests"], 12) }
            try FileManager.default.removeItem(at: folder.appendingPathComponent("cache"))
        }
    }

    func testServedMalformedPartialAnswersAndBadKindsAreOneLineErrors() throws {
        let folder = try makeServedData()
        let port = try startOIPServer(folder, ["--answers", "probabilities", "--fault", "topk-index", "--fault-after", "2"])
        let result = try run(servedArguments(folder, port: port, out: "bad-top-k", ["--concurrency", "1", "--teacher-answers", "top-3"]))
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.errors.contains("/infer: class index 4 (example 0 of the batch) is outside 0..<4; 100 of 600 examples are answered"), result.errors)
        XCTAssertEqual(result.errors.split(separator: "\n").count, 1, result.errors)
        try assertFails(servedArguments(folder, port: port, out: "bad-kind", ["--teacher-answers", "top-0"]),
                        mentioning: "--teacher-answers 'top-0' must be logits, probabilities, top-K")
    }
}
