import Foundation
import TestSupport
import XCTest

/// `distill distill --teacher http://127.0.0.1:PORT/v2/models/teacher` against a real
/// inference server: Seldon MLServer (installed by `make test` in a virtual environment of
/// its own) serving a teacher that `distill` trained and exported to ONNX, through
/// scripts/mlserver_onnx_runtime.py and onnxruntime.
extension CommandLineTests {
    /// A folder with train.npz and test.npz (scripts/oip_test_server.py --make-data), a
    /// teacher trained on them by `distill train` and exported to `repository/teacher/teacher.onnx`
    /// beside its model-settings.json.
    func makeMLServerRepository() throws -> (folder: URL, repository: URL) {
        try requireTool(MLServer.isInstalled, "MLServer is not installed in \(MLServer.environment) (scripts/install-deps.sh --test-oracles installs it)")
        let folder = try makeServedData()
        let repository = folder.appendingPathComponent("repository"), model = repository.appendingPathComponent("teacher")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        _ = try assertSucceeds(["train", "--model", "mlp", "--hidden", "32", "--epochs", "3", "--data", folder.appendingPathComponent("train.npz").path,
                                "--test-data", folder.appendingPathComponent("test.npz").path, "--validation-fraction", "0",
                                "--out", folder.appendingPathComponent("teacher-run").path])
        _ = try assertSucceeds(["export", folder.appendingPathComponent("teacher-run").path, "--out", model.appendingPathComponent("teacher.onnx").path])
        let settings: [String: Any] = ["name": "teacher", "implementation": "mlserver_onnx_runtime.ONNXClassifier",
                                       "parameters": ["uri": "./teacher.onnx", "version": "1"]]
        try JSONSerialization.data(withJSONObject: settings).write(to: model.appendingPathComponent("model-settings.json"))
        return (folder, repository)
    }

    func startMLServer(_ repository: URL, httpPort: Int? = nil) throws -> MLServer.Instance {
        try MLServer.start(repository: repository, scripts: Self.root.appendingPathComponent("scripts").path, httpPort: httpPort, in: self)
    }

    /// `distill distill` of an mlp student from `teacher` (a URL or a file), seed 3, answers kept in `folder/cache`.
    func mlserverArguments(_ folder: URL, teacher: String, out: String, cache: String = "cache", _ extra: [String] = []) -> [String] {
        ["distill", "--teacher", teacher, "--data", folder.appendingPathComponent("train.npz").path,
         "--test-data", folder.appendingPathComponent("test.npz").path, "--validation-fraction", "0", "--student", "mlp", "--epochs", "3",
         "--seed", "3", "--cache-directory", folder.appendingPathComponent(cache).path, "--query-batch", "50", "--concurrency", "3",
         "--out", folder.appendingPathComponent(out).path] + extra
    }

    /// One teacher and one server for every case (MLServer takes seconds to start): the
    /// student matches the native one; an unknown model is one line; a run stopped halfway,
    /// then refused while the server is down, resumes against the restarted server asking
    /// only for the rest.
    func testMLServerAStudentDistilledThroughMLServerMatchesTheNativeTeacherAndSurvivesARestart() throws {
        let (folder, repository) = try makeMLServerRepository()
        let first = try startMLServer(repository)
        let url = "\(first.root)/v2/models/teacher"
        let served = try run(mlserverArguments(folder, teacher: url, out: "served"))
        XCTAssertEqual(served.status, 0, "\(served.errors)\n\(first.logTail)")
        XCTAssertTrue(served.output.contains("teacher \(url): 600 answers, 600 asked now, 0 kept from earlier"), served.output)
        // The same exported file, run by Distill itself.
        let native = try run(mlserverArguments(folder, teacher: repository.appendingPathComponent("teacher/teacher.onnx").path, out: "native"))
        XCTAssertEqual(native.status, 0, native.errors)
        let (a, b) = (try studentAccuracy(folder.appendingPathComponent("served")), try studentAccuracy(folder.appendingPathComponent("native")))
        XCTAssertEqual(a, b, accuracy: 0.005, "through MLServer \(a), native \(b)")
        XCTAssertGreaterThan(a, 0.8)
        // MLServer answers for the teacher's own name only: another is one line naming its URL.
        let unknown = try run(mlserverArguments(folder, teacher: "\(first.root)/v2/models/nope", out: "unknown"))
        XCTAssertEqual(unknown.status, 1)
        XCTAssertTrue(unknown.errors.contains("\(first.root)/v2/models/nope: HTTP 404"), unknown.errors)
        XCTAssertEqual(unknown.errors.split(separator: "\n").count, 1, unknown.errors)

        // Another cache: a run stopped by --max-queries keeps its 200 answers.
        let stopped = try run(mlserverArguments(folder, teacher: url, out: "stopped", cache: "resume-cache", ["--max-queries", "200"]))
        XCTAssertEqual(stopped.status, 1)
        XCTAssertTrue(stopped.errors.contains("200 of 600 examples are answered"), stopped.errors)
        // The server goes away: the retries are spent, and the run stops with one line.
        first.stop()
        let refused = try run(mlserverArguments(folder, teacher: url, out: "refused", cache: "resume-cache"))
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.errors.hasPrefix("Error: \(first.root)/v2/health/ready: "), refused.errors)
        XCTAssertTrue(refused.errors.contains("after 6 attempts"), refused.errors)
        XCTAssertEqual(refused.errors.split(separator: "\n").count, 1, refused.errors)
        XCTAssertFalse(refused.errors.contains("Fatal error"), refused.errors)
        // Back on the same address (the answers are keyed by it), only the rest is asked.
        let second = try startMLServer(repository, httpPort: first.httpPort)
        let resumed = try run(mlserverArguments(folder, teacher: url, out: "resumed", cache: "resume-cache"))
        XCTAssertEqual(resumed.status, 0, "\(resumed.errors)\n\(second.logTail)")
        XCTAssertTrue(resumed.output.contains("600 answers, 400 asked now, 200 kept from earlier"), resumed.output)
    }
}
