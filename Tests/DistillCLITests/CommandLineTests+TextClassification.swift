import Datasets
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import TestSupport
import XCTest

/// Text classification and text transfer on the command line: `train`, `evaluate` and
/// `predict` on labelled texts, and `transfer` from a sentence encoder, with the tiny random
/// teacher of `makeTinyTextTeacher` (a text-transformer and a tokenizer of 30 words), so that
/// neither MiniLM nor fortunes is needed; one check that MiniLM's folder re-heads as the same encoder.
extension CommandLineTests {
    /// Words of three topics, disjoint, so that a bag of words tells them apart.
    static let topicWords = [("animals", ["cat", "dog", "fish", "bird", "sang", "ate", "slept"]),
                             ("sky", ["sun", "moon", "rain", "snow", "day", "night", "blue"]),
                             ("places", ["mat", "rug", "home", "away", "on", "big", "small"])]

    /// A folder in the fortunes layout (one file per class, `%` between texts): 30 texts of each
    /// topic, and a class `tiny` of 5 texts that `--min-class-size 20` drops.
    func makeTopicFolder() throws -> URL {
        let folder = self.folder("topics")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (index, (topic, words)) in Self.topicWords.enumerated() {
            let texts = (0..<30).map { i in (0..<(3 + (i + index) % 5)).map { words[(i * 3 + $0 * 5 + index) % words.count] }.joined(separator: " ") }
            try Data(texts.joined(separator: "\n%\n").utf8).write(to: folder.appendingPathComponent(topic))
        }
        try Data((0..<5).map { "the red cat \($0)" }.joined(separator: "\n%\n").utf8).write(to: folder.appendingPathComponent("tiny"))
        return folder
    }

