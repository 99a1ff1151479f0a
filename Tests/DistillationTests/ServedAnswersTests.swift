import Distillation
import Foundation
import XCTest

/// The served teacher's answers log: what survives a crash, and what it refuses.
final class ServedAnswersTests: XCTestCase {
    func temporaryPath() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("served-\(UUID()).answers").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func testAnswersSurviveReopeningAndATornLastRecordIsCutOff() throws {
        let path = temporaryPath()
        let url = "http://127.0.0.1:1/v2/models/m"
        do {
            let answers = try ServedAnswers(path: path, url: url, version: "1", classes: 3)
            try answers.append(keys: [11, 22], logits: [1, 2, 3, 4, 5, 6])
            try answers.append(keys: [33], logits: [7, 8, 9])
        }
        // A process killed while writing a record leaves part of it: 16 + 4 · 3 bytes a record.
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: path))
        let size = try handle.seekToEnd()
        try handle.truncate(atOffset: size - 5)
        try handle.close()
        let reopened = try ServedAnswers(path: path, url: url, version: "1", classes: 3)
        XCTAssertEqual(reopened.count, 2)
        XCTAssertEqual(reopened.answer(22), [4, 5, 6])
        XCTAssertNil(reopened.answer(33))
        try reopened.append(keys: [33], logits: [7, 8, 9])
        let again = try ServedAnswers(path: path, url: url, version: "1", classes: 3)
        XCTAssertEqual(again.count, 3)
        XCTAssertEqual(again.answer(33), [7, 8, 9])
    }

    func testACorruptRecordEndsWhatIsTrusted() throws {
        let path = temporaryPath()
        let url = "http://127.0.0.1:1/v2/models/m"
        do { try ServedAnswers(path: path, url: url, version: "1", classes: 2).append(keys: [1, 2], logits: [1, 2, 3, 4]) }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count - 12] ^= 0xFF  // inside the second record's logits (24 bytes a record)
        try bytes.write(to: URL(fileURLWithPath: path))
        let reopened = try ServedAnswers(path: path, url: url, version: "1", classes: 2)
        XCTAssertEqual(reopened.count, 1)
        XCTAssertEqual(reopened.answer(1), [1, 2])
    }

    func testAnotherTeachersAnswersAreRefused() throws {
        let path = temporaryPath()
        _ = try ServedAnswers(path: path, url: "http://a/v2/models/m", version: "1", classes: 2)
        XCTAssertThrowsError(try ServedAnswers(path: path, url: "http://a/v2/models/m", version: "2", classes: 2)) { error in
            XCTAssertTrue("\(error)".contains("not the answers of http://a/v2/models/m (version '2', 2 classes)"), "\(error)")
        }
    }
}
