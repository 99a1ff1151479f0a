import Foundation

// Fake quantization for quantization-aware training: the forward pass rounds values to the
// int8 model's grid (so the loss sees the quantized model's error) and the backward pass
// lets gradients through where the value was inside the grid's range (the clipped
// straight-through estimator of Bengio et al. 2013, as PyTorch's FakeQuantize does).

extension Tensor {
    /// Per-tensor asymmetric uint8 fake quantization: (clamp(round(x / s) + z, 0, 255) − z)·s
    /// with scale s and zero point z (half to even, as the int8 kernels round).
    /// Gradient: g where (0 − z)·s ≤ x ≤ (255 − z)·s, else 0.
    public func fakeQuantized(scale s: Float, zeroPoint z: Float) -> Tensor {
        let low = (0 - z) * s, high = (255 - z) * s
        let out = Tensor(uninitialized: shape)
        let (px, po, n) = (storage.pointer, out.storage.pointer, count)
        Compute.parallelFor(n, costPerItem: 1) { range in
            for i in range { po[i] = (Swift.min(Swift.max((px[i] / s).rounded(.toNearestOrEven) + z, 0), 255) - z) * s }
        }
        return out.recorded("fakeQuantize", [self]) { g in
            let gx = Tensor(uninitialized: self.shape)
            let (pg, pgx) = (g.storage.pointer, gx.storage.pointer)
            Compute.parallelFor(n, costPerItem: 1) { range in
                for i in range { pgx[i] = px[i] >= low && px[i] <= high ? pg[i] : 0 }
            }
            return [gx]
        }
    }

    /// Per-output-channel symmetric int8 fake quantization of weights [out, ...]: each row j
    /// rounds to multiples of scale_j = max|w_j| / 127 in −127…127 (the int8 model's
    /// `QuantizedWeights`; an all-zero row stays zero). The range holds every weight, so the
    /// gradient passes unchanged (the scale moves with the weights and is not differentiated,
    /// as in PyTorch's per-channel weight fake quantization).
    public func fakeQuantizedPerChannel() -> Tensor {
        let rows = shape[0], width = count / Swift.max(shape[0], 1)
        let out = Tensor(uninitialized: shape)
        let (px, po) = (storage.pointer, out.storage.pointer)
        Compute.parallelFor(rows, costPerItem: width) { range in
            for j in range {
                let row = px + j * width, dst = po + j * width
                var largest: Float = 0
                for k in 0..<width { largest = Swift.max(largest, Swift.abs(row[k])) }
                let scale = largest / 127
                guard scale.isNormal else {
                    for k in 0..<width { dst[k] = 0 }
                    continue
                }
                for k in 0..<width { dst[k] = Swift.min(Swift.max((row[k] / scale).rounded(.toNearestOrEven), -127), 127) * scale }
            }
        }
        return out.recorded("fakeQuantizePerChannel", [self]) { g in [g] }
    }
}
