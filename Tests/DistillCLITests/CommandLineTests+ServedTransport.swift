import Foundation
import TestSupport
import XCTest

/// The served teacher's transport and wiring beyond plain HTTP: HTTPS with a certificate
/// authority made by the test, `distill evaluate --teacher http://…`, and a streamed image
/// folder sent through the server.
extension CommandLineTests {
    /// Runs `openssl` with `arguments` in `folder`; fails the test on a non-zero exit.
    func openssl(_ arguments: [String], in folder: URL) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        process.currentDirectoryURL = folder
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "openssl \(arguments.joined(separator: " ")): \(output)")
    }

    /// In `folder`: ca.pem (a certificate authority made now), and server.pem/server.key,
    /// signed by it, for `names` (subjectAltName entries such as DNS:localhost, IP:127.0.0.1).
    func makeCertificates(in folder: URL, names: String, prefix: String = "server") throws {
        let which = Process()
        which.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        which.arguments = ["openssl", "version"]
        which.standardOutput = FileHandle.nullDevice
        which.standardError = FileHandle.nullDevice
        let available = (try? which.run()) != nil && { which.waitUntilExit(); return which.terminationStatus == 0 }()
        try requireTool(available, "openssl is needed to make the HTTPS test's certificates (apt-get install openssl)")
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        if !FileManager.default.fileExists(atPath: folder.appendingPathComponent("ca.pem").path) {
            try openssl(["req", "-x509"] + key + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Distill test CA",
                         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"], in: folder)
        }
        try openssl(["req"] + key + ["-keyout", "\(prefix).key", "-out", "\(prefix).csr", "-subj", "/CN=distill-test-server"], in: folder)
        try Data("subjectAltName=\(names)\n".utf8).write(to: folder.appendingPathComponent("\(prefix).ext"))
        try openssl(["x509", "-req", "-in", "\(prefix).csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "\(prefix).pem",
                     "-days", "2", "-extfile", "\(prefix).ext"], in: folder)
    }

    /// The counts of an HTTPS server (trusting `caFile`).
    func servedStats(_ port: Int, caFile: URL) throws -> [String: Int] {
        let result = try runPython(["-c", "import ssl, urllib.request; c = ssl.create_default_context(cafile='\(caFile.path)'); "
                                    + "print(urllib.request.urlopen('https://127.0.0.1:\(port)/stats', timeout=10, context=c).read().decode())"])
        return (try JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [String: Int] ?? [:]
    }

    func testServedHTTPSWithTheTeachersCertificateAuthority() throws {
        let folder = try makeServedData()
        try makeCertificates(in: folder, names: "DNS:localhost,IP:127.0.0.1")
        try makeCertificates(in: folder, names: "DNS:elsewhere.example", prefix: "elsewhere")
        let token = "s3cret-\(UUID().uuidString)"
        let tokenFile = folder.appendingPathComponent("token")
        try Data(token.utf8).write(to: tokenFile)
        let ca = folder.appendingPathComponent("ca.pem")
        let port = try startOIPServer(folder, ["--tls-cert", folder.appendingPathComponent("server.pem").path,
                                               "--tls-key", folder.appendingPathComponent("server.key").path, "--token", token])
        func arguments(_ out: String, host: String = "127.0.0.1", port: Int, _ extra: [String]) -> [String] {
            var list = servedArguments(folder, port: port, out: out, ["--teacher-token-file", tokenFile.path] + extra)
            list[2] = "https://\(host):\(port)/v2/models/teacher"
            return list
        }
        // The system's store does not know the test's authority: refused at once, one line, no retries.
        let refused = try run(arguments("refused", port: port, []))
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.errors.contains("https://127.0.0.1:\(port)/v2/health/ready: the server's certificate is refused"), refused.errors)
        XCTAssertTrue(refused.errors.contains("give --teacher-ca-file"), refused.errors)
        XCTAssertFalse(refused.errors.contains("attempts"), refused.errors)
        XCTAssertEqual(refused.errors.split(separator: "\n").count, 1, refused.errors)
        // With it: the run succeeds, by address and by host name, and the server saw the token.
        let trusted = try run(arguments("trusted", port: port, ["--teacher-ca-file", ca.path]))
        XCTAssertEqual(trusted.status, 0, trusted.errors)
        XCTAssertTrue(trusted.output.contains("600 answers, 600 asked now"), trusted.output)
        let byName = try run(arguments("by-name", host: "localhost", port: port, ["--teacher-ca-file", ca.path]))
        XCTAssertEqual(byName.status, 0, byName.errors)
        let stats = try servedStats(port, caFile: ca)
        XCTAssertEqual(stats["examples"], 1200)
        XCTAssertGreaterThan(stats["authorizations"] ?? 0, 0)
        let config = try String(contentsOf: folder.appendingPathComponent("trusted/config.yaml"), encoding: .utf8)
        XCTAssertTrue(config.contains("teacher-ca-file: \(ca.path)"), config)
        XCTAssertFalse(config.contains(token))
        // A certificate for another host name, from the same trusted authority: refused.
        let elsewhere = try startOIPServer(folder, ["--tls-cert", folder.appendingPathComponent("elsewhere.pem").path,
                                                    "--tls-key", folder.appendingPathComponent("elsewhere.key").path])
        let wrongName = try run(arguments("wrong-name", port: elsewhere, ["--teacher-ca-file", ca.path]))
        XCTAssertEqual(wrongName.status, 1)
        XCTAssertTrue(wrongName.errors.contains("https://127.0.0.1:\(elsewhere)/v2/health/ready: the server's certificate is refused"), wrongName.errors)
        XCTAssertEqual(wrongName.errors.split(separator: "\n").count, 1, wrongName.errors)
        // A missing CA file and one that holds no certificate are one line naming the file.
        try assertFails(arguments("missing", port: port, ["--teacher-ca-file", folder.appendingPathComponent("none.pem").path]),
                        mentioning: "--teacher-ca-file: cannot read \(folder.appendingPathComponent("none.pem").path)")
        try assertFails(arguments("not-pem", port: port, ["--teacher-ca-file", tokenFile.path]),
                        mentioning: "--teacher-ca-file: \(tokenFile.path) holds no PEM certificate")
        XCTAssertFalse((refused.errors + trusted.output + trusted.errors + wrongName.errors).contains(token))
    }

    /// A redirect is an error, not followed: the token never reaches the other server.
    func testServedARedirectIsNotFollowedAndTheTokenStaysWithTheTeacher() throws {
        let folder = try makeServedData()
        let token = "s3cret-\(UUID().uuidString)"
        let elsewhere = try startOIPServer(folder)
        let port = try startOIPServer(folder, ["--token", token, "--fault", "redirect", "--redirect-to", "http://127.0.0.1:\(elsewhere)"])
        let result = try run(servedArguments(folder, port: port, out: "redirected", ["--teacher-token-env", "DISTILL_TEST_TEACHER_TOKEN"]),
                             environment: ["DISTILL_TEST_TEACHER_TOKEN": token])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.errors.contains("http://127.0.0.1:\(port)/v2/models/teacher/infer: HTTP 307"), result.errors)
        XCTAssertEqual(result.errors.split(separator: "\n").count, 1, result.errors)
        XCTAssertFalse(result.errors.contains(token))
        XCTAssertGreaterThan(try servedStats(port)["authorizations"] ?? 0, 0)
        let other = try servedStats(elsewhere)
        XCTAssertEqual([other["requests"], other["authorizations"]], [0, 0])
    }

    func testServedEvaluateAsksTheTeacherForTheTestSetOnce() throws {
        let folder = try makeServedData()
        let port = try startOIPServer(folder)
        let trained = try run(servedArguments(folder, port: port, out: "student"))
        XCTAssertEqual(trained.status, 0, trained.errors)
        XCTAssertEqual(try servedStats(port)["examples"], 600)
        let arguments = ["evaluate", folder.appendingPathComponent("student").path, "--teacher", "http://127.0.0.1:\(port)/v2/models/teacher",
                         "--data", folder.appendingPathComponent("train.npz").path, "--test-data", folder.appendingPathComponent("test.npz").path,
                         "--teacher-mean", "0", "--teacher-std", "1", "--cache-directory", folder.appendingPathComponent("cache").path,
                         "--query-batch", "40", "--concurrency", "2"]
        let first = try run(arguments)
        XCTAssertEqual(first.status, 0, first.errors)
        XCTAssertTrue(first.output.contains("400 answers, 400 asked now, 0 kept from earlier"), first.output)
        XCTAssertEqual(try servedStats(port)["examples"], 1000)
        // The teacher's accuracy is the served model's on the test set, computed by numpy.
        let oracle = try runPython(["-c", "import numpy as np; m = np.load('\(folder.path)/teacher.npz'); t = np.load('\(folder.path)/test.npz'); "
                                    + "print(float(((t['inputs'] @ m['weight'] + m['bias']).argmax(1) == t['labels']).mean()))"])
        let expected = try XCTUnwrap(Double(oracle.output.trimmingCharacters(in: .whitespacesAndNewlines)), oracle.output)
        XCTAssertTrue(first.output.contains(String(format: "teacher accuracy %.2f%%; agreement", expected * 100)), first.output)
        // A second evaluation asks nothing; --json stays JSON, with the teacher's metrics.
        let second = try run(arguments + ["--json"])
        XCTAssertEqual(second.status, 0, second.errors)
        XCTAssertEqual(try servedStats(port)["examples"], 1000)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(second.output.utf8)) as? [String: Any])
        let teacher = try XCTUnwrap(report["teacher"] as? [String: Any])
        XCTAssertEqual(try XCTUnwrap(teacher["top1"] as? Double), expected, accuracy: 1e-9)
        XCTAssertNotNil((report["student"] as? [String: Any])?["agreement"] as? Double)
    }

    func testServedAStreamedImageFolderGetsTheTeachersOwnAnswers() throws {
        try requireTool(pythonCanImport("numpy"), "python3 with numpy is needed for the OIP test server (pip install numpy)")
        let folder = self.folder("served-images")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let made = try runPython([Self.servedScript, "--make-image-data", folder.path])
        XCTAssertEqual(made.status, 0, made.output)
        let port = try startOIPServer(folder, ["--input-shape", "1,8,8"])
        let common = ["--data", folder.appendingPathComponent("train").path, "--test-data", folder.appendingPathComponent("test").path,
                      "--channels", "1", "--validation-fraction", "0", "--student", "mlp", "--epochs", "3", "--teacher-mean", "0", "--teacher-std", "1"]
        let served = try run(["distill", "--teacher", "http://127.0.0.1:\(port)/v2/models/teacher", "--query-batch", "16", "--concurrency", "2",
                              "--cache-directory", folder.appendingPathComponent("cache").path, "--out", folder.appendingPathComponent("served").path] + common)
        XCTAssertEqual(served.status, 0, served.errors)
        XCTAssertTrue(served.output.contains("120 answers, 120 asked now"), served.output)
        // The same training from the teacher's logits computed by numpy on the same pixels / 255:
        // the same losses, epoch by epoch (the answers are the teacher's, in the folder's order).
        let native = try run(["distill", "--teacher-outputs", folder.appendingPathComponent("teacher-logits.npy").path,
                              "--out", folder.appendingPathComponent("native").path] + common)
        XCTAssertEqual(native.status, 0, native.errors)
        func losses(_ output: String) -> [Double] {
            output.split(separator: "\n").compactMap { line in
                let words = line.split(separator: " ")
                guard words.first == "epoch", let index = words.firstIndex(of: "loss"), index + 1 < words.count else { return nil }
                return Double(words[index + 1])
            }
        }
        let (a, b) = (losses(served.output), losses(native.output))
        XCTAssertEqual(a.count, 3, served.output)
        XCTAssertEqual(a.count, b.count)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 2e-4, "served \(a), native \(b)") }
        // A second run asks nothing.
        let again = try run(["distill", "--teacher", "http://127.0.0.1:\(port)/v2/models/teacher", "--cache-directory", folder.appendingPathComponent("cache").path,
                             "--out", folder.appendingPathComponent("again").path] + common)
        XCTAssertEqual(again.status, 0, again.errors)
        XCTAssertTrue(again.output.contains("0 asked now, 120 kept from earlier"), again.output)
        XCTAssertEqual(try servedStats(port)["examples"], 120)
    }
}
