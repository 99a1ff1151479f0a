import CKernels

/// Int8 weights of a linear map [outputs, inputs] (row j: output channel j), packed once for
/// the int8 GEMM (`Sources/CKernels/q8.c`): panels of 16 channels, 4 inputs a group, with
/// each channel's sum of weights for the activations' zero point.
public struct PackedInt8Weights: Sendable {
    public let outputs: Int, inputs: Int
    /// The weights as given, row-major [outputs, inputs] (kept for saving and export).
    public let weights: [Int8]
    let packed: [Int8]
    let sums: [Int32]

    public init(_ weights: [Int8], outputs: Int, inputs: Int) {
        require(outputs >= 1 && inputs >= 1 && weights.count == outputs * inputs,
                "PackedInt8Weights: \(weights.count) weights for \(outputs) outputs × \(inputs) inputs")
        require(inputs <= Int(DISTILL_Q8_MAX_K), "PackedInt8Weights: \(inputs) inputs, at most \(DISTILL_Q8_MAX_K) keep int32 sums exact")
        self.outputs = outputs
        self.inputs = inputs
        self.weights = weights
        var packed = [Int8](repeating: 0, count: distill_q8_packed_count(outputs, inputs))
        var sums = [Int32](repeating: 0, count: outputs)
        distill_q8_pack(outputs, inputs, weights, &packed, &sums)
        self.packed = packed
        self.sums = sums
    }
}

/// How int32 accumulators become the uint8 values of the next layer (per output channel j):
/// `clamp(round((acc + bias[j]) · scale[j]) + zeroPoint, low, high)`, rounding half to even
/// (CKernels.h says why every path gives the same bits). A ReLU is `low = zeroPoint`.
public struct Int8Requantization: Sendable {
    public var bias: [Int32]?
    public var scale: [Float]
    public var zeroPoint: UInt8
    public var low: UInt8, high: UInt8

    public init(bias: [Int32]?, scale: [Float], zeroPoint: UInt8, low: UInt8 = 0, high: UInt8 = 255) {
        self.bias = bias
        self.scale = scale
        self.zeroPoint = zeroPoint
        self.low = low
        self.high = high
    }

    func check(channels: Int, _ op: String) {
        require(scale.count == channels && (bias?.count ?? channels) == channels,
                "\(op): \(scale.count) scales and \(bias?.count ?? channels) biases for \(channels) channels")
        require(scale.allSatisfy { $0.isNormal && $0 > 0 }, "\(op): requantization scales must be positive normal floats")
        require(low <= high, "\(op): clamp low \(low) above high \(high)")
    }
}

/// An image window's geometry for the int8 convolution and pooling (square or not).
public struct Int8Window: Sendable, Equatable {
    public var kernel: (height: Int, width: Int)
    public var stride: (height: Int, width: Int)
    public var padding: (height: Int, width: Int)

    public init(kernel: (Int, Int), stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)) {
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
    }

    public static func == (a: Int8Window, b: Int8Window) -> Bool {
        a.kernel == b.kernel && a.stride == b.stride && a.padding == b.padding
    }

    /// The output's height and width for an input of `height` × `width`, or nil when the
    /// window does not fit.
    public func outputSize(height: Int, width: Int) -> (height: Int, width: Int)? {
        let spanHigh = height + 2 * padding.height - kernel.height, spanWide = width + 2 * padding.width - kernel.width
        guard spanHigh >= 0, spanWide >= 0, stride.height >= 1, stride.width >= 1 else { return nil }
        return (spanHigh / stride.height + 1, spanWide / stride.width + 1)
    }

    func c(height: Int, width: Int, channels: Int) -> distill_q8_window {
        let out = outputSize(height: height, width: width)
        var w = distill_q8_window(height: height, width: width, channels: channels, kernelHeight: kernel.height,
                                  kernelWidth: kernel.width, strideHeight: stride.height, strideWidth: stride.width,
                                  paddingHeight: padding.height, paddingWidth: padding.width,
                                  outputHeight: out?.height ?? 0, outputWidth: out?.width ?? 0)
        require(distill_q8_window_valid(&w) == 1, "Int8Window: \(self) does not fit a \(height)×\(width)×\(channels) image")
        return w
    }
}

/// The int8 inference kernels (`Sources/CKernels/q8.c`) on Swift arrays, split over the
/// compute threads by rows. Activations are uint8 with a zero point, channels-last (NHWC);
/// weights are int8 (zero point 0). Every kernel path gives the same bits.
public enum Int8Kernels {
    /// The rows a thread handles at a time: its int32 accumulators stay in cache.
    static let rowBlock = 64

