import CBLAS

/// Matrix products through the platform sgemm (oneDNN on Linux, Accelerate on Apple platforms).
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
        // The sgemm runs single-threaded; large products are split into row or column blocks
        // of C over our own pool (each block a whole sgemm, aligned to 16 for its kernels).
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

    @inline(__always)
    private static func single(_ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                               _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                               _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        distill_sgemm(transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }
}
