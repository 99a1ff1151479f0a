// Matrix products. The backward rules reuse sgemm's transpose flags, so no transposed
// copy is ever made.

extension Tensor {
    /// Matrix product over the last two axes, broadcasting leading (batch) axes:
    /// [..., m, k] · [..., k, n] → [..., m, n]. Both operands need rank ≥ 2.
    /// `transposingOther` multiplies by the transpose of `other`'s last two axes
    /// ([..., m, k] · [..., n, k]ᵀ, attention's Q·Kᵀ) without copying it.
    public func matmul(_ other: Tensor, transposingOther: Bool = false) -> Tensor {
        Tensor.product(self, other, transposeA: false, transposeB: transposingOther)
    }

    /// `op(a) · op(b)` where op transposes the last two axes when asked; recorded.
    static func product(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool) -> Tensor {
        let out = productKernel(a, b, transposeA: transposeA, transposeB: transposeB)
        return out.recorded("matmul", [a, b]) { g in
            // C = AB: dA = G·Bᵀ, dB = Aᵀ·G (with the transposes of the forward folded in).
            let ga: Tensor? = a.needsGrad
                ? (transposeA ? productKernel(b, g, transposeA: transposeB, transposeB: true)
                              : productKernel(g, b, transposeA: false, transposeB: !transposeB)).sumToShape(a.shape)
                : nil
            let gb: Tensor? = b.needsGrad
                ? (transposeB ? productKernel(g, a, transposeA: true, transposeB: transposeA)
                              : productKernel(a, g, transposeA: !transposeA, transposeB: false)).sumToShape(b.shape)
                : nil
            return [ga, gb]
        }
    }

    /// The unrecorded batched product.
    static func productKernel(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool) -> Tensor {
        require(a.rank >= 2 && b.rank >= 2, "matmul: needs rank ≥ 2 operands, got \(a.shape) and \(b.shape)")
        let (ar, ac) = (a.shape[-2], a.shape[-1])
        let (br, bc) = (b.shape[-2], b.shape[-1])
        let (m, k) = transposeA ? (ac, ar) : (ar, ac)
        let (kb, n) = transposeB ? (bc, br) : (br, bc)
        require(k == kb, "matmul: inner dimensions differ: \(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : "")")
        let batchA = Shape(Array(a.shape.dimensions.dropLast(2)))
        let batchB = Shape(Array(b.shape.dimensions.dropLast(2)))
        guard let batch = Shape.broadcast(batchA, batchB) else {
            requirementFailed("matmul: batch axes of \(a.shape) and \(b.shape) do not broadcast")
        }
        let out = Tensor(uninitialized: Shape(batch.dimensions + [m, n]))
        let plan = BroadcastPlan(output: batch, batchA, batchB)
        let count = batch.count
        // Many small products (attention's per-head Q·Kᵀ) are spread over the pool one matrix
        // per task; the gemm inside then runs on its task's thread (nested calls are serial).
        Compute.parallelFor(count, costPerItem: count >= Compute.threadCount ? m * n * k / 8 : 0) { range in
            for index in range {
                // Batch offsets in matrices, from the broadcast plan's row offsets and inner strides.
                let row = index / plan.inner, column = index % plan.inner
                let (oa, ob) = plan.offsets(row: row)
                let ia = oa + column * plan.innerStrideA, ib = ob + column * plan.innerStrideB
                MatrixKernels.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                                   a: a.storage.pointer + ia * ar * ac, lda: ac,
                                   b: b.storage.pointer + ib * br * bc, ldb: bc,
                                   c: out.storage.pointer + index * m * n, ldc: n)
            }
        }
        return out
    }

    /// `x · weightᵀ + bias` for x [..., in], weight [out, in], bias [out]: PyTorch's `F.linear`,
    /// as one sgemm with the bias added in place.
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        require(weight.rank == 2 && x.rank >= 1 && x.shape[-1] == weight.shape[1],
                     "linear: input \(x.shape) does not fit weight \(weight.shape)")
        let inFeatures = weight.shape[1], outFeatures = weight.shape[0]
        let rows = x.count / Swift.max(inFeatures, 1)
        if let bias { require(bias.shape == [outFeatures], "linear: bias \(bias.shape) does not fit weight \(weight.shape)") }
        let out = Tensor(uninitialized: Shape(Array(x.shape.dimensions.dropLast()) + [outFeatures]))
        let po = out.storage.pointer
        if let bias {
            for r in 0..<rows { (po + r * outFeatures).update(from: bias.storage.pointer, count: outFeatures) }
        }
        MatrixKernels.gemm(transposeA: false, transposeB: true, m: rows, n: outFeatures, k: inFeatures,
                           a: x.storage.pointer, lda: inFeatures, b: weight.storage.pointer, ldb: inFeatures,
                           beta: bias == nil ? 0 : 1, c: po, ldc: outFeatures)
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        return out.recorded("linear", inputs) { g in
            // y = xWᵀ + b: dx = G·W, dW = Gᵀ·x, db = Σ_rows G
            var grads: [Tensor?] = []
            if x.needsGrad {
                let gx = Tensor(uninitialized: x.shape)
                MatrixKernels.gemm(transposeA: false, transposeB: false, m: rows, n: inFeatures, k: outFeatures,
                                   a: g.storage.pointer, lda: outFeatures, b: weight.storage.pointer, ldb: inFeatures,
                                   c: gx.storage.pointer, ldc: inFeatures)
                grads.append(gx)
            } else {
                grads.append(nil)
            }
            if weight.needsGrad {
                let gw = Tensor(uninitialized: weight.shape)
                MatrixKernels.gemm(transposeA: true, transposeB: false, m: outFeatures, n: inFeatures, k: rows,
                                   a: g.storage.pointer, lda: outFeatures, b: x.storage.pointer, ldb: inFeatures,
                                   c: gw.storage.pointer, ldc: inFeatures)
                grads.append(gw)
            } else {
                grads.append(nil)
            }
            if let bias { grads.append(bias.needsGrad ? g.reshaped([rows, outFeatures]).sum(alongAxis: 0) : nil) }
            return grads
        }
    }
}
