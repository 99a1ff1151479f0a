import Datasets
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import TestSupport
import XCTest

/// Text distillation on the command line: all-MiniLM-L6-v2 (scripts/fetch-minilm.sh) taught
/// into a bag-of-embeddings student on a few hundred quotes of Debian's `fortunes`, `distill
/// embed` for teacher and student, and the one-line errors of bad text input.
extension CommandLineTests {
    static let fortunes = "/usr/share/games/fortunes"

    /// A folder in the fortunes layout: the first `perFile` quotes of three topic files, `%` between quotes.
    func makeFortunesFolder(perFile: Int) throws -> URL {
        try requireTool(FileManager.default.fileExists(atPath: Self.fortunes + "/science"), "fortunes is not installed (scripts/install-deps.sh installs it)")
        let folder = self.folder("fortunes")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for topic in ["science", "computers", "wisdom"] {
            let quotes = try TextData.readTexts(Self.fortunes + "/" + topic, separator: "%").texts.prefix(perFile)
            try Data(quotes.joined(separator: "\n%\n").utf8).write(to: folder.appendingPathComponent(topic))
        }
        return folder
    }

    static let sentences = ["The cat sat on the mat.", "A dog barked at the mailman all morning.", "Compilers turn source code into machine code.",
                            "Stars are born in clouds of gas and dust.", "She sells sea shells by the sea shore.", "Nothing is certain but death and taxes.",
                            "Debugging is twice as hard as writing the code in the first place.", "Rain is expected tomorrow afternoon.",
                            "Énergie, café et naïveté.", "42"]

    /// Embeddings of `sentences` one at a time by the library (no padding, no batching).
    func libraryEmbeddings(_ embed: (TokenBatch) throws -> Tensor, tokenizer file: URL) throws -> [[Float]] {
        var tokenizer = try WordPieceTokenizer(contentsOf: file.path)
        tokenizer.padding = nil
        return try Self.sentences.map { try embed(TokenBatch(sequences: [tokenizer.encode($0).ids])).scalars }
    }

    func assertClose(_ rows: [[Float]], _ expected: [[Float]], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(rows.count, expected.count, what, file: file, line: line)
        for (row, reference) in zip(rows, expected) {
            XCTAssertEqual(row.count, reference.count, what, file: file, line: line)
            let worst = zip(row, reference).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThan(worst, 1e-5, what, file: file, line: line)
        }
    }

