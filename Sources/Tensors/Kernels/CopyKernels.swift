/// Data movement: permutation and broadcasting copies.
enum CopyKernels {
    /// Copies `x` into `out` with axes reordered: out axis i is input axis `axes[i]`.
    /// Trailing axes that stay in place are copied as contiguous blocks.
    static func permute(_ x: Tensor, axes: [Int], into out: Tensor) {
        let inStrides = x.shape.strides
        var dims = axes.map { x.shape.dimensions[$0] }
        var strides = axes.map { inStrides[$0] }
        // Fold trailing axes that remain contiguous into one block copy.
        var block = 1
        while let last = dims.last, strides.last! == block {
            block *= last
            dims.removeLast(); strides.removeLast()
        }
        let px = x.storage.pointer, po = out.storage.pointer
        let rows = dims.reduce(1, *)
        let rank = dims.count
        Compute.parallelFor(rows, costPerItem: block) { range in
            var index = [Int](repeating: 0, count: rank)
            var rest = range.lowerBound
            var offset = 0
            for axis in stride(from: rank - 1, through: 0, by: -1) {
                index[axis] = rest % dims[axis]
                rest /= dims[axis]
                offset += index[axis] * strides[axis]
            }
            for row in range {
                let dst = po + row * block
                if block == 1 { dst[0] = px[offset] } else { dst.update(from: px + offset, count: block) }
                var axis = rank - 1
                while axis >= 0 {
                    index[axis] += 1
                    offset += strides[axis]
                    if index[axis] < dims[axis] { break }
                    offset -= strides[axis] * dims[axis]
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
    }

    /// Broadcasts `x` to `shape` (NumPy rules).
    static func expand(_ x: Tensor, to shape: Shape) -> Tensor {
        let plan = BroadcastPlan(output: shape, x.shape, shape)
        let out = Tensor(uninitialized: shape)
        let px = x.storage.pointer, po = out.storage.pointer
        let inner = plan.inner
        Compute.parallelFor(plan.rows, costPerItem: inner) { rows in
            for row in rows {
                let (ox, _) = plan.offsets(row: row)
                let dst = po + row * inner
                if plan.innerStrideA == 1 {
                    dst.update(from: px + ox, count: inner)
                } else {
                    dst.update(repeating: px[ox], count: inner)
                }
            }
        }
        return out
    }
}
