import CKernels
import Foundation
import Tensors
import TestSupport
import XCTest

/// The int8 kernels (Sources/CKernels/q8.c): every path this CPU executes gives the portable
/// path's bits (int32 accumulators and requantized bytes alike), and the portable path gives
/// what straightforward Swift gives, on random data, extreme values, odd sizes and long sums.
final class Int8KernelTests: XCTestCase {
    override func tearDown() {
        Compute.forceKernelPath(nil)
        Compute.threadCount = ProcessInfo.processInfo.activeProcessorCount
    }

    /// The paths this CPU executes, besides the portable one (printed with the CPU, so that a
    /// test log says which paths were verified where).
    private var vectorPaths: [KernelPath] {
        let paths = KernelPath.allCases.filter { $0 != .portable && $0.isSupported }
        print("Int8KernelTests: \(cpuModel()), vector paths run: \(paths.map(\.description))")
        return paths
    }

    private func cpuModel() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }) else { return "unknown CPU" }
        return line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)
    }

    // MARK: Swift references

    /// Σ_k (a[i][k] − zero)·w[j][k] in Int64 (it must fit in Int32).
    private static func referenceGemm(_ a: [UInt8], rows: Int, zero: UInt8, _ w: [Int8], outputs: Int, inputs: Int) -> [Int32] {
        var c = [Int32](repeating: 0, count: rows * outputs)
        for i in 0..<rows {
            for j in 0..<outputs {
                var sum: Int64 = 0
                for k in 0..<inputs { sum += (Int64(a[i * inputs + k]) - Int64(zero)) * Int64(w[j * inputs + k]) }
                c[i * outputs + j] = Int32(sum)
            }
        }
        return c
    }

    /// Round half to even after clamping to ±512, then zero point and clamp: CKernels.h's steps.
    private static func referenceRound(_ y: Float, zero: UInt8, low: UInt8, high: UInt8) -> UInt8 {
        let r = Int(min(max(y, -512), 512).rounded(.toNearestOrEven)) + Int(zero)
        return UInt8(min(max(r, Int(low)), Int(high)))
    }

    private static func referenceRequantize(_ acc: [Int32], rows: Int, _ r: Int8Requantization) -> [UInt8] {
        let n = r.scale.count
        return (0..<(rows * n)).map { index in
            let j = index % n
            let v = acc[index] &+ (r.bias?[j] ?? 0)
            return referenceRound(Float(v) * r.scale[j], zero: r.zeroPoint, low: r.low, high: r.high)
        }
    }

    private func randomBytes(_ count: Int, _ g: inout RandomGenerator) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: g.next()) }
    }

    private func randomWeights(_ count: Int, _ g: inout RandomGenerator) -> [Int8] {
        (0..<count).map { _ in Int8(truncatingIfNeeded: g.next()) }
    }

    // MARK: GEMM

    /// Sizes around the vector widths (16 channels a panel, 4 inputs a group, 4 or 8 rows a
    /// block) and their tails, 1×1, K = 1, and a linear layer's shape; random zero points.
    func testGemmOnEveryPathMatchesPortableAndSwift() {
        var g = RandomGenerator(seed: 81)
        let paths = vectorPaths
        let sizes = [(1, 1, 1), (1, 1, 4), (1, 5, 1), (2, 3, 2), (3, 5, 7), (4, 16, 4), (5, 17, 33), (7, 15, 3),
                     (8, 32, 64), (9, 33, 65), (13, 40, 100), (17, 48, 9), (3, 64, 784), (33, 8, 72), (1, 10, 64)]
        for (m, n, k) in sizes {
            let a = randomBytes(m * k, &g), w = randomWeights(n * k, &g)
            let zero = UInt8(truncatingIfNeeded: g.next())
            let weights = PackedInt8Weights(w, outputs: n, inputs: k)
            let expected = Self.referenceGemm(a, rows: m, zero: zero, w, outputs: n, inputs: k)
            Compute.forceKernelPath(.portable)
            let portable = Int8Kernels.gemm(a, rows: m, zeroPoint: zero, weights: weights)
            XCTAssertEqual(portable, expected, "portable GEMM \(m)×\(n)×\(k) against Swift")
            for path in paths {
                Compute.forceKernelPath(path)
                XCTAssertEqual(Int8Kernels.gemm(a, rows: m, zeroPoint: zero, weights: weights), portable, "\(path) GEMM \(m)×\(n)×\(k)")
            }
        }
    }

    /// The extremes: activations 0 and 255 with zero points 0 and 255, weights ±127 and −128,
    /// and K up to DISTILL_Q8_MAX_K, where the exact sums come within 0.4% of Int32's range
    /// (255·128·65536 = 2,139,095,040). Every path gives the exact value.
    func testGemmExtremeValuesAndLongestSums() {
        let paths = vectorPaths
        let k = Int(DISTILL_Q8_MAX_K), n = 17
        // Rows: all 255, all 0, alternating 0/255. Channels: all −128, all 127, all −127, alternating.
        let rows: [[UInt8]] = [Array(repeating: 255, count: k), Array(repeating: 0, count: k), (0..<k).map { $0 % 2 == 0 ? 0 : 255 }]
        let channels: [[Int8]] = (0..<n).map { j in
            switch j % 4 {
            case 0: return Array(repeating: -128, count: k)
            case 1: return Array(repeating: 127, count: k)
            case 2: return Array(repeating: -127, count: k)
            default: return (0..<k).map { $0 % 3 == 0 ? -128 : 127 }
            }
        }
        let a = rows.flatMap { $0 }, w = channels.flatMap { $0 }
        let weights = PackedInt8Weights(w, outputs: n, inputs: k)
        for zero: UInt8 in [0, 255, 128] {
            let expected = Self.referenceGemm(a, rows: rows.count, zero: zero, w, outputs: n, inputs: k)
            for path in [KernelPath.portable] + paths {
                Compute.forceKernelPath(path)
                XCTAssertEqual(Int8Kernels.gemm(a, rows: rows.count, zeroPoint: zero, weights: weights), expected, "\(path) GEMM, K = \(k), zero point \(zero)")
            }
        }
        XCTAssertEqual(Self.referenceGemm([255], rows: 1, zero: 0, [-128], outputs: 1, inputs: 1)[0], -32640)
        XCTAssertEqual(Int64(255) * -128 * Int64(k), -2_139_095_040, "the longest sum stays inside Int32")
    }

    // MARK: Requantization

    /// Accumulators over Int32's whole range, biases that wrap, scales from tiny to large,
    /// exact ties (scale 0.5 on odd accumulators: half to even), and ReLU / ReLU6-style clamps.
    func testRequantizeOnEveryPathMatchesPortableAndSwift() {
        var g = RandomGenerator(seed: 82)
        let paths = vectorPaths
        for n in [1, 7, 8, 15, 16, 17, 33, 64] {
            for rows in [1, 3, 5] {
                var acc = (0..<(rows * n)).map { _ in Int32(truncatingIfNeeded: Int64(g.next() % 4096) - 2048) }
                // A few extremes and ties.
                acc[0] = .max
                if acc.count > 1 { acc[1] = .min }
                if acc.count > 2 { acc[2] = 3 }
                if acc.count > 3 { acc[3] = -5 }
                let scales: [Float] = (0..<n).map { j in
                    switch j % 4 {
                    case 0: return 0.5
                    case 1: return Float.leastNormalMagnitude
                    case 2: return 1e-3 * Float(1 + g.next() % 1000)
                    default: return 1e3
                    }
                }
                let bias: [Int32] = (0..<n).map { j in j == 0 ? Int32.max : Int32(truncatingIfNeeded: Int64(g.next() % 2000) - 1000) }
                for (zero, low, high) in [(UInt8(0), UInt8(0), UInt8(255)), (128, 128, 255), (10, 10, 70), (255, 0, 255)] {
                    for withBias in [false, true] {
                        let r = Int8Requantization(bias: withBias ? bias : nil, scale: scales, zeroPoint: zero, low: low, high: high)
                        Compute.forceKernelPath(.portable)
                        let portable = Int8Kernels.requantize(acc, rows: rows, r)
                        XCTAssertEqual(portable, Self.referenceRequantize(acc, rows: rows, r), "portable requantize n \(n) rows \(rows) zero \(zero)")
                        for path in paths {
                            Compute.forceKernelPath(path)
                            XCTAssertEqual(Int8Kernels.requantize(acc, rows: rows, r), portable, "\(path) requantize n \(n) rows \(rows) zero \(zero)")
                        }
                    }
                }
            }
        }
        // Half to even: 3·0.5 = 1.5 → 2, −5·0.5 = −2.5 → −2, 5·0.5 = 2.5 → 2.
        let ties = Int8Kernels.requantize([3, -5, 5], rows: 3, Int8Requantization(bias: nil, scale: [0.5], zeroPoint: 10))
        XCTAssertEqual(ties, [12, 8, 12])
    }

    func testDequantizeOnEveryPathMatchesPortableAndSwift() {
        var g = RandomGenerator(seed: 83)
        let paths = vectorPaths
        for n in [1, 10, 16, 17, 40] {
            let rows = 3
            let acc = (0..<(rows * n)).map { _ in Int32(truncatingIfNeeded: g.next()) }
            let bias = (0..<n).map { _ in Int32(truncatingIfNeeded: Int64(g.next() % 100_000) - 50_000) }
            let scale = (0..<n).map { _ in Float(1 + g.next() % 1000) * 1e-6 }
            let expected = (0..<(rows * n)).map { Float(acc[$0] &+ bias[$0 % n]) * scale[$0 % n] }
            for path in [KernelPath.portable] + paths {
                Compute.forceKernelPath(path)
                let result = Int8Kernels.dequantize(acc, rows: rows, bias: bias, scale: scale)
                XCTAssertEqual(result.map(\.bitPattern), expected.map(\.bitPattern), "\(path) dequantize n \(n)")
            }
        }
    }

    // MARK: Elementwise add

    func testAddOnEveryPathMatchesPortableAndSwift() {
        var g = RandomGenerator(seed: 84)
        let paths = vectorPaths
        for count in [1, 7, 8, 9, 15, 16, 17, 31, 100, 4096 + 33, 10_000] {
            let a = randomBytes(count, &g), b = randomBytes(count, &g)
            // Ties too: scales 0.5 on odd differences.
            for (aScale, bScale, aZero, bZero, outZero, low) in [(Float(0.5), Float(0.5), UInt8(0), UInt8(1), UInt8(0), UInt8(0)),
                                                                  (0.7731, 1.31, 128, 3, 40, 40), (2.5, 0.01, 255, 0, 255, 0)] {
                let expected = (0..<count).map { i in
                    let x = Float(Int(a[i]) - Int(aZero)) * aScale, y = Float(Int(b[i]) - Int(bZero)) * bScale
                    return Self.referenceRound(x + y, zero: outZero, low: low, high: 255)
                }
                for path in [KernelPath.portable] + paths {
                    Compute.forceKernelPath(path)
                    let result = Int8Kernels.add(a, aZero: aZero, aScale: aScale, b, bZero: bZero, bScale: bScale, outZero: outZero, low: low)
                    XCTAssertEqual(result, expected, "\(path) add of \(count), scales \(aScale) \(bScale)")
                }
            }
        }
    }

    // MARK: Convolution and pooling

    /// Depthwise convolutions (one 8-bit filter per channel, exact int32 sums, then the
    /// requantization) against a direct Swift loop: padding at the zero point, stride 2,
    /// rectangular windows, one channel; every path the same bits.
    func testDepthwiseConvolutionOnEveryPathMatchesSwift() {
        var g = RandomGenerator(seed: 86)
        let cases: [(batch: Int, h: Int, w: Int, c: Int, window: Int8Window)] = [
            (2, 7, 9, 5, Int8Window(kernel: (3, 3), padding: (1, 1))),
            (1, 14, 14, 96, Int8Window(kernel: (3, 3), stride: (2, 2), padding: (1, 1))),
            (3, 6, 5, 1, Int8Window(kernel: (3, 1), stride: (2, 1), padding: (1, 0))),
            (1, 3, 3, 17, Int8Window(kernel: (3, 3))),
        ]
        for (index, t) in cases.enumerated() {
            let (kh, kw) = t.window.kernel
            let input = randomBytes(t.batch * t.h * t.w * t.c, &g), w = randomWeights(t.c * kh * kw, &g)
            let zero = UInt8(g.next() % 256), outZero = UInt8(g.next() % 64)
            let r = Int8Requantization(bias: (0..<t.c).map { _ in Int32(Int64(g.next() % 20_000) - 10_000) },
                                       scale: (0..<t.c).map { _ in Float(1 + g.next() % 100) * 1e-3 }, zeroPoint: outZero, low: outZero)
            let (oh, ow) = t.window.outputSize(height: t.h, width: t.w)!
            var acc = [Int32](repeating: 0, count: t.batch * oh * ow * t.c)
            for b in 0..<t.batch { for y in 0..<oh { for x in 0..<ow { for c in 0..<t.c {
                var sum: Int64 = 0
                for dy in 0..<kh {
                    for dx in 0..<kw {
                        let iy = y * t.window.stride.height + dy - t.window.padding.height
                        let ix = x * t.window.stride.width + dx - t.window.padding.width
                        guard iy >= 0, iy < t.h, ix >= 0, ix < t.w else { continue }
                        sum += (Int64(input[((b * t.h + iy) * t.w + ix) * t.c + c]) - Int64(zero)) * Int64(w[c * kh * kw + dy * kw + dx])
                    }
                }
                acc[((b * oh + y) * ow + x) * t.c + c] = Int32(sum)
            } } } }
            let expected = Self.referenceRequantize(acc, rows: t.batch * oh * ow, r)
            let weights = PackedInt8Weights(w, outputs: t.c, inputs: kh * kw)
            for path in [KernelPath.portable] + vectorPaths {
                Compute.forceKernelPath(path)
                let result = Int8Kernels.depthwiseConv2d(input, batch: t.batch, height: t.h, width: t.w, channels: t.c, zeroPoint: zero,
                                                         weights: weights, window: t.window, r)
                XCTAssertEqual(result, expected, "\(path) depthwise case \(index)")
            }
        }
    }

    /// Convolutions (im2col, GEMM, requantization) on NHWC images against a direct Swift
    /// loop: odd sizes, padding (which reads the input's zero point), stride 2, rectangular
    /// kernels, a 1×1 convolution (no im2col), one input channel; every path the same bits.
    func testConvolutionOnEveryPathMatchesPortableAndSwift() {
        var g = RandomGenerator(seed: 85)
        let paths = vectorPaths
        let cases: [(batch: Int, h: Int, w: Int, c: Int, o: Int, window: Int8Window)] = [
            (2, 7, 9, 3, 5, Int8Window(kernel: (3, 3), padding: (1, 1))),
            (1, 28, 28, 1, 8, Int8Window(kernel: (3, 3), padding: (1, 1))),
            (3, 8, 8, 4, 17, Int8Window(kernel: (3, 3), stride: (2, 2), padding: (1, 1))),
            (2, 5, 6, 16, 33, Int8Window(kernel: (1, 1))),
            (1, 6, 5, 2, 3, Int8Window(kernel: (3, 1), stride: (2, 1), padding: (1, 0))),
            (1, 3, 3, 5, 2, Int8Window(kernel: (3, 3))),
            // Pieces of whole groups of 4 read in place: two panels and a partial third, rows
            // not a multiple of 8 and blocks across images.
            (3, 9, 7, 8, 40, Int8Window(kernel: (3, 3), padding: (1, 1))),
            (2, 5, 5, 32, 64, Int8Window(kernel: (3, 3), stride: (2, 2), padding: (1, 1))),
            (2, 4, 4, 4, 16, Int8Window(kernel: (2, 2), stride: (2, 2))),
        ]
        for (index, t) in cases.enumerated() {
            let kh = t.window.kernel.height, kw = t.window.kernel.width
            let k = kh * kw * t.c
            let input = randomBytes(t.batch * t.h * t.w * t.c, &g), w = randomWeights(t.o * k, &g)
            let zero = UInt8(g.next() % 256), outZero = UInt8(g.next() % 64)
            let r = Int8Requantization(bias: (0..<t.o).map { _ in Int32(Int64(g.next() % 20_000) - 10_000) },
                                       scale: (0..<t.o).map { _ in Float(1 + g.next() % 100) * 1e-4 }, zeroPoint: outZero, low: outZero)
            let weights = PackedInt8Weights(w, outputs: t.o, inputs: k)
            let (oh, ow) = t.window.outputSize(height: t.h, width: t.w)!
            // Direct convolution, padding at the zero point (a real 0).
            var acc = [Int32](repeating: 0, count: t.batch * oh * ow * t.o)
            for b in 0..<t.batch {
                for y in 0..<oh {
                    for x in 0..<ow {
                        for o in 0..<t.o {
                            var sum: Int64 = 0
                            for dy in 0..<kh {
                                for dx in 0..<kw {
                                    let iy = y * t.window.stride.height + dy - t.window.padding.height
                                    let ix = x * t.window.stride.width + dx - t.window.padding.width
                                    guard iy >= 0, iy < t.h, ix >= 0, ix < t.w else { continue }
                                    for c in 0..<t.c {
                                        let value = Int64(input[((b * t.h + iy) * t.w + ix) * t.c + c]) - Int64(zero)
                                        sum += value * Int64(w[o * k + (dy * kw + dx) * t.c + c])
                                    }
                                }
                            }
                            acc[((b * oh + y) * ow + x) * t.o + o] = Int32(sum)
                        }
                    }
                }
            }
            let expected = Self.referenceRequantize(acc, rows: t.batch * oh * ow, r)
            for path in [KernelPath.portable] + paths {
                Compute.forceKernelPath(path)
                let result = Int8Kernels.conv2d(input, batch: t.batch, height: t.h, width: t.w, channels: t.c, zeroPoint: zero,
                                                weights: weights, window: t.window, r)
                XCTAssertEqual(result, expected, "\(path) convolution case \(index)")
            }
        }
    }

    /// The input's quantization (SSE2 for one channel, scalar otherwise) against the formula in
    /// Swift: half to even at exact ties, saturation, infinities and NaN, odd lengths, NCHW → NHWC.
    func testInputQuantizationMatchesSwift() {
        var g = RandomGenerator(seed: 86)
        let scale: Float = 0.05, zero: UInt8 = 37
        func expected(_ x: Float) -> UInt8 {
            let q = min(max((x / scale).rounded(.toNearestOrEven) + Float(zero), 0), 255)
            return q.isNaN ? zero : UInt8(q)
        }
        var special: [Float] = [.nan, .infinity, -.infinity, 0, -0.0, 1e30, -1e30, Float.leastNonzeroMagnitude]
        special += (-40...40).map { Float($0) * scale * 0.5 } // exact halves: ties
        for (batch, channels, pixels) in [(3, 1, 37), (2, 3, 5), (1, 1, 16), (4, 2, 9)] {
            var x = (0..<(batch * channels * pixels)).map { _ in Float(Int64(g.next() % 20_000) - 10_000) * 1e-3 }
            for (i, v) in special.enumerated() where i < x.count { x[(i * 7) % x.count] = v }
            let got = Int8Kernels.quantizeChannelsLast(x, batch: batch, channels: channels, scale: scale, zeroPoint: zero)
            for n in 0..<batch {
                for c in 0..<channels {
                    for p in 0..<pixels {
                        let source = x[(n * channels + c) * pixels + p]
                        XCTAssertEqual(got[(n * pixels + p) * channels + c], expected(source), "\(source) in [\(batch), \(channels), \(pixels)]")
                    }
                }
            }
        }
    }

    func testMaxPoolingMatchesSwift() {
        var g = RandomGenerator(seed: 86)
        for (h, w, c, window) in [(8, 8, 3, Int8Window(kernel: (2, 2), stride: (2, 2))), (7, 5, 2, Int8Window(kernel: (3, 3), stride: (2, 2), padding: (1, 1))),
                                  (1, 1, 5, Int8Window(kernel: (1, 1)))] {
            let batch = 2
            let input = randomBytes(batch * h * w * c, &g)
            let (oh, ow) = window.outputSize(height: h, width: w)!
            var expected = [UInt8](repeating: 0, count: batch * oh * ow * c)
            for b in 0..<batch {
                for y in 0..<oh {
                    for x in 0..<ow {
                        for ch in 0..<c {
                            var best: UInt8 = 0
                            for dy in 0..<window.kernel.height {
                                for dx in 0..<window.kernel.width {
                                    let iy = y * window.stride.height + dy - window.padding.height
                                    let ix = x * window.stride.width + dx - window.padding.width
                                    guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                                    best = max(best, input[((b * h + iy) * w + ix) * c + ch])
                                }
                            }
                            expected[((b * oh + y) * ow + x) * c + ch] = best
                        }
                    }
                }
            }
            XCTAssertEqual(Int8Kernels.maxPool2d(input, batch: batch, height: h, width: w, channels: c, window: window), expected)
        }
    }

    /// Global average pooling against Swift: exact sums, one multiply, half to even; ties
    /// (averages of x.5 at scale 1) and the clamps at 0 and 255.
    func testGlobalAveragePoolingMatchesSwift() {
        var g = RandomGenerator(seed: 88)
        for (pixels, channels, scale, inZero, outZero) in [(64, 16, Float(1), UInt8(0), UInt8(0)), (49, 3, 0.731, 128, 100),
                                                           (2, 5, 1, 0, 0), (1, 1, 4, 10, 250), (7, 33, 0.01, 255, 3)] {
            let batch = 3
            var input = randomBytes(batch * pixels * channels, &g)
            if pixels == 2 { input[0] = 1; input[channels] = 2 } // average 1.5 → 2 (ties to even)
            let perPixel = scale / Float(pixels)
            let expected = (0..<(batch * channels)).map { index -> UInt8 in
                let (b, c) = (index / channels, index % channels)
                let sum = (0..<pixels).reduce(Int32(0)) { $0 + Int32(input[(b * pixels + $1) * channels + c]) - Int32(inZero) }
                return Self.referenceRound(Float(sum) * perPixel, zero: outZero, low: 0, high: 255)
            }
            let result = Int8Kernels.globalAveragePool(input, batch: batch, pixels: pixels, channels: channels, inZero: inZero,
                                                       scale: scale, outZero: outZero)
            XCTAssertEqual(result, expected, "\(pixels) pixels, \(channels) channels")
            if pixels == 2 { XCTAssertEqual(result[0], 2) }
        }
    }

    /// Results do not depend on the thread count (rows are split, never sums).
    func testLinearIsTheSameOnOneOrManyThreads() {
        var g = RandomGenerator(seed: 87)
        let m = 300, n = 40, k = 200
        let a = randomBytes(m * k, &g), w = randomWeights(n * k, &g)
        let weights = PackedInt8Weights(w, outputs: n, inputs: k)
        let r = Int8Requantization(bias: nil, scale: Array(repeating: 1e-3, count: n), zeroPoint: 7)
        func run(_ threads: Int) -> [UInt8] {
            Compute.threadCount = threads
            var out = [UInt8](repeating: 0, count: m * n)
            a.withUnsafeBufferPointer { Int8Kernels.linear($0.baseAddress!, rows: m, zeroPoint: 3, weights: weights, r, into: &out) }
            return out
        }
        let one = run(1)
        XCTAssertEqual(one, Self.referenceRequantize(Self.referenceGemm(a, rows: m, zero: 3, w, outputs: n, inputs: k), rows: m, r))
        XCTAssertEqual(run(4), one)
    }

    /// The linear layer (GEMM and requantization fused on the vector paths) on every path,
    /// with inputs that end inside a group of 4 and row counts that end inside a block.
    func testLinearOnEveryPathMatchesSwift() {
        var g = RandomGenerator(seed: 88)
        for (m, n, k) in [(1, 1, 1), (7, 9, 5), (13, 33, 787), (65, 16, 64)] {
            let a = randomBytes(m * k, &g), w = randomWeights(n * k, &g)
            let weights = PackedInt8Weights(w, outputs: n, inputs: k)
            let r = Int8Requantization(bias: (0..<n).map { _ in Int32(Int64(g.next() % 2_000) - 1_000) },
                                       scale: (0..<n).map { _ in Float(1 + g.next() % 50) * 1e-4 }, zeroPoint: 9, low: 9)
            let expected = Self.referenceRequantize(Self.referenceGemm(a, rows: m, zero: 200, w, outputs: n, inputs: k), rows: m, r)
            for path in [KernelPath.portable] + vectorPaths {
                Compute.forceKernelPath(path)
                var out = [UInt8](repeating: 0, count: m * n)
                a.withUnsafeBufferPointer { Int8Kernels.linear($0.baseAddress!, rows: m, zeroPoint: 200, weights: weights, r, into: &out) }
                XCTAssertEqual(out, expected, "\(m)×\(n)×\(k) on \(path)")
            }
            Compute.forceKernelPath(nil)
        }
    }
}
