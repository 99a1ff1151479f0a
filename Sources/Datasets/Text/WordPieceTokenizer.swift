import Foundation
import Tensors

/// A BERT-style WordPiece tokenizer read from a Hugging Face `tokenizer.json`
/// (`WordPieceTokenizer(contentsOf:)`), giving the ids that Hugging Face's `tokenizers`
/// gives: added tokens written in the text (`[MASK]`), the BERT normaliser and pre-tokenizer,
/// greedy longest-match-first WordPiece with `##` continuations and `[UNK]` for a word it
/// cannot cover or longer than `maxCharactersPerWord` scalars, then the post-processor's
/// template (`[CLS] text [SEP]`), truncation and padding.
///
/// Single texts only (no sentence pairs yet). `truncation` and `padding` start as the file
/// says and may be changed; `encode(batch:)` pads a batch together.
public struct WordPieceTokenizer: Sendable {
    /// Cut every encoding to at most `maxLength` tokens, the special tokens included; `left`
    /// keeps the end of the text instead of its start.
    public struct Truncation: Equatable, Sendable {
        public var maxLength: Int
        public var fromLeft: Bool

        public init(maxLength: Int, fromLeft: Bool = false) {
            self.maxLength = maxLength
            self.fromLeft = fromLeft
        }
    }

    /// Pad shorter encodings with `id` (attention mask 0, token type `typeId`) to a `fixed`
    /// length, or to the longest of the batch (`fixed` nil), rounded up to a multiple of
    /// `multiple` when given; `fromLeft` puts the padding before the tokens.
    public struct Padding: Equatable, Sendable {
        public var fixed: Int?
        public var multiple: Int?
        public var fromLeft: Bool
        public var id: Int
        public var typeId: Int

        public init(fixed: Int? = nil, multiple: Int? = nil, fromLeft: Bool = false, id: Int = 0, typeId: Int = 0) {
            (self.fixed, self.multiple, self.fromLeft, self.id, self.typeId) = (fixed, multiple, fromLeft, id, typeId)
        }
    }

    /// One piece of the post-processor's template for a single text: special tokens, or the text.
    public enum TemplatePiece: Equatable, Sendable {
        case special(ids: [Int], typeId: Int)
        case text(typeId: Int)
    }

    /// A token written literally in the text and given its id directly (`added_tokens`).
    public struct AddedToken: Equatable, Sendable {
        public var content: [Unicode.Scalar]
        public var id: Int
        /// Matched in the normalised text (the content normalised too) rather than the raw text.
        public var normalized: Bool

        public init(content: [Unicode.Scalar], id: Int, normalized: Bool = false) {
            (self.content, self.id, self.normalized) = (content, id, normalized)
        }
    }

    /// id → token (model vocabulary and added tokens).
    public let vocabulary: [String]
    /// The model's vocabulary, keyed by scalar values (not `String`, whose equality treats
    /// canonically equivalent spellings as one).
    let ids: [[UInt32]: Int]
    public let normalizer: BertNormalizer?
    public let unknownId: Int
    public let continuationPrefix: [Unicode.Scalar]
    public let maxCharactersPerWord: Int
    public let addedTokens: [AddedToken]
    /// The added tokens matched in the raw text, and those matched in the normalised text.
    let rawTokens: [AddedToken], normalizedTokens: [AddedToken]
    public let template: [TemplatePiece]
    public var truncation: Truncation?
    public var padding: Padding?