    func testTextBagLearnsMiniLMsEmbeddingsAndEmbedWritesThem() throws {
        let minilm = try MiniLM.requireFolder()
        let data = try makeFortunesFolder(perFile: 100)
        let run = folder("text-run")
        let output = try assertSucceeds(["distill", "--data", data.path, "--text-separator", "%", "--teacher", minilm.path, "--student", "text-bag",
                                         "--method", "embedding", "--hidden", "64", "--epochs", "6", "--batch", "16", "--optimizer", "adam",
                                         "--lr", "0.01", "--out", run.path, "--quiet"])
        XCTAssertTrue(output.contains("held-out cosine with the teacher"), output)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("evaluation.json"))) as? [String: Any])
        let initial = try XCTUnwrap(report["initial"] as? [String: Any]), final = try XCTUnwrap(report["final"] as? [String: Any])
        let (before, after) = (try XCTUnwrap(initial["meanCosine"] as? Double), try XCTUnwrap(final["meanCosine"] as? Double))
        XCTAssertEqual(report["heldOutTexts"] as? Int, 30)
        XCTAssertEqual(final["pairs"] as? Int, 435)
        // Measured 0.016 untrained, 0.35 distilled. (The similarity ranking needs far more than 270
        // quotes to beat the untrained bag's, whose random vectors already reward shared words: docs/text.md.)
        XCTAssertGreaterThan(after, before + 0.25, "held-out cosine with the teacher: \(before) untrained, \(after) distilled")
        XCTAssertNotNil(final["similaritySpearman"] as? Double)
        for name in ["model.safetensors", "tokenizer.json", "config.yaml", "checkpoint.safetensors"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent(name).path), name)
        }

        // embed: one row per line, for the teacher (JSON lines) and the student (NPY), equal to the library's.
        let work = folder("embed")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let lines = work.appendingPathComponent("lines.txt")
        try Data((Self.sentences.joined(separator: "\n") + "\n\n").utf8).write(to: lines)
        let teacherOut = work.appendingPathComponent("teacher.jsonl"), studentOut = work.appendingPathComponent("student.npy")
        XCTAssertTrue(try assertSucceeds(["embed", minilm.path, lines.path, "--out", teacherOut.path, "--batch", "4"]).contains("wrote 10 embeddings of 384 values"))
        let teacherRows = try String(contentsOf: teacherOut, encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [Double]).map(Float.init)
        }
        let encoder = try HuggingFaceBERT.sentenceEncoder(folder: minilm.path)
        assertClose(teacherRows, try libraryEmbeddings(encoder.embed, tokenizer: minilm.appendingPathComponent("tokenizer.json")), "teacher")

        _ = try assertSucceeds(["embed", run.path, lines.path, "--out", studentOut.path])
        let array = try NPY.read(studentOut.path)
        XCTAssertEqual(array.tensor.shape, [10, 384])
        let student = try XCTUnwrap(try SavedModel.load(run.path).model as? BagOfEmbeddings)
        let studentRows = (0..<10).map { Array(array.tensor.scalars[($0 * 384)..<(($0 + 1) * 384)]) }
        assertClose(studentRows, try libraryEmbeddings(student.embed, tokenizer: run.appendingPathComponent("tokenizer.json")), "student")
    }

    func testTextTransformerStartsFromMiniLMsLayers() throws {
        let minilm = try MiniLM.requireFolder()
        let data = try makeFortunesFolder(perFile: 30)
        let run = folder("transformer-run"), cache = folder("transformer-cache")
        func arguments(_ extra: [String]) -> [String] {
            ["distill", "--data", data.path, "--text-separator", "%", "--teacher", minilm.path, "--student", "text-transformer", "--layers", "2",
             "--method", "embedding", "--out", run.path, "--cache-directory", cache.path, "--epochs", "1", "--batch", "16", "--optimizer", "adam",
             "--lr", "0.00005", "--quiet"] + extra
        }
        func cosines() throws -> (initial: Double, final: Double) {
            let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("evaluation.json"))) as? [String: Any])
            return (try XCTUnwrap((report["initial"] as? [String: Any])?["meanCosine"] as? Double),
                    try XCTUnwrap((report["final"] as? [String: Any])?["meanCosine"] as? Double))
        }
        let output = try assertSucceeds(arguments(["--init-from-teacher"]))
        XCTAssertTrue(output.contains("held-out cosine with the teacher"), output)
        let started = try cosines()
        _ = try assertSucceeds(arguments(["--hidden", "384", "--heads", "12"]))
        let random = try cosines()
        // Layers 0 and 3 of the teacher's six, with its embeddings: nearer the teacher before any training than random weights.
        XCTAssertGreaterThan(started.initial, random.initial + 0.1, "initial cosine from the teacher's layers \(started.initial), random \(random.initial)")
        XCTAssertGreaterThan(started.final, started.initial)
        try assertFails(arguments(["--init-from-teacher", "--hidden", "192", "--heads", "12"]),
                        mentioning: "--init-from-teacher: the student's hidden size is 192 and the teacher's 384")
    }

    func testTextInputMistakesAreOneLineErrors() throws {
        let work = folder("text-errors")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let noTokenizer = work.appendingPathComponent("no-tokenizer")
        try FileManager.default.createDirectory(at: noTokenizer, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: noTokenizer.appendingPathComponent("config.json"))
        let texts = work.appendingPathComponent("texts.txt"), empty = work.appendingPathComponent("empty.txt")
        let table = work.appendingPathComponent("quotes.csv")
        try Data("one text\nanother text\n".utf8).write(to: texts)
        try Data("\n  \n".utf8).write(to: empty)
        try Data("quote,author\nhello,me\n".utf8).write(to: table)
        let out = work.appendingPathComponent("run").path
        func distill(_ data: URL, _ teacher: URL, _ extra: [String] = []) -> [String] {
            ["distill", "--data", data.path, "--teacher", teacher.path, "--student", "text-bag", "--method", "embedding", "--out", out] + extra
        }
        try assertFails(distill(texts, noTokenizer), mentioning: "has no tokenizer.json")
        try assertFails(distill(texts, noTokenizer, ["--quantize", "int8"]), mentioning: "--quantize and --student-weights take image and table students")
        try assertFails(distill(empty, noTokenizer), mentioning: "empty.txt: holds no text")
        try assertFails(distill(table, noTokenizer), mentioning: "has no column named 'text' for the texts (columns: quote, author)")
        try assertFails(distill(table, noTokenizer, ["--text-column", "author"]), mentioning: "has no tokenizer.json")
        try assertFails(["distill", "--data", texts.path, "--teacher", noTokenizer.path, "--student", "text-bag", "--method", "at", "--out", out], mentioning: "(--method embedding)")
        try assertFails(["distill", "--data", texts.path, "--teacher", noTokenizer.path, "--student", "mlp", "--method", "embedding", "--out", out],
                        mentioning: "--student mlp takes images or tables")
        try assertFails(["embed", noTokenizer.path, texts.path, "--out", work.appendingPathComponent("e.txt").path], mentioning: "give a .npy or .jsonl file")
        try assertFails(["embed", noTokenizer.path, empty.path, "--out", work.appendingPathComponent("e.npy").path], mentioning: "holds no text")
        try assertFails(["train", "--data", texts.path, "--model", "text-bag", "--out", out], mentioning: "text-bag")
        try assertFails(distill(texts, noTokenizer, ["--layers", "2"]), mentioning: "--layers applies to text-transformer, not text-bag")
        // The text options are experiment keys like every other.
        let yaml = work.appendingPathComponent("text.yaml")
        try Data("command: distill\ndata: \(texts.path)\nteacher: [\(noTokenizer.path)]\ntext-separator: \"%\"\nmax-tokens: 64\nstudent: text-bag\nmethod: embedding\nout: \(out)\ndry-run: true\n".utf8).write(to: yaml)
        XCTAssertTrue(try assertSucceeds(["run", yaml.path]).contains("options are valid"))
    }
}

