import Tensors

/// Token sequences padded to one length: what text encoders read. Row-major [batch, length]
/// arrays of token ids, an attention mask (1 for a token, 0 for padding) and token types
/// (segment ids; all 0 for single sentences).
public struct TokenBatch: Equatable, Sendable {
    public let batchSize: Int
    public let length: Int
    public let ids: [Int]
    public let attentionMask: [Int]
    public let tokenTypes: [Int]

    /// A batch from arrays already padded to [batchSize, length]; mask and types default to
    /// all ones and all zeros.
    public init(ids: [Int], attentionMask: [Int]? = nil, tokenTypes: [Int]? = nil, batchSize: Int, length: Int) {
        require(batchSize >= 0 && length >= 0 && ids.count == batchSize * length,
                "TokenBatch: \(ids.count) ids do not fill [\(batchSize), \(length)]")
        require(attentionMask.map { $0.count == ids.count } ?? true, "TokenBatch: the attention mask does not fit [\(batchSize), \(length)]")
        require(tokenTypes.map { $0.count == ids.count } ?? true, "TokenBatch: the token types do not fit [\(batchSize), \(length)]")
        self.batchSize = batchSize
        self.length = length
        self.ids = ids
        self.attentionMask = attentionMask ?? [Int](repeating: 1, count: ids.count)
        self.tokenTypes = tokenTypes ?? [Int](repeating: 0, count: ids.count)
    }

    /// Sequences of any lengths, padded with `padding` to the longest (mask 0 there).
    public init(sequences: [[Int]], padding: Int = 0) {
        let length = sequences.map(\.count).max() ?? 0
        var ids: [Int] = [], mask: [Int] = []
        ids.reserveCapacity(sequences.count * length)
        mask.reserveCapacity(sequences.count * length)
        for sequence in sequences {
            ids += sequence + [Int](repeating: padding, count: length - sequence.count)
            mask += [Int](repeating: 1, count: sequence.count) + [Int](repeating: 0, count: length - sequence.count)
        }
        self.init(ids: ids, attentionMask: mask, batchSize: sequences.count, length: length)
    }

    /// The attention mask as a [batch, length] tensor of 1s and 0s.
    public var maskTensor: Tensor { Tensor(attentionMask.map(Float.init), shape: [batchSize, length]) }

    /// The batch as one float tensor [batch, 3, length] (ids, mask, types), so that a text
    /// encoder runs as a `Module` wherever a model takes one tensor.
    public func packed() -> Tensor {
        var values = [Float]()
        values.reserveCapacity(3 * ids.count)
        for row in 0..<batchSize {
            let range = row * length..<(row + 1) * length
            values += ids[range].map(Float.init)
            values += attentionMask[range].map(Float.init)
            values += tokenTypes[range].map(Float.init)
        }
        return Tensor(values, shape: [batchSize, 3, length])
    }

    /// Reads a packed batch back: [batch, 3, length] (ids, mask, types) or [batch, length]
    /// (ids only, every token counted). Throws when values are not whole numbers.
    public init(packed: Tensor) throws {
        switch packed.rank {
        case 2:
            self.init(ids: try Self.integers(packed, name: "token ids"), batchSize: packed.shape[0], length: packed.shape[1])
        case 3 where packed.shape[1] == 3:
            let (batch, length) = (packed.shape[0], packed.shape[2])
            let values = try Self.integers(packed, name: "packed token batch")
            var ids: [Int] = [], mask: [Int] = [], types: [Int] = []
            for row in 0..<batch {
                let base = row * 3 * length
                ids += values[base..<base + length]
                mask += values[base + length..<base + 2 * length]
                types += values[base + 2 * length..<base + 3 * length]
            }
            self.init(ids: ids, attentionMask: mask, tokenTypes: types, batchSize: batch, length: length)
        default:
            throw TextModelError("a token batch is [batch, length] ids or [batch, 3, length] (ids, mask, types), got \(packed.shape)")
        }
    }

    /// The values of a float tensor as integers; throws at the first that is not whole.
    static func integers(_ tensor: Tensor, name: String) throws -> [Int] {
        var result = [Int](repeating: 0, count: tensor.count)
        let values = tensor.scalars
        for (position, value) in values.enumerated() {
            guard value.rounded() == value, Swift.abs(value) < 16_777_216 else {
                throw TextModelError("\(name): value \(value) at position \(position) is not a token id")
            }
            result[position] = Int(value)
        }
        return result
    }
}

/// A problem with a text model's input or configuration, in one line.
public struct TextModelError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