    /// A tokenizer from its parts; `WordPieceTokenizer(contentsOf:)` reads them from a file.
    /// `vocabulary` maps tokens to ids (non-negative); `unknown` must be among them.
    public init(vocabulary tokens: [String: Int], unknown: String = "[UNK]", continuationPrefix: String = "##",
                maxCharactersPerWord: Int = 100, normalizer: BertNormalizer? = BertNormalizer(), addedTokens: [AddedToken] = [],
                template: [TemplatePiece] = [], truncation: Truncation? = nil, padding: Padding? = nil) {
        precondition(tokens[unknown] != nil, "WordPieceTokenizer: the unknown token \(unknown) is not in the vocabulary")
        var ids: [[UInt32]: Int] = [:]
        var size = 0
        for (token, id) in tokens {
            ids[token.unicodeScalars.map(\.value)] = id
            size = max(size, id + 1)
        }
        for token in addedTokens { size = max(size, token.id + 1) }
        var vocabulary = [String](repeating: "", count: size)
        for (token, id) in tokens { vocabulary[id] = token }
        for token in addedTokens { vocabulary[token.id] = String(String.UnicodeScalarView(token.content)) }
        self.vocabulary = vocabulary
        self.ids = ids
        self.unknownId = tokens[unknown]!
        self.continuationPrefix = Array(continuationPrefix.unicodeScalars)
        self.maxCharactersPerWord = maxCharactersPerWord
        self.normalizer = normalizer
        self.addedTokens = addedTokens.map { token in
            guard token.normalized, let normalizer else { return token }
            var normalized = token
            normalized.content = normalizer.normalize(token.content)
            return normalized
        }
        rawTokens = self.addedTokens.filter { !$0.normalized && !$0.content.isEmpty }
        normalizedTokens = self.addedTokens.filter { $0.normalized && !$0.content.isEmpty }
        self.template = template
        self.truncation = truncation
        self.padding = padding
    }

    /// The special tokens the template adds around a text.
    public var specialTokenCount: Int {
        template.reduce(0) { count, piece in
            if case .special(let ids, _) = piece { return count + ids.count }
            return count
        }
    }

    /// Feeds `hasher` everything that decides the ids of a text, padding aside: the
    /// vocabulary by id (the model's and the added tokens), the normaliser, the added tokens, the template and the truncation (the
    /// key of cached tokenisations).
    public func fingerprint(into hasher: inout FNV1a) {
        hasher.combine(vocabulary.count)
        for token in vocabulary { hasher.combine(token) }
        for value in [unknownId, maxCharactersPerWord, truncation?.maxLength ?? -1, truncation?.fromLeft == true ? 1 : 0] { hasher.combine(value) }
        hasher.combine(String(String.UnicodeScalarView(continuationPrefix)))
        if let normalizer {
            for flag in [normalizer.cleanText, normalizer.handleChineseCharacters, normalizer.stripAccents, normalizer.lowercase] { hasher.combine(flag ? 1 : 0) }
        } else {
            hasher.combine(-1)
        }
        for token in addedTokens {
            hasher.combine(String(String.UnicodeScalarView(token.content)))
            hasher.combine(token.id)
            hasher.combine(token.normalized ? 1 : 0)
        }
        for piece in template {
            switch piece {
            case let .special(ids, typeId):
                hasher.combine(ids.count)
                for id in ids { hasher.combine(id) }
                hasher.combine(typeId)
            case let .text(typeId):
                hasher.combine(-1)
                hasher.combine(typeId)
            }
        }
    }

    /// The token of each id (`[UNK]`-style tokens included), for reading encodings.
    public func tokens(_ ids: [Int]) -> [String] {
        ids.map { vocabulary.indices.contains($0) ? vocabulary[$0] : "" }
    }

    /// The ids of `text` without special tokens, truncation or padding.
    public func tokenize(_ text: String) -> [Int] {
        var result: [Int] = []
        for (segment, addedId) in split(Array(text.unicodeScalars), normalizedTokens: false) {
            if let addedId {
                result.append(addedId)
                continue
            }
            let normalized = normalizer?.normalize(segment) ?? Array(segment)
            for (piece, id) in split(normalized, normalizedTokens: true) {
                if let id {
                    result.append(id)
                } else {
                    for word in BertPreTokenizer.words(Array(piece)) { appendWordPieces(of: word, to: &result) }
                }
            }
        }
        return result
    }

    /// The encoding of `text`: the template around its ids, then truncation and padding (a
    /// fixed padding length only: the longest of a batch of one is itself).
    public func encode(_ text: String) -> TextEncoding {
        encode(batch: [text])[0]
    }

    /// The encodings of `texts`, truncated each and padded together.
    public func encode(batch texts: [String]) -> [TextEncoding] {
        var encodings = texts.map { text -> TextEncoding in
            var ids = tokenize(text)
            if let truncation {
                let keep = max(0, truncation.maxLength - specialTokenCount)
                if ids.count > keep { ids = truncation.fromLeft ? Array(ids.suffix(keep)) : Array(ids.prefix(keep)) }
            }
            return applyTemplate(ids)
        }
        if let padding { pad(&encodings, padding) }
        return encodings
    }

