/// Data movement: permutation and broadcasting copies.
enum CopyKernels {
    /// Copies `x` into `out` with axes reordered: out axis i is input axis `axes[i]`.
    /// Trailing axes that stay in place are copied as contiguous blocks.
    static func permute(_ x: Tensor, axes: [Int], into out: Tensor) {
        let inStrides = x.shape.strides
        // The output's axes with their input strides: axes of size 1 dropped (they move
        // nothing), neighbours that stay contiguous in the input merged into one.
        var dims: [Int] = [], strides: [Int] = []
        for axis in axes where x.shape.dimensions[axis] != 1 {
            let (size, stride) = (x.shape.dimensions[axis], inStrides[axis])
            if let last = strides.last, last == stride * size {
                dims[dims.count - 1] *= size
                strides[strides.count - 1] = stride
            } else {
                dims.append(size)
                strides.append(stride)
            }
        }
        // Fold trailing axes that remain contiguous into one block copy.
        var block = 1
        while let last = dims.last, strides.last! == block {
            block *= last
            dims.removeLast(); strides.removeLast()
        }
        let px = x.storage.pointer, po = out.storage.pointer
        let rows = dims.reduce(1, *)
        let rank = dims.count
        if block == 1 && rank >= 2 && strides[rank - 2] == 1 {
            // A (batched) matrix transpose, NCHW ↔ NHWC among others: tiles, not elements.
            transposeTiles(px, dims: dims, strides: strides, into: po)
            return
        }
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

    /// out[outer, r, c] = x[offset(outer) + r + c·strides.last] for output dims `dims` (the
    /// last two axes read with strides 1 and strides.last), in 32 × 32 tiles.
    private static func transposeTiles(_ px: UnsafeMutablePointer<Float>, dims: [Int], strides: [Int], into po: UnsafeMutablePointer<Float>) {
        let rank = dims.count, (rowCount, columnCount, columnStride) = (dims[rank - 2], dims[rank - 1], strides[rank - 1])
        let outerDims = Array(dims.prefix(rank - 2)), outerStrides = Array(strides.prefix(rank - 2))
        let tile = 32, rowTiles = (rowCount + tile - 1) / tile
        let outer = outerDims.reduce(1, *)
        Compute.parallelFor(outer * rowTiles, costPerItem: tile * columnCount) { range in
            for item in range {
                var (rest, base) = (item / rowTiles, 0)
                for axis in stride(from: outerDims.count - 1, through: 0, by: -1) {
                    base += (rest % outerDims[axis]) * outerStrides[axis]
                    rest /= outerDims[axis]
                }
                let r0 = (item % rowTiles) * tile, r1 = Swift.min(r0 + tile, rowCount)
                let source = px + base, target = po + (item / rowTiles) * rowCount * columnCount
                var c0 = 0
                while c0 < columnCount {
                    let c1 = Swift.min(c0 + tile, columnCount)
                    for r in r0..<r1 {
                        for c in c0..<c1 { target[r * columnCount + c] = source[r + c * columnStride] }
                    }
                    c0 = c1
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
