import Foundation

extension WordPieceTokenizer {
    /// Reads a Hugging Face `tokenizer.json` (as `tokenizers` saves it) whose model is
    /// WordPiece, normaliser `BertNormalizer` (or none), pre-tokenizer `BertPreTokenizer`,
    /// post-processor `TemplateProcessing` or `BertProcessing` (or none), with its truncation
    /// and padding. Anything else, or a malformed file, is a `DatasetError` naming the file
    /// and the key.
    public init(contentsOf path: String) throws {
        try self.init(json: try readFile(path), file: path)
    }

    /// Parses tokenizer.json's bytes; `file` names the source in errors.
    public init(json data: Data, file: String) throws {
        let reader = TokenizerJSON(file: file)
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw DatasetError(file: file, "is not a JSON object (a Hugging Face tokenizer.json)")
        }
        let model = try reader.object(root, "model")
        let type = try reader.string(model, "type", in: "model", default: "WordPiece")
        guard type == "WordPiece" else { throw reader.unsupported("model.type", type, "only WordPiece is supported") }
        let vocabulary = try reader.object(model, "vocab", in: "model")
        var tokens: [String: Int] = [:]
        var seen = Set<Int>()
        for (token, value) in vocabulary {
            guard !TokenizerJSON.isBoolean(value), let id = value as? Int, id >= 0, id < Self.idLimit else {
                throw DatasetError(file: file, "model.vocab[\(quoted(token))] is \(value), not a token id (an integer in 0..<\(Self.idLimit))")
            }
            guard seen.insert(id).inserted else { throw DatasetError(file: file, "model.vocab gives id \(id) to two tokens, one is \(quoted(token))") }
            tokens[token] = id
        }
        guard !tokens.isEmpty else { throw DatasetError(file: file, "model.vocab is empty") }
        let unknown = try reader.string(model, "unk_token", in: "model", default: "[UNK]")
        guard tokens[unknown] != nil else { throw DatasetError(file: file, "model.unk_token \(quoted(unknown)) is not in model.vocab") }
        let prefix = try reader.string(model, "continuing_subword_prefix", in: "model", default: "##")
        let maxCharacters = try reader.integer(model, "max_input_chars_per_word", in: "model", default: 100)

        let normalizer = try reader.optionalObject(root, "normalizer").map { settings -> BertNormalizer in
            let type = try reader.string(settings, "type", in: "normalizer")
            guard type == "BertNormalizer" else { throw reader.unsupported("normalizer.type", type, "only BertNormalizer is supported") }
            return BertNormalizer(cleanText: try reader.bool(settings, "clean_text", in: "normalizer", default: true),
                                  handleChineseCharacters: try reader.bool(settings, "handle_chinese_chars", in: "normalizer", default: true),
                                  stripAccents: try reader.optionalBool(settings, "strip_accents", in: "normalizer"),
                                  lowercase: try reader.bool(settings, "lowercase", in: "normalizer", default: true))
        }
        let preTokenizer = try reader.optionalObject(root, "pre_tokenizer")
        let preType = try preTokenizer.map { try reader.string($0, "type", in: "pre_tokenizer") }
        guard preType == "BertPreTokenizer" else {
            throw reader.unsupported("pre_tokenizer.type", preType ?? "null", "only BertPreTokenizer is supported")
        }

        var added: [AddedToken] = []
        if let list = root["added_tokens"], !(list is NSNull) {
            guard let entries = list as? [Any] else { throw DatasetError(file: file, "added_tokens is not a list") }
            for (index, entry) in entries.enumerated() {
                let key = "added_tokens[\(index)]"
                guard let token = entry as? [String: Any] else { throw DatasetError(file: file, "\(key) is not an object") }
                for flag in ["single_word", "lstrip", "rstrip"] {
                    if try reader.bool(token, flag, in: key, default: false) {
                        throw reader.unsupported("\(key).\(flag)", "true", "added tokens must match anywhere, as BERT's do")
                    }
                }
                let id = try reader.integer(token, "id", in: key, below: Self.idLimit)
                added.append(AddedToken(content: Array(try reader.string(token, "content", in: key).unicodeScalars), id: id,
                                        normalized: try reader.bool(token, "normalized", in: key, default: false)))
            }
        }

