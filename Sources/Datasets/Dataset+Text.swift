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
    public init(texts: [String], labels: [Int], classNames: [String], tokenizer: WordPieceTokenizer) {
        require(texts.count == labels.count, "Dataset: \(texts.count) texts do not fit \(labels.count) labels")
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
        let padId = tokenizer.padding?.id ?? tokenizer.vocabulary.firstIndex(of: "[PAD]") ?? 0
        self.init(tokenSequences: (0..<chunks).flatMap { results.value[$0] }, padId: padId, labels: labels, classNames: classNames)
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
