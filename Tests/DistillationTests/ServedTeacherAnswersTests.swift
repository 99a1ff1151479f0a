import Datasets
import Distillation
import Foundation
import Tensors
import TestSupport
import XCTest

/// What a served teacher's answers become: logits, probabilities, the top-k completed, labels
/// as one-hot, over JSON and over Triton's binary tensor extension (scripts/oip_test_server.py).
final class ServedTeacherAnswersTests: XCTestCase {
    /// The server's logits x · W + b for `data`, computed here from its teacher.npz.
    func serverLogits(_ cache: String, _ data: Dataset) throws -> [[Float]] {
        let model = (cache as NSString).deletingLastPathComponent
        let dumped = try runPython(["-c", "import numpy as np; m = np.load('\(model)/teacher.npz'); np.save('\(model)/w.npy', m['weight']); np.save('\(model)/b.npy', m['bias'])"])
        XCTAssertEqual(dumped.status, 0, dumped.output)
        let weight = try NPY.read(model + "/w.npy").tensor.scalars, bias = try NPY.read(model + "/b.npy").tensor.scalars
        let inputs = data.inputs.scalars
        return (0..<data.count).map { example in
            (0..<4).map { c in (0..<16).reduce(bias[c]) { $0 + inputs[example * 16 + $1] * weight[$1 * 4 + c] } }
        }
    }

    static func softmax(_ logits: [Float]) -> [Float] {
        let top = logits.max()!, exps = logits.map { Foundation.exp($0 - top) }, sum = exps.reduce(0, +)
        return exps.map { $0 / sum }
    }

    /// The targets' row `example` (log-probabilities) as probabilities.
    static func row(_ outcome: ServedTeacher.Outcome, _ example: Int) -> [Float] {
        Array(outcome.logits.scalars[(example * 4)..<((example + 1) * 4)])
    }

