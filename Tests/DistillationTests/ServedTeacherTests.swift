import Datasets
import Distillation
import Foundation
import Tensors
import TestSupport
import XCTest

/// `ServedTeacher` against scripts/oip_test_server.py: what the library refuses.
final class ServedTeacherTests: XCTestCase {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts/oip_test_server.py").path

    /// The server's data folder and 100 of its training examples, as a dataset.
    func served(_ arguments: [String]) throws -> (ServedTeacher, Dataset, String) {
        try requireTool(pythonCanImport("numpy"), "python3 with numpy is needed for the OIP test server (pip install numpy)")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("served-teacher-\(UUID())")
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        XCTAssertEqual(try runPython([Self.script, "--make-data", folder.path]).status, 0)
        let port = try startOIPTestServer(script: Self.script, model: folder.appendingPathComponent("teacher.npz").path, arguments: arguments, in: self)
        var generator = RandomGenerator(seed: 1)
        let data = Dataset(inputs: Tensor.randomNormal([100, 16], using: &generator), labels: (0..<100).map { $0 % 4 }, classNames: ["a", "b", "c", "d"])
        return (try ServedTeacher(url: "http://127.0.0.1:\(port)/v2/models/teacher"), data, folder.appendingPathComponent("cache").path)
    }

    func testAnAnswerAboveTheSizeLimitIsAnErrorAndIsNotKept() throws {
        var (teacher, data, cache) = try served(["--fault", "big", "--big-bytes", "300000"])
        teacher.maximumBodyBytes = 200_000
        XCTAssertThrowsError(try teacher.logits(for: data, conversion: nil, directory: cache)) { error in
            XCTAssertTrue("\(error)".contains("the answer is above the limit of 200000 bytes"), "\(error)")
            XCTAssertTrue("\(error)".contains("0 of 100 examples are answered"), "\(error)")
        }
    }

    /// An answer without Content-Length, 1 GiB long: reading stops at the limit (the server
    /// counts what it could send: the limit and what the sockets' buffers hold, not the GiB),
    /// and the error is not retried.
    func testReadingAnEndlessAnswerStopsAtTheLimit() throws {
        var (teacher, data, cache) = try served(["--fault", "stream", "--big-bytes", "\(1 << 30)"])
        teacher.maximumBodyBytes = 1 << 20
        teacher.concurrency = 1
        XCTAssertThrowsError(try teacher.logits(for: data, conversion: nil, directory: cache)) { error in
            XCTAssertTrue("\(error)".contains("/infer: the answer is above the limit of 1048576 bytes"), "\(error)")
            XCTAssertTrue("\(error)".contains("0 of 100 examples are answered"), "\(error)")
        }
        let stats = try runPython(["-c", "import urllib.request; print(urllib.request.urlopen('\(teacher.url.absoluteString.components(separatedBy: "/v2/")[0])/stats', timeout=10).read().decode())"])
        let counts = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(stats.output.utf8)) as? [String: Int], stats.output)
        XCTAssertEqual(counts["requests"], 1, "a body above the limit is not asked for again")
        XCTAssertLessThan(try XCTUnwrap(counts["streamed"]), 64 << 20, "the client read on past its limit")
    }

    func testLogitsComeInTheDatasetsOrderAndAreTheTeachersOwn() throws {
        let (teacher, data, cache) = try served([])
        let first = try teacher.logits(for: data, conversion: nil, directory: cache)
        XCTAssertEqual(first.logits.shape, [100, 4])
        XCTAssertEqual([first.asked, first.kept], [100, 0])
        let second = try teacher.logits(for: data, conversion: nil, directory: cache)
        XCTAssertEqual([second.asked, second.kept], [0, 100])
        XCTAssertEqual(first.logits.scalars, second.logits.scalars)
        // logits = x · W + b, with the server's W and b.
        let model = (cache as NSString).deletingLastPathComponent
        let dumped = try runPython(["-c", "import numpy as np; m = np.load('\(model)/teacher.npz'); np.save('\(model)/w.npy', m['weight']); np.save('\(model)/b.npy', m['bias'])"])
        XCTAssertEqual(dumped.status, 0, dumped.output)
        let weight = try NPY.read(model + "/w.npy").tensor.scalars, bias = try NPY.read(model + "/b.npy").tensor.scalars
        let inputs = data.inputs.scalars, logits = first.logits.scalars
        for example in 0..<100 {
            for c in 0..<4 {
                let expected = (0..<16).reduce(bias[c]) { $0 + inputs[example * 16 + $1] * weight[$1 * 4 + c] }
                XCTAssertEqual(logits[example * 4 + c], expected, accuracy: 1e-4)
            }
        }
    }

    func testAnAddressThatIsNotAnOIPModelIsRefused() {
        XCTAssertThrowsError(try ServedTeacher(url: "http://user:secret@host/v2/models/m")) { error in
            XCTAssertFalse("\(error)".contains("secret"), "\(error)")
        }
        for address in ["ftp://host/v2/models/m", "http://host/models/m", "http://host/v2/models", "not a url"] {
            XCTAssertThrowsError(try ServedTeacher(url: address), address) { error in
                XCTAssertTrue("\(error)".contains("http(s)://HOST:PORT/v2/models/NAME"), "\(error)")
            }
        }
    }
}
