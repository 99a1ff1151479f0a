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

extension Tensor {
    /// Multi-head scaled dot-product attention, one (sequence, head) at a time: for each head h
    /// of `query`, `key` and `value` ([batch, length, heads · width], the heads side by side as
    /// a linear layer leaves them), softmax(scale · Q_h·K_hᵀ) · V_h over the keys `keyMask`
    /// keeps ([batch, length] of 1 and 0; padded keys exactly zero weight), written back side
    /// by side: [batch, length, heads · width]. The same values as splitting the heads out,
    /// `matmul`, `maskedSoftmax` and `matmul` (`MultiHeadSelfAttention` without dropout on the
    /// weights), without their copies: each head's length × length weights stay in one
    /// thread's cache instead of a [batch, heads, length, length] tensor going through memory
    /// twice (25 MB a layer at 32 × 128 tokens and 12 heads), and the backward pass recomputes
    /// them instead of keeping them.
    public static func multiHeadAttention(query: Tensor, key: Tensor, value: Tensor, heads: Int,
                                          keyMask: Tensor?, scale: Float) -> Tensor {
        require(query.rank == 3 && key.shape == query.shape && value.shape == query.shape,
                "multiHeadAttention: query, key and value must be one [batch, length, hidden] shape, got \(query.shape), \(key.shape), \(value.shape)")
        let (batch, length, hidden) = (query.shape[0], query.shape[1], query.shape[2])
        require(heads > 0 && hidden % heads == 0, "multiHeadAttention: hidden size \(hidden) is not a multiple of \(heads) heads")
        if let keyMask {
            require(keyMask.shape == [batch, length], "multiHeadAttention: key mask \(keyMask.shape) does not fit [\(batch), \(length)]")
        }
        let width = hidden / heads
        /// Runs `body` on each (sequence, head) with its weights softmax(scale · Q_h·K_hᵀ) in
        /// `weights` [length, length], a scratch matrix of the same size, and the offset of the
        /// head's first value in the inputs. Reads the tensors themselves (the backward pass
        /// keeps them, and the mask, alive through this function).
        func eachHead(cost: Int, _ body: (_ offset: Int, _ weights: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>) -> Void) {
            let pq = query.storage.pointer, pk = key.storage.pointer
            let pm = keyMask.map { UnsafePointer($0.storage.pointer) }
            Compute.parallelFor(batch * heads, costPerItem: cost) { range in
                let weights = UnsafeMutablePointer<Float>.allocate(capacity: 2 * length * length)
                defer { weights.deallocate() }
                for item in range {
                    let (b, h) = (item / heads, item % heads)
                    let offset = b * length * hidden + h * width
                    MatrixKernels.gemm(transposeA: false, transposeB: true, m: length, n: length, k: width,
                                       a: pq + offset, lda: hidden, b: pk + offset, ldb: hidden, c: weights, ldc: length)
                    let mask = pm.map { $0 + b * length }
                    for row in 0..<length {
                        distill_softmax_row(length, weights + row * length, mask, scale, weights + row * length)
                    }
                    body(offset, weights, weights + length * length)
                }
            }
        }
        let out = Tensor(uninitialized: query.shape)
        let po = out.storage.pointer, pv = value.storage.pointer
        eachHead(cost: 2 * length * length * width / 8) { offset, weights, _ in
            MatrixKernels.gemm(transposeA: false, transposeB: false, m: length, n: width, k: length,
                               a: weights, lda: length, b: pv + offset, ldb: hidden, c: po + offset, ldc: hidden)
        }
        return out.recorded("multiHeadAttention", [query, key, value]) { g in
            // Per head, with P the weights and G the head's gradient: dV = Pᵀ·G; dP = G·Vᵀ;
            // dS = scale · P ⊙ (dP − rowsum(dP ⊙ P)) (zero at masked keys); dQ = dS·K; dK = dSᵀ·Q.
            let gq = Tensor(uninitialized: query.shape), gk = Tensor(uninitialized: key.shape), gv = Tensor(uninitialized: value.shape)
            let pg = g.storage.pointer, pgq = gq.storage.pointer, pgk = gk.storage.pointer, pgv = gv.storage.pointer
            let pq = query.storage.pointer, pk = key.storage.pointer, pv = value.storage.pointer
            eachHead(cost: 6 * length * length * width / 8) { offset, weights, scores in
                MatrixKernels.gemm(transposeA: true, transposeB: false, m: length, n: width, k: length,
                                   a: weights, lda: length, b: pg + offset, ldb: hidden, c: pgv + offset, ldc: hidden)
                MatrixKernels.gemm(transposeA: false, transposeB: true, m: length, n: length, k: width,
                                   a: pg + offset, lda: hidden, b: pv + offset, ldb: hidden, c: scores, ldc: length)
                for row in 0..<length {
                    distill_softmax_backward_row(length, scores + row * length, weights + row * length, scale, scores + row * length)
                }
                MatrixKernels.gemm(transposeA: false, transposeB: false, m: length, n: width, k: length,
                                   a: scores, lda: length, b: pk + offset, ldb: hidden, c: pgq + offset, ldc: hidden)
                MatrixKernels.gemm(transposeA: true, transposeB: false, m: length, n: width, k: length,
                                   a: scores, lda: length, b: pq + offset, ldb: hidden, c: pgk + offset, ldc: hidden)
            }
            return [query.needsGrad ? gq : nil, key.needsGrad ? gk : nil, value.needsGrad ? gv : nil]
        }
    }
}
