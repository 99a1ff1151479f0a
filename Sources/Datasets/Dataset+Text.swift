import Foundation
import Tensors

/// The token ids of texts, tokenised once when the dataset is made and kept without padding:
/// a text dataset's examples. A batch pads them to its longest sequence as one float tensor
/// [batch, 3, length]: per row the ids, the attention mask (1 for a token, 0 for padding) and
/// the token types (0: single texts), the layout text encoders read (`TokenBatch.packed`).
struct TokenSequences: Equatable {
    var ids: [[Int32]]
    var padId: Int
    /// The longest sequence: the length of `Dataset.inputs` and of `exampleShape`.
    let longest: Int

    init(ids: [[Int32]], padId: Int) {
        self.ids = ids
        self.padId = padId
        longest = ids.lazy.map(\.count).max() ?? 0
    }

    func longest(of indices: [Int]) -> Int {
        indices.reduce(0) { Swift.max($0, ids[$1].count) }
    }

    func subset(_ indices: [Int]) -> TokenSequences {
        TokenSequences(ids: indices.map { ids[$0] }, padId: padId)
    }

    /// Rows of [3, length] from `target` on; `length` is at least each sequence's.
    func write(_ indices: [Int], length: Int, into target: UnsafeMutablePointer<Float>) {
        let pad = Float(padId)
        for (row, index) in indices.enumerated() {
            let sequence = ids[index]
            require(sequence.count <= length, "TokenSequences: a sequence of \(sequence.count) tokens does not fit rows of \(length)")
            let base = target + row * 3 * length
            for (position, id) in sequence.enumerated() {
                base[position] = Float(id)
                base[length + position] = 1
            }
            for position in sequence.count..<length {
                base[position] = pad
                base[length + position] = 0
            }
            (base + 2 * length).update(repeating: 0, count: length)
        }
    }

    func packed(_ indices: [Int], length: Int) -> Tensor {
        let result = Tensor.zeros([indices.count, 3, length])
        write(indices, length: length, into: result.storage.pointer)
        return result
    }
}

extension Dataset {
    /// A text dataset: `texts` tokenised once, on all cores, by `tokenizer` (its truncation
    /// applies; its padding does not, since each batch is padded to its own longest sequence,
    /// with the tokenizer's padding id, else `[PAD]`'s, else 0). A label in
    /// 0..<classNames.count per text.
    ///
    /// With `cacheFolder`, the ids are also kept there in a file named by a hash of the texts
    /// and the tokenizer (`TokenCache`), and read back instead of tokenising again; a cache
    /// that cannot be read or written is only a slower start.
    public init(texts: [String], labels: [Int], classNames: [String], tokenizer: WordPieceTokenizer, cacheFolder: String? = nil) {
        require(texts.count == labels.count, "Dataset: \(texts.count) texts do not fit \(labels.count) labels")
        let padId = tokenizer.padding?.id ?? tokenizer.vocabulary.firstIndex(of: "[PAD]") ?? 0
        let cache = cacheFolder.map { TokenCache(folder: $0, texts: texts, tokenizer: tokenizer) }
        if let ids = cache?.read(count: texts.count) {
            self.init(tokenSequences: ids, padId: padId, labels: labels, classNames: classNames)
            return
        }
        let plain = { var copy = tokenizer; copy.padding = nil; return copy }()
        let chunks = Swift.min(texts.count, ProcessInfo.processInfo.activeProcessorCount * 4)
        let results = UnsafeSendable(UnsafeMutablePointer<[[Int32]]>.allocate(capacity: Swift.max(chunks, 1)))
        results.value.initialize(repeating: [], count: Swift.max(chunks, 1))
        defer {
            results.value.deinitialize(count: Swift.max(chunks, 1))
            results.value.deallocate()
        }
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            let range = (chunk * texts.count / chunks)..<((chunk + 1) * texts.count / chunks)
            results.value[chunk] = plain.encode(batch: Array(texts[range])).map { $0.ids.map { Int32($0) } }
        }
        let ids = (0..<chunks).flatMap { results.value[$0] }
        cache?.write(ids)
        self.init(tokenSequences: ids, padId: padId, labels: labels, classNames: classNames)
    }

    /// A text dataset from token ids already made (special tokens included, no padding).
    public init(tokenSequences: [[Int32]], padId: Int = 0, labels: [Int], classNames: [String]) {
        require(tokenSequences.count == labels.count, "Dataset: \(tokenSequences.count) token sequences do not fit \(labels.count) labels")
        require(labels.allSatisfy { $0 >= 0 && $0 < classNames.count }, "Dataset: labels must lie in 0..<\(classNames.count)")
        self.init(examples: .tokens(TokenSequences(ids: tokenSequences, padId: padId)), labels: labels, classNames: classNames)
    }

    /// Whether the examples are texts held as token ids.
    public var isText: Bool {
        if case .tokens = examples { return true }
        return false
    }

    /// Each text's length in tokens (special tokens included), or nil when the examples are not texts.
    public var sequenceLengths: [Int]? {
        if case let .tokens(sequences) = examples { return sequences.ids.map(\.count) }
        return nil
    }

    /// Each text's token ids, or nil when the examples are not texts.
    public var tokenSequences: [[Int32]]? {
        if case let .tokens(sequences) = examples { return sequences.ids }
        return nil
    }

    /// Consecutive ranges covering `sequences` whose ends depend on the sequences themselves
    /// (content-defined chunking, as rsync and backup tools cut files): a range ends after a
    /// sequence whose ids hash (FNV-1a) to 0 modulo `divisor` once it holds `minimum`
    /// sequences, or at `maximum`. Sequences inserted or removed in one place change the ranges
    /// around that place only, so what is kept per range (the teacher's embeddings of a
    /// transfer set) stays valid for the rest when a set grows.
    public static func contentDefinedChunks(_ sequences: [[Int32]], minimum: Int = 256, divisor: UInt64 = 2_048,
                                            maximum: Int = 16_384) -> [Range<Int>] {
        require(minimum >= 1 && maximum >= minimum && divisor >= 1, "contentDefinedChunks: minimum \(minimum), divisor \(divisor), maximum \(maximum)")
        var chunks: [Range<Int>] = [], start = 0
        for (i, ids) in sequences.enumerated() {
            let size = i + 1 - start
            guard size >= minimum else { continue }
            var hasher = FNV1a()
            ids.withUnsafeBytes { hasher.combine($0) }
            if size >= maximum || hasher.value % divisor == 0 {
                chunks.append(start..<(i + 1))
                start = i + 1
            }
        }
        if start < sequences.count { chunks.append(start..<sequences.count) }
        return chunks
    }

    static func concatenatingTexts(_ parts: [Dataset]) throws -> Dataset {
        var ids: [[Int32]] = []
        var padId: Int?
        for part in parts {
            guard case let .tokens(sequences) = part.examples else {
                throw DatasetError(file: "concatenation", "cannot join texts with other examples")
            }
            guard part.classNames == parts[0].classNames else { throw DatasetError(file: "concatenation", "class lists differ") }
            guard padId == nil || padId == sequences.padId else {
                throw DatasetError(file: "concatenation", "texts padded with ids \(padId!) and \(sequences.padId)")
            }
            padId = sequences.padId
            ids += sequences.ids
        }
        return Dataset(tokenSequences: ids, padId: padId ?? 0, labels: parts.flatMap(\.labels), classNames: parts[0].classNames)
    }
}

