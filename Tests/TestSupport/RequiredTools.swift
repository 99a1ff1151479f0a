import Foundation
import XCTest

/// The error that ends a test whose tool is missing in CI (XCTest records it as a failure).
public struct MissingTestTool: Error, CustomStringConvertible {
    public let description: String
}

/// Ends the test when a tool or oracle it needs (python3 with numpy, onnxruntime, the
/// Fashion-MNIST package, ...) is not `available`: a visible skip on a developer's machine,
/// a failure in CI (`CI=true`), where `make test` installs every tool and a skip would hide
/// a broken install.
///
/// `message` names what is missing and how to get it. Every skip in the test targets goes
/// through here.
public func requireTool(_ available: Bool, _ message: @autoclosure () -> String,
                        file: StaticString = #filePath, line: UInt = #line) throws {
    guard !available else { return }
    guard isContinuousIntegration else { throw XCTSkip(message(), file: file, line: line) }
    XCTFail("CI=true, so a missing test tool fails: \(message())", file: file, line: line)
    throw MissingTestTool(description: message())
}

/// True when the environment says this is a CI run (`CI=true`, as CI services set it).
public var isContinuousIntegration: Bool {
    ProcessInfo.processInfo.environment["CI"]?.lowercased() == "true"
}

/// True when `python3` runs and imports every module named (checked, not assumed: a test
/// that needs an oracle passes this to `requireTool`).
public func pythonCanImport(_ modules: String...) -> Bool {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", "import " + modules.joined(separator: ", ")]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
}

/// Runs `python3` with `arguments` and returns its exit status and its output (standard
/// output and error together): the oracles' scripts under scripts/.
public func runPython(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3"] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Starts scripts/oip_test_server.py (an Open Inference Protocol server of a linear teacher,
/// `model`, with faults by `arguments`) on 127.0.0.1 with a free port; `test` stops it by its
/// process id at teardown. Returns the port; fails the test when it does not start in 10 s.
public func startOIPTestServer(script: String, model: String, arguments: [String] = [], in test: XCTestCase,
                               file: StaticString = #filePath, line: UInt = #line) throws -> Int {
    let portFile = FileManager.default.temporaryDirectory.appendingPathComponent("oip-port-\(UUID())").path
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", script, "--model", model, "--port-file", portFile] + arguments
    process.standardOutput = FileHandle.nullDevice
    // Injected resets and timeouts make the server print tracebacks: not the test's output.
    process.standardError = FileHandle.nullDevice
    try process.run()
    test.addTeardownBlock {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: portFile)
    }
    for _ in 0..<200 {
        if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let port = Int(text) { return port }
        Thread.sleep(forTimeInterval: 0.05)
    }
    XCTFail("the OIP test server did not start within 10 s", file: file, line: line)
    throw URLError(.cannotConnectToHost)
}
