import Datasets
import Foundation
import TestSupport
import XCTest

/// Every reader gets 100,000 mutated inputs in release builds (make test) with no crash, trap
/// or unbounded allocation. Run one reader longer with, for example:
///
///     DISTILL_FUZZ_ITERATIONS=2000000 swift test -c release --filter FuzzTests/testNPYReader
final class FuzzTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    func file(_ name: String) -> Data { try! Data(contentsOf: fixtures.appendingPathComponent(name)) }

    func testIDXReader() {
        let images = Data([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2] + [UInt8](0..<8))
        let floats = Data([0, 0, 0x0D, 1, 0, 0, 0, 2, 0x3F, 0xC0, 0, 0, 0xC0, 0x20, 0, 0])
        let run = fuzz(seeds: [images, floats], seed: 1) { data in _ = try IDX.parse(data, file: "fuzz.idx") }
        XCTAssertGreaterThan(run.accepted, 0, "some mutations stay valid: the seeds are really parsed")
    }

    func testGzipIDXReader() throws {
        // A gzip stream of a small IDX file (zlib, the path Fashion-MNIST's files take).
        let gz = Data([0x1F, 0x8B, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x63, 0x60, 0xE0, 0x60, 0x66, 0x60, 0x60, 0x60,
                       0x82, 0x63, 0x46, 0x26, 0x66, 0x16, 0x56, 0x36, 0x76, 0x00, 0x3F, 0xD4, 0x82, 0x16, 0x18, 0x00, 0x00, 0x00])
        XCTAssertEqual(try IDX.parse(gz, file: "seed.gz").dimensions, [2, 2, 2], "the seed is a valid file")
        fuzz(seeds: [gz], seed: 2) { data in _ = try IDX.parse(data, file: "fuzz.idx.gz") }
    }

    func testNPYReader() {
        let run = fuzz(seeds: ["f4.npy", "i8.npy", "be_f4.npy", "v3.npy", "scalar.npy", "fortran.npy"].map(file), seed: 3) { data in
            _ = try NPY.parse(data, file: "fuzz.npy")
        }
        XCTAssertGreaterThan(run.accepted, 0)
    }

    func testNPZReader() {
        fuzz(seeds: [file("stored.npz"), file("compressed.npz")], seed: 4) { data in _ = try NPZ.parse(data, file: "fuzz.npz") }
    }

    func testCSVReader() {
        let seeds = ["width,height,kind\n1.5,2,cat\n\"3\",4.25,dog\n5,6,cat\n", "0.5,1,2\n0.25,3,0\n"].map { Data($0.utf8) }
        let run = fuzz(seeds: seeds, seed: 5) { data in
            guard let text = String(data: data, encoding: .utf8) else { return }
            _ = try CSV.parse(text, file: "fuzz.csv")
        }
        XCTAssertGreaterThan(run.accepted, 0)
    }

    func testImageDecoder() {
        let run = fuzz(seeds: [file("gray.png"), file("rgb.png"), file("rgb.jpg")], seed: 6) { data in
            _ = try ImageDecoder.decode(data, file: "fuzz.img", channels: 3)
        }
        XCTAssertGreaterThan(run.accepted, 0)
    }

    /// The streaming path reads files itself: the header probe (a JPEG's segments walked to its
    /// frame header), then reading, decoding and resizing into a batch.
    func testStreamedImageFiles() throws {
        // In memory where there is a tmpfs: ext4 flushes a file truncated and rewritten on close
        // (auto_da_alloc), which made 100,000 rewrites take minutes.
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? URL(fileURLWithPath: "/dev/shm") : FileManager.default.temporaryDirectory
        let folder = base.appendingPathComponent("distill-fuzz-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("image").path
        let listing = ImageFolder.Listing(files: [path], labels: [0], classNames: ["x"])
        let run = fuzz(seeds: [file("gray.png"), file("rgb.png"), file("rgb.jpg")], seed: 7) { data in
            guard let handle = fopen(path, "wb") else { return XCTFail("cannot write \(path)") }
            _ = data.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, handle) }
            fclose(handle)
            _ = try ImageFolder.dataset(listing, channels: 3, size: nil)
            _ = try ImageFolder.dataset(listing, channels: 1, size: (height: 3, width: 5)).batch([0])
        }
        XCTAssertGreaterThan(run.accepted, 0)
    }

    /// tokenizer.json (every section), then the accepted tokenizers encode a text: ids stay
    /// in the vocabulary and the three arrays of an encoding keep one length.
    func testTokenizerJSONReader() {
        let seed = Data("""
        {"version": "1.0", "truncation": {"max_length": 6, "strategy": "LongestFirst", "stride": 0, "direction": "Right"},
         "padding": {"strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
         "added_tokens": [{"id": 0, "content": "[PAD]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
                          {"id": 2, "content": "[CLS]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
         "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
         "pre_tokenizer": {"type": "BertPreTokenizer"},
         "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                            {"SpecialToken": {"id": "[SEP]", "type_id": 0}}], "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                            "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
         "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                   "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4, "wor": 5, "##ld": 6, "我": 7, ",": 8}}}
        """.utf8)
        XCTAssertEqual(try WordPieceTokenizer(json: seed, file: "seed.json").encode("Hello, wörld [CLS]").ids, [2, 4, 8, 5, 6, 3, 0, 0])
        let run = fuzz(seeds: [seed], seed: 8) { data in
            let tokenizer = try WordPieceTokenizer(json: data, file: "fuzz.json")
            for encoding in tokenizer.encode(batch: ["Hello, wörld [CLS] 我们", ""]) {
                XCTAssertTrue(encoding.typeIds.count == encoding.ids.count && encoding.attentionMask.count == encoding.ids.count)
                XCTAssertTrue(encoding.ids.allSatisfy { $0 >= 0 && $0 < 1 << 24 })
            }
        }
        XCTAssertGreaterThan(run.accepted, 0)
    }

    /// Any bytes as text (invalid UTF-8 repaired, as `String(decoding:)` does) tokenise to ids
    /// of the vocabulary.
    func testTokenizerOnMutatedText() {
        let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "##a", "é", "e", "我", "!"]
        let tokenizer = WordPieceTokenizer(vocabulary: Dictionary(uniqueKeysWithValues: vocabulary.enumerated().map { ($1, $0) }),
                                           maxCharactersPerWord: 12,
                                           addedTokens: [.init(content: Array("[CLS]".unicodeScalars), id: 2, normalized: false)],
                                           template: [.special(ids: [2], typeId: 0), .text(typeId: 0), .special(ids: [3], typeId: 0)],
                                           truncation: .init(maxLength: 32), padding: .init(fixed: 16))
        let seeds = ["Ça a l'air! 我爱 e\u{301}a\u{0}\u{7}\u{200D}👨‍👩‍👧 [CLS]aaa", "İΣ ß ﬁ ǅ\t\r\n\u{FFFD}\u{E000} テ한", "aaaaaaaaaaaaaaa!!"].map { Data($0.utf8) }
        fuzz(seeds: seeds, seed: 9) { data in
            let encoding = tokenizer.encode(String(decoding: data, as: UTF8.self))
            XCTAssertTrue(encoding.ids.count >= 16 && encoding.ids.count <= 32 && encoding.ids.allSatisfy { $0 >= 0 && $0 < vocabulary.count })
        }
    }

    func testTextReaders() {
        let table = Data("id,text,label\n1,\"Hello, world\",greeting\n2,\"He said \"\"bye\"\"\",farewell\n".utf8)
        let lines = Data("{\"text\": \"café\", \"label\": 2}\n{\"text\": \"tea\", \"label\": \"x\"}\n".utf8)
        let records = Data("one\n%\ntwo\nlines\n%\n\n%\nthree".utf8)
        let run = fuzz(seeds: [table, lines, records], seed: 10) { data in
            let text = String(decoding: data, as: UTF8.self)
            var accepted = false
            for read in [{ try TextData.parseTable(text, file: "fuzz.csv") }, { try TextData.parseJSONLines(text, file: "fuzz.jsonl") },
                         { try TextData.parseTexts(text, file: "fuzz.txt", separator: "%") }] {
                guard let texts = try? read() else { continue }
                XCTAssertTrue(texts.texts.count == texts.labels.count && texts.labels.allSatisfy { texts.classNames.indices.contains($0) })
                accepted = true
            }
            if !accepted { throw DatasetError(file: "fuzz", "no reader took it") }
        }
        XCTAssertGreaterThan(run.accepted, 0)
    }
}
