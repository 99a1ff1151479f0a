import CBLAS
import CKernels

/// Matrix products through the platform sgemm (oneDNN on Linux, Accelerate on Apple platforms),
/// or in bfloat16 through oneDNN's matmul when `Compute.matmulPrecision` asks for it.
enum MatrixKernels {
    /// C[m, n] = alpha · op(A) · op(B) + beta · C, row-major, op = transpose when asked.
    /// `lda`, `ldb`, `ldc` are the row strides of A, B and C as stored.
    @inline(__always)
    static func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                     a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                     beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0 && n > 0 else { return }
        if k == 0 {
            for row in 0..<m { for col in 0..<n { c[row * ldc + col] *= beta } }
            return
        }
        // The sgemm runs single-threaded; large products are split over our own pool.
        // A long inner dimension (a linear layer's weight gradient, or its forward pass at a
        // small batch: k = 784 against m = n = 128) is split along k into partial products
        // summed at the end: split by rows instead, both halves packed the whole of B and
        // two threads ran no faster than one (bench case sgemm-mlp: 193 µs either way).
        let threads = Compute.threadCount
        if threads > 1, k >= 2 * Swift.max(m, n), k >= 256, m * n <= 1 << 20, m * n * k >= 1 << 20 {
            splitInner(transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, blocks: Swift.min(threads, k / 128))
            return
        }
        let splitRows = m >= n
        let extent = splitRows ? m : n
        let blocks = Swift.max(1, Swift.min(Compute.threadCount, extent / 16))
        Compute.parallelFor(blocks, costPerItem: m * n * k / blocks / 8) { range in
            for block in range {
                let start = (extent * block / blocks) & ~15, end = block == blocks - 1 ? extent : (extent * (block + 1) / blocks) & ~15
                guard end > start else { continue }
                if splitRows {
                    // Rows of C come from rows of op(A): A[start...] or, transposed, A[:, start...].
                    single(transposeA, transposeB, end - start, n, k, alpha,
                           a + (transposeA ? start : start * lda), lda, b, ldb, beta, c + start * ldc, ldc)
                } else {
                    // Columns of C come from columns of op(B): B[:, start...] or, transposed, B[start...].
                    single(transposeA, transposeB, m, end - start, k, alpha,
                           a, lda, b + (transposeB ? start * ldb : start), ldb, beta, c + start, ldc)
                }
            }
        }
    }

    /// C = alpha·Σ_blocks op(A)[:, kBlock]·op(B)[kBlock, :] + beta·C: block 0 accumulates
    /// into C, the others into scratch matrices added afterwards in block order (the sum is
    /// deterministic for a given thread count).
    private static func splitInner(_ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                                   _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                                   _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, blocks: Int) {
        let scratch = TensorStorage(uninitializedCount: (blocks - 1) * m * n)
        withExtendedLifetime(scratch) {
            Compute.parallelFor(blocks, costPerItem: 1 << 20) { range in
                for block in range {
                    let start = k * block / blocks, end = k * (block + 1) / blocks
                    // op(A)[:, start..<end] and op(B)[start..<end, :].
                    let aBlock = a + (transposeA ? start * lda : start), bBlock = b + (transposeB ? start : start * ldb)
                    if block == 0 {
                        single(transposeA, transposeB, m, n, end - start, alpha, aBlock, lda, bBlock, ldb, beta, c, ldc)
                    } else {
                        single(transposeA, transposeB, m, n, end - start, alpha, aBlock, lda, bBlock, ldb, 0,
                               scratch.pointer + (block - 1) * m * n, n)
                    }
                }
            }
            for block in 1..<blocks {
                let partial = scratch.pointer + (block - 1) * m * n
                for row in 0..<m {
                    let dst = c + row * ldc, src = partial + row * n
                    for col in 0..<n { dst[col] += src[col] }
                }
            }
        }
    }

    @inline(__always)
    private static func single(_ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                               _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                               _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        if Compute.matmulPrecision == .bfloat16, m * n * k >= 1 << 20,
           distill_gemm_bf16(transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == 0 {
            return
        }
        distill_sgemm(transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }
}
