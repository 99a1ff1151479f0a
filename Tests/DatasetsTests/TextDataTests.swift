import Datasets
import DistillInference
import Foundation
import Tensors
import TestSupport
import XCTest

/// Text data: the readers (`TextData`), text datasets tokenised once (`Dataset(texts:...)`),
/// batches padded to their longest text, and length buckets.
final class TextDataTests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("distill-text-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    @discardableResult
    func write(_ text: String, _ name: String) throws -> String {
        let url = scratch.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    func assertError(_ expression: @autoclosure () throws -> Any, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try expression(), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(message), "\(error) should say \(message)", file: file, line: line)
        }
    }

    // MARK: Readers

    func testAFolderOfClassFilesIsCutBySeparatorLinesAndIgnoresOtherFiles() throws {
        try write("one\n%\ntwo\nlines\n%\n", "science")
        try write("three\n%\n  \n%\nfour", "art.txt")
        try write("binary index", "science.dat")
        try write("not a class\n", "off/politics")
        let texts = try TextData.read(scratch.path, separator: "%")
        XCTAssertEqual(texts, LabeledTexts(texts: ["three", "four", "one", "two\nlines"], labels: [0, 0, 1, 1], classNames: ["art", "science"]))
        let lines = try TextData.read(scratch.path)
        XCTAssertEqual(lines.texts, ["three", "%", "%", "four", "one", "%", "two", "lines", "%"], "without a separator, one text a line")
        XCTAssertEqual(texts.keepingClasses(withAtLeast: 2).classNames, ["art", "science"])
        XCTAssertEqual(lines.keepingClasses(withAtLeast: 5), LabeledTexts(texts: ["one", "%", "two", "lines", "%"], labels: [0, 0, 0, 0, 0], classNames: ["science"]))
    }

    func testAFolderOfClassFoldersHasOneTextAFile() throws {
        try write("great film\n", "reviews/pos/1.txt")
        try write("loved it", "reviews/pos/2.txt")
        try write("dull", "reviews/neg/1.txt")
        try write("", "reviews/neg/.hidden")
        let texts = try TextData.read(scratch.appendingPathComponent("reviews").path)
        XCTAssertEqual(texts, LabeledTexts(texts: ["dull", "great film\n", "loved it"], labels: [0, 1, 1], classNames: ["neg", "pos"]))
        try FileManager.default.createDirectory(at: scratch.appendingPathComponent("empty/none"), withIntermediateDirectories: true)
        assertError(try TextData.read(scratch.appendingPathComponent("empty").path), "empty/none: is a class folder without files")
        try write("x", "nothing/a.dat")
        assertError(try TextData.read(scratch.appendingPathComponent("nothing").path), "holds neither text files (no extension or .txt) nor class folders")
    }

    func testALinesFileIsUnlabelledTextsOfOneClass() throws {
        let path = try write("first line\r\nsecond\n\n   \nthird", "sentences.txt")
        XCTAssertEqual(try TextData.read(path), LabeledTexts(texts: ["first line", "second", "third"], labels: [0, 0, 0], classNames: ["sentences"]))
        let empty = try write(" \n\n", "empty.txt")
        assertError(try TextData.read(empty), "empty.txt: holds no text")
        let latin1 = scratch.appendingPathComponent("latin1.txt")
        try Data([0x63, 0x61, 0x66, 0xE9]).write(to: latin1)
        assertError(try TextData.read(latin1.path), "latin1.txt: is not UTF-8 text")
    }

    func testTablesHaveATextColumnAndAnOptionalLabelColumn() throws {
        let csv = try write("id,text,label\n1,\"Hello, world\",greeting\n2,\"He said \"\"bye\"\"\",farewell\r\n3,hi,greeting\n", "a.csv")
        XCTAssertEqual(try TextData.read(csv), LabeledTexts(texts: ["Hello, world", "He said \"bye\"", "hi"], labels: [1, 0, 1], classNames: ["farewell", "greeting"]))
        let tsv = try write("label\ttext\n1\tone, two\n0\tzero\n", "b.tsv")
        XCTAssertEqual(try TextData.read(tsv), LabeledTexts(texts: ["one, two", "zero"], labels: [1, 0], classNames: ["0", "1"]))
        let unlabelled = try write("text\nalpha\nbeta\n", "plain.csv")
        XCTAssertEqual(try TextData.read(unlabelled), LabeledTexts(texts: ["alpha", "beta"], labels: [0, 0], classNames: ["plain"]))
        XCTAssertEqual(try TextData.read(csv, textField: "label", labelField: nil).texts, ["greeting", "farewell", "greeting"])
        assertError(try TextData.read(csv, textField: "body"), "a.csv: has no column named 'body' for the texts (columns: id, text, label)")
        let ragged = try write("text,label\na,1\nb\n", "ragged.csv")
        assertError(try TextData.read(ragged), "ragged.csv:3: has 1 fields, expected 2")
        let open = try write("text,label\n\"a\nb\",1\n", "open.csv")
        assertError(try TextData.read(open), "open.csv:2: has an unterminated quoted field")
        let blank = try write("text,label\na, \n", "blank.csv")
        assertError(try TextData.read(blank), "blank.csv:2: has an empty label")
    }

    func testJSONLinesHaveTextAndOptionalLabels() throws {
        let path = try write("{\"text\": \"café\", \"label\": 2}\n\n{\"text\": \"tea\", \"label\": 0}\n", "drinks.jsonl")
        XCTAssertEqual(try TextData.read(path), LabeledTexts(texts: ["café", "tea"], labels: [2, 0], classNames: ["0", "1", "2"]))
        let named = try write("{\"body\": \"x\", \"topic\": \"b\"}\n{\"body\": \"y\", \"topic\": \"a\"}\n", "named.jsonl")
        XCTAssertEqual(try TextData.read(named, textField: "body", labelField: "topic"),
                       LabeledTexts(texts: ["x", "y"], labels: [1, 0], classNames: ["a", "b"]))
        let unlabelled = try write("{\"text\": \"x\"}\n", "free.jsonl")
        XCTAssertEqual(try TextData.read(unlabelled).classNames, ["free"])
        let mixed = try write("{\"text\": \"x\", \"label\": 1}\n{\"text\": \"y\"}\n", "mixed.jsonl")
        assertError(try TextData.read(mixed), "mixed.jsonl:2: has no label under \"label\", as the lines before it do")
        let broken = try write("{\"text\": \"x\"}\n{\"text\": \n", "broken.jsonl")
        assertError(try TextData.read(broken), "broken.jsonl:2: is not a JSON object")
        let untexted = try write("{\"text\": 3}\n", "number.jsonl")
        assertError(try TextData.read(untexted), "number.jsonl:1: has no text under \"text\"")
        let boolean = try write("{\"text\": \"x\", \"label\": true}\n", "bool.jsonl")
        assertError(try TextData.read(boolean), "bool.jsonl:1: label")
        assertError(try TextData.read(scratch.appendingPathComponent("missing.jsonl").path), "missing.jsonl: does not exist")
    }

    // MARK: Datasets and batches

    static let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b", "c", "d"]

    func tokenizer(maxLength: Int? = nil) -> WordPieceTokenizer {
        WordPieceTokenizer(vocabulary: Dictionary(uniqueKeysWithValues: Self.vocabulary.enumerated().map { ($1, $0) }),
                           template: [.special(ids: [2], typeId: 0), .text(typeId: 0), .special(ids: [3], typeId: 0)],
                           truncation: maxLength.map { .init(maxLength: $0) }, padding: .init(fixed: 64))
    }

    func testTextsAreTokenisedOnceAndBatchesArePaddedToTheirLongest() throws {
        let texts = ["a", "a b c d", "b c", "d d d d d d d d"]
        let dataset = Dataset(texts: texts, labels: [0, 1, 0, 1], classNames: ["x", "y"], tokenizer: tokenizer(maxLength: 8))
        XCTAssertTrue(dataset.isText)
        XCTAssertEqual(dataset.tokenSequences, [[2, 4, 3], [2, 4, 5, 6, 7, 3], [2, 5, 6, 3], [2, 7, 7, 7, 7, 7, 7, 3]],
                       "truncated to 8 tokens, not padded to the tokenizer's 64")
        XCTAssertEqual(dataset.sequenceLengths, [3, 6, 4, 8])
        XCTAssertEqual(dataset.exampleShape, [3, 8])
        XCTAssertEqual(dataset.batchShape([0, 2]), [2, 3, 4])
        let batch = try dataset.batch([2, 0])
        XCTAssertEqual(batch.shape, [2, 3, 4])
        // Per row: ids (padded with [PAD] = 0), attention mask, token types.
        XCTAssertEqual(batch.scalars, [2, 5, 6, 3, 1, 1, 1, 1, 0, 0, 0, 0,
                                       2, 4, 3, 0, 1, 1, 1, 0, 0, 0, 0, 0])
        XCTAssertEqual(dataset.inputs.shape, [4, 3, 8])
        let subset = dataset.subset([1, 0])
        XCTAssertEqual(subset.tokenSequences, [[2, 4, 5, 6, 7, 3], [2, 4, 3]])
        XCTAssertEqual(subset.labels, [1, 0])
        XCTAssertEqual(subset.exampleShape, [3, 6])
        let joined = try Dataset.concatenating([subset, dataset.subset([2])])
        XCTAssertEqual(joined.sequenceLengths, [6, 3, 4])
        XCTAssertThrowsError(try dataset.normalized(Normalization(mean: [0, 0, 0], standardDeviation: [1, 1, 1])))
        XCTAssertNil(Dataset(inputs: Tensor.zeros([2, 3]), labels: [0, 0], classNames: ["x"]).sequenceLengths)

        // The loader's batches, prepared ahead or made on request, are the dataset's batches.
        let loader = try DataLoader(dataset, batchSize: 2, shuffle: true, seed: 3)
        var seen: [Int] = []
        for batch in loader.batches(epoch: 0) {
            XCTAssertEqual(batch.inputs.shape, try dataset.batch(batch.indices).shape)
            XCTAssertEqual(batch.inputs.scalars, try dataset.batch(batch.indices).scalars)
            XCTAssertEqual(batch.inputs.shape[2], batch.indices.map { dataset.sequenceLengths![$0] }.max())
            XCTAssertEqual(try loader.makeBatch(batch.indices, epoch: 0).inputs.scalars, batch.inputs.scalars)
            seen += batch.indices
        }
        XCTAssertEqual(seen.sorted(), [0, 1, 2, 3])
    }

    func testTokenisationIsCachedOnDiskUnderAHashOfTextsAndTokenizer() throws {
        let folder = scratch.appendingPathComponent("cache").path
        let texts = ["a b", "c"]
        let first = Dataset(texts: texts, labels: [0, 0], classNames: ["x"], tokenizer: tokenizer(), cacheFolder: folder)
        XCTAssertEqual(first.tokenSequences, [[2, 4, 5, 3], [2, 6, 3]])
        let files = try FileManager.default.contentsOfDirectory(atPath: folder)
        XCTAssertEqual(files.count, 1)
        let file = folder + "/" + files[0]
        XCTAssertTrue(files[0].hasPrefix("tokens-") && files[0].hasSuffix(".bin"))
        // 24 header bytes, 2 lengths, 7 ids. Change the first text's "a" (4) to "d" (7) in the
        // file: the next dataset of the same texts and tokenizer reads the file, not the texts.
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        XCTAssertEqual(bytes.count, 24 + 2 * 4 + 7 * 4)
        XCTAssertEqual(bytes[36], 4)
        bytes[36] = 7
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        XCTAssertEqual(Dataset(texts: texts, labels: [0, 0], classNames: ["x"], tokenizer: tokenizer(), cacheFolder: folder).tokenSequences,
                       [[2, 7, 5, 3], [2, 6, 3]])
        // Other texts, or another truncation, are another file.
        _ = Dataset(texts: ["c"], labels: [0], classNames: ["x"], tokenizer: tokenizer(), cacheFolder: folder)
        _ = Dataset(texts: texts, labels: [0, 0], classNames: ["x"], tokenizer: tokenizer(maxLength: 3), cacheFolder: folder)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder).count, 3)
        // A damaged file is ignored and replaced.
        try Data(bytes.prefix(30)).write(to: URL(fileURLWithPath: file))
        XCTAssertEqual(Dataset(texts: texts, labels: [0, 0], classNames: ["x"], tokenizer: tokenizer(), cacheFolder: folder).tokenSequences,
                       [[2, 4, 5, 3], [2, 6, 3]])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: file)).count, 60)
    }

    func testLengthBucketsBatchTextsOfSimilarLengthInASeededOrder() throws {
        // 230 texts of 1...23 words: lengths 3...25 tokens with [CLS] and [SEP].
        let texts = (0..<230).map { index in Array(repeating: "a", count: index % 23 + 1).joined(separator: " ") }
        let dataset = Dataset(texts: texts, labels: Array(repeating: 0, count: 230), classNames: ["x"], tokenizer: tokenizer())
        let lengths = try XCTUnwrap(dataset.sequenceLengths)
        func padding(_ loader: DataLoader, epoch: Int) -> Int {
            var padded = 0
            for batch in loader.batches(epoch: epoch) { padded += batch.inputs.shape[0] * batch.inputs.shape[2] - batch.indices.map { lengths[$0] }.reduce(0, +) }
            return padded
        }
        let plain = try DataLoader(dataset, batchSize: 10, seed: 1)
        let bucketed = try DataLoader(dataset, batchSize: 10, seed: 1, lengthBuckets: true)
        let order = bucketed.order(epoch: 0)
        XCTAssertEqual(order.sorted(), Array(0..<230))
        XCTAssertEqual(order, bucketed.order(epoch: 0))
        XCTAssertNotEqual(order, bucketed.order(epoch: 1))
        XCTAssertEqual(padding(bucketed, epoch: 0), 0, "10 texts of each length, sorted in one bucket of 230: each batch of 10 is one length")
        XCTAssertGreaterThan(padding(plain, epoch: 0), 500)
        XCTAssertThrowsError(try DataLoader(Dataset(inputs: Tensor.zeros([2, 3]), labels: [0, 0], classNames: ["x"]), batchSize: 1, lengthBuckets: true)) {
            XCTAssertTrue("\($0)".contains("length buckets sort texts by length; these examples are not texts"))
        }
    }

    // MARK: Fortunes

    func testFortunesReadAsTopicsAndBucketsCutTheirPadding() throws {
        try requireTool(FileManager.default.fileExists(atPath: "/usr/share/games/fortunes/computers"),
                        "Debian's fortunes package is not installed (apt-get install fortunes)")
        var tokenizer = try WordPieceTokenizer(contentsOf: try MiniLM.requireFolder().appendingPathComponent("tokenizer.json").path)
        let all = try TextData.read("/usr/share/games/fortunes", separator: "%")
        XCTAssertEqual(all.texts.count, 15_217)
        XCTAssertEqual(all.classNames.count, 43)
        let topics = all.keepingClasses(withAtLeast: 140)
        XCTAssertEqual(topics.classNames.count, 30)
        XCTAssertEqual(topics.texts.count, 14_460)
        XCTAssertTrue(Set(["computers", "politics", "science", "art", "law", "food", "love", "sports"]).isSubset(of: topics.classNames))

        tokenizer.truncation = .init(maxLength: 128)
        let dataset = topics.dataset(tokenizer: tokenizer)
        let lengths = try XCTUnwrap(dataset.sequenceLengths)
        XCTAssertEqual(lengths.max(), 128)
        let real = lengths.reduce(0, +)
        func padded(_ loader: DataLoader) -> Int {
            loader.batches(epoch: 0).reduce(0) { $0 + $1.inputs.shape[0] * $1.inputs.shape[2] }
        }
        let plain = Double(padded(try DataLoader(dataset, batchSize: 32, seed: 0))) / Double(real)
        let bucketed = Double(padded(try DataLoader(dataset, batchSize: 32, seed: 0, lengthBuckets: true))) / Double(real)
        XCTAssertGreaterThan(plain, 2.5, "batch positions per real token, batches padded to their longest")
        XCTAssertLessThan(bucketed, 1.1, "the same with length buckets")
        print("fortunes topics, batch 32, ≤128 tokens: \(real) tokens; positions per token \(plain) plain, \(bucketed) bucketed")
    }

    // MARK: Content-defined chunks (the teacher cache's unit)

    func testContentDefinedChunksCoverTheTextsAndSurviveAnInsertion() {
        var generator = RandomGenerator(seed: 4)
        func sequence() -> [Int32] { (0..<(2 + Int(generator.next() % 9))).map { _ in Int32(generator.next() % 30_522) } }
        let original = (0..<3_000).map { _ in sequence() }
        let chunks = Dataset.contentDefinedChunks(original, minimum: 8, divisor: 32, maximum: 96)
        XCTAssertEqual(chunks.first?.lowerBound, 0)
        XCTAssertEqual(chunks.last?.upperBound, original.count)
        for (a, b) in zip(chunks, chunks.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound, "contiguous") }
        for chunk in chunks.dropLast() { XCTAssertTrue((8...96).contains(chunk.count), "\(chunk)") }
        XCTAssertGreaterThan(chunks.count, 3_000 / 96, "content boundaries, not only the forced ones")
        XCTAssertEqual(Dataset.contentDefinedChunks(original, minimum: 8, divisor: 32, maximum: 96), chunks, "deterministic")

        // 50 new sequences in the middle: the chunks before them stay; after a chunk or two, the
        // old boundaries come back, so nearly every old chunk is found again with the same texts.
        let grown = Array(original[..<1_500]) + (0..<50).map { _ in sequence() } + Array(original[1_500...])
        let after = Dataset.contentDefinedChunks(grown, minimum: 8, divisor: 32, maximum: 96)
        let contents = Set(after.map { Array(grown[$0]) })
        let kept = chunks.filter { contents.contains(Array(original[$0])) }
        XCTAssertTrue(chunks.filter { $0.upperBound <= 1_400 }.allSatisfy { contents.contains(Array(original[$0])) }, "the chunks before the insertion")
        XCTAssertGreaterThanOrEqual(kept.reduce(0) { $0 + $1.count }, original.count - 400, "texts whose chunk is found again")
        XCTAssertEqual(Dataset.contentDefinedChunks([], minimum: 8, divisor: 32, maximum: 96), [])
        XCTAssertEqual(Dataset.contentDefinedChunks([[1], [2]]), [0..<2], "fewer texts than the minimum: one chunk")
    }
}