    func stats(_ port: Int) throws -> [String: Int] {
        let result = try runPython(["-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:\(port)/stats', timeout=10).read().decode())"])
        return (try JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [String: Int] ?? [:]
    }

    func testZeroProbabilitiesStayZeroAtEveryTemperature() {
        let logits = TeacherOutputs.logProbabilities([1, 0, 0.25])
        XCTAssertEqual(logits[0], 0)
        XCTAssertEqual(logits[1], TeacherOutputs.zeroProbabilityLogit)
        XCTAssertEqual(logits[2], Foundation.log(0.25))
        // A one-hot row tempered at the largest temperature is still one-hot.
        let tempered = Self.softmax([0, TeacherOutputs.zeroProbabilityLogit / 100])
        XCTAssertEqual(tempered[0], 1)
        // e^-100 ≈ 3.7e-44 is a denormal Float: 0 on a thread that flushes denormals (and a
        // denormal bound such as 1e-40 would itself read as 0 there), so the bound is normal.
        XCTAssertLessThan(tempered[1], 1e-30)
    }

    func testTheAnswerKindsParse() {
        XCTAssertEqual(ServedAnswerKind("top-5"), .topK(5))
        XCTAssertEqual(ServedAnswerKind("label"), .label)
        XCTAssertEqual(ServedAnswerKind("probabilities"), .probabilities)
        for bad in ["top-0", "top-", "top-x", "softmax", ""] { XCTAssertNil(ServedAnswerKind(bad), bad) }
        XCTAssertEqual("\(ServedAnswerKind.topK(3))", "top-3")
    }

    func testProbabilitiesBecomeTheirLogarithmsAndMatchTheLogitsUpToAShiftPerExample() throws {
        var (teacher, data, cache) = try served(["--answers", "probabilities"])
        teacher.answers = .probabilities
        let outcome = try teacher.logits(for: data, conversion: nil, directory: cache)
        XCTAssertEqual(outcome.answers, .probabilities)
        for (example, logits) in try serverLogits(cache, data).enumerated() {
            let expected = Self.softmax(logits).map { Foundation.log($0) }
            for (got, want) in zip(Self.row(outcome, example), expected) { XCTAssertEqual(got, want, accuracy: 1e-4) }
        }
        // Not asked for: the metadata implies logits, and rows that are all probabilities are taken as such.
        teacher.answers = nil
        let implied = try teacher.logits(for: data, conversion: nil, directory: cache + "-implied")
        XCTAssertEqual(implied.answers, .logits)
        for (a, b) in zip(implied.logits.scalars, outcome.logits.scalars) { XCTAssertEqual(a, b, accuracy: 1e-6) }
    }

    func testTopKAnswersKeepTheirProbabilitiesAndSpreadTheRestEvenly() throws {
        var (teacher, data, cache) = try served(["--answers", "probabilities"])
        teacher.answers = .topK(2)
        let outcome = try teacher.logits(for: data, conversion: nil, directory: cache)
        XCTAssertEqual(outcome.answers, .topK(2))
        for (example, logits) in try serverLogits(cache, data).enumerated() {
            let p = Self.softmax(logits)
            let order = p.indices.sorted { p[$0] > p[$1] }
            let rest = (1 - p[order[0]] - p[order[1]]) / 2
            var expected = [Float](repeating: rest, count: 4)
            expected[order[0]] = p[order[0]]
            expected[order[1]] = p[order[1]]
            let got = Self.row(outcome, example).map { Foundation.exp($0) }
            for c in 0..<4 { XCTAssertEqual(got[c], expected[c], accuracy: 1e-5, "example \(example), class \(c)") }
        }
        // Top-1: the top class's probability, the rest evenly over the three others.
        teacher.answers = .topK(1)
        let top1 = try teacher.logits(for: data, conversion: nil, directory: cache)
        let first = Self.row(top1, 0).map { Foundation.exp($0) }, best = first.indices.max { first[$0] < first[$1] }!
        let others = first.indices.filter { $0 != best }.map { first[$0] }
        XCTAssertEqual(others[0], others[1], accuracy: 1e-7)
        XCTAssertEqual(others[1], others[2], accuracy: 1e-7)
        XCTAssertEqual(first.reduce(0, +), 1, accuracy: 1e-5)
    }

    func testLabelsBecomeOneHotTargetsFromIndicesOrClassNames() throws {
        let (teacher, data, cache) = try served(["--answers", "label"])
        let outcome = try teacher.logits(for: data, conversion: nil, directory: cache)
        XCTAssertEqual(outcome.answers, .label, "an INT64 [-1] output implies labels")
        let logits = try serverLogits(cache, data)
        for (example, row) in logits.enumerated() {
            let label = row.indices.max { row[$0] < row[$1] }!
            XCTAssertEqual(Self.row(outcome, example), (0..<4).map { $0 == label ? 0 : TeacherOutputs.zeroProbabilityLogit })
        }
        // Class names (BYTES) matched against the data's.
        let (named, _, namedCache) = try served(["--answers", "label-name", "--class-names", "a,b,c,d"])
        let byName = try named.logits(for: data, conversion: nil, directory: namedCache)
        XCTAssertEqual(byName.answers, .label)
        XCTAssertEqual(byName.logits.scalars, outcome.logits.scalars)
        let (unknown, _, unknownCache) = try served(["--answers", "label-name", "--class-names", "a,b,x,d"])
        XCTAssertThrowsError(try unknown.logits(for: data, conversion: nil, directory: unknownCache)) { error in
            XCTAssertTrue("\(error)".contains("label 'x'"), "\(error)")
            XCTAssertTrue("\(error)".contains("is none of the data's classes (a, b, c, d)"), "\(error)")
        }
    }

    func testEachKindHasItsOwnAnswersFile() throws {
        var (teacher, data, cache) = try served(["--answers", "probabilities"])
        let logits = try teacher.logits(for: data, conversion: nil, directory: cache)
        teacher.answers = .topK(3)
        let top3 = try teacher.logits(for: data, conversion: nil, directory: cache)
        XCTAssertNotEqual(logits.path, top3.path)
        XCTAssertEqual([top3.asked, top3.kept], [100, 0], "top-3 answers are not the logits kept")
        let again = try teacher.logits(for: data, conversion: nil, directory: cache)
        XCTAssertEqual([again.asked, again.kept], [0, 100])
        XCTAssertThrowsError(try ServedAnswers(path: logits.path, url: teacher.url.absoluteString, version: "1", classes: 4, kind: .topK(3))) { error in
            XCTAssertTrue("\(error)".contains("4 classes, top-3 answers)"), "\(error)")
        }
    }

    func testMalformedPartialAnswersAreOneLineErrorsAndAreNotKept() throws {
        for (server, kind, fragment) in [(["--answers", "probabilities", "--fault", "topk-index"], ServedAnswerKind.topK(2), "class index 4 (example 0 of the batch) is outside 0..<4"),
                                         (["--answers", "probabilities", "--fault", "topk-count"], .topK(2), "1], not BYTES ["),
                                         (["--answers", "probabilities", "--fault", "probability"], .probabilities, "holds 1.5 (example 0 of the batch, class 0), not a probability"),
                                         // Top-k of logits: here the first example's top two are within [0, 1] and sum above 1.
                                         ([], .topK(2), "the top 2 probabilities of example 0 of the batch sum to 1.0938809, above 1"),
                                         ([], .probabilities, "not a probability"),
                                         (["--answers", "label", "--fault", "label-range"], .label, "label 4.0 (example 0 of the batch) is not a class index in 0..<4")] {
            var (teacher, data, cache) = try served(server)
            teacher.answers = kind
            teacher.concurrency = 1  // the first batch's fault is the one reported
            XCTAssertThrowsError(try teacher.logits(for: data, conversion: nil, directory: cache), "\(server) \(kind)") { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(error)")
                XCTAssertTrue("\(error)".contains("0 of 100 examples are answered"), "\(error)")
                XCTAssertFalse("\(error)".contains("\n"), "\(error)")
            }
        }
        // Top-k beyond the class count, and labels from a [-1, 4] output, are refused from the metadata.
        var (teacher, data, cache) = try served([])
        teacher.answers = .topK(5)
        XCTAssertThrowsError(try teacher.logits(for: data, conversion: nil, directory: cache)) { XCTAssertTrue("\($0)".contains("top-5 answers asked for, and the data has 4 classes"), "\($0)") }
        teacher.answers = .label
        XCTAssertThrowsError(try teacher.logits(for: data, conversion: nil, directory: cache)) { XCTAssertTrue("\($0)".contains("labels are one value per example"), "\($0)") }
    }

    func testBinaryTensorsWhenOfferedGiveTheSameAnswersBitForBit() throws {
        var (teacher, data, cache) = try served(["--binary"])
        let port = teacher.url.port!
        let binary = try teacher.logits(for: data, conversion: nil, directory: cache)
        XCTAssertEqual(try stats(port)["binary_requests"], 2, "100 examples in batches of 64: both requests binary")
        teacher.binaryTensors = false
        let json = try teacher.logits(for: data, conversion: nil, directory: cache + "-json")
        XCTAssertEqual(try stats(port)["binary_requests"], 2, "the JSON requests are not binary")
        XCTAssertEqual(try stats(port)["requests"], 4)
        XCTAssertEqual(binary.logits.scalars.map(\.bitPattern), json.logits.scalars.map(\.bitPattern))
        // The same with probabilities (binary too) and top-k (binary inputs, JSON classification answer).
        for kind in [ServedAnswerKind.probabilities, .topK(2)] {
            var (probabilities, _, probabilityCache) = try served(["--binary", "--answers", "probabilities"])
            probabilities.answers = kind
            let viaBinary = try probabilities.logits(for: data, conversion: nil, directory: probabilityCache)
            XCTAssertEqual(try stats(probabilities.url.port!)["binary_requests"], 2, "\(kind)")
            probabilities.binaryTensors = false
            let viaJSON = try probabilities.logits(for: data, conversion: nil, directory: probabilityCache + "-json")
            XCTAssertEqual(viaBinary.logits.scalars.map(\.bitPattern), viaJSON.logits.scalars.map(\.bitPattern), "\(kind)")
        }
        // A server without the extension is sent JSON.
        let (plain, _, plainCache) = try served([])
        _ = try plain.logits(for: data, conversion: nil, directory: plainCache)
        XCTAssertEqual(try stats(plain.url.port!)["binary_requests"], 0)
    }
}
