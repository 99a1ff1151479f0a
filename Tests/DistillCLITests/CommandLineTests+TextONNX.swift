import Datasets
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import TestSupport
import XCTest

/// ONNX text models on the command line: the committed tiny BERT export
/// (Tests/ModelFormatsTests/Fixtures/onnx/tiny_bert.onnx, vocabulary 96, 40 positions) with a
/// tokenizer.json written here as the teacher of `distill distill` and the model of `distill
/// embed`; and text runs exported to ONNX with Hugging Face's token inputs, checked against
/// our own import and onnxruntime.
extension CommandLineTests {
    /// A WordPiece tokenizer.json over the tiny BERT's 96 ids: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, then words.
    static func tinyBertTokenizer() throws -> Data {
        var vocabulary: [String: Int] = ["[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3]
        for word in tinyWords { vocabulary[word] = vocabulary.count }
        while vocabulary.count < 96 { vocabulary["w\(vocabulary.count)"] = vocabulary.count }
        let tokenizer: [String: Any] = [
            "model": ["type": "WordPiece", "unk_token": "[UNK]", "vocab": vocabulary],
            "normalizer": ["type": "BertNormalizer", "lowercase": true],
            "pre_tokenizer": ["type": "BertPreTokenizer"],
            "post_processor": ["type": "BertProcessing", "cls": ["[CLS]", 2], "sep": ["[SEP]", 3]],
        ]
        return try JSONSerialization.data(withJSONObject: tokenizer, options: .sortedKeys)
    }

    /// Lines of 2 to 9 tiny words, and one of 60 (longer than the model's 40 positions: the
    /// tokenizer must cut it there).
    static func tinyLines(_ count: Int) -> [String] {
        (0..<count).map { i in (0..<(i == 5 ? 60 : 2 + i % 8)).map { tinyWords[(i * 7 + $0 * 13) % tinyWords.count] }.joined(separator: " ") }
    }

    /// Rows of an .npy file written by `distill embed`.
    func npyRows(_ url: URL) throws -> [[Float]] {
        let tensor = try NPY.read(url.path).tensor
        let width = tensor.shape[1]
        return (0..<tensor.shape[0]).map { Array(tensor.scalars[($0 * width)..<(($0 + 1) * width)]) }
    }

    func testONNXTextTeacherDistilsAndEmbeds() throws {
        let work = folder("onnx-text")
        let plain = work.appendingPathComponent("plain"), optimum = work.appendingPathComponent("optimum")
        for folder in [plain, optimum] {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Self.tinyBertTokenizer().write(to: folder.appendingPathComponent("tokenizer.json"))
        }
        // An .onnx file with tokenizer.json beside it; and optimum's layout: model.onnx, tokenizer.json and a config.json.
        let source = Self.onnxFixtures.appendingPathComponent("tiny_bert.onnx")
        let file = plain.appendingPathComponent("tiny_bert.onnx")
        try FileManager.default.copyItem(at: source, to: file)
        // optimum's feature-extraction graph gives last_hidden_state only: pooled here (mean, then L2, without modules.json).
        var hiddenOnly = try ONNXModel.read(source.path)
        hiddenOnly.graph.outputs = hiddenOnly.graph.outputs.filter { $0.name == "last_hidden_state" }
        try hiddenOnly.write(to: optimum.appendingPathComponent("model.onnx").path)
        try Data(#"{"model_type": "bert", "vocab_size": 96}"#.utf8).write(to: optimum.appendingPathComponent("config.json"))
        let texts = work.appendingPathComponent("texts.txt")
        try Data(Self.tinyLines(48).joined(separator: "\n").utf8).write(to: texts)

        // embed: rows equal the library's ONNXNetwork output, text by text (the 60-word line cut at 40 tokens).
        let network = try ONNXNetwork(contentsOf: source.path)
        var tokenizer = try WordPieceTokenizer(contentsOf: plain.appendingPathComponent("tokenizer.json").path)
        tokenizer.truncation = .init(maxLength: 40)
        tokenizer.padding = nil
        let lines = Self.tinyLines(10)
        let expected = try lines.map { line in
            try withoutGradients { try network.run(TokenBatch(sequences: [tokenizer.encode(line).ids]).packed()) }.scalars
        }
        try Data(lines.joined(separator: "\n").utf8).write(to: work.appendingPathComponent("lines.txt"))
        for (model, out) in [(file, "file.npy"), (optimum, "optimum.npy")] {
            let output = try assertSucceeds(["embed", model.path, work.appendingPathComponent("lines.txt").path, "--out",
                                             work.appendingPathComponent(out).path, "--batch", "4"])
            XCTAssertTrue(output.contains("wrote 10 embeddings of 32 values"), output)
            assertClose(try npyRows(work.appendingPathComponent(out)), expected, "embed \(model.lastPathComponent)")
        }

        // export writes the imported text graph again with the token inputs it read, and its tokenizer beside it.
        let again = work.appendingPathComponent("again")
        try FileManager.default.createDirectory(at: again, withIntermediateDirectories: true)
        let exported = try assertSucceeds(["export", file.path, "--out", again.appendingPathComponent("model.onnx").path])
        XCTAssertTrue(exported.contains("inputs input_ids, attention_mask, token_type_ids as read, with tokenizer.json beside it"), exported)
        XCTAssertEqual(try ONNXModel.read(again.appendingPathComponent("model.onnx").path).graph.inputs.map(\.name), ONNXTokenInputs.names)
        _ = try assertSucceeds(["embed", again.path, work.appendingPathComponent("lines.txt").path, "--out", work.appendingPathComponent("again.npy").path])
        assertClose(try npyRows(work.appendingPathComponent("again.npy")), expected, "embed of the graph written again")

        // distill from the ONNX teacher: both students learn; the teacher's embeddings are kept under a hash of the graph's weights.
        let cache = work.appendingPathComponent("cache")
        func distill(_ teacher: URL, _ student: [String], out: String) throws -> [String: Any] {
            let run = work.appendingPathComponent(out)
            let output = try assertSucceeds(["distill", "--data", texts.path, "--teacher", teacher.path, "--method", "embedding", "--epochs", "3",
                                             "--batch", "8", "--optimizer", "adam", "--lr", "0.01", "--cache-directory", cache.path,
                                             "--out", run.path] + student)
            XCTAssertTrue(output.contains("held-out cosine with the teacher"), output)
            XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent("tokenizer.json").path))
            return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("evaluation.json"))) as? [String: Any])
        }
        func kept() throws -> Int {
            try FileManager.default.contentsOfDirectory(atPath: cache.path).filter { $0.hasPrefix("teacher-embeddings-") }.count
        }
        let bag = try distill(file, ["--student", "text-bag", "--hidden", "16"], out: "bag")
        let initial = try XCTUnwrap((bag["initial"] as? [String: Any])?["meanCosine"] as? Double)
        let final = try XCTUnwrap((bag["final"] as? [String: Any])?["meanCosine"] as? Double)
        XCTAssertGreaterThan(final, initial, "held-out cosine with the ONNX teacher")
        XCTAssertEqual(bag["heldOutTexts"] as? Int, 5)
        XCTAssertEqual(try kept(), 2, "train and held-out embeddings")
        _ = try distill(file, ["--student", "text-transformer", "--layers", "1", "--hidden", "16", "--heads", "2", "--epochs", "1"], out: "transformer")
        XCTAssertEqual(try kept(), 2, "the same graph: read back, not computed again")
        _ = try distill(optimum, ["--student", "text-bag", "--hidden", "16", "--epochs", "1"], out: "pooled")
        XCTAssertEqual(try kept(), 4, "the pooling is part of the key")
        var changed = try ONNXModel.read(source.path)
        let table = try XCTUnwrap(changed.graph.initializers.firstIndex { $0.name.hasSuffix("word_embeddings.weight") })
        guard case let .floats(values) = changed.graph.initializers[table].values else { return XCTFail("the word embeddings are floats") }
        changed.graph.initializers[table].values = .floats(values.map { $0 * 2 })
        try changed.write(to: file.path)
        _ = try distill(file, ["--student", "text-bag", "--hidden", "16", "--epochs", "1"], out: "bag2")
        XCTAssertEqual(try kept(), 6, "other weights, other teacher embeddings")

        // What an ONNX graph cannot do, and what is not an ONNX text model: one line each.
        let student = ["--student", "text-transformer", "--layers", "1", "--hidden", "32", "--heads", "4", "--method", "embedding"]
        try assertFails(["distill", "--data", texts.path, "--teacher", file.path, "--init-from-teacher", "--out", work.path + "/x"] + student,
                        mentioning: "--init-from-teacher: \(file.path) is an ONNX graph, whose encoder layers Distill cannot copy")
        try assertFails(["distill", "--data", texts.path, "--teacher", optimum.path, "--hidden-weight", "1", "--out", work.path + "/x"] + student,
                        mentioning: "--hidden-weight: \(optimum.path) is an ONNX graph, whose encoder layers Distill cannot tap")
        let bare = work.appendingPathComponent("bare")
        try FileManager.default.createDirectory(at: bare, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: source, to: bare.appendingPathComponent("tiny_bert.onnx"))
        try assertFails(["embed", bare.appendingPathComponent("tiny_bert.onnx").path, texts.path, "--out", work.path + "/x.npy"],
                        mentioning: "no tokenizer.json beside tiny_bert.onnx (or in the folder above it)")
        try FileManager.default.copyItem(at: Self.onnxFixtures.appendingPathComponent("branchnet.onnx"), to: plain.appendingPathComponent("branchnet.onnx"))
        try assertFails(["embed", plain.appendingPathComponent("branchnet.onnx").path, texts.path, "--out", work.path + "/x.npy"],
                        mentioning: "(an image or feature batch), not token inputs input_ids, attention_mask, token_type_ids: it is not a text model")
    }

    /// The teacher's embeddings are kept in chunks cut where the texts say
    /// (`Dataset.contentDefinedChunks`): a transfer set grown by a file computes only the
    /// chunks the new file touches, and trains exactly as a run that computed everything.
    func testTeacherCacheKeepsItsChunksWhenTheTransferSetGrows() throws {
        let work = folder("text-cache-growth")
        let teacher = work.appendingPathComponent("teacher"), set = work.appendingPathComponent("set")
        for folder in [teacher, set] { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) }
        try Self.tinyBertTokenizer().write(to: teacher.appendingPathComponent("tokenizer.json"))
        let model = teacher.appendingPathComponent("tiny_bert.onnx")
        try FileManager.default.copyItem(at: Self.onnxFixtures.appendingPathComponent("tiny_bert.onnx"), to: model)
        var generator = RandomGenerator(seed: 11)
        func lines(_ count: Int) -> [String] {
            (0..<count).map { _ in (0..<(2 + Int(generator.next() % 8))).map { _ in Self.tinyWords[Int(generator.next() % 30)] }.joined(separator: " ") }
        }
        let first = lines(34_000), added = lines(300)  // more than one group of 32,768 to compute
        try Data(first.joined(separator: "\n%\n").utf8).write(to: set.appendingPathComponent("a"))
        let heldOut = work.appendingPathComponent("held-out")
        try Data(lines(40).joined(separator: "\n%\n").utf8).write(to: heldOut)
        func distill(cache: String, out: String) throws -> (output: String, final: [String: Any]) {
            let run = work.appendingPathComponent(out)
            let output = try assertSucceeds(["distill", "--data", set.path, "--test-data", heldOut.path, "--text-separator", "%",
                                             "--teacher", model.path, "--student", "text-bag", "--hidden", "8", "--method", "embedding",
                                             "--epochs", "1", "--batch", "64", "--optimizer", "adam", "--lr", "0.01",
                                             "--cache-directory", work.appendingPathComponent(cache).path, "--out", run.path])
            let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("evaluation.json"))) as? [String: Any])
            return (output, try XCTUnwrap(report["final"] as? [String: Any]))
        }
        let before = try distill(cache: "cache", out: "before")
        XCTAssertTrue(before.output.contains("the teacher embedded 34040 texts in "), before.output)
        XCTAssertFalse(before.output.contains("read from"), before.output)

        // Which texts the grown set finds kept: those of its chunks that hold the same texts as a chunk before.
        var tokenizer = try WordPieceTokenizer(contentsOf: teacher.appendingPathComponent("tokenizer.json").path)
        tokenizer.padding = nil
        let ids = { (texts: [String]) in texts.map { tokenizer.encode($0).ids.map(Int32.init) } }
        let old = ids(first), grown = ids(first + added)
        let oldChunks = Set(Dataset.contentDefinedChunks(old).map { Array(old[$0]) })
        let reused = Dataset.contentDefinedChunks(grown).filter { oldChunks.contains(Array(grown[$0])) }.reduce(0) { $0 + $1.count }
        XCTAssertGreaterThan(reused, 2_000, "these texts make chunks before the end of the first file")
        try Data(added.joined(separator: "\n%\n").utf8).write(to: set.appendingPathComponent("b"))
        let after = try distill(cache: "cache", out: "after")
        XCTAssertTrue(after.output.contains("the teacher embedded \(34_300 - reused) texts in "), after.output)
        XCTAssertTrue(after.output.contains(", \(reused + 40) more read from \(work.appendingPathComponent("cache").path)"), after.output)
        let fresh = try distill(cache: "fresh", out: "fresh")
        XCTAssertTrue(fresh.output.contains("the teacher embedded 34340 texts in "), fresh.output)
        for key in ["meanCosine", "similaritySpearman"] {
            XCTAssertEqual(after.final[key] as? Double, fresh.final[key] as? Double, "\(key): kept chunks train as computed ones")
        }
    }

    func testTextRunsExportToONNXWithHuggingFacesTokenInputs() throws {
        let (transformerRun, _) = try makeTinyTextTeacher()
        let work = folder("text-export")
        let bagRun = work.appendingPathComponent("bag"), exported = work.appendingPathComponent("exported")
        for folder in [bagRun, exported] { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) }
        try FileManager.default.copyItem(at: transformerRun.appendingPathComponent("tokenizer.json"), to: bagRun.appendingPathComponent("tokenizer.json"))
        let tokenizer = try WordPieceTokenizer(contentsOf: bagRun.appendingPathComponent("tokenizer.json").path)
        var g = RandomGenerator(seed: 5)
        let bagOptions = ModelOptions.text(vocabularySize: tokenizer.vocabulary.count, paddingId: 0, outputs: 12, hidden: 8)
        try SavedModel.save(try ModelZoo.make("text-bag", options: bagOptions, using: &g), name: "text-bag", options: bagOptions,
                            to: bagRun.appendingPathComponent("model.safetensors").path)
        // Padded rows of 4 to 8 tokens, [CLS] ... [SEP] (the first 5 lines: the teacher has 16 positions).
        let texts = Self.tinyLines(5)
        let batch = TokenBatch(sequences: texts.map { tokenizer.encode($0).ids })
        let lines = work.appendingPathComponent("lines.txt")
        try Data(texts.joined(separator: "\n").utf8).write(to: lines)
        let feeds = work.appendingPathComponent("inputs.json")
        let rows = { (values: [Int]) in (0..<batch.batchSize).map { Array(values[($0 * batch.length)..<(($0 + 1) * batch.length)]) } }
        try JSONSerialization.data(withJSONObject: ["input_ids": rows(batch.ids), "attention_mask": rows(batch.attentionMask),
                                                    "token_type_ids": rows(batch.tokenTypes)]).write(to: feeds)
        var checks: [String] = []

        for (run, name, inputs, width) in [(transformerRun, "text-transformer", ONNXTokenInputs.names, 16), (bagRun, "text-bag", ["input_ids", "attention_mask"], 12)] {
            let file = exported.appendingPathComponent("\(name).onnx")
            let output = try assertSucceeds(["export", run.path, "--format", "onnx", "--out", file.path])
            XCTAssertTrue(output.contains("as ONNX (opset 17") && output.contains("inputs \(inputs.joined(separator: ", ")) [batch, sequence], output sentence_embedding [batch, \(width)]"), output)
            XCTAssertTrue(FileManager.default.fileExists(atPath: exported.appendingPathComponent("tokenizer.json").path), "tokenizer.json beside the file")
            let model = try XCTUnwrap(try SavedModel.load(run.path).model as? any SentenceEmbedder)
            let expected = try model.predictions(batch)

            // Our import: token inputs by name, open axes, the same embeddings.
            let onnx = try ONNXModel.read(file.path)
            XCTAssertEqual(onnx.graph.inputs.map(\.name), inputs)
            XCTAssertEqual(Set(onnx.graph.inputs.map(\.elementType)), [ONNXTensor.int64])
            XCTAssertEqual(onnx.graph.outputs.map(\.name), ["sentence_embedding"])
            let network = try ONNXNetwork(contentsOf: file.path)
            XCTAssertNil(network.tokenInputs?.length, "the sequence axis is open")
            let reimported = try withoutGradients { try network.run(batch.packed()) }
            let worst = zip(reimported.scalars, expected.scalars).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertEqual(reimported.shape, expected.shape)
            XCTAssertLessThan(worst, 1e-5, "\(name): re-imported export against the model")
            print("\(name) exported: our import of the file against the model, largest |Δ| \(worst)")
            // The exported file with its tokenizer is a text model: embed gives the run's rows.
            let fromRun = work.appendingPathComponent("\(name)-run.npy"), fromFile = work.appendingPathComponent("\(name)-file.npy")
            _ = try assertSucceeds(["embed", run.path, lines.path, "--out", fromRun.path])
            _ = try assertSucceeds(["embed", file.path, lines.path, "--out", fromFile.path])
            assertClose(try npyRows(fromFile), try npyRows(fromRun), "\(name): embed of the exported file")
            XCTAssertTrue(try assertSucceeds(["inspect", file.path]).contains("input 'input_ids'"))

            // onnxruntime on the same padded batch (both files checked in one run of the script, below).
            let want = work.appendingPathComponent("\(name)-expected.npy")
            try NPY.write(expected, to: want.path)
            checks += [file.path, feeds.path, want.path]
        }
        try requireTool(pythonCanImport("onnx", "onnxruntime", "numpy"), "python3 with onnx, onnxruntime and numpy is not installed (make test installs them)")
        let check = try runPython([Self.root.appendingPathComponent("scripts/check_onnx.py").path] + checks)
        XCTAssertEqual(check.status, 0, check.output)
        let results = check.output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertEqual(results.count, 2, check.output)
        for result in results {
            XCTAssertLessThan(result["max_abs_diff"] as? Double ?? 1, 1e-5, "onnxruntime against the model: \(check.output)")
            print("\(result["model"] ?? "?"): onnxruntime against the model, largest |Δ| \(result["max_abs_diff"] ?? "?")")
        }
        // A safetensors export of a text run takes its tokenizer along too, and embeds as the run does.
        let safetensorsFolder = work.appendingPathComponent("as-safetensors")
        try FileManager.default.createDirectory(at: safetensorsFolder, withIntermediateDirectories: true)
        let stateDict = safetensorsFolder.appendingPathComponent("model.safetensors")
        XCTAssertTrue(try assertSucceeds(["export", bagRun.path, "--out", stateDict.path]).contains("with tokenizer.json beside it"))
        let fromStateDict = work.appendingPathComponent("bag-safetensors.npy"), fromBagRun = work.appendingPathComponent("bag-run.npy")
        _ = try assertSucceeds(["embed", safetensorsFolder.path, lines.path, "--out", fromStateDict.path])
        _ = try assertSucceeds(["embed", bagRun.path, lines.path, "--out", fromBagRun.path])
        assertClose(try npyRows(fromStateDict), try npyRows(fromBagRun), "embed of the safetensors export")
        try assertFails(["export", bagRun.path, "--softmax", "--out", work.path + "/x.onnx"], mentioning: "--softmax: \(bagRun.path) is a text model")
        try assertFails(["export", transformerRun.path, "--opset", "13", "--out", work.path + "/x.onnx"], mentioning: "text-transformer needs opset 17 or later")
    }
}
