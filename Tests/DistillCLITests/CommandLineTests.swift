import Foundation
import XCTest

/// Runs the built `distill` binary: user mistakes give a non-zero exit and a one-line reason.
final class CommandLineTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var binary: URL {
        #if DEBUG
        root.appendingPathComponent(".build/debug/distill")
        #else
        root.appendingPathComponent(".build/release/distill")
        #endif
    }

    func run(_ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
        guard FileManager.default.fileExists(atPath: Self.binary.path) else { throw XCTSkip("\(Self.binary.path) is not built") }
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output, errors)
    }

    func assertFails(_ arguments: [String], mentioning fragment: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try run(arguments)
        XCTAssertNotEqual(result.status, 0, "\(arguments) must fail", file: file, line: line)
        XCTAssertTrue(result.errors.contains(fragment), "expected '\(fragment)' in: \(result.errors)", file: file, line: line)
        XCTAssertFalse(result.errors.contains("Fatal error") || result.errors.contains("Backtrac"), "no trap for a user mistake", file: file, line: line)
    }

    func testHelpListsTheSubcommands() throws {
        let result = try run(["--help"])
        XCTAssertEqual(result.status, 0)
        for command in ["train", "distill", "transfer", "evaluate", "report", "export", "inspect", "demo"] { XCTAssertTrue(result.output.contains(command), command) }
    }

    func testInspectPrintsASummary() throws {
        let result = try run(["inspect", "cnn-student"])
        XCTAssertEqual(result.status, 0)
        XCTAssertTrue(result.output.contains("total parameters: 52,138"), result.output)
    }

    /// The success path of train, export, evaluate and inspect on a zoo model (no data needed
    /// for export and inspect; train and evaluate need dataset-fashion-mnist).
    func testTrainExportEvaluate() throws {
        guard FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist") else {
            throw XCTSkip("dataset-fashion-mnist is not installed (make test installs it)")
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID())")
        defer { try? FileManager.default.removeItem(at: folder) }
        let trained = try run(["train", "--model", "mlp", "--classes", "0-4", "--labels-per-class", "20", "--epochs", "2", "--out", folder.path])
        XCTAssertEqual(trained.status, 0, trained.errors)
        XCTAssertTrue(trained.output.contains("wrote"), trained.output)
        let exported = try run(["export", folder.path, "--out", folder.appendingPathComponent("out.safetensors").path])
        XCTAssertEqual(exported.status, 0, exported.errors)
        XCTAssertTrue(exported.output.contains("mlp, "), exported.output)
        let evaluated = try run(["evaluate", folder.appendingPathComponent("out.safetensors").path, "--classes", "0-4"])
        XCTAssertEqual(evaluated.status, 0, evaluated.errors)
        XCTAssertTrue(evaluated.output.contains("accuracy") && evaluated.output.contains("Pullover"), evaluated.output)
    }

    func testUserMistakesAreClearErrors() throws {
        try assertFails(["inspect", "resnet9000"], mentioning: "unknown model 'resnet9000'")
        try assertFails(["train", "--model", "nope", "--out", "/tmp/x"], mentioning: "unknown model 'nope'")
        try assertFails(["train", "--model", "mlp", "--data", "/nonexistent/fmnist", "--out", "/tmp/x"], mentioning: "/nonexistent/fmnist")
        try assertFails(["train", "--model", "mlp", "--classes", "7-3", "--out", "/tmp/x"], mentioning: "the range is empty")
        try assertFails(["train", "--model", "mlp", "--epochs", "0", "--out", "/tmp/x"], mentioning: "--epochs must be at least 1")
        try assertFails(["distill", "--teacher", "/nonexistent/teacher", "--out", "/tmp/x"], mentioning: "/nonexistent/teacher: does not exist")
        try assertFails(["distill", "--teacher", "/nonexistent/teacher", "--method", "magic", "--out", "/tmp/x"], mentioning: "unknown method 'magic'")
        try assertFails(["transfer", "--from", "/nonexistent/old", "--classes", "3-7", "--out", "/tmp/x"], mentioning: "overlap on 3, 4")
        try assertFails(["evaluate", "/nonexistent/run"], mentioning: "/nonexistent/run: does not exist")
        try assertFails(["export", "/nonexistent/run", "--format", "tflite", "--out", "/tmp/x"], mentioning: "--format 'tflite' is not available")
        try assertFails(["report", "/nonexistent/run"], mentioning: "/nonexistent/run/metrics.jsonl")
        try assertFails(["transfer", "--from", "/nonexistent/old", "--classes", "5-9", "--strategy", "magic", "--out", "/tmp/x"], mentioning: "unknown strategy 'magic'")
        let corrupt = FileManager.default.temporaryDirectory.appendingPathComponent("corrupt-\(UUID()).safetensors")
        try Data("not a model at all".utf8).write(to: corrupt)
        defer { try? FileManager.default.removeItem(at: corrupt) }
        try assertFails(["distill", "--teacher", corrupt.path, "--out", "/tmp/x"], mentioning: "header length")
    }
}