    /// c [rows, outputs] = Σ_k (a[i][k] − zeroPoint)·w[j][k] for a [rows, weights.inputs].
    public static func gemm(_ a: [UInt8], rows: Int, zeroPoint: UInt8, weights: PackedInt8Weights) -> [Int32] {
        require(a.count == rows * weights.inputs, "Int8Kernels.gemm: \(a.count) activations for \(rows) rows of \(weights.inputs)")
        var c = [Int32](repeating: 0, count: rows * weights.outputs)
        let n = weights.outputs, k = weights.inputs
        guard rows > 0 else { return c }
        a.withUnsafeBufferPointer { a in
            weights.packed.withUnsafeBufferPointer { packed in
                weights.sums.withUnsafeBufferPointer { sums in
                    c.withUnsafeMutableBufferPointer { c in
                        let (a, c) = (a.baseAddress!, c.baseAddress!)
                        Compute.parallelFor(rows, costPerItem: n * k / 8) { range in
                            distill_q8_gemm(range.count, n, k, a + range.lowerBound * k, k, Int32(zeroPoint),
                                            packed.baseAddress!, sums.baseAddress!, c + range.lowerBound * n, n)
                        }
                    }
                }
            }
        }
        return c
    }

    /// The requantized [rows, channels] values of accumulators [rows, channels].
    public static func requantize(_ acc: [Int32], rows: Int, _ r: Int8Requantization) -> [UInt8] {
        let n = r.scale.count
        r.check(channels: n, "Int8Kernels.requantize")
        require(acc.count == rows * n, "Int8Kernels.requantize: \(acc.count) accumulators for \(rows) rows of \(n)")
        var out = [UInt8](repeating: 0, count: acc.count)
        guard rows > 0 else { return out }
        withRequantization(r) { parameters in
            var parameters = parameters
            distill_q8_requantize(rows, n, acc, n, &parameters, &out, n)
        }
        return out
    }

    /// The float values (acc + bias)·scale of accumulators [rows, channels]: a last layer's output.
    public static func dequantize(_ acc: [Int32], rows: Int, bias: [Int32]?, scale: [Float]) -> [Float] {
        let n = scale.count
        require(acc.count == rows * n && (bias?.count ?? n) == n, "Int8Kernels.dequantize: shapes do not match")
        var out = [Float](repeating: 0, count: acc.count)
        guard rows > 0 else { return out }
        distill_q8_dequantize(rows, n, acc, n, bias, scale, &out, n)
        return out
    }

    /// A linear layer on rows [rows, weights.inputs]: GEMM then requantization, a block of rows
    /// at a time on each thread.
    public static func linear(_ a: UnsafePointer<UInt8>, rows: Int, zeroPoint: UInt8, weights: PackedInt8Weights,
                              _ r: Int8Requantization, into out: UnsafeMutablePointer<UInt8>) {
        r.check(channels: weights.outputs, "Int8Kernels.linear")
        withRequantization(r) { parameters in
            blocks(a, rows: rows, zeroPoint: zeroPoint, weights: weights) { start, count, acc in
                var p = parameters
                distill_q8_requantize(count, weights.outputs, acc, weights.outputs, &p, out + start * weights.outputs, weights.outputs)
            }
        }
    }

    /// A linear layer with float outputs (acc + bias)·scale (a classifier's logits).
    public static func linear(_ a: UnsafePointer<UInt8>, rows: Int, zeroPoint: UInt8, weights: PackedInt8Weights,
                              bias: [Int32]?, scale: [Float], into out: UnsafeMutablePointer<Float>) {
        let n = weights.outputs
        require(scale.count == n && (bias?.count ?? n) == n, "Int8Kernels.linear: \(scale.count) scales for \(n) outputs")
        blocks(a, rows: rows, zeroPoint: zeroPoint, weights: weights) { start, count, acc in
            distill_q8_dequantize(count, n, acc, n, bias, scale, out + start * n, n)
        }
    }

    /// Runs the GEMM over blocks of `rowBlock` rows on the compute threads, handing each block's
    /// accumulators to `finish(start, count, acc)`.
    private static func blocks(_ a: UnsafePointer<UInt8>, rows: Int, zeroPoint: UInt8, weights: PackedInt8Weights,
                               _ finish: (Int, Int, UnsafePointer<Int32>) -> Void) {
        let n = weights.outputs, k = weights.inputs
        let blockCount = (rows + rowBlock - 1) / rowBlock
        weights.packed.withUnsafeBufferPointer { packed in
            weights.sums.withUnsafeBufferPointer { sums in
                Compute.parallelFor(blockCount, costPerItem: rowBlock * n * k / 8) { range in
                    let acc = UnsafeMutablePointer<Int32>.allocate(capacity: rowBlock * n)
                    defer { acc.deallocate() }
                    for block in range {
                        let start = block * rowBlock, count = min(rowBlock, rows - start)
                        distill_q8_gemm(count, n, k, a + start * k, k, Int32(zeroPoint), packed.baseAddress!, sums.baseAddress!, acc, n)
                        finish(start, count, acc)
                    }
                }
            }
        }
    }