/// Token ids of texts kept in a file, `tokens-HASH.bin`, named by an FNV-1a hash of the
/// tokenizer's fingerprint and the texts: "DTOK", a version (UInt32), the count of texts and
/// of ids (UInt64 each), each text's length (UInt32), then the ids (Int32), little-endian.
/// Written atomically; a file of the wrong size or count is ignored (and replaced).
struct TokenCache {
    let path: String

    init(folder: String, texts: [String], tokenizer: WordPieceTokenizer) {
        var hasher = FNV1a()
        hasher.combine("distill tokens 1")
        tokenizer.fingerprint(into: &hasher)
        hasher.combine(texts.count)
        for text in texts { hasher.combine(text) }
        path = (folder as NSString).appendingPathComponent("tokens-\(String(hasher.value, radix: 16)).bin")
    }

    static let magic = Array("DTOK".utf8)

    func read(count: Int) -> [[Int32]]? {
        guard let data = FileManager.default.contents(atPath: path), data.count >= 24 else { return nil }
        return data.withUnsafeBytes { bytes -> [[Int32]]? in
            func integer<T: FixedWidthInteger>(_ offset: Int, _ type: T.Type) -> T { T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self)) }
            guard Array(bytes[0..<4]) == Self.magic, integer(4, UInt32.self) == 1, integer(8, UInt64.self) == UInt64(count) else { return nil }
            let total = integer(16, UInt64.self)
            guard total < UInt64(data.count), data.count == 24 + 4 * count + 4 * Int(total) else { return nil }
            var ids: [[Int32]] = []
            ids.reserveCapacity(count)
            var offset = 24 + 4 * count
            for index in 0..<count {
                let length = Int(integer(24 + 4 * index, UInt32.self))
                guard offset + 4 * length <= data.count else { return nil }
                ids.append((0..<length).map { integer(offset + 4 * $0, Int32.self) })
                offset += 4 * length
            }
            return offset == data.count ? ids : nil
        }
    }

    func write(_ ids: [[Int32]]) {
        var data = Data(Self.magic)
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { data.append(contentsOf: $0) } }
        append(UInt32(1))
        append(UInt64(ids.count))
        append(UInt64(ids.reduce(0) { $0 + $1.count }))
        for sequence in ids { append(UInt32(sequence.count)) }
        for sequence in ids { for id in sequence { append(id) } }
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try? AtomicFile.write(data, to: path)
    }
}
