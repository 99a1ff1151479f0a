import Tensors
import TestSupport
import XCTest

final class KernelTests: XCTestCase {
    override func tearDown() {
        Compute.threadCount = ProcessInfo.processInfo.activeProcessorCount
        Compute.flushDenormals = true
    }

    /// A batch split over threads (each with its own patch matrix and weight-gradient sum)
    /// gives the same output and gradients as convolving each sample alone, where the
    /// kernels parallelise inside the sample instead.
    func testBatchConvolutionMatchesPerSample() {
        let x = randomLeaf([40, 16, 32, 32], seed: 1)
        let w = randomLeaf([8, 16, 3, 3], seed: 2, scale: 0.1)
        let b = randomLeaf([8], seed: 3)
        let upstream = randomLeaf([40, 8, 32, 32], seed: 4).detached()
        (Tensor.conv2d(x, weight: w, bias: b, padding: (1, 1)) * upstream).sum().backward()
        let batchOut = withoutGradients { Tensor.conv2d(x, weight: w, bias: b, padding: (1, 1)) }
        let gx = x.grad!, gw = w.grad!
        x.zeroGrad(); w.zeroGrad()
        var outputs: [Tensor] = []
        for s in 0..<40 {
            let xs = x.sliced(alongAxis: 0, s..<(s + 1))
            let ys = Tensor.conv2d(xs, weight: w, bias: b, padding: (1, 1))
            (ys * upstream.sliced(alongAxis: 0, s..<(s + 1))).sum().backward()
            outputs.append(ys.detached())
        }
        assertClose(Tensor.concatenating(outputs, alongAxis: 0).scalars, batchOut.scalars, absolute: 1e-4, "output")
        assertClose(x.grad!.scalars, gx.scalars, absolute: 1e-4, "input gradient")
        assertClose(w.grad!.scalars, gw.scalars, absolute: 1e-2, relative: 1e-3, "weight gradient")
    }

    func testOneAndTwoThreadsAgree() {
        let x = randomLeaf([64, 8, 20, 20], seed: 9)
        let w = randomLeaf([16, 8, 3, 3], seed: 10, scale: 0.1)
        func run() -> [Float] {
            withoutGradients {
                let y = Tensor.conv2d(x, weight: w, padding: (1, 1)).relu()
                return (Tensor.maxPool2d(y, kernel: (2, 2)).softmax(alongAxis: 1) + y.mean(alongAxes: [2, 3], keepDims: true).sum()).scalars
            }
        }
        Compute.threadCount = 1
        let single = run()
        Compute.threadCount = 2
        assertClose(run(), single, absolute: 1e-5, "1 vs 2 threads")
    }

    func testDenormalsAreFlushedOnComputeThreads() {
        // 1e-20 · 1e-20 = 1e-40 is a denormal Float; with flush-to-zero it becomes 0.
        let a = Tensor.full([1 << 16], 1e-20), b = Tensor.full([1 << 16], 1e-20)
        Compute.flushDenormals = true
        XCTAssertTrue((a * b).scalars.allSatisfy { $0 == 0 }, "every chunk, on every thread, flushes")
        Compute.flushDenormals = false
        XCTAssertTrue((a * b).scalars.allSatisfy { $0 > 0 && !$0.isNormal }, "without the flag the denormal survives")
    }

    func testMatmulMatchesNaiveProduct() {
        var g = RandomGenerator(seed: 11)
        let a = Tensor.randomNormal([7, 13], using: &g), b = Tensor.randomNormal([13, 5], using: &g)
        let pa = a.scalars, pb = b.scalars
        var expected = [Float](repeating: 0, count: 35)
        for i in 0..<7 { for j in 0..<5 { for k in 0..<13 { expected[i * 5 + j] += pa[i * 13 + k] * pb[k * 5 + j] } } }
        assertClose(a.matmul(b).scalars, expected, absolute: 1e-4)
    }

