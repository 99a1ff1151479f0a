import Datasets
import Foundation
import TestSupport
import XCTest

/// `WordPieceTokenizer` against Hugging Face's `tokenizers` with all-MiniLM-L6-v2's
/// tokenizer.json: every quote of Debian's `fortunes` and hand-picked edge cases, ids made by
/// scripts/generate_tokenizer_reference.py (Fixtures/fortunes-minilm-ids.jsonl.gz and
/// Fixtures/tokenizer-edge-cases.json); then the parts on a tiny vocabulary, and the errors
/// for tokenizer.json files it cannot read.
final class WordPieceTokenizerTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let fortunes = "/usr/share/games/fortunes"

    func miniLM() throws -> WordPieceTokenizer {
        try WordPieceTokenizer(contentsOf: try MiniLM.requireFolder().appendingPathComponent("tokenizer.json").path)
    }

    func testEveryFortuneQuoteHasTheIdsOfHuggingFaceTokenizers() throws {
        var tokenizer = try miniLM()
        try requireTool(FileManager.default.fileExists(atPath: Self.fortunes + "/computers"),
                        "Debian's fortunes package is not installed (apt-get install fortunes)")
        tokenizer.truncation = nil
        tokenizer.padding = nil
        let reference = try TextFile.read(fixtures.appendingPathComponent("fortunes-minilm-ids.jsonl.gz").path)
        var expected: [String: [(scalars: Int, ids: [Int])]] = [:]
        for line in reference.split(separator: "\n") {
            let entry = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let file = try XCTUnwrap(entry["file"] as? String)
            expected[file, default: []].append((try XCTUnwrap(entry["scalars"] as? Int), try XCTUnwrap(entry["ids"] as? [Int])))
        }
        XCTAssertEqual(expected.count, 43, "the reference covers fortunes' 43 files")
        var compared = 0
        var mismatches: [String] = []
        for (file, quotesExpected) in expected.sorted(by: { $0.key < $1.key }) {
            let quotes = TextFile.records(try TextFile.read(Self.fortunes + "/" + file), separator: "%")
            guard quotes.count == quotesExpected.count else {
                XCTFail("\(file): \(quotes.count) quotes here, \(quotesExpected.count) in the reference: other fortunes than those it was made from; rerun scripts/generate_tokenizer_reference.py")
                continue
            }
            let encodings = tokenizer.encode(batch: quotes)
            for (index, (quote, reference)) in zip(quotes, quotesExpected).enumerated() {
                XCTAssertEqual(quote.unicodeScalars.count, reference.scalars, "\(file) quote \(index) has another length than in the reference")
                if encodings[index].ids != reference.ids {
                    mismatches.append("\(file) quote \(index): \(quote.prefix(60).debugDescription)")
                }
                compared += 1
            }
        }
        XCTAssertEqual(compared, 15_217)
        XCTAssertEqual(mismatches.count, 0, "quotes whose ids differ from tokenizers': \(mismatches.prefix(5))")
    }

    func testEdgeCasesHaveTheIdsOfHuggingFaceTokenizers() throws {
        let file = try miniLM()
        let data = try Data(contentsOf: fixtures.appendingPathComponent("tokenizer-edge-cases.json"))
        let cases = try XCTUnwrap((JSONSerialization.jsonObject(with: data) as? [String: Any])?["cases"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 27)
        for entry in cases {
            let name = try XCTUnwrap(entry["name"] as? String)
            let settings = try XCTUnwrap(entry["settings"] as? [String: Any])
            var tokenizer = file
            if settings["file"] == nil {
                tokenizer.truncation = (settings["truncation"] as? Int).map {
                    WordPieceTokenizer.Truncation(maxLength: $0, fromLeft: settings["truncation_direction"] as? String == "left")
                }
                tokenizer.padding = settings["padding"].map {
                    WordPieceTokenizer.Padding(fixed: $0 as? Int, multiple: settings["pad_to_multiple_of"] as? Int,
                                               fromLeft: settings["padding_direction"] as? String == "left")
                }
            }
            let encodings = tokenizer.encode(batch: try XCTUnwrap(entry["texts"] as? [String]))
            XCTAssertEqual(encodings.map(\.ids), try XCTUnwrap(entry["ids"] as? [[Int]]), name)
            XCTAssertEqual(encodings.map(\.typeIds), try XCTUnwrap(entry["type_ids"] as? [[Int]]), name)
            XCTAssertEqual(encodings.map(\.attentionMask), try XCTUnwrap(entry["attention_mask"] as? [[Int]]), name)
            XCTAssertEqual(encodings.map { tokenizer.tokens($0.ids) }, try XCTUnwrap(entry["tokens"] as? [[String]]), name)
        }
    }

    func testMiniLMReadsItsSettingsFromTokenizerJSON() throws {
        let tokenizer = try miniLM()
        XCTAssertEqual(tokenizer.vocabulary.count, 30_522)
        XCTAssertEqual(tokenizer.truncation, WordPieceTokenizer.Truncation(maxLength: 128))
        XCTAssertEqual(tokenizer.padding, WordPieceTokenizer.Padding(fixed: 128))
        XCTAssertEqual(tokenizer.specialTokenCount, 2)
        let encoding = tokenizer.encode("Héllo, WORLD!")
        XCTAssertEqual(tokenizer.tokens(Array(encoding.ids.prefix(7))), ["[CLS]", "hello", ",", "world", "!", "[SEP]", "[PAD]"])
        XCTAssertEqual(encoding.ids.count, 128)
        XCTAssertEqual(encoding.attentionMask.reduce(0, +), 6)
    }

    // MARK: The parts, on a tiny vocabulary

    static let tinyVocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "the", "cafe", "!", ",", "a", "##a", "我", "hello"]

    func tiny(truncation: WordPieceTokenizer.Truncation? = nil, padding: WordPieceTokenizer.Padding? = nil,
              normalizer: BertNormalizer = BertNormalizer(), maxCharactersPerWord: Int = 100) -> WordPieceTokenizer {
        let vocabulary = Dictionary(uniqueKeysWithValues: Self.tinyVocabulary.enumerated().map { ($1, $0) })
        return WordPieceTokenizer(vocabulary: vocabulary, maxCharactersPerWord: maxCharactersPerWord, normalizer: normalizer,
                                  template: [.special(ids: [2], typeId: 0), .text(typeId: 0), .special(ids: [3], typeId: 0)],
                                  truncation: truncation, padding: padding)
    }

    func testNormalizerLowercasesStripsAccentsCleansAndSpacesIdeographs() {
        let normalizer = BertNormalizer()
        func normalized(_ text: String) -> String { String(String.UnicodeScalarView(normalizer.normalize(text.unicodeScalars))) }
        XCTAssertEqual(normalized("Héllo CAFÉ Ångström"), "hello cafe angstrom")
        // U+0130 decomposes to I + a combining dot, which accent stripping drops.
        XCTAssertEqual(normalized("İstanbul"), "istanbul")
        XCTAssertEqual(normalized("tab\there\r\nnul\u{0}bell\u{7}zero\u{200B}width\u{FFFD}"), "tab here  nulbellzerowidth")
        XCTAssertEqual(normalized("我爱x"), " 我  爱 x")
        // Katakana and Hangul are not CJK ideographs; Hangul syllables decompose into jamo.
        XCTAssertEqual(normalized("テキ한").unicodeScalars.map(\.value), [0x30C6, 0x30AD, 0x1112, 0x1161, 0x11AB])
        let cased = BertNormalizer(lowercase: false)
        XCTAssertFalse(cased.stripAccents, "strip_accents null follows lowercase")
        XCTAssertEqual(String(String.UnicodeScalarView(cased.normalize("Café".unicodeScalars))), "Café")
    }

    func testPreTokenizerSplitsWhitespaceAndIsolatesPunctuation() {
        let words = BertPreTokenizer.words(Array("don't  $5+x «a» b_c é".unicodeScalars)).map { String(String.UnicodeScalarView($0)) }
        XCTAssertEqual(words, ["don", "'", "t", "$", "5", "+", "x", "«", "a", "»", "b", "_", "c", "é"])
        // Non-ASCII symbols (Sm, Sc, So) are not punctuation.
        XCTAssertEqual(BertPreTokenizer.words(Array("a€b ≤c".unicodeScalars)).map { String(String.UnicodeScalarView($0)) }, ["a€b", "≤c"])
    }

    func testWordPieceTakesTheLongestPiecesAndGivesUnknownForAWordItCannotCover() {
        let tokenizer = tiny()
        XCTAssertEqual(tokenizer.tokenize("UNAFFABLE the Café!"), [4, 5, 6, 7, 8, 9])
        // "unaffx": "un", "##aff", then no piece for "x": the whole word is one [UNK].
        XCTAssertEqual(tokenizer.tokenize("unaffx the"), [1, 7])
        XCTAssertEqual(tokenizer.tokenize("我们"), [13, 1])
        XCTAssertEqual(tokenizer.tokenize("aaaa"), [11, 12, 12, 12])
        XCTAssertEqual(tiny(maxCharactersPerWord: 3).tokenize("aaa aaaa"), [11, 12, 12, 1])
        XCTAssertEqual(tokenizer.tokenize(""), [])
        XCTAssertEqual(tokenizer.encode(" \n\t ").ids, [2, 3])
    }

    func testTruncationKeepsRoomForSpecialTokensAndPaddingMasksThePads() {
        let cut = tiny(truncation: .init(maxLength: 4))
        XCTAssertEqual(cut.encode("hello the cafe").ids, [2, 14, 7, 3])
        XCTAssertEqual(tiny(truncation: .init(maxLength: 4, fromLeft: true)).encode("hello the cafe").ids, [2, 7, 8, 3])
        XCTAssertEqual(tiny(truncation: .init(maxLength: 1)).encode("hello").ids, [2, 3], "too short a limit keeps the special tokens")

        let batch = tiny(padding: .init()).encode(batch: ["hello the cafe", "a", ""])
        XCTAssertEqual(batch.map(\.ids), [[2, 14, 7, 8, 3], [2, 11, 3, 0, 0], [2, 3, 0, 0, 0]])
        XCTAssertEqual(batch.map(\.attentionMask), [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
        XCTAssertEqual(batch.map(\.typeIds), Array(repeating: [0, 0, 0, 0, 0], count: 3))
        let left = tiny(padding: .init(fixed: 4, fromLeft: true, id: 0, typeId: 1)).encode("a")
        XCTAssertEqual(left, TextEncoding(ids: [0, 2, 11, 3], typeIds: [1, 0, 0, 0], attentionMask: [0, 1, 1, 1]))
        XCTAssertEqual(tiny(padding: .init(multiple: 4)).encode(batch: ["a", "a a a"]).map(\.ids.count), [8, 8])
    }

    // MARK: Files it cannot read

    func write(_ json: Any) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tokenizer-\(UUID()).json").path
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func minimal(_ change: (inout [String: Any]) -> Void = { _ in }) -> [String: Any] {
        var json: [String: Any] = [
            "model": ["type": "WordPiece", "unk_token": "[UNK]", "vocab": ["[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "a": 3]],
            "normalizer": ["type": "BertNormalizer", "lowercase": true],
            "pre_tokenizer": ["type": "BertPreTokenizer"],
            "post_processor": ["type": "BertProcessing", "cls": ["[CLS]", 1], "sep": ["[SEP]", 2]],
        ]
        change(&json)
        return json
    }

    func testAMinimalFileReads() throws {
        let tokenizer = try WordPieceTokenizer(contentsOf: try write(minimal()))
        XCTAssertEqual(tokenizer.encode("A b").ids, [1, 3, 0, 2])
        XCTAssertNil(tokenizer.truncation)
        XCTAssertNil(tokenizer.padding)
    }

    func testMalformedOrUnsupportedFilesAreOneLineNamingTheFileAndKey() throws {
        let cases: [(String, [String: Any])] = [
            ("model.type is \"BPE\": only WordPiece is supported", minimal { $0["model"] = ["type": "BPE", "vocab": ["a": 0]] }),
            ("model.vocab is missing", minimal { $0["model"] = ["type": "WordPiece"] }),
            ("model.unk_token \"[UNK]\" is not in model.vocab", minimal { $0["model"] = ["type": "WordPiece", "vocab": ["a": 0]] }),
            ("model.vocab[\"a\"] is x, not a token id", minimal { $0["model"] = ["vocab": ["[UNK]": 0, "a": "x"]] }),
            ("model.vocab gives id 0 to two tokens", minimal { $0["model"] = ["vocab": ["[UNK]": 0, "a": 0]] }),
            ("normalizer.type is \"Lowercase\": only BertNormalizer is supported", minimal { $0["normalizer"] = ["type": "Lowercase"] }),
            ("normalizer.lowercase is 1, not true or false", minimal { $0["normalizer"] = ["type": "BertNormalizer", "lowercase": 1] }),
            ("pre_tokenizer.type is \"null\": only BertPreTokenizer is supported", minimal { $0["pre_tokenizer"] = NSNull() }),
            ("post_processor.type is \"RobertaProcessing\"", minimal { $0["post_processor"] = ["type": "RobertaProcessing"] }),
            ("post_processor.single[0].SpecialToken.id \"[X]\" is neither", minimal {
                $0["post_processor"] = ["type": "TemplateProcessing", "single": [["SpecialToken": ["id": "[X]", "type_id": 0]]]]
            }),
            ("added_tokens[0].lstrip is \"true\"", minimal { $0["added_tokens"] = [["id": 1, "content": "[CLS]", "lstrip": true]] }),
            ("truncation.max_length is -1, not an integer ≥ 0", minimal { $0["truncation"] = ["max_length": -1] }),
            ("truncation.direction is \"Up\"", minimal { $0["truncation"] = ["max_length": 8, "direction": "Up"] }),
            ("padding.strategy is Longest, not \"BatchLongest\" or {\"Fixed\": N}", minimal { $0["padding"] = ["strategy": "Longest"] }),
        ]
        for (message, json) in cases {
            let path = try write(json)
            XCTAssertThrowsError(try WordPieceTokenizer(contentsOf: path), message) { error in
                let text = "\(error)"
                XCTAssertTrue(text.hasPrefix(path + ": "), text)
                XCTAssertTrue(text.contains(message), "\(text) should say \(message)")
                XCTAssertFalse(text.contains("\n"), text)
            }
        }
        let notJSON = FileManager.default.temporaryDirectory.appendingPathComponent("tokenizer-\(UUID()).json").path
        try Data("{\"model\": ".utf8).write(to: URL(fileURLWithPath: notJSON))
        defer { try? FileManager.default.removeItem(atPath: notJSON) }
        XCTAssertThrowsError(try WordPieceTokenizer(contentsOf: notJSON)) {
            XCTAssertEqual("\($0)", "\(notJSON): is not a JSON object (a Hugging Face tokenizer.json)")
        }
        XCTAssertThrowsError(try WordPieceTokenizer(contentsOf: "/nonexistent/tokenizer.json")) {
            XCTAssertEqual("\($0)", "/nonexistent/tokenizer.json: does not exist")
        }
    }

    // MARK: Records

    func testRecordsAreSeparatedByLinesHoldingOnlyTheSeparator() {
        let text = "first\nquote\n%\n  \n%\nsecond %\r\n%\n%\nthird"
        XCTAssertEqual(TextFile.records(text, separator: "%"), ["first\nquote", "second %\r", "third"])
        XCTAssertEqual(TextFile.records("%\n", separator: "%"), [])
    }
}
