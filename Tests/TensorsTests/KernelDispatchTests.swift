import CKernels
import Foundation
import Tensors
import TestSupport
import XCTest

/// The C kernels' paths (Sources/CKernels): every path this CPU executes gives what the
/// portable path gives, kernel by kernel and through the ops that use them; the CPU's
/// features are detected as the kernel reports them; the default is the widest verified path.
final class KernelDispatchTests: XCTestCase {
    override func tearDown() {
        Compute.forceKernelPath(nil)
        Compute.threadCount = ProcessInfo.processInfo.activeProcessorCount
    }

    /// The paths this CPU executes, besides the portable one (printed, so that a test log
    /// says which paths were verified on which CPU).
    private var vectorPaths: [KernelPath] {
        let paths = KernelPath.allCases.filter { $0 != .portable && $0.isSupported }
        print("KernelDispatchTests: \(cpuModel()), vector paths run: \(paths.map(\.description))")
        return paths
    }

    func testFeatureDetectionAgreesWithTheKernel() throws {
        XCTAssertTrue(KernelPath.portable.isSupported)
        #if arch(x86_64)
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else {
            throw XCTSkip("no /proc/cpuinfo")
        }
        let flags = Set(line.split(separator: ":").last!.split(separator: " ").map(String.init))
        XCTAssertEqual(KernelPath.avx2.isSupported, flags.contains("avx2") && flags.contains("fma"))
        XCTAssertEqual(KernelPath.avx512.isSupported, flags.contains("avx512f"))
        XCTAssertEqual(KernelPath.avx512vnni.isSupported, ["avx512f", "avx512bw", "avx512_vnni", "avx2", "fma"].allSatisfy(flags.contains))
        #else
        XCTAssertFalse(KernelPath.avx2.isSupported)
        XCTAssertFalse(KernelPath.avx512.isSupported)
        XCTAssertFalse(KernelPath.avx512vnni.isSupported)
        #endif
    }

    func testDefaultIsTheWidestSupportedVerifiedPath() {
        Compute.forceKernelPath(.portable)
        XCTAssertEqual(Compute.kernelPath, .portable)
        Compute.forceKernelPath(nil)
        XCTAssertEqual(Compute.kernelPath, KernelPath.allCases.last { $0.isSupported && $0.isVerified })
    }

    /// distill_taps_accumulate and distill_taps_dot on every path against the portable one:
    /// equal within 1e-5 of the sum of the terms' magnitudes (the paths differ in vector width
    /// and fused multiply-adds, so in rounding), for lengths around the vector widths and
    /// their tails, and tap counts from 1 to the most.
    func testTapKernelsOnEveryPathMatchPortable() {
        var generator = RandomGenerator(seed: 21)
        let paths = vectorPaths
        for count in [1, 5, 8, 15, 16, 17, 31, 63, 64, 65, 100, 1000, 1157] {
            for taps in [1, 2, 4, 9, 25, Int(DISTILL_MAX_TAPS)] {
                let buffer = Tensor.randomNormal([count + 7 * taps], using: &generator).scalars
                let weights = Tensor.randomNormal([taps], using: &generator).scalars
                let g = Tensor.randomNormal([count], using: &generator).scalars
                let initial = Tensor.randomNormal([taps], using: &generator).scalars
                buffer.withUnsafeBufferPointer { b in
                    let sources: [UnsafePointer<Float>?] = (0..<taps).map { b.baseAddress! + 7 * $0 }
                    func run(_ path: KernelPath) -> (sums: [Float], dots: [Float]) {
                        Compute.forceKernelPath(path)
                        var sums = [Float](repeating: .nan, count: count), dots = initial
                        distill_taps_accumulate(count, Int32(taps), sources, weights, 0.5, &sums)
                        distill_taps_dot(count, Int32(taps), sources, g, &dots)
                        return (sums, dots)
                    }
                    let reference = run(.portable)
                    // Magnitudes: |init| + Σ_t |w·s| per output; Σ_i |g·s| per dot.
                    let sumScale = (0..<count).map { i in 0.5 + (0..<taps).reduce(Float(0)) { $0 + abs(weights[$1] * b[7 * $1 + i]) } }
                    let dotScale = (0..<taps).map { t in abs(initial[t]) + (0..<count).reduce(Float(0)) { $0 + abs(g[$1] * b[7 * t + $1]) } }
                    for path in paths {
                        let result = run(path)
                        for i in 0..<count where abs(result.sums[i] - reference.sums[i]) > 1e-5 * sumScale[i] {
                            XCTFail("\(path) accumulate, \(count) values, \(taps) taps: element \(i) is \(result.sums[i]), portable \(reference.sums[i])")
                            break
                        }
                        for t in 0..<taps where abs(result.dots[t] - reference.dots[t]) > 1e-5 * dotScale[t] {
                            XCTFail("\(path) dot, \(count) values, \(taps) taps: tap \(t) is \(result.dots[t]), portable \(reference.dots[t])")
                            break
                        }
                    }
                }
            }
        }
    }

