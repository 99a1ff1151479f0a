import CKernels

/// Int8 weights of a linear map [outputs, inputs] (row j: output channel j), packed once for
/// the int8 GEMM (`Sources/CKernels/q8.c`): panels of 16 channels, 4 inputs a group, with
/// each channel's sum of weights for the activations' zero point. A convolution's weights are
/// packed in `pieces` (one per kernel row, each starting a new group of 4).
public struct PackedInt8Weights: Sendable {
    public let outputs: Int, inputs: Int
    /// The equal pieces each row is packed in (1 for a linear layer).
    public let pieces: Int
    /// The weights as given, row-major [outputs, inputs] (kept for saving and export).
    public let weights: [Int8]
    let packed: [Int8]
    let sums: [Int32]

    public init(_ weights: [Int8], outputs: Int, inputs: Int, pieces: Int = 1) {
        require(outputs >= 1 && inputs >= 1 && weights.count == outputs * inputs,
                "PackedInt8Weights: \(weights.count) weights for \(outputs) outputs × \(inputs) inputs")
        require(inputs <= Int(DISTILL_Q8_MAX_K), "PackedInt8Weights: \(inputs) inputs, at most \(DISTILL_Q8_MAX_K) keep int32 sums exact")
        require(pieces >= 1 && inputs % pieces == 0, "PackedInt8Weights: \(inputs) inputs do not split into \(pieces) pieces")
        self.outputs = outputs
        self.inputs = inputs
        self.pieces = pieces
        self.weights = weights
        var packed = [Int8](repeating: 0, count: distill_q8_packed_count(outputs, inputs, pieces))
        var sums = [Int32](repeating: 0, count: outputs)
        distill_q8_pack(outputs, inputs, pieces, weights, &packed, &sums)
        self.packed = packed
        self.sums = sums
    }

