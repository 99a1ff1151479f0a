import CKernels
import Foundation

// The ops text encoders add to the engine: an embedding lookup (rows gathered, gradients
// scatter-added back) and the masked, scaled softmax of attention.

/// An index outside the table it selects from (a token id beyond an embedding's rows): a
/// thrown error, since ids come from user data and tokenizers.
public struct IndexOutOfRangeError: Error, CustomStringConvertible, Equatable, Sendable {
    public let op: String
    public let index: Int
    public let position: Int
    public let count: Int

    public init(op: String, index: Int, position: Int, count: Int) {
        self.op = op
        self.index = index
        self.position = position
        self.count = count
    }

    public var description: String {
        "\(op): index \(index) at position \(position) is outside 0..<\(count)"
    }
}

extension Tensor {
    /// Rows of `table` [count, dimension] picked by `indices` (row-major, shape `indexShape`):
    /// the result is [indexShape..., dimension], like `torch.nn.functional.embedding`. The
    /// gradient of `table` scatter-adds the upstream rows back (repeated ids accumulate).
    /// Throws when an index is outside `0..<count`. The row `paddingIndex`, when given, gets
    /// no gradient (PyTorch's `padding_idx`: a padding token's vector stays as it is).
    public static func embedding(_ table: Tensor, indices: [Int], indexShape: Shape, paddingIndex: Int? = nil) throws -> Tensor {
        require(table.rank == 2, "embedding: the table must be [count, dimension], got \(table.shape)")
        require(indices.count == indexShape.count, "embedding: \(indices.count) indices do not fill shape \(indexShape)")
        let rows = table.shape[0], dimension = table.shape[1]
        for (position, index) in indices.enumerated() where index < 0 || index >= rows {
            throw IndexOutOfRangeError(op: "embedding", index: index, position: position, count: rows)
        }
        let out = Tensor(uninitialized: Shape(indexShape.dimensions + [dimension]))
        let pt = table.storage.pointer, po = out.storage.pointer
        indices.withUnsafeBufferPointer { ids in
            Compute.parallelFor(ids.count, costPerItem: dimension) { range in
                for i in range { (po + i * dimension).update(from: pt + ids[i] * dimension, count: dimension) }
            }
        }
        return out.recorded("embedding", [table]) { g in
            // d table[r] = Σ over positions i with indices[i] = r of g[i]. Serial over
            // positions (two may share a row); each row's add is a vector loop.
            let gt = Tensor.zeros(table.shape)
            let pg = g.storage.pointer, pgt = gt.storage.pointer
            for (i, index) in indices.enumerated() where index != paddingIndex {
                let dst = pgt + index * dimension, src = pg + i * dimension
                for j in 0..<dimension { dst[j] += src[j] }
            }
            return [gt]
        }
    }

    /// Attention weights: softmax(scale · scores) along the last (key) axis over the keys
    /// that `keyMask` keeps. `scores` is [batch, ..., keys] and `keyMask` [batch, keys] of
    /// 1 (a token) and 0 (padding); padded keys get exactly zero weight, and a row with no
    /// key at all is all zeros. Without a mask every key counts. The mask gets no gradient.
    public static func maskedSoftmax(_ scores: Tensor, keyMask: Tensor?, scale: Float = 1) -> Tensor {
        require(scores.rank >= 2, "maskedSoftmax: scores need [batch, ..., keys], got \(scores.shape)")
        let batch = scores.shape[0], keys = scores.shape[-1]
        if let keyMask {
            require(keyMask.shape == [batch, keys], "maskedSoftmax: key mask \(keyMask.shape) does not fit scores \(scores.shape)")
        }
        let rows = scores.count / Swift.max(keys, 1)
        let rowsPerBatch = rows / Swift.max(batch, 1)
        let out = Tensor(uninitialized: scores.shape)
        let px = scores.storage.pointer, po = out.storage.pointer
        let pm = keyMask?.storage.pointer
        Compute.parallelFor(rows, costPerItem: keys * 8) { range in
            for row in range {
                distill_softmax_row(keys, px + row * keys, pm.map { UnsafePointer($0 + (row / rowsPerBatch) * keys) }, scale, po + row * keys)
            }
        }
        let saved = out.detached()
        return out.recorded("maskedSoftmax", [scores]) { g in
            // dx = scale · y ⊙ (g − Σ g⊙y); zero wherever y is (the masked keys).
            let gx = Tensor(uninitialized: scores.shape)
            let pg = g.storage.pointer, py = saved.storage.pointer, pgx = gx.storage.pointer
            Compute.parallelFor(rows, costPerItem: keys * 4) { range in
                for row in range { distill_softmax_backward_row(keys, pg + row * keys, py + row * keys, scale, pgx + row * keys) }
            }
            return [gx]
        }
    }
}
