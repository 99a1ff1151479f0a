import Foundation

// Softmax and log-softmax along one axis, stable for any finite logits (the row maximum
// is subtracted before exponentiating).

extension Tensor {
    /// exp(xᵢ) / Σⱼ exp(xⱼ) along `axis`.
    public func softmax(alongAxis axis: Int = -1) -> Tensor {
        let axis = shape.normalizedAxis(axis, op: "softmax")
        let y = Tensor.softmaxKernel(self, axis: axis, log: false)
        let saved = y.detached()
        return y.recorded("softmax", [self]) { g in
            // dx = y ⊙ (g − Σ g⊙y)
            let dot = (g * saved).sum(alongAxis: axis, keepDims: true)
            return [saved * (g - dot)]
        }
    }

    /// xᵢ − log Σⱼ exp(xⱼ) along `axis`.
    public func logSoftmax(alongAxis axis: Int = -1) -> Tensor {
        let axis = shape.normalizedAxis(axis, op: "logSoftmax")
        let y = Tensor.softmaxKernel(self, axis: axis, log: true)
        let saved = y.detached()
        return y.recorded("logSoftmax", [self]) { g in
            // dx = g − exp(y) · Σ g
            let total = g.sum(alongAxis: axis, keepDims: true)
            return [g - saved.exp() * total]
        }
    }

    static func softmaxKernel(_ x: Tensor, axis: Int, log: Bool) -> Tensor {
        let (outer, size, inner) = x.shape.split(at: axis)
        let out = Tensor(uninitialized: x.shape)
        let px = x.storage.pointer, po = out.storage.pointer
        Compute.parallelFor(outer * inner, costPerItem: size * 4) { range in
            for item in range {
                let o = item / inner, j = item % inner
                let src = px + o * size * inner + j, dst = po + o * size * inner + j
                var maximum = -Float.infinity
                for r in 0..<size { maximum = Swift.max(maximum, src[r * inner]) }
                if !maximum.isFinite { maximum = 0 }
                var total: Float = 0
                for r in 0..<size {
                    let e = Foundation.exp(src[r * inner] - maximum)
                    dst[r * inner] = e
                    total += e
                }
                if log {
                    let logTotal = Foundation.log(total) + maximum
                    for r in 0..<size { dst[r * inner] = src[r * inner] - logTotal }
                } else {
                    let scale = 1 / total
                    for r in 0..<size { dst[r * inner] *= scale }
                }
            }
        }
        return out
    }
}
