import Tensors

extension ONNXOperators {
    // MARK: Gemm, MatMul

    func gemm() throws -> Tensor {
        var a = try tensor(0), b = try tensor(1)
        guard a.rank == 2, b.rank == 2 else { throw fail("needs matrices, got \(a.shape) and \(b.shape)") }
        let transA = try int("transA", 0) != 0, transB = try int("transB", 0) != 0
        let alpha = try float("alpha", 1), beta = try float("beta", 1)
        let k = transA ? a.shape[0] : a.shape[1], kb = transB ? b.shape[1] : b.shape[0]
        guard k == kb else { throw fail("inner dimensions differ: \(a.shape)\(transA ? "ᵀ" : "") · \(b.shape)\(transB ? "ᵀ" : "")") }
        let (m, n) = (transA ? a.shape[1] : a.shape[0], transB ? b.shape[0] : b.shape[1])
        _ = try checked([m, n])
        let c = optional(2) == nil ? nil : try tensor(2)
        if let c, try broadcast(c.shape, [m, n]) != [m, n] { throw fail("C \(c.shape) does not broadcast to [\(m), \(n)]") }
        // The common case, a linear layer: one sgemm with the bias added in place.
        if !transA, transB, alpha == 1, beta == 1, c == nil || c!.shape == [n] { return Tensor.linear(a, weight: b, bias: c) }
        if transA { a = a.transposed() }
        if transB { b = b.transposed() }
        var y = a.matmul(b)
        if alpha != 1 { y = y * alpha }
        if let c, beta != 0 { y = y + (beta == 1 ? c : c * beta) }
        return y
    }

    func matmul() throws -> Tensor {
        var a = try tensor(0), b = try tensor(1)
        guard a.rank >= 1, b.rank >= 1 else { throw fail("needs tensors of rank ≥ 1, got \(a.shape) and \(b.shape)") }
        let vectorA = a.rank == 1, vectorB = b.rank == 1
        if vectorA { a = a.unsqueezed(axis: 0) }
        if vectorB { b = b.unsqueezed(axis: 1) }
        guard a.shape[-1] == b.shape[-2] else { throw fail("inner dimensions differ: \(a.shape) · \(b.shape)") }
        let batch = try broadcast(Shape(Array(a.shape.dimensions.dropLast(2))), Shape(Array(b.shape.dimensions.dropLast(2))))
        _ = try checked(batch.dimensions + [a.shape[-2], b.shape[-1]])
        // [..., m, k] · [k, n] (a linear layer on a sequence): one product of all the rows.
        if !vectorB, b.rank == 2, a.rank > 2 {
            let rows = a.shape.dimensions.dropLast()
            return a.reshaped([rows.reduce(1, *), a.shape[-1]]).matmul(b).reshaped(Array(rows) + [b.shape[1]])
        }
        var y = a.matmul(b)
        if vectorA { y = y.squeezed(axis: -2) }
        if vectorB { y = y.squeezed(axis: -1) }
        return y
    }
}