    func testShapeHelpers() {
        let x = Tensor.arange(0, 24).reshaped([2, 3, 4])
        XCTAssertEqual(x.reshaped([-1, 4]).shape, [6, 4])
        XCTAssertEqual(x.flattened().shape, [2, 12])
        XCTAssertEqual(x.unsqueezed(axis: 1).shape, [2, 1, 3, 4])
        XCTAssertEqual(x.unsqueezed(axis: 0).squeezed().shape, [2, 3, 4])
        XCTAssertEqual(x.transposed(0, 2).shape, [4, 3, 2])
        XCTAssertEqual(x.transposed(0, 2).scalars[0..<3], [0, 12, 4])
        XCTAssertEqual(Tensor.oneHot([2, 0], classes: 3).scalars, [0, 0, 1, 1, 0, 0])
        XCTAssertEqual(Tensor([1, 5, 3]).max(alongAxis: 0).indices, [1])
        XCTAssertEqual(Tensor([1, 5, 3]).isGreater(than: Tensor(scalar: 2)).scalars, [0, 1, 1])
        XCTAssertEqual(Tensor.arange(1, 2, step: 0.25).scalars, [1, 1.25, 1.5, 1.75])
    }

    /// permuted equals an element-by-element reference for every permutation of rank-4
    /// shapes with axes of size 1 (dropped), axes that stay contiguous (merged), and batched
    /// transposes larger than one tile (NCHW ↔ NHWC), on one thread and two.
    func testPermuteMatchesTheReference() {
        func permutations(_ items: [Int]) -> [[Int]] {
            items.count <= 1 ? [items] : items.indices.flatMap { i in
                permutations(Array(items[..<i] + items[(i + 1)...])).map { [items[i]] + $0 }
            }
        }
        var g = RandomGenerator(seed: 8)
        for threads in [1, 2] {
            Compute.threadCount = threads
            for shape in [[2, 3, 4, 5], [3, 1, 33, 40], [2, 70, 1, 37], [1, 1, 5, 1], [2, 16, 8, 8]] {
                let x = Tensor.randomNormal(Shape(shape), using: &g)
                let strides = x.shape.strides, values = x.scalars
                for axes in permutations([0, 1, 2, 3]) {
                    let y = x.permuted(axes)
                    let dims = axes.map { shape[$0] }
                    XCTAssertEqual(y.shape.dimensions, dims)
                    var expected: [Float] = []
                    for a in 0..<dims[0] { for b in 0..<dims[1] { for c in 0..<dims[2] { for d in 0..<dims[3] {
                        let index = [a, b, c, d]
                        expected.append(values[zip(axes, index).reduce(0) { $0 + strides[$1.0] * $1.1 }])
                    } } } }
                    XCTAssertEqual(y.scalars, expected, "shape \(shape), axes \(axes), \(threads) thread(s)")
                }
            }
        }
    }

    /// The NHWC max pool of the fused inference (two passes over each output row) equals the
    /// NCHW `Tensor.maxPool2d` exactly, for non-overlapping and overlapping windows, padding,
    /// odd sizes, one channel and many, on one thread and two, on every kernel path this CPU runs.
    func testChannelsLastMaxPoolMatchesTheReference() {
        var g = RandomGenerator(seed: 9)
        defer { Compute.forceKernelPath(nil) }
        let cases = [([2, 8, 28, 28], 2, 2, 0), ([3, 16, 14, 14], 2, 2, 0), ([1, 5, 7, 9], 3, 2, 1), ([2, 1, 6, 5], 3, 1, 1),
                     ([1, 33, 9, 9], 3, 3, 0), ([2, 4, 5, 5], 2, 2, 1), ([1, 3, 4, 4], 4, 1, 2), ([1, 2, 1, 1], 1, 1, 0)]
        for (shape, kernel, stride, padding) in cases {
            let x = Tensor.randomNormal(Shape(shape), using: &g)
            let expected = Tensor.maxPool2d(x, kernel: (kernel, kernel), stride: (stride, stride), padding: (padding, padding))
            for threads in [1, 2] {
                Compute.threadCount = threads
                for path in KernelPath.allCases where path.isSupported {
                    Compute.forceKernelPath(path)
                    let y = ChannelsLastKernels.maxPool(x.permuted([0, 2, 3, 1]), kernel: kernel, stride: stride, padding: padding)
                    XCTAssertEqual(y.permuted([0, 3, 1, 2]).scalars, expected.scalars,
                                   "shape \(shape), kernel \(kernel), stride \(stride), padding \(padding), \(threads) thread(s), \(path)")
                }
            }
        }
    }
}