    func testTextClassifierTrainsEvaluatesAndPredicts() throws {
        let (teacher, _) = try makeTinyTextTeacher()
        let data = try makeTopicFolder()
        let run = folder("text-classifier")
        let common = ["--data", data.path, "--text-separator", "%", "--min-class-size", "20"]
        let output = try assertSucceeds(["train", "--model", "text-bag", "--tokenizer", teacher.path, "--hidden", "16", "--epochs", "12",
                                         "--batch", "8", "--optimizer", "adam", "--lr", "0.05", "--out", run.path] + common)
        XCTAssertTrue(output.contains("texts of 3 classes"), output)
        for file in ["model.safetensors", "tokenizer.json", "evaluation.json", "report.html", "config.yaml", "metrics.jsonl"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent(file).path), file)
        }
        func student(_ json: Data) throws -> [String: Any] {
            try XCTUnwrap((try JSONSerialization.jsonObject(with: json) as? [String: Any])?["student"] as? [String: Any])
        }
        let report = try student(Data(contentsOf: run.appendingPathComponent("evaluation.json")))
        XCTAssertEqual(report["classNames"] as? [String], ["animals", "places", "sky"])
        XCTAssertEqual((report["support"] as? [Int])?.reduce(0, +), 18)  // 20% of each class's 30 texts, the fixed test split
        XCTAssertGreaterThan(try XCTUnwrap(report["top1"] as? Double), 0.8, "disjoint words per topic are easy")
        // The classifier's outputs are logits, not unit vectors.
        let saved = try SavedModel.load(run.path)
        XCTAssertEqual(saved.options.classifies, true)
        XCTAssertEqual(saved.options.classes, 3)

        // evaluate carves the same test texts and scores the same model.
        let evaluation = try assertSucceeds(["evaluate", run.path, "--json"] + common)
        let again = try student(Data(evaluation.utf8))
        XCTAssertEqual(again["top1"] as? Double, report["top1"] as? Double)
        XCTAssertEqual(again["confusion"] as? [[Int]], report["confusion"] as? [[Int]])

        // predict: one text a line, each named FILE:N.
        let texts = folder("predict-texts").appendingPathComponent("texts.txt")
        try FileManager.default.createDirectory(at: texts.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("cat dog fish bird\n\nsun moon rain snow\nhome away rug mat\n".utf8).write(to: texts)
        let lines = try assertSucceeds(["predict", run.path, texts.path, "--format", "jsonl", "--top-k", "2"]).split(separator: "\n")
        let answers = try lines.map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        XCTAssertEqual(answers.map { $0["input"] as? String }, ["1", "2", "3"].map { texts.path + ":" + $0 })
        XCTAssertEqual(answers.map { $0["class"] as? String }, ["animals", "sky", "places"])
        XCTAssertEqual(answers.map { ($0["top"] as? [Any])?.count }, [2, 2, 2])

        // Exported to ONNX, the classifier ends in its logits (no normalisation), with the class names.
        let exported = folder("text-classifier-onnx").appendingPathComponent("classifier.onnx")
        try FileManager.default.createDirectory(at: exported.deletingLastPathComponent(), withIntermediateDirectories: true)
        XCTAssertTrue(try assertSucceeds(["export", run.path, "--out", exported.path]).contains("output logits [batch, 3]"))
        let onnx = try ONNXModel.read(exported.path)
        XCTAssertEqual(onnx.graph.outputs.map(\.name), ["logits"])
        XCTAssertEqual(onnx.metadata["distill.classes"], "animals,places,sky")
        let tokenizer = try WordPieceTokenizer(contentsOf: run.appendingPathComponent("tokenizer.json").path)
        let batch = TokenBatch(sequences: ["cat dog fish bird", "sun moon rain snow"].map { tokenizer.encode($0).ids })
        let expected = try XCTUnwrap(saved.model as? any SentenceEmbedder).predictions(batch)
        let reimported = try withoutGradients { try ONNXNetwork(contentsOf: exported.path).run(batch.packed()) }
        XCTAssertEqual(reimported.shape, expected.shape)
        XCTAssertLessThan(zip(reimported.scalars, expected.scalars).map { abs($0 - $1) }.max() ?? 1, 1e-5)

        // A small text-transformer classifier through the same path.
        let transformerRun = folder("text-transformer-classifier")
        let transformer = try assertSucceeds(["train", "--model", "text-transformer", "--tokenizer", teacher.appendingPathComponent("tokenizer.json").path,
                                              "--layers", "1", "--hidden", "8", "--heads", "2", "--feed-forward", "12", "--dropout", "0.2", "--epochs", "1", "--batch", "16",
                                              "--out", transformerRun.path] + common)
        XCTAssertTrue(transformer.contains("test accuracy"), transformer)
        let trained = try SavedModel.load(transformerRun.path)
        XCTAssertEqual(trained.options.feedForward, 12)
        XCTAssertEqual(trained.options.dropout, 0.2)
        XCTAssertEqual(try XCTUnwrap(trained.model as? TextTransformer).bert.configuration.hiddenDropout, 0.2)

        // Mistakes are one line each.
        try assertFails(["train", "--model", "mlp", "--tokenizer", teacher.path, "--out", run.path] + common, mentioning: "--tokenizer is for texts, and --model mlp takes images or tables")
        try assertFails(["train", "--model", "text-bag", "--out", run.path] + common, mentioning: "--model text-bag reads texts: give --tokenizer")
        try assertFails(["train", "--model", "text-bag", "--tokenizer", data.path, "--out", run.path] + common, mentioning: "holds no tokenizer.json")
        try assertFails(["train", "--model", "text-bag", "--tokenizer", teacher.path, "--out", run.path, "--data", data.path, "--text-separator", "%",
                         "--min-class-size", "31"], mentioning: "--min-class-size 31 leaves 0 of the 4 classes")
        try assertFails(["train", "--model", "text-bag", "--tokenizer", teacher.path, "--min-class-size", "0", "--out", run.path], mentioning: "--min-class-size must be 1 to")
        try assertFails(["train", "--model", "text-bag", "--tokenizer", teacher.path, "--layers", "2", "--out", run.path] + common, mentioning: "--layers applies to text-transformer, not text-bag")
        try assertFails(["train", "--model", "text-bag", "--tokenizer", teacher.path, "--feed-forward", "8", "--out", run.path] + common,
                        mentioning: "--feed-forward applies to text-transformer, not text-bag")
        try assertFails(["train", "--model", "text-bag", "--tokenizer", teacher.path, "--dropout", "0", "--out", run.path] + common,
                        mentioning: "--dropout applies to text-transformer, not text-bag")
        try assertFails(["evaluate", run.path, "--data", data.path, "--text-separator", "%"], mentioning: "the model's classes (animals, places, sky) are not")
        try assertFails(["evaluate", teacher.path] + common, mentioning: "is a sentence encoder")
        try assertFails(["predict", teacher.path, texts.path], mentioning: "is a sentence encoder")
        let bad = try self.run(["train", "--model", "text-bag", "--out", run.path] + common)
        XCTAssertEqual(bad.errors.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count, 1, bad.errors)
    }

    func testTextTransferStrategiesOnATinyEncoder() throws {
        let (teacher, _) = try makeTinyTextTeacher()
        let data = try makeTopicFolder()
        let out = folder("text-transfer")
        let common = ["--data", data.path, "--text-separator", "%", "--min-class-size", "20", "--cache-directory", folder("text-transfer-cache").path]
        let output = try assertSucceeds(["transfer", "--from", teacher.path, "--strategy", "freeze,finetune,lwf,scratch", "--steps", "24", "--batch", "8",
                                         "--lr", "0.05", "--optimizer", "adam", "--backbone-lr-scale", "1", "--max-tokens", "6", "--out", out.path] + common)
        XCTAssertTrue(output.contains("a new linear head on the encoder's 16-value embedding"), output)
        let results = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("results.json"))) as? [String: [[String: Double]]])
        for strategy in ["freeze", "finetune", "lwf", "scratch"] {
            let row = try XCTUnwrap(results[strategy]?.first, strategy)
            XCTAssertNotNil(row["new"], strategy)
            XCTAssertEqual(row["old_similarity_spearman"] == nil, strategy == "scratch", "\(strategy): \(row)")
        }
        // The frozen encoder is the original, bit for bit: its similarities are the original's.
        XCTAssertEqual(try XCTUnwrap(results["freeze"]?.first?["old_similarity_spearman"]), 1, accuracy: 1e-12)
        let original = try SavedModel.load(teacher.path).model.stateDict()
        let frozen = Dictionary(try SavedModel.load(out.appendingPathComponent("freeze").path).model.stateDict().map { ($0.name, $0.tensor) },
                                uniquingKeysWith: { a, _ in a })
        for (name, tensor) in original { XCTAssertEqual(frozen[name]?.scalars, tensor.scalars, name) }
        let tuned = Dictionary(try SavedModel.load(out.appendingPathComponent("finetune").path).model.stateDict().map { ($0.name, $0.tensor) },
                               uniquingKeysWith: { a, _ in a })
        XCTAssertTrue(original.contains { tuned[$0.name]?.scalars != $0.tensor.scalars }, "fine-tuning changes the encoder")
        // LwF's term is in its run's metrics.
        let lwfMetrics = try String(contentsOf: out.appendingPathComponent("lwf/seed-0/metrics.jsonl"), encoding: .utf8)
        let terms = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(lwfMetrics.split(separator: "\n")[0].utf8)) as? [String: Any])?["terms"] as? [String: Double])
        XCTAssertTrue(terms["lwf"].map { $0.isFinite && $0 >= 0 } ?? false, "\(terms)")
        // Each new-task model is a text run folder that evaluate reads, cutting texts at the
        // transfer's --max-tokens, which its tokenizer.json records.
        let tunedFolder = out.appendingPathComponent("finetune")
        XCTAssertEqual(try WordPieceTokenizer(contentsOf: tunedFolder.appendingPathComponent("tokenizer.json").path).truncation?.maxLength, 6)
        func evaluate(_ extra: [String]) throws -> [String: Any] {
            let json = try assertSucceeds(["evaluate", tunedFolder.path, "--json"] + common.prefix(6) + extra)
            return try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])?["student"] as? [String: Any])
        }
        let evaluation = try evaluate([]), cutAt6 = try evaluate(["--max-tokens", "6"])
        XCTAssertEqual(evaluation["top1"] as? Double, cutAt6["top1"] as? Double)
        XCTAssertEqual(evaluation["confusion"] as? [[Int]], cutAt6["confusion"] as? [[Int]])
        // A transfer run folder (encoder and new head) teaches a text student by KD, scored on the same test texts.
        let student = folder("text-transfer-kd")
        _ = try assertSucceeds(["distill", "--teacher", tunedFolder.path, "--student", "text-bag", "--hidden", "8", "--epochs", "2", "--batch", "8",
                                "--optimizer", "adam", "--lr", "0.05", "--out", student.path, "--quiet"] + common)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: student.appendingPathComponent("evaluation.json"))) as? [String: Any])
        XCTAssertEqual((report["teacher"] as? [String: Any])?["top1"] as? Double, evaluation["top1"] as? Double)

        // --lwf-weight weighs LwF's term: at 0 the term is there and weighs nothing.
        let unweighted = folder("text-transfer-lwf0")
        _ = try assertSucceeds(["transfer", "--from", teacher.path, "--strategy", "lwf", "--lwf-weight", "0", "--steps", "8", "--batch", "8",
                                "--lr", "0.05", "--optimizer", "adam", "--out", unweighted.path, "--quiet"] + common)
        let zeroMetrics = try String(contentsOf: unweighted.appendingPathComponent("lwf/seed-0/metrics.jsonl"), encoding: .utf8)
        let zeroTerms = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(zeroMetrics.split(separator: "\n")[0].utf8)) as? [String: Any])?["terms"] as? [String: Double])
        XCTAssertEqual(zeroTerms["lwf"], 0)
        XCTAssertGreaterThan(try XCTUnwrap(terms["lwf"]), 0)
        try assertFails(["transfer", "--from", teacher.path, "--strategy", "finetune", "--lwf-weight", "2", "--out", out.path] + common,
                        mentioning: "--lwf-weight weighs LwF's old-task term: give it with --strategy lwf")
        try assertFails(["transfer", "--from", teacher.path, "--strategy", "joint", "--out", out.path] + common, mentioning: "--strategy joint trains the old task's labelled data too")
        try assertFails(["transfer", "--from", teacher.path, "--head", "projection", "--out", out.path] + common, mentioning: "--head: a sentence encoder has no classifier")
        try assertFails(["transfer", "--from", teacher.path, "--out", out.path, "--data", data.path, "--text-separator", "%", "--min-class-size", "40"],
                        mentioning: "--min-class-size 40 leaves 0 of the 4 classes")
    }

    /// all-MiniLM-L6-v2's folder re-heads as a text-transformer of its sizes that embeds as it
    /// does: fine-tuned with the encoder's learning rate 0 (so it runs, unchanged, as the
    /// re-headed model), its embeddings of the held-out texts are the original's (a few texts, two steps).
    func testTransferFromMiniLMReheadsTheSameEncoder() throws {
        let minilm = try MiniLM.requireFolder()
        let data = try makeTopicFolder()
        let out = folder("minilm-transfer")
        let output = try assertSucceeds(["transfer", "--from", minilm.path, "--strategy", "finetune", "--backbone-lr-scale", "0", "--steps", "2", "--batch", "8", "--max-tokens", "16",
                                         "--data", data.path, "--text-separator", "%", "--min-class-size", "20", "--validation-fraction", "0",
                                         "--cache-directory", folder("minilm-transfer-cache").path, "--out", out.path])
        XCTAssertTrue(output.contains("384-value embedding"), output)
        let results = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("results.json"))) as? [String: [[String: Double]]])
        let row = try XCTUnwrap(results["finetune"]?.first)
        XCTAssertGreaterThan(try XCTUnwrap(row["old_similarity_spearman"]), 0.9999)
        XCTAssertGreaterThan(try XCTUnwrap(row["old_mean_cosine"]), 0.99999)
        let saved = try SavedModel.load(out.path)
        XCTAssertEqual(saved.name, "text-transformer")
        XCTAssertEqual(saved.options.headClasses, 3)
    }
}