/// Hidden-state and attention transfer on the command line, with a tiny teacher made here (a
/// 4-layer text-transformer saved as a text run, with a tokenizer.json of 30 words), so the
/// test needs neither MiniLM nor fortunes.
extension CommandLineTests {
    static let tinyWords = ["the", "cat", "dog", "sat", "ran", "on", "mat", "rug", "a", "big", "small", "red", "blue", "and", "then",
                            "slept", "ate", "fish", "bird", "sang", "loud", "soft", "home", "away", "day", "night", "sun", "moon", "rain", "snow"]

    /// A folder with a random 4-layer text-transformer (hidden 16, 2 heads) and its tokenizer,
    /// and a text file of 48 sentences of 2 to 9 of its words.
    func makeTinyTextTeacher() throws -> (teacher: URL, texts: URL) {
        let work = folder("tiny-text")
        let teacher = work.appendingPathComponent("teacher")
        try FileManager.default.createDirectory(at: teacher, withIntermediateDirectories: true)
        var vocabulary: [String: Int] = ["[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3]
        for word in Self.tinyWords { vocabulary[word] = vocabulary.count }
        let tokenizer: [String: Any] = [
            "model": ["type": "WordPiece", "unk_token": "[UNK]", "vocab": vocabulary],
            "normalizer": ["type": "BertNormalizer", "lowercase": true],
            "pre_tokenizer": ["type": "BertPreTokenizer"],
            "post_processor": ["type": "BertProcessing", "cls": ["[CLS]", 2], "sep": ["[SEP]", 3]],
        ]
        try JSONSerialization.data(withJSONObject: tokenizer).write(to: teacher.appendingPathComponent("tokenizer.json"))
        var g = RandomGenerator(seed: 11)
        let options = ModelOptions.text(vocabularySize: vocabulary.count, paddingId: 0, outputs: 16, hidden: 16, layers: 4, heads: 2, maxTokens: 16)
        let model = try ModelZoo.make("text-transformer", options: options, using: &g)
        try SavedModel.save(model, name: "text-transformer", options: options, to: teacher.appendingPathComponent("model.safetensors").path)
        let texts = work.appendingPathComponent("texts.txt")
        let lines = (0..<48).map { i in (0..<(2 + i % 8)).map { Self.tinyWords[(i * 7 + $0 * 13) % Self.tinyWords.count] }.joined(separator: " ") }
        try Data(lines.joined(separator: "\n").utf8).write(to: texts)
        return (teacher, texts)
    }

    func testHiddenStateAndAttentionTransferReportTheirTermsWithATinyTeacher() throws {
        let (teacher, texts) = try makeTinyTextTeacher()
        let runFolder = folder("layer-run")
        func arguments(_ extra: [String]) -> [String] {
            ["distill", "--data", texts.path, "--teacher", teacher.path, "--student", "text-transformer", "--layers", "2", "--hidden", "8",
             "--heads", "2", "--method", "embedding", "--epochs", "2", "--batch", "8", "--optimizer", "adam", "--lr", "0.01", "--out", runFolder.path] + extra
        }
        let output = try assertSucceeds(arguments(["--hidden-weight", "1", "--attention-weight", "2"]))
        XCTAssertTrue(output.contains("student layer ← teacher layer 0 ← 1, 1 ← 3"), output)
        XCTAssertTrue(output.contains("the teacher runs online on every batch"), output)
        XCTAssertTrue(output.contains("held-out cosine with the teacher"), output)
        let epochs = try String(contentsOf: runFolder.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        XCTAssertEqual(epochs.count, 2)
        for epoch in epochs {
            let terms = try XCTUnwrap(epoch["terms"] as? [String: Double], "\(epoch)")
            XCTAssertEqual(Set(terms.keys), ["embedding", "hidden", "attention"])
            XCTAssertTrue(terms.values.allSatisfy { $0.isFinite && $0 > 0 }, "\(terms)")
        }
        // A map of the last layers only (MiniLM's choice), attention alone.
        let last = try assertSucceeds(arguments(["--attention-weight", "1", "--layer-map", "1:3", "--epochs", "1"]))
        XCTAssertTrue(last.contains("layer transfer of attention (weight 1): student layer ← teacher layer 1 ← 3;"), last)

        try assertFails(arguments(["--hidden-weight", "1", "--layer-map", "0:1,1:4"]), mentioning: "--layer-map: layer map item '1:4': the teacher has 4 layers (0 to 3)")
        try assertFails(arguments(["--hidden-weight", "1", "--layer-map", "0:1;1:3"]), mentioning: "--layer-map: layer map item '0:1;1:3' is not STUDENT:TEACHER")
        try assertFails(arguments(["--layer-map", "0:1"]), mentioning: "--layer-map pairs layers for --hidden-weight or --attention-weight")
        try assertFails(arguments(["--attention-weight", "1", "--heads", "4"]), mentioning: "the student has 4 attention heads and the teacher 2")
        try assertFails(["distill", "--data", texts.path, "--teacher", teacher.path, "--student", "text-bag", "--method", "embedding",
                         "--hidden-weight", "1", "--out", runFolder.path], mentioning: "--hidden-weight: text-bag has no encoder layers")
        try assertFails(["distill", "--teacher", teacher.path + "/model.safetensors", "--student", "resnet8", "--attention-weight", "1",
                         "--dry-run", "--out", runFolder.path], mentioning: "--attention-weight: resnet8 has no encoder layers")
        try assertFails(arguments(["--hidden-weight", "-1"]), mentioning: "hidden-weight")
        let bad = try run(arguments(["--hidden-weight", "1", "--layer-map", "5:0"]))
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertEqual(bad.errors.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count, 1, bad.errors)
    }

    /// `--init-layers` picks the teacher's layers the student starts from, and `--feed-forward`
    /// narrows its feed-forward blocks to the teacher's strongest neurons (recorded in the
    /// model file, so the run loads again); mistakes name the option.
    func testStudentStartsFromChosenTeacherLayersWithANarrowFeedForward() throws {
        let (teacher, texts) = try makeTinyTextTeacher()
        let runFolder = folder("narrow-run")
        func arguments(_ extra: [String]) -> [String] {
            ["distill", "--data", texts.path, "--teacher", teacher.path, "--student", "text-transformer", "--method", "embedding",
             "--epochs", "1", "--batch", "8", "--optimizer", "adam", "--lr", "0.001", "--out", runFolder.path] + extra
        }
        let output = try assertSucceeds(arguments(["--init-from-teacher", "--init-layers", "0,3", "--feed-forward", "16", "--dropout", "0"]))
        XCTAssertTrue(output.contains("the student starts from the teacher's embeddings and layers 0, 3"), output)
        let saved = try SavedModel.load(runFolder.path)
        XCTAssertEqual(saved.options.layers, 2)
        XCTAssertEqual(saved.options.feedForward, 16)
        XCTAssertEqual(saved.options.dropout, 0)
        let encoder = try XCTUnwrap(saved.model as? TextTransformer).bert
        XCTAssertEqual(encoder.embeddings.dropout.probability, 0)
        XCTAssertEqual(encoder.encoder.layers[1].attention.attention.dropout.probability, 0)
        let state = Dictionary(uniqueKeysWithValues: saved.model.stateDict().map { ($0.name, $0.tensor.shape) })
        XCTAssertEqual(state["encoder.layer.1.intermediate.dense.weight"], [16, 16])
        XCTAssertEqual(state["encoder.layer.1.output.dense.weight"], [16, 16])
        XCTAssertTrue(try assertSucceeds(["embed", runFolder.path, texts.path, "--out", runFolder.appendingPathComponent("embedded.npy").path]).contains("wrote 48 embeddings"))

        try assertFails(arguments(["--init-layers", "0,3"]), mentioning: "--init-layers 0,3 picks the teacher's layers that --init-from-teacher copies")
        try assertFails(arguments(["--init-from-teacher", "--init-layers", "0,3", "--layers", "3"]),
                        mentioning: "--init-layers 0,3 names 2 teacher layers for a student of --layers 3")
        try assertFails(arguments(["--init-from-teacher", "--init-layers", "1,4"]),
                        mentioning: "--init-layers: the layer mapping [1, 4] does not fit 2 student layers and 4 teacher layers")
        try assertFails(arguments(["--init-from-teacher", "--init-layers", "1,1"]), mentioning: "--init-layers '1,1' repeats a number")
        try assertFails(arguments(["--init-from-teacher", "--feed-forward", "128"]),
                        mentioning: "--init-from-teacher: the student's feed-forward block is 128 wide and the teacher's 64")
        try assertFails(arguments(["--feed-forward", "0"]), mentioning: "--feed-forward")
        try assertFails(arguments(["--dropout", "0.95"]), mentioning: "--dropout")
        try assertFails(["distill", "--data", texts.path, "--teacher", teacher.path, "--student", "text-bag", "--method", "embedding",
                         "--dropout", "0", "--out", runFolder.path], mentioning: "--dropout applies to text-transformer, not text-bag")
        try assertFails(["distill", "--data", texts.path, "--teacher", teacher.path, "--student", "text-bag", "--method", "embedding",
                         "--feed-forward", "8", "--out", runFolder.path], mentioning: "--feed-forward applies to text-transformer, not text-bag")
    }

    /// `--seeds` for text runs: one run folder per seed, each with its own held-out
    /// agreement, results.json with one value per seed, and a resume that keeps finished seeds.
    func testTextDistillationOverSeveralSeeds() throws {
        let (teacher, texts) = try makeTinyTextTeacher()
        let runFolder = folder("text-seeds")
        let arguments = ["distill", "--data", texts.path, "--teacher", teacher.path, "--student", "text-bag", "--hidden", "8",
                         "--method", "embedding", "--epochs", "1", "--batch", "8", "--seeds", "0-1", "--out", runFolder.path]
        let output = try assertSucceeds(arguments)
        XCTAssertTrue(output.contains("over 2 seeds: held-out cosine with the teacher"), output)
        let results = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: runFolder.appendingPathComponent("results.json"))) as? [String: [Double]])
        XCTAssertEqual(results["similarity_spearman"]?.count, 2)
        XCTAssertEqual(results["held_out_cosine"]?.count, 2)
        for seed in 0...1 {
            let seedFolder = runFolder.appendingPathComponent("seed-\(seed)")
            for file in ["model.safetensors", "tokenizer.json", "evaluation.json"] {
                XCTAssertTrue(FileManager.default.fileExists(atPath: seedFolder.appendingPathComponent(file).path), "seed-\(seed)/\(file)")
            }
        }
        // Different seeds hold out different texts and start from different weights.
        XCTAssertNotEqual(try Data(contentsOf: runFolder.appendingPathComponent("seed-0/model.safetensors")),
                          try Data(contentsOf: runFolder.appendingPathComponent("seed-1/model.safetensors")))
        // Resuming a finished run trains nothing again and reports the same numbers.
        let before = try Data(contentsOf: runFolder.appendingPathComponent("seed-1/model.safetensors"))
        let resumed = try assertSucceeds(["distill", "--resume", runFolder.path])
        XCTAssertTrue(resumed.contains("over 2 seeds"), resumed)
        XCTAssertEqual(try Data(contentsOf: runFolder.appendingPathComponent("seed-1/model.safetensors")), before)
        let again = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: runFolder.appendingPathComponent("results.json"))) as? [String: [Double]])
        XCTAssertEqual(again, results)
    }

    /// `--test-data` with `--method embedding`: its texts are the held-out set (all of them), and
    /// every text of --data trains (unlabelled text added to a study's own); with
    /// --test-fraction as well, or with fewer than two texts, a one-line error.
    func testTextDistillationHoldsOutTheTestData() throws {
        let (teacher, texts) = try makeTinyTextTeacher()
        let test = folder("text-test").appendingPathComponent("held.txt")
        try FileManager.default.createDirectory(at: test.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data((0..<6).map { i in (0..<(3 + i)).map { Self.tinyWords[(i * 5 + $0 * 3) % Self.tinyWords.count] }.joined(separator: " ") }
            .joined(separator: "\n").utf8).write(to: test)
        let runFolder = folder("text-held")
        let arguments = ["distill", "--data", texts.path, "--test-data", test.path, "--teacher", teacher.path, "--student", "text-bag",
                         "--hidden", "8", "--method", "embedding", "--epochs", "1", "--batch", "8", "--out", runFolder.path]
        let output = try assertSucceeds(arguments)
        XCTAssertTrue(output.contains("48 texts, 6 held out"), output)
        let evaluation = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: runFolder.appendingPathComponent("evaluation.json"))) as? [String: Any])
        XCTAssertEqual(evaluation["heldOutTexts"] as? Int, 6, "\(evaluation)")
        try assertFails(arguments + ["--test-fraction", "0.2"], mentioning: "--test-data \(test.path): give --test-data or --test-fraction, not both")
        try Data("one text alone".utf8).write(to: test)
        try assertFails(arguments, mentioning: "--test-data \(test.path) holds 1 text: at least 2 are needed")
    }
}
