import Datasets
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import TestSupport
import XCTest

/// Logit distillation of text classifiers on the command line (`distill distill --method kd`
/// with a text classifier as the teacher), and a separate test file of texts (`--test-data`),
/// on the topic folder and tiny tokenizer of the text classification tests (no MiniLM, no fortunes).
extension CommandLineTests {
    func testTextClassifierDistilsIntoATextStudentWithKD() throws {
        let (encoder, _) = try makeTinyTextTeacher()
        let data = try makeTopicFolder()
        let common = ["--data", data.path, "--text-separator", "%", "--min-class-size", "20"]
        let teacher = folder("kd-teacher"), student = folder("kd-student"), cache = folder("kd-cache")
        _ = try assertSucceeds(["train", "--model", "text-bag", "--tokenizer", encoder.path, "--hidden", "16", "--epochs", "12", "--batch", "8",
                                "--optimizer", "adam", "--lr", "0.05", "--max-tokens", "7", "--out", teacher.path, "--quiet"] + common)
        func kd(_ extra: [String], out: URL = student, model: String = "text-bag") -> [String] {
            ["distill", "--teacher", teacher.path, "--student", model, "--hidden", "8", "--temperature", "2", "--alpha", "0.7",
             "--batch", "8", "--optimizer", "adam", "--lr", "0.05", "--cache-directory", cache.path, "--out", out.path] + common + extra
        }
        let output = try assertSucceeds(kd(["--method", "kd", "--epochs", "8"]))
        XCTAssertTrue(output.contains("with kd on 3 classes"), output)
        XCTAssertTrue(output.contains("at most 7 tokens each"), output)  // the teacher run's limit, read from its tokenizer.json
        for file in ["model.safetensors", "tokenizer.json", "evaluation.json", "report.html", "config.yaml", "metrics.jsonl"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: student.appendingPathComponent(file).path), file)
        }
        // The report scores student and teacher on the teacher's own test texts (the fixed 20% split).
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: student.appendingPathComponent("evaluation.json"))) as? [String: Any])
        let studentScores = try XCTUnwrap(report["student"] as? [String: Any]), teacherScores = try XCTUnwrap(report["teacher"] as? [String: Any])
        XCTAssertEqual(studentScores["classNames"] as? [String], ["animals", "places", "sky"])
        XCTAssertEqual((studentScores["support"] as? [Int])?.reduce(0, +), 18)
        let teacherRun = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: teacher.appendingPathComponent("evaluation.json"))) as? [String: Any])
        XCTAssertEqual(teacherScores["top1"] as? Double, (teacherRun["student"] as? [String: Any])?["top1"] as? Double, "the same teacher on the same test texts")
        XCTAssertGreaterThan(try XCTUnwrap(studentScores["agreement"] as? Double), 0.8, "the student follows the teacher (chance: 1/3)")
        XCTAssertGreaterThan(try XCTUnwrap(studentScores["top1"] as? Double), 0.8)
        // Both terms trained, and the loss fell.
        let epochs = try String(contentsOf: student.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        XCTAssertEqual(epochs.count, 8)
        XCTAssertEqual(Set(try XCTUnwrap(epochs[0]["terms"] as? [String: Double]).keys), ["ce", "kd"])
        let losses = try epochs.map { try XCTUnwrap($0["loss"] as? Double) }
        XCTAssertLessThan(losses.last!, losses.first! * 0.7, "\(losses)")
        // The teacher's logits on the training texts were computed once and kept.
        let kept = try FileManager.default.contentsOfDirectory(atPath: cache.path).filter { $0.hasPrefix("teacher-") }
        XCTAssertFalse(kept.isEmpty)
        XCTAssertTrue(try kept.contains { try SafeTensors.read(cache.appendingPathComponent($0).path).tensors["logits"]?.shape.dimensions.last == 3 })

        // A text classifier run folder: the class names, the teacher's tokenizer cutting at 7, and evaluate and predict read it.
        let saved = try SavedModel.load(student.path)
        XCTAssertEqual(saved.name, "text-bag")
        XCTAssertEqual(saved.options.classifies, true)
        XCTAssertEqual(saved.options.classes, 3)
        XCTAssertEqual(try WordPieceTokenizer(contentsOf: student.appendingPathComponent("tokenizer.json").path).truncation?.maxLength, 7)
        let evaluation = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try assertSucceeds(["evaluate", student.path, "--json"] + common).utf8)) as? [String: Any])
        XCTAssertEqual((evaluation["student"] as? [String: Any])?["top1"] as? Double, studentScores["top1"] as? Double)
        let texts = folder("kd-predict").appendingPathComponent("texts.txt")
        try FileManager.default.createDirectory(at: texts.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("cat dog fish bird\nsun moon rain snow\nhome away rug mat\n".utf8).write(to: texts)
        let answers = try assertSucceeds(["predict", student.path, texts.path, "--format", "csv"]).split(separator: "\n").dropFirst().map { String($0.split(separator: ",")[1]) }
        XCTAssertEqual(answers, ["animals", "sky", "places"])

        // A separate test file: the texts of the training classes (the tiny class left out, as --min-class-size drops it from training).
        let testFolder = folder("kd-test-texts")
        try FileManager.default.createDirectory(at: testFolder, withIntermediateDirectories: true)
        for (topic, words) in Self.topicWords {
            try Data((0..<4).map { i in (0..<(3 + i)).map { words[(i * 2 + $0 * 3) % words.count] }.joined(separator: " ") }.joined(separator: "\n%\n").utf8).write(to: testFolder.appendingPathComponent(topic))
        }
        try Data("the red cat".utf8).write(to: testFolder.appendingPathComponent("tiny"))
        let separate = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try assertSucceeds(["evaluate", student.path, "--json", "--test-data", testFolder.path] + common).utf8)) as? [String: Any])
        XCTAssertEqual(((separate["student"] as? [String: Any])?["support"] as? [Int]), [4, 4, 4])
        try Data("sun moon".utf8).write(to: testFolder.appendingPathComponent("weather"))
        try assertFails(["evaluate", student.path, "--test-data", testFolder.path] + common, mentioning: "has texts of class 'weather', which the training texts do not have")
        try assertFails(["evaluate", student.path, "--test-data", testFolder.path, "--test-fraction", "0.3"] + common, mentioning: "give --test-data or --test-fraction, not both")

        // Mistakes are one line each, naming the flag and the value.
        let out = folder("kd-errors")
        try assertFails(["distill", "--teacher", encoder.path, "--student", "text-bag", "--out", out.path] + common,
                        mentioning: "is a sentence encoder (it gives embeddings, not classes): distil it with --method embedding")
        try assertFails(["distill", "--teacher", teacher.path, "--student", "text-bag", "--method", "embedding", "--data", data.path, "--text-separator", "%", "--out", out.path],
                        mentioning: "--method embedding: --teacher \(teacher.path) is a text classifier of 3 classes")
        try assertFails(kd(["--method", "fitnets"], out: out), mentioning: "--method fitnets: a text teacher teaches a sentence encoder's embeddings (--method embedding) or a text classifier's logits")
        try assertFails(["distill", "--teacher", teacher.path, "--student", "text-bag", "--data", data.path, "--text-separator", "%", "--out", out.path],
                        mentioning: "--data: the teacher's classes (animals, places, sky) are not")
        try assertFails(kd(["--hidden-weight", "1"], out: out, model: "text-transformer"),
                        mentioning: "--hidden-weight: hidden-state and attention transfer go with --method embedding")
        try assertFails(["distill", "--teacher", encoder.path, "--student", "text-bag", "--method", "embedding", "--out", out.path] + common,
                        mentioning: "--min-class-size selects the classes of labelled texts for --method kd")
        try assertFails(kd([], out: out, model: "cnn-student"), mentioning: "--student cnn-student takes images or tables")
    }

    /// Transfer from a text classifier: its own classes are the old task (scored by accuracy
    /// through the old head), --classes the new one; the new-task model is a text classifier folder.
    func testTextTransferFromATextClassifier() throws {
        let (encoder, _) = try makeTinyTextTeacher()
        let data = try makeTopicFolder()
        // A fourth topic of the tiny vocabulary's other words: classes animals, misc, places, sky.
        let misc = ["the", "sat", "ran", "a", "red", "and", "then", "loud", "soft"]
        try Data((0..<30).map { i in (0..<(3 + i % 5)).map { misc[(i * 2 + $0 * 5) % misc.count] }.joined(separator: " ") }.joined(separator: "\n%\n").utf8)
            .write(to: data.appendingPathComponent("misc"))
        let common = ["--data", data.path, "--text-separator", "%", "--min-class-size", "20"]
        let old = folder("text-old-classifier"), out = folder("text-classifier-transfer")
        _ = try assertSucceeds(["train", "--model", "text-bag", "--tokenizer", encoder.path, "--hidden", "16", "--epochs", "12", "--batch", "8",
                                "--optimizer", "adam", "--lr", "0.05", "--classes", "0,2", "--out", old.path, "--quiet"] + common)
        let output = try assertSucceeds(["transfer", "--from", old.path, "--classes", "1,3", "--strategy", "finetune,lwf", "--steps", "24", "--batch", "8",
                                         "--lr", "0.05", "--optimizer", "adam", "--backbone-lr-scale", "1", "--out", out.path] + common)
        XCTAssertTrue(output.contains("old model cli-text-old-classifier"), output)
        XCTAssertTrue(output.contains("on its 2 classes"), output)
        let results = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("results.json"))) as? [String: [[String: Double]]])
        XCTAssertGreaterThan(try XCTUnwrap(results["old model"]?.first?["old"]), 0.8, "the old classifier on its own test texts")
        for strategy in ["finetune", "lwf"] {
            let row = try XCTUnwrap(results[strategy]?.first, strategy)
            XCTAssertGreaterThan(try XCTUnwrap(row["new"]), 0.7, "\(strategy): \(row)")
            XCTAssertNotNil(row["old"], strategy)
        }
        // LwF's term is KD on the old head's logits.
        let lwfMetrics = try String(contentsOf: out.appendingPathComponent("lwf/seed-0/metrics.jsonl"), encoding: .utf8)
        let terms = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(lwfMetrics.split(separator: "\n")[0].utf8)) as? [String: Any])?["terms"] as? [String: Double])
        XCTAssertEqual(Set(terms.keys), ["ce", "lwf"])
        // The new-task model: a text-bag classifier of the new classes (the re-headed projection folded back), scored as the study scored it.
        let saved = try SavedModel.load(out.appendingPathComponent("finetune").path)
        XCTAssertEqual(saved.name, "text-bag")
        XCTAssertEqual(saved.options.classes, 2)
        let evaluation = try assertSucceeds(["evaluate", out.appendingPathComponent("finetune").path, "--json", "--classes", "1,3"] + common)
        let scores = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(evaluation.utf8)) as? [String: Any])?["student"] as? [String: Any])
        XCTAssertEqual(scores["classNames"] as? [String], ["misc", "sky"])
        XCTAssertEqual(scores["top1"] as? Double, results["finetune"]?.first?["new"])
        try assertFails(["transfer", "--from", old.path, "--classes", "1-2", "--out", out.path] + common, mentioning: "--classes: places is a class of --from")
        try assertFails(["transfer", "--from", old.path, "--out", out.path] + common, mentioning: "give the new task's --classes")
    }
}
