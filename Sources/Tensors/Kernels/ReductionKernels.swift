/// Reductions along one axis of a tensor viewed as [outer, size, inner].
enum ReductionKernels {
    /// Sum of `count` contiguous floats with eight independent accumulators (vectorisable).
    @inline(__always)
    static func sum(_ p: UnsafePointer<Float>, _ count: Int) -> Float {
        var acc = SIMD8<Float>(repeating: 0)
        var i = 0
        let raw = UnsafeRawPointer(p)
        while i + 8 <= count {
            acc += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        var total = acc.sum()
        while i < count { total += p[i]; i += 1 }
        return total
    }

    /// Σ (p[i] − mean)², eight lanes at a time (a single running sum is one add per 4 cycles).
    static func sumOfSquaredDeviations(_ p: UnsafePointer<Float>, _ count: Int, mean: Float) -> Float {
        var acc = SIMD8<Float>(repeating: 0)
        let m = SIMD8<Float>(repeating: mean)
        var i = 0
        let raw = UnsafeRawPointer(p)
        while i + 8 <= count {
            let d = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - m
            acc += d * d
            i += 8
        }
        var total = acc.sum()
        while i < count { let d = p[i] - mean; total += d * d; i += 1 }
        return total
    }

    /// (Σ g[i], Σ g[i]·(x[i] − mean)), eight lanes at a time: batch norm's backward sums.
    static func sumAndCenteredDot(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ count: Int, mean: Float) -> (Float, Float) {
        var a = SIMD8<Float>(repeating: 0), b = SIMD8<Float>(repeating: 0)
        let m = SIMD8<Float>(repeating: mean)
        var i = 0
        let rg = UnsafeRawPointer(g), rx = UnsafeRawPointer(x)
        while i + 8 <= count {
            let gv = rg.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            a += gv
            b += gv * (rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - m)
            i += 8
        }
        var sa = a.sum(), sb = b.sum()
        while i < count { sa += g[i]; sb += g[i] * (x[i] - mean); i += 1 }
        return (sa, sb)
    }

    /// out[o, j] = Σ_r x[o, r, j].
    static func sum(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, outer: Int, size: Int, inner: Int) {
        if inner == 1 {
            Compute.parallelFor(outer, costPerItem: size) { range in
                for o in range { out[o] = sum(x + o * size, size) }
            }
            return
        }
        // Split the inner dimension too, so a sum over the batch axis (outer = 1) still uses every core.
        let blocks = max(1, min(Compute.threadCount, inner / 256))
        Compute.parallelFor(outer * blocks, costPerItem: size * inner / blocks) { range in
            for item in range {
                let o = item / blocks, block = item % blocks
                let start = inner * block / blocks, end = inner * (block + 1) / blocks
                let dst = out + o * inner
                let src = x + o * size * inner
                for j in start..<end { dst[j] = 0 }
                for r in 0..<size {
                    let row = src + r * inner
                    for j in start..<end { dst[j] += row[j] }
                }
            }
        }
    }

    /// out[o, j] = max_r x[o, r, j] (or min when `isMax` is false) and the first index r that attains it.
    static func extreme(_ x: UnsafePointer<Float>, values: UnsafeMutablePointer<Float>, indices: UnsafeMutablePointer<Int>,
                        outer: Int, size: Int, inner: Int, isMax: Bool) {
        Compute.parallelFor(outer * inner, costPerItem: size) { range in
            for item in range {
                let o = item / inner, j = item % inner
                let base = x + o * size * inner + j
                var best = base[0], bestIndex = 0
                for r in 1..<max(size, 1) {
                    let v = base[r * inner]
                    // NaN wins, as in PyTorch, so that it is never hidden by a reduction.
                    if (isMax ? v > best : v < best) || (v.isNaN && !best.isNaN) { best = v; bestIndex = r }
                }
                values[item] = best
                indices[item] = bestIndex
            }
        }
    }
}
