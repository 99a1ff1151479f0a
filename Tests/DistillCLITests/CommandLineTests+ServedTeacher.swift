import Foundation
import TestSupport
import XCTest

/// `distill distill --teacher http://127.0.0.1:PORT/v2/models/teacher` against
/// scripts/oip_test_server.py: a linear teacher served over the Open Inference Protocol,
/// counting what it is asked and injecting faults.
extension CommandLineTests {
    static var servedScript: String { root.appendingPathComponent("scripts/oip_test_server.py").path }

    /// A folder with train.npz, test.npz, teacher.npz and teacher-logits.npy (the teacher's
    /// logits on the training inputs, computed by numpy).
    func makeServedData() throws -> URL {
        try requireTool(pythonCanImport("numpy"), "python3 with numpy is needed for the OIP test server (pip install numpy)")
        let folder = self.folder("served")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let made = try runPython([Self.servedScript, "--make-data", folder.path])
        XCTAssertEqual(made.status, 0, made.output)
        return folder
    }

    /// Starts the server (stopped by its pid at teardown) and returns its port.
    func startOIPServer(_ folder: URL, _ arguments: [String] = []) throws -> Int {
        try startOIPTestServer(script: Self.servedScript, model: folder.appendingPathComponent("teacher.npz").path, arguments: arguments, in: self)
    }

    /// The server's counts: requests and examples answered, Authorization headers seen.
    func servedStats(_ port: Int) throws -> [String: Int] {
        let result = try runPython(["-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:\(port)/stats', timeout=10).read().decode())"])
        return (try JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [String: Int] ?? [:]
    }

    func servedArguments(_ folder: URL, port: Int, out: String, _ extra: [String] = []) -> [String] {
        ["distill", "--teacher", "http://127.0.0.1:\(port)/v2/models/teacher", "--data", folder.appendingPathComponent("train.npz").path,
         "--test-data", folder.appendingPathComponent("test.npz").path, "--validation-fraction", "0", "--student", "mlp", "--epochs", "3",
         "--teacher-mean", "0", "--teacher-std", "1", "--cache-directory", folder.appendingPathComponent("cache").path,
         "--query-batch", "50", "--concurrency", "3", "--out", folder.appendingPathComponent(out).path] + extra
    }

    func studentAccuracy(_ run: URL) throws -> Double {
        let data = try Data(contentsOf: run.appendingPathComponent("evaluation.json"))
        let report = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        return try XCTUnwrap((report?["student"] as? [String: Any])?["top1"] as? Double)
    }

    func testServedAStudentDistilledThroughTheServerMatchesOneFromTheTeachersOutputs() throws {
        let folder = try makeServedData()
        let port = try startOIPServer(folder)
        let served = try run(servedArguments(folder, port: port, out: "served"))
        XCTAssertEqual(served.status, 0, served.errors)
        XCTAssertTrue(served.output.contains("600 answers, 600 asked now, 0 kept from earlier"), served.output)
        XCTAssertEqual(try servedStats(port)["examples"], 600)
        let native = try run(["distill", "--teacher-outputs", folder.appendingPathComponent("teacher-logits.npy").path,
                                  "--data", folder.appendingPathComponent("train.npz").path, "--test-data", folder.appendingPathComponent("test.npz").path,
                                  "--validation-fraction", "0", "--student", "mlp", "--epochs", "3", "--out", folder.appendingPathComponent("native").path])
        XCTAssertEqual(native.status, 0, native.errors)
        let (a, b) = (try studentAccuracy(folder.appendingPathComponent("served")), try studentAccuracy(folder.appendingPathComponent("native")))
        XCTAssertEqual(a, b, accuracy: 0.005, "served \(a), native \(b)")
        XCTAssertGreaterThan(a, 0.9)
        // A second run pays for nothing: every answer is kept.
        let again = try run(servedArguments(folder, port: port, out: "again"))
        XCTAssertEqual(again.status, 0, again.errors)
        XCTAssertTrue(again.output.contains("0 asked now, 600 kept from earlier"), again.output)
        XCTAssertEqual(try servedStats(port)["examples"], 600)
    }

    func testServedAnInterruptedRunAsksAgainOnlyForWhatWasNotAnswered() throws {
        let folder = try makeServedData()
        let port = try startOIPServer(folder)
        let stopped = try run(servedArguments(folder, port: port, out: "stopped", ["--max-queries", "220", "--concurrency", "2"]))
        XCTAssertEqual(stopped.status, 1)
        XCTAssertTrue(stopped.errors.contains("--max-queries 220 reached"), stopped.errors)
        XCTAssertTrue(stopped.errors.contains("200 of 600 examples are answered"), stopped.errors)
        XCTAssertEqual(stopped.errors.split(separator: "\n").count, 1, stopped.errors)
        XCTAssertEqual(try servedStats(port)["examples"], 200)
        let resumed = try run(servedArguments(folder, port: port, out: "resumed", ["--concurrency", "2"]))
        XCTAssertEqual(resumed.status, 0, resumed.errors)
        XCTAssertTrue(resumed.output.contains("400 asked now, 200 kept from earlier"), resumed.output)
        // At most the examples in flight (concurrency × batch) are asked twice; here none.
        XCTAssertLessThanOrEqual(try servedStats(port)["examples"] ?? 0, 600 + 2 * 50)
    }

    func testServedARunStoppedBySIGTERMWhileQueryingResumesAskingOnlyTheRest() throws {
        let folder = try makeServedData()
        let port = try startOIPServer(folder, ["--fault", "delay", "--delay", "0.2"])
        let process = Process()
        process.executableURL = Self.binary
        process.environment = Self.cliEnvironment
        process.arguments = servedArguments(folder, port: port, out: "killed", ["--concurrency", "2"])
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
        var polls = 0
        while polls < 200, (try servedStats(port)["examples"] ?? 0) < 100 {
            Thread.sleep(forTimeInterval: 0.02)
            polls += 1
        }
        kill(process.processIdentifier, SIGTERM)
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 1, message)
        XCTAssertTrue(message.contains("querying stopped on request"), message)
        let answered = try servedStats(port)["examples"] ?? 0
        XCTAssertTrue(message.contains("\(answered) of 600 examples are answered"), "server answered \(answered): \(message)")
        XCTAssertLessThan(answered, 600)
        let resumed = try run(servedArguments(folder, port: port, out: "resumed", ["--concurrency", "2"]))
        XCTAssertEqual(resumed.status, 0, resumed.errors)
        XCTAssertTrue(resumed.output.contains("\(600 - answered) asked now, \(answered) kept from earlier"), resumed.output)
        XCTAssertLessThanOrEqual(try servedStats(port)["examples"] ?? 0, 600 + 2 * 50)
    }