    /// Depthwise convolutions (their planes run the tap kernels) on every path against the
    /// portable one: output and all three gradients, within 1e-5 relative (plus 1e-5 absolute
    /// for values near zero).
    func testDepthwiseConvolutionOnEveryPathMatchesPortable() {
        let paths = vectorPaths
        for (index, c) in DepthwiseCase.all.enumerated() {
            let x = randomLeaf([3, c.channels, c.height, c.width], seed: UInt64(100 + index))
            let w = randomLeaf([c.channels * c.multiplier, 1, c.kernel.0, c.kernel.1], seed: UInt64(200 + index))
            let b = randomLeaf([c.channels * c.multiplier], seed: UInt64(300 + index))
            let reference = Self.run(c, x, w, b, .portable)
            for path in paths {
                let result = Self.run(c, x, w, b, path)
                for (part, name) in ["output", "input gradient", "weight gradient", "bias gradient"].enumerated() {
                    assertClose(result[part], reference[part], absolute: 1e-5, relative: 1e-5, "\(path) \(c.name) \(name)")
                }
            }
        }
    }

    /// The direct convolution of layers with few input channels (PackedConvolution's first
    /// layers, Sources/CKernels/direct.c; made to take up to four here, one by default) on
    /// every path, one thread and two, against `Tensor.conv2d` in NCHW: strides,
    /// padding wider than the kernel's reach, dilation, output channels that are not a multiple
    /// of a vector, rows shorter than a tile of 8, each activation, and a residual sum added
    /// before it; batches of one image and of two. Within 1e-5 (plus 1e-5 relative).
    func testDirectConvolutionOnEveryPathMatchesTheReference() throws {
        guard PackedConvolution.isAvailable else { throw XCTSkip("no oneDNN in this build") }
        let paths = [KernelPath.portable] + vectorPaths
        let defaultChannels = PackedConvolution.directMaximumChannels
        PackedConvolution.directMaximumChannels = 4
        defer { PackedConvolution.directMaximumChannels = defaultChannels }
        // (channels, outChannels, height, width, kernel, stride, padding, dilation)
        let cases = [(1, 8, 28, 28, 3, 1, 1, 1), (3, 16, 32, 32, 3, 1, 1, 1), (3, 32, 32, 32, 3, 2, 1, 1), (2, 5, 7, 9, 3, 1, 0, 1),
                     (4, 24, 11, 13, 5, 2, 2, 1), (1, 3, 6, 6, 3, 1, 2, 2), (3, 17, 5, 4, 1, 1, 0, 1)]
        for (index, (c, o, h, w, k, stride, padding, dilation)) in cases.enumerated() {
            let x = randomLeaf([2, c, h, w], seed: UInt64(400 + index)).detached()
            let weight = randomLeaf([o, c, k, k], seed: UInt64(500 + index), scale: 0.5).detached()
            let bias = randomLeaf([o], seed: UInt64(600 + index)).detached()
            let geometry = Convolution2DGeometry(kernel: (k, k), stride: (stride, stride), padding: (padding, padding),
                                                 dilation: (dilation, dilation))
            let plain = Tensor.conv2d(x, weight: weight, bias: bias, stride: (stride, stride), padding: (padding, padding),
                                      dilation: (dilation, dilation))
            let shortcut = randomLeaf(plain.shape, seed: UInt64(700 + index)).detached()
            for activation in [FusedActivation.none, .relu, .relu6] {
                let convolution = try XCTUnwrap(PackedConvolution(weight: weight, bias: bias.scalars, channels: c, height: h, width: w,
                                                                  groups: 1, geometry: geometry, activation: activation))
                for path in paths {
                    Compute.forceKernelPath(path)
                    for threads in [1, 2] {
                        Compute.threadCount = threads
                        for images in [1, 2] {
                            let label = "\(path) case \(index) \(activation) \(threads) thread(s), \(images) image(s)"
                            let (input, expected) = (x.sliced(alongAxis: 0, 0..<images), plain.sliced(alongAxis: 0, 0..<images))
                            let added = shortcut.sliced(alongAxis: 0, 0..<images)
                            let y = convolution(input.permuted([0, 2, 3, 1])).permuted([0, 3, 1, 2])
                            assertClose(y.scalars, activation.applied(to: expected).scalars, absolute: 1e-5, relative: 1e-5, label)
                            let target = added.permuted([0, 2, 3, 1]).copy()
                            let summed = convolution(input.permuted([0, 2, 3, 1]), accumulating: target).permuted([0, 3, 1, 2])
                            assertClose(summed.scalars, activation.applied(to: expected + added).scalars, absolute: 1e-5, relative: 1e-5,
                                        "\(label), with a residual sum")
                        }
                    }
                }
                Compute.forceKernelPath(nil)
            }
        }
    }