        let template = try Self.template(root["post_processor"], tokens: tokens, added: added, reader: reader)
        let truncation = try reader.optionalObject(root, "truncation").map { settings -> Truncation in
            let strategy = try reader.string(settings, "strategy", in: "truncation", default: "LongestFirst")
            guard strategy == "LongestFirst" || strategy == "OnlyFirst" else {
                throw reader.unsupported("truncation.strategy", strategy, "a single text is cut by LongestFirst or OnlyFirst")
            }
            return Truncation(maxLength: try reader.integer(settings, "max_length", in: "truncation"),
                              fromLeft: try reader.direction(settings, "direction", in: "truncation"))
        }
        let padding = try reader.optionalObject(root, "padding").map { settings -> Padding in
            var fixed: Int?
            switch settings["strategy"] {
            case let name as String where name == "BatchLongest": fixed = nil
            case let choice as [String: Any] where choice.count == 1 && choice["Fixed"] != nil:
                fixed = try reader.integer(choice, "Fixed", in: "padding.strategy", below: Self.lengthLimit)
            case let other:
                throw DatasetError(file: file, "padding.strategy is \(other.map { "\($0)" } ?? "missing"), not \"BatchLongest\" or {\"Fixed\": N}")
            }
            let multiple = settings["pad_to_multiple_of"].flatMap { $0 is NSNull ? nil : $0 } == nil
                ? nil : try reader.integer(settings, "pad_to_multiple_of", in: "padding", minimum: 1, below: Self.lengthLimit)
            return Padding(fixed: fixed, multiple: multiple, fromLeft: try reader.direction(settings, "direction", in: "padding"),
                           id: try reader.integer(settings, "pad_id", in: "padding", default: 0, below: Self.idLimit),
                           typeId: try reader.integer(settings, "pad_type_id", in: "padding", default: 0, below: Self.idLimit))
        }
        self.init(vocabulary: tokens, unknown: unknown, continuationPrefix: prefix, maxCharactersPerWord: maxCharacters,
                  normalizer: normalizer, addedTokens: added, template: template, truncation: truncation, padding: padding)
    }

    /// Token ids are below 2^24, so that batches of float ids hold them exactly (and a file
    /// cannot make the vocabulary table huge).
    static let idLimit = 1 << 24

    /// Padding lengths from a file are below 2^20 tokens, so that it cannot ask for huge batches.
    static let lengthLimit = 1 << 20

    /// The post-processor's template for a single text.
    static func template(_ value: Any?, tokens: [String: Int], added: [AddedToken], reader: TokenizerJSON) throws -> [TemplatePiece] {
        guard let value, !(value is NSNull) else { return [] }
        guard let settings = value as? [String: Any] else { throw DatasetError(file: reader.file, "post_processor is not an object") }
        let type = try reader.string(settings, "type", in: "post_processor")
        switch type {
        case "BertProcessing":
            func special(_ key: String) throws -> Int {
                guard let pair = settings[key] as? [Any], pair.count == 2, pair[0] is String, let id = pair[1] as? Int, (0..<idLimit).contains(id) else {
                    throw DatasetError(file: reader.file, "post_processor.\(key) is not a [token, id] pair with an id in 0..<\(idLimit)")
                }
                return id
            }
            return [.special(ids: [try special("cls")], typeId: 0), .text(typeId: 0), .special(ids: [try special("sep")], typeId: 0)]
        case "TemplateProcessing":
            guard let single = settings["single"] as? [Any] else {
                throw DatasetError(file: reader.file, "post_processor.single is missing or not a list")
            }
            let specials = try reader.optionalObject(settings, "special_tokens", in: "post_processor") ?? [:]
            var pieces: [TemplatePiece] = []
            for (index, entry) in single.enumerated() {
                let key = "post_processor.single[\(index)]"
                guard let item = entry as? [String: Any], item.count == 1, let (kind, body) = item.first, let fields = body as? [String: Any] else {
                    throw DatasetError(file: reader.file, "\(key) is not {\"SpecialToken\": {...}} or {\"Sequence\": {...}}")
                }
                let typeId = try reader.integer(fields, "type_id", in: "\(key).\(kind)", default: 0)
                let name = try reader.string(fields, "id", in: "\(key).\(kind)")
                switch kind {
                case "Sequence":
                    guard name == "A" else { throw reader.unsupported("\(key).Sequence.id", name, "a single text's template holds sequence A") }
                    pieces.append(.text(typeId: typeId))
                case "SpecialToken":
                    let ids: [Int]
                    if let special = specials[name] as? [String: Any], let list = special["ids"] as? [Int] {
                        guard list.allSatisfy({ $0 >= 0 && $0 < idLimit }) else {
                            throw DatasetError(file: reader.file, "post_processor.special_tokens[\(quoted(name))].ids \(list) are not all token ids in 0..<\(idLimit)")
                        }
                        ids = list
                    } else if let id = tokens[name] ?? added.first(where: { String(String.UnicodeScalarView($0.content)) == name })?.id {
                        ids = [id]
                    } else {
                        throw DatasetError(file: reader.file, "\(key).SpecialToken.id \(quoted(name)) is neither in post_processor.special_tokens nor in the vocabulary")
                    }
                    pieces.append(.special(ids: ids, typeId: typeId))
                default:
                    throw reader.unsupported(key, kind, "a template piece is SpecialToken or Sequence")
                }
            }
            return pieces
        default:
            throw reader.unsupported("post_processor.type", type, "only TemplateProcessing and BertProcessing are supported")
        }
    }
}