    func applyTemplate(_ ids: [Int]) -> TextEncoding {
        guard !template.isEmpty else {
            return TextEncoding(ids: ids, typeIds: Array(repeating: 0, count: ids.count), attentionMask: Array(repeating: 1, count: ids.count))
        }
        var encoding = TextEncoding(ids: [], typeIds: [], attentionMask: [])
        for piece in template {
            switch piece {
            case .special(let special, let typeId):
                encoding.ids += special
                encoding.typeIds += Array(repeating: typeId, count: special.count)
            case .text(let typeId):
                encoding.ids += ids
                encoding.typeIds += Array(repeating: typeId, count: ids.count)
            }
        }
        encoding.attentionMask = Array(repeating: 1, count: encoding.ids.count)
        return encoding
    }

    func pad(_ encodings: inout [TextEncoding], _ padding: Padding) {
        var length = padding.fixed ?? encodings.map(\.ids.count).max() ?? 0
        if let multiple = padding.multiple, multiple > 0, length % multiple != 0 { length += multiple - length % multiple }
        for index in encodings.indices {
            let missing = length - encodings[index].ids.count
            guard missing > 0 else { continue }
            let at = padding.fromLeft ? 0 : encodings[index].ids.count
            encodings[index].ids.insert(contentsOf: repeatElement(padding.id, count: missing), at: at)
            encodings[index].typeIds.insert(contentsOf: repeatElement(padding.typeId, count: missing), at: at)
            encodings[index].attentionMask.insert(contentsOf: repeatElement(0, count: missing), at: at)
        }
    }

    /// Greedy longest-match-first WordPiece: the longest vocabulary entry that starts the word,
    /// then the longest `##` entry that continues it, and so on; a word with a part no entry
    /// covers, or longer than `maxCharactersPerWord`, is one `[UNK]`.
    func appendWordPieces(of word: ArraySlice<Unicode.Scalar>, to result: inout [Int]) {
        guard word.count <= maxCharactersPerWord else {
            result.append(unknownId)
            return
        }
        let values = word.map(\.value)
        let prefix = continuationPrefix.map(\.value)
        var pieces: [Int] = []
        var start = 0
        while start < values.count {
            var end = values.count
            var found: Int?
            while start < end {
                let key = start > 0 ? prefix + values[start..<end] : Array(values[start..<end])
                if let id = ids[key] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let id = found else {
                result.append(unknownId)
                return
            }
            pieces.append(id)
            start = end
        }
        result += pieces
    }

    /// `scalars` cut around the added tokens of one kind (raw or normalised), leftmost and
    /// longest match first: each segment with the added token's id, or nil for text between.
    func split(_ scalars: [Unicode.Scalar], normalizedTokens: Bool) -> [(ArraySlice<Unicode.Scalar>, Int?)] {
        let candidates = normalizedTokens ? self.normalizedTokens : rawTokens
        guard !candidates.isEmpty else { return [(scalars[...], nil)] }
        var segments: [(ArraySlice<Unicode.Scalar>, Int?)] = []
        var start = 0
        var index = 0
        while index < scalars.count {
            var best: AddedToken?
            for token in candidates where token.content[0] == scalars[index] && token.content.count > (best?.content.count ?? 0)
                && index + token.content.count <= scalars.count {
                if scalars[index..<(index + token.content.count)].elementsEqual(token.content) { best = token }
            }
            guard let best else {
                index += 1
                continue
            }
            if start < index { segments.append((scalars[start..<index], nil)) }
            segments.append((scalars[index..<(index + best.content.count)], best.id))
            index += best.content.count
            start = index
        }
        if start < scalars.count { segments.append((scalars[start...], nil)) }
        return segments
    }
}

/// A tokenised text: token ids, token type ids (0 for a single text) and the attention mask
/// (1 for tokens, 0 for padding), all of one length.
public struct TextEncoding: Equatable, Sendable {
    public var ids: [Int]
    public var typeIds: [Int]
    public var attentionMask: [Int]

    public init(ids: [Int], typeIds: [Int], attentionMask: [Int]) {
        (self.ids, self.typeIds, self.attentionMask) = (ids, typeIds, attentionMask)
    }
}