    /// The transformer's row kernels (masked softmax, GELU, layer norm, and the softmax's and
    /// layer norm's and GELU's gradients) on every path against
    /// the portable one, for lengths around both vector widths and their tails: within 2e-6
    /// (softmax weights, which are at most 1), 1e-5 relative plus 1e-6 (GELU, layer norm's
    /// outputs, mean and 1/σ). Masked keys are exactly 0 on every path, and a row whose keys
    /// are all masked is all zeros.
    func testTransformerRowKernelsOnEveryPathMatchPortable() {
        var generator = RandomGenerator(seed: 33)
        let paths = vectorPaths
        for count in [1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 128, 384, 385] {
            let x = (Tensor.randomNormal([count], using: &generator) * 4).scalars
            let gamma = Tensor.randomNormal([count], using: &generator).scalars, beta = Tensor.randomNormal([count], using: &generator).scalars
            let mask = (0..<count).map { Float(($0 * 7 + count) % 3 == 0 ? 0 : 1) }
            let noKeys = [Float](repeating: 0, count: count)
            let upstream = Tensor.randomNormal([count], using: &generator).scalars
            func run(_ path: KernelPath) -> [[Float]] {
                Compute.forceKernelPath(path)
                var plain = [Float](repeating: .nan, count: count), masked = plain, none = plain, gelu = plain, normed = plain, bare = plain
                var mean: Float = 0, inverse: Float = 0, bareMean: Float = 0, bareInverse: Float = 0
                distill_softmax_row(count, x, nil, 0.125, &plain)
                distill_softmax_row(count, x, mask, 0.125, &masked)
                distill_softmax_row(count, x, noKeys, 0.125, &none)
                distill_gelu(count, x, &gelu)
                distill_layer_norm_row(count, x, gamma, beta, 1e-5, &normed, &mean, &inverse)
                distill_layer_norm_row(count, x, nil, nil, 1e-12, &bare, &bareMean, &bareInverse)
                var softmaxGradient = plain, normGradient = plain, bareGradient = plain, geluGradient = plain
                distill_gelu_backward(count, upstream, x, &geluGradient)
                distill_softmax_backward_row(count, upstream, masked, 0.125, &softmaxGradient)
                distill_layer_norm_backward_row(count, upstream, x, gamma, mean, inverse, &normGradient)
                distill_layer_norm_backward_row(count, upstream, x, nil, bareMean, bareInverse, &bareGradient)
                return [plain, masked, none, gelu, normed, bare, [mean, inverse, bareMean, bareInverse],
                        softmaxGradient, normGradient, bareGradient, geluGradient]
            }
            let reference = run(.portable)
            XCTAssertEqual(reference[0].reduce(0, +), 1, accuracy: 1e-5)
            XCTAssertEqual(reference[2], noKeys, "a row without keys is zeros")
            for path in [KernelPath.portable] + paths {
                let result = run(path)
                for j in 0..<count where mask[j] == 0 {
                    XCTAssertEqual(result[1][j], 0, "\(path) \(count): masked key \(j)")
                    XCTAssertEqual(result[7][j], 0, "\(path) \(count): masked key \(j)'s gradient")
                }
                XCTAssertEqual(result[2], noKeys, "\(path) \(count): a row without keys is zeros")
                assertClose(result[0], reference[0], absolute: 2e-6, relative: 0, "\(path) softmax of \(count)")
                assertClose(result[1], reference[1], absolute: 2e-6, relative: 0, "\(path) masked softmax of \(count)")
                assertClose(result[7], reference[7], absolute: 2e-6, relative: 1e-5, "\(path) softmax gradient of \(count)")
                for (part, name) in [(3, "gelu"), (4, "layer norm"), (5, "layer norm without affine"), (6, "layer norm moments"),
                                     (8, "layer norm gradient"), (9, "layer norm gradient without affine"), (10, "gelu gradient")] {
                    assertClose(result[part], reference[part], absolute: 1e-6, relative: 1e-5, "\(path) \(name) of \(count)")
                }
            }
        }
    }