private func quoted(_ text: String) -> String {
    "\"" + text.prefix(40) + (text.count > 40 ? "…" : "") + "\""
}

/// Typed reads from tokenizer.json's objects; each error names the file and the key's path.
struct TokenizerJSON {
    let file: String

    /// JSONSerialization gives numbers and booleans as NSNumber, and on Linux 0 and 1 cast to
    /// Bool and `true` to Int; a boolean's class is its own, so compare classes.
    static let booleanClass: ObjectIdentifier? = ((try? JSONSerialization.jsonObject(with: Data("[true]".utf8))) as? [Any])?
        .first.map { ObjectIdentifier(type(of: $0 as AnyObject)) }

    static func isBoolean(_ value: Any) -> Bool {
        ObjectIdentifier(type(of: value as AnyObject)) == booleanClass
    }

    func unsupported(_ key: String, _ value: String, _ reason: String) -> DatasetError {
        DatasetError(file: file, "\(key) is \(quoted(value)): \(reason)")
    }

    private func path(_ key: String, _ parent: String?) -> String {
        parent.map { "\($0).\(key)" } ?? key
    }

    func object(_ object: [String: Any], _ key: String, in parent: String? = nil) throws -> [String: Any] {
        guard let value = try optionalObject(object, key, in: parent) else {
            throw DatasetError(file: file, "\(path(key, parent)) is missing")
        }
        return value
    }

    func optionalObject(_ object: [String: Any], _ key: String, in parent: String? = nil) throws -> [String: Any]? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let result = value as? [String: Any] else { throw DatasetError(file: file, "\(path(key, parent)) is not an object") }
        return result
    }

    func string(_ object: [String: Any], _ key: String, in parent: String? = nil, default fallback: String? = nil) throws -> String {
        guard let value = object[key], !(value is NSNull) else {
            if let fallback { return fallback }
            throw DatasetError(file: file, "\(path(key, parent)) is missing")
        }
        guard let text = value as? String else { throw DatasetError(file: file, "\(path(key, parent)) is \(value), not text") }
        return text
    }

    func integer(_ object: [String: Any], _ key: String, in parent: String? = nil, default fallback: Int? = nil, minimum: Int = 0,
                 below limit: Int = Int.max) throws -> Int {
        guard let value = object[key], !(value is NSNull) else {
            if let fallback { return fallback }
            throw DatasetError(file: file, "\(path(key, parent)) is missing")
        }
        guard !Self.isBoolean(value), let number = value as? Int, number >= minimum, number < limit else {
            let range = limit == Int.max ? "≥ \(minimum)" : "in \(minimum)..<\(limit)"
            throw DatasetError(file: file, "\(path(key, parent)) is \(value), not an integer \(range)")
        }
        return number
    }

    func optionalBool(_ object: [String: Any], _ key: String, in parent: String? = nil) throws -> Bool? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard Self.isBoolean(value), let flag = value as? Bool else { throw DatasetError(file: file, "\(path(key, parent)) is \(value), not true or false") }
        return flag
    }

    func bool(_ object: [String: Any], _ key: String, in parent: String? = nil, default fallback: Bool) throws -> Bool {
        try optionalBool(object, key, in: parent) ?? fallback
    }

    /// "Right" (false, the default) or "Left" (true).
    func direction(_ object: [String: Any], _ key: String, in parent: String) throws -> Bool {
        switch try string(object, key, in: parent, default: "Right") {
        case "Right": return false
        case "Left": return true
        case let other: throw unsupported("\(parent).\(key)", other, "a direction is \"Right\" or \"Left\"")
        }
    }
}
