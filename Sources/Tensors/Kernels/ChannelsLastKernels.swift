import CKernels
import Foundation

/// Inference steps on NHWC images [N, H, W, C] (channels last; FusedModel's layout): work
/// split over the pool's threads, channels innermost (contiguous, so the loops vectorise).
/// They record no gradients.
public enum ChannelsLastKernels {
    /// x·scale + shift per channel, clamped to `clamp` (a fused ReLU is 0...∞, ReLU6 0...6).
    public static func channelAffine(_ x: Tensor, scale: [Float], shift: [Float], clamp: ClosedRange<Float>) -> Tensor {
        let c = x.shape[3], pixels = x.count / c
        let y = Tensor(uninitialized: x.shape)
        let px = x.storage.pointer, py = y.storage.pointer
        let (low, high) = (clamp.lowerBound, clamp.upperBound)
        scale.withUnsafeBufferPointer { s in
            shift.withUnsafeBufferPointer { t in
                Compute.parallelFor(pixels, costPerItem: c) { range in
                    for p in range {
                        let row = p * c
                        for j in 0..<c { py[row + j] = Swift.min(Swift.max(px[row + j] * s[j] + t[j], low), high) }
                    }
                }
            }
        }
        return withExtendedLifetime(x) { y }
    }

    /// Max over `window` (padding never wins: it counts as −∞).
    public static func maxPool(_ x: Tensor, kernel k: Int, stride: Int, padding pad: Int) -> Tensor {
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let g = Convolution2DGeometry(kernel: (k, k), stride: (stride, stride), padding: (pad, pad))
        let (oh, ow) = g.outputSize(height: h, width: w)
        let y = Tensor(uninitialized: Shape([n, oh, ow, c]))
        let px = x.storage.pointer, py = y.storage.pointer
        Compute.parallelFor(n * oh, costPerItem: ow * k * k * c) { rows in
            distill_max_pool_nhwc(px, h, w, c, k, stride, pad, oh, ow, rows.lowerBound, rows.upperBound, py)
        }
        return withExtendedLifetime(x) { y }
    }

    /// The mean over each image's pixels: [N, 1, 1, C].
    public static func globalAveragePool(_ x: Tensor) -> Tensor {
        let (n, pixels, c) = (x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
        let y = Tensor(uninitialized: Shape([n, 1, 1, c]))
        let px = x.storage.pointer, py = y.storage.pointer
        let inverse = 1 / Float(pixels)
        Compute.parallelFor(n, costPerItem: pixels * c) { images in
            for image in images {
                let out = py + image * c
                for q in 0..<c { out[q] = 0 }
                for p in 0..<pixels {
                    let source = px + (image * pixels + p) * c
                    for q in 0..<c { out[q] += source[q] }
                }
                for q in 0..<c { out[q] *= inverse }
            }
        }
        return withExtendedLifetime(x) { y }
    }
}