    func testServedTransientFaultsAreRetried() throws {
        let folder = try makeServedData()
        for (fault, extra) in [("503", ["--fault-times", "3"]), ("429", ["--fault-times", "2"]), ("500", ["--fault-times", "1"]),
                               ("reset", ["--fault-times", "2"]), ("delay", ["--fault-times", "1", "--delay", "2.5"])] {
            let port = try startOIPServer(folder, ["--fault", fault] + extra)
            let result = try run(servedArguments(folder, port: port, out: "retried-\(fault)", ["--query-timeout", "1"]))
            XCTAssertEqual(result.status, 0, "\(fault): \(result.errors)")
            XCTAssertTrue(result.output.contains("600 asked now"), "\(fault): \(result.output)")
            try FileManager.default.removeItem(at: folder.appendingPathComponent("cache"))
        }
    }

    func testServedBadAnswersStopTheRunWithOneLineAndAreNeverKept() throws {
        let folder = try makeServedData()
        for (fault, fragment) in [("badjson", "the answer is not JSON"), ("nan", "/infer: the answer"), ("shape", "the answer has shape [50, 3] for [50, 4]"),
                                  ("version", "version changed from 1 to 2 mid-run"), ("503", "HTTP 503 after 6 attempts")] {
            let port = try startOIPServer(folder, ["--fault", fault, "--fault-after", "2"])
            let result = try run(servedArguments(folder, port: port, out: "bad-\(fault)", ["--concurrency", "1"]))
            XCTAssertEqual(result.status, 1, fault)
            XCTAssertTrue(result.errors.contains(fragment), "\(fault): \(result.errors)")
            XCTAssertTrue(result.errors.contains("100 of 600 examples are answered"), "\(fault): \(result.errors)")
            XCTAssertEqual(result.errors.split(separator: "\n").count, 1, "\(fault): \(result.errors)")
            XCTAssertFalse(result.errors.contains("Fatal error"), fault)
            try FileManager.default.removeItem(at: folder.appendingPathComponent("cache"))
        }
    }

    func testServedAServerThatDoesNotFitTheDataIsAnErrorNamingItsURL() throws {
        let folder = try makeServedData()
        let port = try startOIPServer(folder)
        try assertFails(servedArguments(folder, port: port, out: "unfit", ["--classes", "0-2"]),
                            mentioning: "http://127.0.0.1:\(port)/v2/models/teacher: the model gives outputs [-1, 4], and the data has 3 classes")
        try assertFails(servedArguments(folder, port: port, out: "augmented", ["--augment"]), mentioning: "--augment: the served teacher")
    }

    func testServedTheTokenReachesTheServerAndNeverTheRunFolder() throws {
        let folder = try makeServedData()
        let token = "s3cret-\(UUID().uuidString)"
        let port = try startOIPServer(folder, ["--token", token])
        let tokenFile = folder.appendingPathComponent("token")
        try Data((token + "\n").utf8).write(to: tokenFile)
        let refused = try run(servedArguments(folder, port: port, out: "refused"))
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.errors.contains("HTTP 401"), refused.errors)
        let runFolder = folder.appendingPathComponent("with-token")
        let result = try run(servedArguments(folder, port: port, out: "with-token", ["--teacher-token-file", tokenFile.path]))
        XCTAssertEqual(result.status, 0, result.errors)
        XCTAssertGreaterThan(try servedStats(port)["authorizations"] ?? 0, 0)
        // The same from an environment variable.
        let fromEnvironment = try run(servedArguments(folder, port: port, out: "with-token-env", ["--teacher-token-env", "DISTILL_TEST_TEACHER_TOKEN"]),
                                      environment: ["DISTILL_TEST_TEACHER_TOKEN": token])
        XCTAssertEqual(fromEnvironment.status, 0, fromEnvironment.errors)
        XCTAssertTrue(fromEnvironment.output.contains("0 asked now, 600 kept from earlier"), fromEnvironment.output)
        XCTAssertFalse((fromEnvironment.output + fromEnvironment.errors).contains(token))
        XCTAssertFalse((result.output + result.errors + refused.output + refused.errors).contains(token))
        for root in [runFolder, folder.appendingPathComponent("with-token-env"), folder.appendingPathComponent("cache")] {
            let files = FileManager.default.enumerator(atPath: root.path)?.compactMap { $0 as? String } ?? []
            XCTAssertFalse(files.isEmpty)
            for file in files {
                let data = (try? Data(contentsOf: root.appendingPathComponent(file))) ?? Data()
                XCTAssertNil(data.range(of: Data(token.utf8)), "the token is in \(file)")
            }
        }
    }
}
