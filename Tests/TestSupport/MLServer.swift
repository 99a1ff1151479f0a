import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif
import XCTest

/// Seldon MLServer in the virtual environment that `scripts/install-deps.sh --test-oracles`
/// makes (found by the same rule: `DISTILL_MLSERVER_VENV`, else
/// `${XDG_CACHE_HOME:-~/.cache}/distill/mlserver-VERSION`).
public enum MLServer {
    /// The MLServer version install-deps.sh installs (and names its environment by).
    public static let version = "1.7.1"

    /// The virtual environment's folder.
    public static var environment: String {
        let variables = ProcessInfo.processInfo.environment
        if let path = variables["DISTILL_MLSERVER_VENV"], !path.isEmpty { return path }
        let cache = variables["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache")
        return cache + "/distill/mlserver-\(version)"
    }

    /// True when the environment's python imports mlserver, onnxruntime and numpy (checked, not assumed).
    public static var isInstalled: Bool {
        let python = environment + "/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else { return false }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", "import mlserver, onnxruntime, numpy"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }

    /// A running `mlserver start`: stopped by its process id (`stop()`, and at the test's teardown).
    public final class Instance: @unchecked Sendable {
        public let process: Process
        public let httpPort: Int
        public let grpcPort: Int
        public let log: URL

        init(process: Process, httpPort: Int, grpcPort: Int, log: URL) {
            (self.process, self.httpPort, self.grpcPort, self.log) = (process, httpPort, grpcPort, log)
        }

        /// `http://127.0.0.1:PORT`.
        public var root: String { "http://127.0.0.1:\(httpPort)" }

        /// SIGTERM (MLServer shuts down its HTTP and gRPC servers), then SIGKILL after 10 s.
        public func stop() {
            guard process.isRunning else { return }
            kill(process.processIdentifier, SIGTERM)
            for _ in 0..<200 where process.isRunning { Thread.sleep(forTimeInterval: 0.05) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }

        /// The last lines of the server's log, for failure messages.
        public var logTail: String {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").suffix(15).joined(separator: "\n")
        }
    }

    /// Starts MLServer on 127.0.0.1 serving the model folders under `repository` (each with
    /// its model-settings.json), with `scripts` on PYTHONPATH for the runtime
    /// (scripts/mlserver_onnx_runtime.py). The HTTP port is `httpPort`, or a free one, and
    /// the gRPC port a free one; metrics are off and inference runs in the server's process
    /// (no worker processes), so the process id is the whole server. Writes the repository's
    /// settings.json; waits up to 60 s for `GET /v2/health/ready`; `test` stops it at teardown.
    public static func start(repository: URL, scripts: String, httpPort: Int? = nil, in test: XCTestCase,
                             file: StaticString = #filePath, line: UInt = #line) throws -> Instance {
        let ports = try freePorts(httpPort == nil ? 2 : 1)
        let (http, grpc) = (httpPort ?? ports[0], ports.last!)
        let settings: [String: Any] = ["host": "127.0.0.1", "http_port": http, "grpc_port": grpc, "metrics_endpoint": NSNull(),
                                       "parallel_workers": 0, "debug": false]
        try JSONSerialization.data(withJSONObject: settings).write(to: repository.appendingPathComponent("settings.json"))
        let log = repository.appendingPathComponent("mlserver-\(http).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: environment + "/bin/mlserver")
        process.arguments = ["start", repository.path]
        process.currentDirectoryURL = repository
        var variables = ProcessInfo.processInfo.environment
        variables["PYTHONPATH"] = scripts
        process.environment = variables
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let instance = Instance(process: process, httpPort: http, grpcPort: grpc, log: log)
        test.addTeardownBlock { instance.stop() }
        for _ in 0..<600 {
            guard process.isRunning else { break }
            if isReady(instance.root + "/v2/health/ready") { return instance }
            Thread.sleep(forTimeInterval: 0.1)
        }
        instance.stop()
        XCTFail("MLServer did not become ready on port \(http) within 60 s:\n\(instance.logTail)", file: file, line: line)
        throw URLError(.cannotConnectToHost)
    }

    /// True when GET `url` answers 200 within a second.
    static func isReady(_ url: String) -> Bool {
        guard let url = URL(string: url) else { return false }
        let done = DispatchSemaphore(value: 0)
        let status = Status()
        var request = URLRequest(url: url, timeoutInterval: 1)
        request.httpMethod = "GET"
        URLSession.shared.dataTask(with: request) { _, response, _ in
            status.code = (response as? HTTPURLResponse)?.statusCode ?? 0
            done.signal()
        }.resume()
        done.wait()
        return status.code == 200
    }

    private final class Status: @unchecked Sendable { var code = 0 }

    /// `count` distinct ports on 127.0.0.1 that were free a moment ago (bound to port 0 together, then released).
    public static func freePorts(_ count: Int) throws -> [Int] {
        var sockets: [Int32] = []
        defer { sockets.forEach { close($0) } }
        return try (0..<count).map { _ in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw POSIXError(.EMFILE) }
            sockets.append(fd)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            guard bound else { throw POSIXError(.EADDRINUSE) }
            return Int(UInt16(bigEndian: address.sin_port))
        }
    }
}
