// Pooling over NCHW tensors. Each (sample, channel) plane is independent, so planes are
// split over the cores.

/// The input window of every output position of an averaging pool, and its divisor.
private struct AveragingWindows {
    var rows: [(start: Int, end: Int)] = []
    var columns: [(start: Int, end: Int)] = []
    /// When set, every window divides by this (count_include_pad); otherwise by its clipped area.
    var fixedDivisor: Float?

    func divisor(_ r: (start: Int, end: Int), _ c: (start: Int, end: Int)) -> Float {
        fixedDivisor ?? Float((r.end - r.start) * (c.end - c.start))
    }
}

extension Tensor {
    /// Max over each `kernel` window (implicit −∞ padding), input [N, C, H, W].
    /// The gradient goes to the first maximal element of each window.
    public static func maxPool2d(_ input: Tensor, kernel: (Int, Int), stride: (Int, Int)? = nil,
                                 padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1)) -> Tensor {
        require(input.rank == 4, "maxPool2d: needs input [N, C, H, W], got \(input.shape)")
        let g = Convolution2DGeometry(kernel: kernel, stride: stride ?? kernel, padding: padding, dilation: dilation)
        require(padding.0 * 2 <= kernel.0 && padding.1 * 2 <= kernel.1,
                     "maxPool2d: padding \(padding) must be at most half of kernel \(kernel)")
        let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (oh, ow) = g.outputSize(height: h, width: w)
        require(oh > 0 && ow > 0, "maxPool2d: kernel \(kernel) does not fit input \(input.shape)")
        let out = Tensor(uninitialized: [n, c, oh, ow])
        // Where each maximum came from, for the backward pass: only kept when it will run.
        let recording = GradientRecording.isEnabled && input.needsGrad
        let argmax = TensorStorage(uninitializedCount: recording ? out.count : 1)
        let px = input.storage.pointer, po = out.storage.pointer
        let isPlainPairs = kernel == (2, 2) && g.strideHeight == 2 && g.strideWidth == 2 && padding == (0, 0) && dilation == (1, 1)
        // Window taps that fall inside the image, per output row and column: the inner loops
        // then run without bounds checks.
        let rowTaps = isPlainPairs ? [] : (0..<oh).map { y in
            (0..<g.kernelHeight).map { y * g.strideHeight - g.paddingHeight + $0 * g.dilationHeight }.filter { $0 >= 0 && $0 < h }
        }
        let columnTaps = isPlainPairs ? [] : (0..<ow).map { x in
            (0..<g.kernelWidth).map { x * g.strideWidth - g.paddingWidth + $0 * g.dilationWidth }.filter { $0 >= 0 && $0 < w }
        }
        do {
            // Indices are stored as Int32 in a Float-sized buffer (same width); a dummy slot when not recording.
            let pi = UnsafeMutableRawPointer(argmax.pointer).bindMemory(to: Int32.self, capacity: Swift.max(out.count, 1))
            let indexStride = recording ? 1 : 0
            Compute.parallelFor(n * c, costPerItem: oh * ow * kernel.0 * kernel.1) { planes in
                for plane in planes {
                    let src = px + plane * h * w
                    let dst = po + plane * oh * ow, idx = pi + plane * oh * ow * indexStride
                    if isPlainPairs {
                        // The common 2×2 / stride 2 case, branch-free: the first maximum wins ties;
                        // a window holding NaN (rare, and predicted) gives NaN as in PyTorch.
                        for y in 0..<oh {
                            let top = src + 2 &* y &* w, bottom = top + w
                            let rowBase = 2 &* y &* w
                            for x in 0..<ow {
                                let a = top[2 &* x], b = top[2 &* x &+ 1], c = bottom[2 &* x], d = bottom[2 &* x &+ 1]
                                // Selects, not branches: random data would mispredict half of them.
                                let rightTop = b > a, rightBottom = d > c
                                let upper = rightTop ? b : a, lower = rightBottom ? d : c
                                let fromBottom = lower > upper
                                var best = fromBottom ? lower : upper
                                var at = fromBottom ? w &+ (rightBottom ? 1 : 0) : (rightTop ? 1 : 0)
                                if (a + b + c + d).isNaN {
                                    let window = [(a, 0), (b, 1), (c, w), (d, w &+ 1)]
                                    if let first = window.first(where: { $0.0.isNaN }) { best = first.0; at = first.1 }
                                }
                                dst[y &* ow &+ x] = best
                                idx[(y &* ow &+ x) &* indexStride] = Int32(truncatingIfNeeded: rowBase &+ 2 &* x &+ at)
                            }
                        }
                        continue
                    }
                    for y in 0..<oh {
                        for x in 0..<ow {
                            var best = -Float.infinity, bestIndex = -1
                            for iy in rowTaps[y] {
                                for ix in columnTaps[x] {
                                    let v = src[iy * w + ix]
                                    if v > best || bestIndex < 0 || (v.isNaN && !best.isNaN) { best = v; bestIndex = iy * w + ix }
                                }
                            }
                            dst[y * ow + x] = best
                            idx[(y * ow + x) * indexStride] = Int32(bestIndex)
                        }
                    }
                }
            }
        }
        return out.recorded("maxPool2d", [input]) { grad in
            let gx = Tensor.zeros(input.shape)
            let pg = grad.storage.pointer, pgx = gx.storage.pointer
            let pi = UnsafeRawPointer(argmax.pointer).bindMemory(to: Int32.self, capacity: out.count)
            Compute.parallelFor(n * c, costPerItem: oh * ow) { planes in
                for plane in planes {
                    let dst = pgx + plane * h * w
                    for o in (plane * oh * ow)..<((plane + 1) * oh * ow) { dst[Int(pi[o])] += pg[o] }
                }
            }
            return [gx]
        }
    }

    /// Mean over each `kernel` window, input [N, C, H, W]. With `countIncludePadding` (PyTorch's
    /// default) padded zeros count in the divisor.
    public static func avgPool2d(_ input: Tensor, kernel: (Int, Int), stride: (Int, Int)? = nil,
                                 padding: (Int, Int) = (0, 0), countIncludePadding: Bool = true) -> Tensor {
        require(input.rank == 4, "avgPool2d: needs input [N, C, H, W], got \(input.shape)")
        let g = Convolution2DGeometry(kernel: kernel, stride: stride ?? kernel, padding: padding)
        require(padding.0 * 2 <= kernel.0 && padding.1 * 2 <= kernel.1,
                     "avgPool2d: padding \(padding) must be at most half of kernel \(kernel)")
        let (h, w) = (input.shape[2], input.shape[3])
        let (oh, ow) = g.outputSize(height: h, width: w)
        require(oh > 0 && ow > 0, "avgPool2d: kernel \(kernel) does not fit input \(input.shape)")
        var windows = AveragingWindows()
        windows.rows = (0..<oh).map { y in
            let start = y * g.strideHeight - g.paddingHeight
            return (Swift.max(start, 0), Swift.min(start + g.kernelHeight, h))
        }
        windows.columns = (0..<ow).map { x in
            let start = x * g.strideWidth - g.paddingWidth
            return (Swift.max(start, 0), Swift.min(start + g.kernelWidth, w))
        }
        if countIncludePadding { windows.fixedDivisor = Float(kernel.0 * kernel.1) }
        return averagePool(input, windows, op: "avgPool2d")
    }

    /// Averages into a fixed output size, windows [⌊i·H/oh⌋, ⌈(i+1)·H/oh⌉) as in PyTorch.
    public static func adaptiveAvgPool2d(_ input: Tensor, outputSize: (Int, Int)) -> Tensor {
        require(input.rank == 4, "adaptiveAvgPool2d: needs input [N, C, H, W], got \(input.shape)")
        require(outputSize.0 > 0 && outputSize.1 > 0, "adaptiveAvgPool2d: output size \(outputSize) must be positive")
        let (h, w) = (input.shape[2], input.shape[3])
        var windows = AveragingWindows()
        windows.rows = (0..<outputSize.0).map { i in (i * h / outputSize.0, ((i + 1) * h + outputSize.0 - 1) / outputSize.0) }
        windows.columns = (0..<outputSize.1).map { i in (i * w / outputSize.1, ((i + 1) * w + outputSize.1 - 1) / outputSize.1) }
        return averagePool(input, windows, op: "adaptiveAvgPool2d")
    }

    private static func averagePool(_ input: Tensor, _ windows: AveragingWindows, op: String) -> Tensor {
        let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (oh, ow) = (windows.rows.count, windows.columns.count)
        let out = Tensor(uninitialized: [n, c, oh, ow])
        let px = input.storage.pointer, po = out.storage.pointer
        Compute.parallelFor(n * c, costPerItem: h * w) { planes in
            for plane in planes {
                let src = px + plane * h * w
                for (y, r) in windows.rows.enumerated() {
                    for (x, col) in windows.columns.enumerated() {
                        var total: Float = 0
                        for iy in r.start..<r.end { for ix in col.start..<col.end { total += src[iy * w + ix] } }
                        po[(plane * oh + y) * ow + x] = total / windows.divisor(r, col)
                    }
                }
            }
        }
        return out.recorded(op, [input]) { grad in
            // Each input in a window receives the window's gradient over its divisor.
            let gx = Tensor.zeros(input.shape)
            let pg = grad.storage.pointer, pgx = gx.storage.pointer
            Compute.parallelFor(n * c, costPerItem: h * w) { planes in
                for plane in planes {
                    let dst = pgx + plane * h * w
                    for (y, r) in windows.rows.enumerated() {
                        for (x, col) in windows.columns.enumerated() {
                            let share = pg[(plane * oh + y) * ow + x] / windows.divisor(r, col)
                            for iy in r.start..<r.end { for ix in col.start..<col.end { dst[iy * w + ix] += share } }
                        }
                    }
                }
            }
            return [gx]
        }
    }
}