    private static func withRequantization(_ r: Int8Requantization, _ body: (distill_q8_requantization) -> Void) {
        r.scale.withUnsafeBufferPointer { scale in
            func run(_ bias: UnsafePointer<Int32>?) {
                body(distill_q8_requantization(bias: bias, scale: scale.baseAddress!, zero: Int32(r.zeroPoint),
                                               low: Int32(r.low), high: Int32(r.high)))
            }
            if let bias = r.bias { bias.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
        }
    }

    /// A convolution on NHWC images [batch, height, width, channels] whose weights are packed
    /// as [outputChannels, kernelHeight·kernelWidth·channels] (input channel fastest, then
    /// kernel column, then row): im2col (padding with the input's zero point), GEMM and
    /// requantization, a block of output pixels at a time. Returns [batch, outH, outW, outC].
    public static func conv2d(_ input: [UInt8], batch: Int, height: Int, width: Int, channels: Int, zeroPoint: UInt8,
                              weights: PackedInt8Weights, window: Int8Window, _ r: Int8Requantization) -> [UInt8] {
        let w = window.c(height: height, width: width, channels: channels)
        let k = w.kernelHeight * w.kernelWidth * channels
        require(weights.inputs == k, "Int8Kernels.conv2d: weights take \(weights.inputs) inputs, the window gives \(k)")
        require(input.count == batch * height * width * channels, "Int8Kernels.conv2d: \(input.count) values for a [\(batch), \(height), \(width), \(channels)] input")
        r.check(channels: weights.outputs, "Int8Kernels.conv2d")
        let pixels = w.outputHeight * w.outputWidth, n = weights.outputs
        var out = [UInt8](repeating: 0, count: batch * pixels * n)
        guard batch > 0 else { return out }
        let direct = w.kernelHeight == 1 && w.kernelWidth == 1 && w.strideHeight == 1 && w.strideWidth == 1
            && w.paddingHeight == 0 && w.paddingWidth == 0
        input.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { out in
                let (input, out) = (input.baseAddress!, out.baseAddress!)
                if direct {
                    linear(input, rows: batch * pixels, zeroPoint: zeroPoint, weights: weights, r, into: out)
                    return
                }
                // One image's im2col rows a task: a 28×28 image with a 3×3 window over 8
                // channels is 56 KiB of rows.
                withRequantization(r) { parameters in
                    weights.packed.withUnsafeBufferPointer { packed in
                        weights.sums.withUnsafeBufferPointer { sums in
                            Compute.parallelFor(batch, costPerItem: pixels * n * k / 8) { range in
                                let rows = UnsafeMutablePointer<UInt8>.allocate(capacity: pixels * k)
                                let acc = UnsafeMutablePointer<Int32>.allocate(capacity: rowBlock * n)
                                defer {
                                    rows.deallocate()
                                    acc.deallocate()
                                }
                                var window = w, p = parameters
                                for image in range {
                                    distill_q8_im2col(&window, input + image * height * width * channels, zeroPoint, rows)
                                    for start in stride(from: 0, to: pixels, by: rowBlock) {
                                        let count = min(rowBlock, pixels - start)
                                        distill_q8_gemm(count, n, k, rows + start * k, k, Int32(zeroPoint), packed.baseAddress!,
                                                        sums.baseAddress!, acc, n)
                                        distill_q8_requantize(count, n, acc, n, &p, out + (image * pixels + start) * n, n)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// A depthwise convolution (one filter per channel) on NHWC images [batch, height, width,
    /// channels] with weights [channels, kernelHeight·kernelWidth] (row-major taps): exact int32
    /// sums (padding at the input's zero point adds nothing), then the requantization.
    public static func depthwiseConv2d(_ input: [UInt8], batch: Int, height: Int, width: Int, channels: Int, zeroPoint: UInt8,
                                       weights: PackedInt8Weights, window: Int8Window, _ r: Int8Requantization) -> [UInt8] {
        let w = window.c(height: height, width: width, channels: channels)
        require(weights.outputs == channels && weights.inputs == w.kernelHeight * w.kernelWidth,
                "Int8Kernels.depthwiseConv2d: weights [\(weights.outputs), \(weights.inputs)] for \(channels) channels and a \(w.kernelHeight)×\(w.kernelWidth) window")
        require(input.count == batch * height * width * channels, "Int8Kernels.depthwiseConv2d: \(input.count) values for a [\(batch), \(height), \(width), \(channels)] input")
        r.check(channels: channels, "Int8Kernels.depthwiseConv2d")
        let pixels = w.outputHeight * w.outputWidth, inArea = height * width * channels
        var out = [UInt8](repeating: 0, count: batch * pixels * channels)
        guard batch > 0 else { return out }
        input.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { out in
                weights.weights.withUnsafeBufferPointer { filters in
                    let (input, out, filters) = (input.baseAddress!, out.baseAddress!, filters.baseAddress!)
                    withRequantization(r) { parameters in
                        Compute.parallelFor(batch, costPerItem: pixels * channels * weights.inputs) { range in
                            let acc = UnsafeMutablePointer<Int32>.allocate(capacity: pixels * channels)
                            defer { acc.deallocate() }
                            var window = w, p = parameters
                            for image in range {
                                distill_q8_depthwise(&window, input + image * inArea, Int32(zeroPoint), filters, acc)
                                distill_q8_requantize(pixels, channels, acc, channels, &p, out + image * pixels * channels, channels)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Max pooling of NHWC images (the window's padding never wins). Quantization is monotonic,
    /// so the result keeps the input's scale and zero point.
    public static func maxPool2d(_ input: [UInt8], batch: Int, height: Int, width: Int, channels: Int,
                                 window: Int8Window) -> [UInt8] {
        let w = window.c(height: height, width: width, channels: channels)
        require(input.count == batch * height * width * channels, "Int8Kernels.maxPool2d: \(input.count) values for a [\(batch), \(height), \(width), \(channels)] input")
        let inArea = height * width * channels, outArea = w.outputHeight * w.outputWidth * channels
        var out = [UInt8](repeating: 0, count: batch * outArea)
        guard batch > 0 else { return out }
        input.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { out in
                let (input, out) = (input.baseAddress!, out.baseAddress!)
                Compute.parallelFor(batch, costPerItem: outArea * w.kernelHeight * w.kernelWidth) { range in
                    var window = w
                    for image in range { distill_q8_max_pool(&window, input + image * inArea, out + image * outArea) }
                }
            }
        }
        return out
    }

    /// Global average pooling of NHWC images [batch, pixels, channels] to [batch, channels]:
    /// `scale` is the input's scale divided by the output's (the division by the pixel count
    /// is done here); sums are exact, then one multiply and the requantization's rounding.
    public static func globalAveragePool(_ input: [UInt8], batch: Int, pixels: Int, channels: Int, inZero: UInt8,
                                         scale: Float, outZero: UInt8) -> [UInt8] {
        require(input.count == batch * pixels * channels && pixels >= 1 && pixels <= 1 << 23,
                "Int8Kernels.globalAveragePool: \(input.count) values for [\(batch), \(pixels), \(channels)]")
        let perPixel = scale / Float(pixels)
        require(perPixel.isNormal && perPixel > 0, "Int8Kernels.globalAveragePool: scale \(scale) over \(pixels) pixels is not a positive normal float")
        var out = [UInt8](repeating: 0, count: batch * channels)
        guard batch > 0 else { return out }
        input.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { out in
                let (input, out) = (input.baseAddress!, out.baseAddress!)
                Compute.parallelFor(batch, costPerItem: pixels * channels) { range in
                    for image in range {
                        distill_q8_global_average_pool(pixels, channels, input + image * pixels * channels, Int32(inZero), perPixel,
                                                       Int32(outZero), out + image * channels)
                    }
                }
            }
        }
        return out
    }

    /// The sum of two quantized tensors of the same shape in the output's quantization:
    /// `clamp(round((a − aZero)·aScale + (b − bZero)·bScale) + outZero, low, high)`, where aScale
    /// and bScale are a's and b's scales divided by the output's.
    public static func add(_ a: [UInt8], aZero: UInt8, aScale: Float, _ b: [UInt8], bZero: UInt8, bScale: Float,
                           outZero: UInt8, low: UInt8 = 0, high: UInt8 = 255) -> [UInt8] {
        require(a.count == b.count, "Int8Kernels.add: \(a.count) and \(b.count) values")
        require(aScale.isFinite && bScale.isFinite && low <= high, "Int8Kernels.add: scales must be finite, low ≤ high")
        let parameters = distill_q8_add_parameters(aScale: aScale, bScale: bScale, aZero: Int32(aZero), bZero: Int32(bZero),
                                                   outZero: Int32(outZero), low: Int32(low), high: Int32(high))
        var out = [UInt8](repeating: 0, count: a.count)
        let count = a.count
        guard count > 0 else { return out }
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { out in
                    let (a, b, out) = (a.baseAddress!, b.baseAddress!, out.baseAddress!)
                    let chunk = 4096
                    Compute.parallelFor((count + chunk - 1) / chunk, costPerItem: chunk) { range in
                        let start = range.lowerBound * chunk, end = min(count, range.upperBound * chunk)
                        var p = parameters
                        distill_q8_add(end - start, a + start, b + start, &p, out + start)
                    }
                }
            }
        }
        return out
    }
}
