import Foundation
import Tensors
import TestSupport
import XCTest

/// conv2d with groups = input channels runs the depthwise kernels (DepthwiseKernels and
/// Sources/CKernels/depthwise.c): their output and gradients against a direct loop
/// convolution, against finite differences, and the same on one thread as on two.
/// (PyTorch's values for depthwise cases are in GoldenOpsTests' fixture.)
final class DepthwiseConvolutionTests: XCTestCase {
    override func tearDown() {
        Compute.threadCount = ProcessInfo.processInfo.activeProcessorCount
    }

    /// Output, input gradient and weight gradient of a depthwise convolution written as the
    /// definition, for upstream gradient `g`.
    private func direct(_ c: DepthwiseCase, batch: Int, x: [Float], w: [Float], b: [Float], g: [Float]) -> ([Float], [Float], [Float]) {
        let (kh, kw) = c.kernel, (sh, sw) = c.stride, (ph, pw) = c.padding
        let oh = (c.height + 2 * ph - kh) / sh + 1, ow = (c.width + 2 * pw - kw) / sw + 1
        let outChannels = c.channels * c.multiplier
        var out = [Float](repeating: 0, count: batch * outChannels * oh * ow)
        var gx = [Float](repeating: 0, count: x.count), gw = [Float](repeating: 0, count: w.count)
        for n in 0..<batch {
            for o in 0..<outChannels {
                let channel = o / c.multiplier
                for y in 0..<oh {
                    for xo in 0..<ow {
                        let outIndex = ((n * outChannels + o) * oh + y) * ow + xo
                        var sum = b[o]
                        for dy in 0..<kh {
                            for dx in 0..<kw {
                                let iy = y * sh + dy - ph, ix = xo * sw + dx - pw
                                guard iy >= 0, iy < c.height, ix >= 0, ix < c.width else { continue }
                                let inIndex = ((n * c.channels + channel) * c.height + iy) * c.width + ix
                                let wIndex = (o * kh + dy) * kw + dx
                                sum += w[wIndex] * x[inIndex]
                                gx[inIndex] += w[wIndex] * g[outIndex]
                                gw[wIndex] += x[inIndex] * g[outIndex]
                            }
                        }
                        out[outIndex] = sum
                    }
                }
            }
        }
        return (out, gx, gw)
    }

    func testEveryGeometryMatchesTheDefinition() {
        for (index, c) in DepthwiseCase.all.enumerated() {
            let batch = 3
            let x = randomLeaf([batch, c.channels, c.height, c.width], seed: UInt64(10 + index))
            let w = randomLeaf([c.channels * c.multiplier, 1, c.kernel.0, c.kernel.1], seed: UInt64(20 + index))
            let b = randomLeaf([c.channels * c.multiplier], seed: UInt64(30 + index))
            let y = Tensor.conv2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding, groups: c.channels)
            let g = randomLeaf(y.shape, seed: UInt64(40 + index)).detached()
            (y * g).sum().backward()
            let (out, gx, gw) = direct(c, batch: batch, x: x.scalars, w: w.scalars, b: b.scalars, g: g.scalars)
            XCTAssertEqual(y.shape.count, out.count, c.name)
            assertClose(y.scalars, out, absolute: 1e-5, relative: 1e-5, "\(c.name) output")
            assertClose(x.grad!.scalars, gx, absolute: 1e-5, relative: 1e-5, "\(c.name) input gradient")
            assertClose(w.grad!.scalars, gw, absolute: 1e-4, relative: 1e-5, "\(c.name) weight gradient")
        }
    }

    func testGradientsMatchFiniteDifferences() {
        for c in DepthwiseCase.all where ["3x3 s1 p1", "3x3 s2 p1 odd", "multiplier 2", "2x2 s3 p0"].contains(c.name) {
            let x = randomLeaf([2, c.channels, c.height, c.width], seed: 1)
            let w = randomLeaf([c.channels * c.multiplier, 1, c.kernel.0, c.kernel.1], seed: 2)
            let b = randomLeaf([c.channels * c.multiplier], seed: 3)
            assertGradientsMatchFiniteDifferences([x, w, b], tolerance: 2e-2, step: 1e-2, c.name) { t in
                Tensor.conv2d(t[0], weight: t[1], bias: t[2], stride: c.stride, padding: c.padding, groups: c.channels)
            }
        }
    }

    /// Planes split by (sample, channel) forward and by channel backward: the weight
    /// gradient is summed over the samples in one order whatever the thread count.
    func testOneAndTwoThreadsGiveIdenticalResults() {
        let x = randomLeaf([16, 24, 16, 16], seed: 5)
        let w = randomLeaf([24, 1, 3, 3], seed: 6)
        func run(threads: Int) -> [[Float]] {
            Compute.threadCount = threads
            x.zeroGrad(); w.zeroGrad()
            let y = Tensor.conv2d(x, weight: w, stride: (2, 2), padding: (1, 1), groups: 24)
            (y * y).sum().backward()
            return [y.scalars, x.grad!.scalars, w.grad!.scalars]
        }
        XCTAssertEqual(run(threads: 1), run(threads: 2))
    }
}