    /// Output, input, weight and bias gradients of `c` on `path`, for a fixed upstream gradient.
    private static func run(_ c: DepthwiseCase, _ x: Tensor, _ w: Tensor, _ b: Tensor, _ path: KernelPath) -> [[Float]] {
        Compute.forceKernelPath(path)
        for t in [x, w, b] { t.zeroGrad() }
        var generator = RandomGenerator(seed: 7)
        let y = Tensor.conv2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding, groups: c.channels)
        let upstream = Tensor.randomNormal(y.shape, using: &generator)
        (y * upstream).sum().backward()
        return [y.scalars, x.grad!.scalars, w.grad!.scalars, b.grad!.scalars]
    }

    private func cpuModel() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }) else { return "unknown CPU" }
        return line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)
    }
}

/// Depthwise geometries: MobileNetV2's (3×3, padding 1, stride 1 and 2, even and odd
/// sizes), a channel multiplier, and the shapes the plane layout must also get right
/// (a stride larger than the kernel, rectangular kernels and strides, no padding, a 1×1 output).
struct DepthwiseCase {
    var name: String
    var channels: Int, multiplier: Int, height: Int, width: Int
    var kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int)

    static let all: [DepthwiseCase] = [
        DepthwiseCase(name: "3x3 s1 p1", channels: 4, multiplier: 1, height: 8, width: 8, kernel: (3, 3), stride: (1, 1), padding: (1, 1)),
        DepthwiseCase(name: "3x3 s2 p1 even", channels: 3, multiplier: 1, height: 16, width: 16, kernel: (3, 3), stride: (2, 2), padding: (1, 1)),
        DepthwiseCase(name: "3x3 s2 p1 odd", channels: 2, multiplier: 1, height: 7, width: 9, kernel: (3, 3), stride: (2, 2), padding: (1, 1)),
        DepthwiseCase(name: "3x3 s1 p1 wide", channels: 2, multiplier: 1, height: 5, width: 37, kernel: (3, 3), stride: (1, 1), padding: (1, 1)),
        DepthwiseCase(name: "multiplier 2", channels: 3, multiplier: 2, height: 6, width: 5, kernel: (3, 3), stride: (1, 1), padding: (1, 1)),
        DepthwiseCase(name: "5x5 s2 p2", channels: 2, multiplier: 1, height: 9, width: 8, kernel: (5, 5), stride: (2, 2), padding: (2, 2)),
        DepthwiseCase(name: "2x2 s3 p0", channels: 2, multiplier: 1, height: 8, width: 7, kernel: (2, 2), stride: (3, 3), padding: (0, 0)),
        DepthwiseCase(name: "3x1 s(2,1) p(1,0)", channels: 2, multiplier: 3, height: 6, width: 4, kernel: (3, 1), stride: (2, 1), padding: (1, 0)),
        DepthwiseCase(name: "3x3 p0 to 1x1", channels: 5, multiplier: 1, height: 3, width: 3, kernel: (3, 3), stride: (1, 1), padding: (0, 0)),
    ]
}