    /// The same weights packed in `pieces` (self when that packs them alike: pieces of whole groups of 4).
    public func inPieces(_ pieces: Int) -> PackedInt8Weights {
        pieces == self.pieces || (inputs / pieces) % 4 == 0 && (inputs / self.pieces) % 4 == 0
            ? self : PackedInt8Weights(weights, outputs: outputs, inputs: inputs, pieces: pieces)
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

    /// A linear layer on rows [rows, weights.inputs]: GEMM and requantization, a block of rows
    /// at a time on each thread (each row one piece for `gemmRowsRequantized`).
    public static func linear(_ a: UnsafePointer<UInt8>, rows: Int, zeroPoint: UInt8, weights: PackedInt8Weights,
                              _ r: Int8Requantization, into out: UnsafeMutablePointer<UInt8>) {
        r.check(channels: weights.outputs, "Int8Kernels.linear")
        let k = weights.inputs
        gemmRowsRequantized(rows: rows, taps: 1, segment: k, pitch: 0, zeroPoint: zeroPoint, weights: weights, r, into: out) { start, count, pointers in
            for i in 0..<count { pointers[i] = a + (start + i) * k }
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
    /// kernel column, then row): the GEMM over each output pixel's window read in place (a
    /// pointer per kernel tap, the input's zero point where the window leaves the image), and
    /// requantization, 64 output pixels of the batch at a time. Returns [batch, outH, outW, outC].
    public static func conv2d(_ input: [UInt8], batch: Int, height: Int, width: Int, channels: Int, zeroPoint: UInt8,
                              weights: PackedInt8Weights, window: Int8Window, _ r: Int8Requantization) -> [UInt8] {
        let w = window.c(height: height, width: width, channels: channels)
        let taps = w.kernelHeight * w.kernelWidth
        require(weights.inputs == taps * channels, "Int8Kernels.conv2d: weights take \(weights.inputs) inputs, the window gives \(taps * channels)")
        require(input.count == batch * height * width * channels, "Int8Kernels.conv2d: \(input.count) values for a [\(batch), \(height), \(width), \(channels)] input")
        r.check(channels: weights.outputs, "Int8Kernels.conv2d")
        let rows = batch * w.outputHeight * w.outputWidth
        let weights = weights.inPieces(w.kernelHeight) // QuantizedConv2d packs them so once
        // One piece per kernel row: kernelWidth · channels adjacent bytes of the input, padded
        // first (the input's zero point around each image) when the window has padding, or
        // when a piece's length is not whole groups of 4, for the 3 bytes of slack the GEMM may read past the last piece.
        let piece = w.kernelWidth * channels
        let needsCopy = w.paddingHeight > 0 || w.paddingWidth > 0 || (w.kernelHeight > 1 && piece % 4 != 0)
        var padded = w // the window over the padded images
        padded.height += 2 * w.paddingHeight
        padded.width += 2 * w.paddingWidth
        padded.paddingHeight = 0
        padded.paddingWidth = 0
        let paddedArea = padded.height * padded.width * channels
        let copy: UnsafeMutablePointer<UInt8>? = needsCopy ? .allocate(capacity: batch * paddedArea + 4) : nil
        defer { copy?.deallocate() }
        return input.withUnsafeBufferPointer { input in
            if let copy {
                var window = w
                Compute.parallelFor(batch, costPerItem: paddedArea) { range in
                    for image in range {
                        distill_q8_pad_image(&window, input.baseAddress! + image * height * width * channels, zeroPoint, copy + image * paddedArea)
                    }
                }
            }
            let source = UnsafePointer(copy) ?? input.baseAddress!
            return [UInt8](unsafeUninitializedCapacity: rows * weights.outputs) { out, initialized in
                gemmRowsRequantized(rows: rows, taps: w.kernelHeight, segment: piece, pitch: padded.width * channels, zeroPoint: zeroPoint,
                                    weights: weights, r, into: out.baseAddress!) { start, count, pointers in
                    var window = padded
                    distill_q8_conv_rows(&window, source, start, count, pointers)
                }
                initialized = rows * weights.outputs
            }
        }
    }

    /// The GEMM of `rows` rows, each `taps` pieces of `segment` bytes `pitch` apart, and its
    /// requantization into out [rows, weights.outputs]: blocks of `rowBlock` rows on the compute
    /// threads, `pieces(start, count, pointers)` pointing at each block row's first piece (with
    /// several pieces, each readable to its length rounded up to 4).
    private static func gemmRowsRequantized(rows: Int, taps: Int, segment: Int, pitch: Int, zeroPoint: UInt8, weights: PackedInt8Weights,
                                            _ r: Int8Requantization, into out: UnsafeMutablePointer<UInt8>,
                                            pieces: (Int, Int, UnsafeMutablePointer<UnsafePointer<UInt8>?>) -> Void) {
        let n = weights.outputs, k = taps * (taps > 1 ? (segment + 3) / 4 * 4 : segment)
        let blockCount = (rows + rowBlock - 1) / rowBlock
        guard rows > 0 else { return }
        withRequantization(r) { parameters in
            weights.packed.withUnsafeBufferPointer { packed in
                weights.sums.withUnsafeBufferPointer { sums in
                    Compute.parallelFor(blockCount, costPerItem: rowBlock * n * k / 8) { range in
                        let pointers = UnsafeMutablePointer<UnsafePointer<UInt8>?>.allocate(capacity: rowBlock)
                        let gathered = UnsafeMutablePointer<UInt8>.allocate(capacity: rowBlock * k)
                        let acc = UnsafeMutablePointer<Int32>.allocate(capacity: rowBlock * n)
                        defer {
                            pointers.deallocate()
                            gathered.deallocate()
                            acc.deallocate()
                        }
                        var p = parameters
                        for block in range {
                            let start = block * rowBlock, count = min(rowBlock, rows - start)
                            pieces(start, count, pointers)
                            distill_q8_gemm_rows_requantize(count, n, taps, segment, pitch, pointers, Int32(zeroPoint), packed.baseAddress!,
                                                            sums.baseAddress!, &p, out + start * n, n, gathered, acc)
                        }
                    }
                }
            }
        }
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

    /// Float NCHW images [batch, channels, pixels] (any [batch, values] with one channel)
    /// quantized to uint8 NHWC: clamp(round(x / scale) + zeroPoint, 0, 255), half to even, NaN
    /// to the zero point (as `QuantizationParameters.quantize`).
    public static func quantizeChannelsLast(_ x: [Float], batch: Int, channels: Int, scale: Float, zeroPoint: UInt8) -> [UInt8] {
        require(batch >= 0 && channels >= 1 && x.count % max(batch * channels, 1) == 0,
                "Int8Kernels.quantizeChannelsLast: \(x.count) values for \(batch) images of \(channels) channels")
        guard batch > 0, !x.isEmpty else { return [] }
        let area = x.count / batch
        return x.withUnsafeBufferPointer { x in
            [UInt8](unsafeUninitializedCapacity: x.count) { out, initialized in
                let (source, target) = (x.baseAddress!, out.baseAddress!)
                Compute.parallelFor(batch, costPerItem: area) { range in
                    distill_q8_quantize_channels_last(range.count, channels, area / channels, source + range.lowerBound * area, scale,
                                                      Int32(zeroPoint), target + range.lowerBound * area)
                }
                initialized = x.count
            }
        }
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
