import CKernels

/// A convolution prepared once for inference through oneDNN (Sources/CKernels/convolution.c):
/// its weights (batch norm folded in by the caller) packed into the primitive's layout once
/// per batch size it runs at, its activation and an optional residual sum fused into the
/// primitive, its activations NHWC (channels last) so that nothing is reordered between
/// layers. `bench/onednn/inference_layouts.c` measured why NHWC: on AVX-512 and on AVX2, a
/// primitive reading and writing NHWC ran as fast as one on its own blocked layout, and
/// 1.3-3.4× faster than NCHW activations reordered around every call.
///
/// The batch is split over our pool, one single-threaded primitive per part, as
/// `ConvolutionPrimitives` splits training convolutions. A layer with one input channel (a
/// grey-image network's first; up to `directMaximumChannels`) runs our own direct kernel
/// instead (`distill_direct_convolution_nhwc`, Sources/CKernels/direct.c), its rows split over
/// the pool: measured one layer at a time (bench/onednn/direct_first_layer.c, one thread),
/// cnn-student's first layer took 2.7-2.8 µs an image against oneDNN's 5.2-5.5 at batch 1
/// and 32 (3.8 on the AVX2 path); with three input channels (resnet20's and mobilenetv2's
/// stems) oneDNN was 3-17% faster, so those stay with oneDNN.
/// Linux builds with oneDNN only:
/// elsewhere (or for a shape oneDNN refuses) `init` answers nil and the caller runs the
/// convolution another way.
public final class PackedConvolution: @unchecked Sendable {
    /// oneDNN's primitive; nil where the direct kernel runs the layer.
    private let handle: OpaquePointer?
    /// The direct kernel's weights, [kh, kw, C, O]; nil where oneDNN runs the layer.
    private let directWeights: Tensor?
    private let shape: distill_convolution_shape
    /// For the fallback when oneDNN fails at run time (out of memory): weights [O, C/g, kh, kw], bias [O].
    private let weight: Tensor, bias: Tensor, geometry: Convolution2DGeometry, groups: Int, activation: FusedActivation
    /// One image's input [height, width, channels] and output [outputHeight, outputWidth, outChannels].
    public let inputShape: [Int], outputShape: [Int]

    /// Whether this build runs packed convolutions (Linux with oneDNN).
    public static var isAvailable: Bool { ConvolutionPrimitives.isAvailable }

    /// Packs `weight` [O, C/groups, kh, kw] (and `bias` [O]) for inputs of `channels` ×
    /// `height` × `width`; nil when this build has no oneDNN or oneDNN refuses the shape.
    public init?(weight: Tensor, bias: [Float]?, channels: Int, height: Int, width: Int, groups: Int,
                 geometry: Convolution2DGeometry, activation: FusedActivation) {
        let outChannels = weight.shape[0]
        guard Self.isAvailable, weight.rank == 4, groups >= 1, channels % groups == 0, outChannels % groups == 0,
              weight.shape[1] * groups == channels, weight.shape[2] == geometry.kernelHeight, weight.shape[3] == geometry.kernelWidth,
              bias.map({ $0.count == outChannels }) ?? true else { return nil }
        let (oh, ow) = geometry.outputSize(height: height, width: width)
        guard oh > 0, ow > 0 else { return nil }
        var shape = ConvolutionPlan(batch: 1, channels: channels, height: height, width: width, outChannels: outChannels, groups: groups,
                                    geometry: geometry, outputHeight: oh, outputWidth: ow).primitiveShape
        if groups == 1 && channels <= Self.directMaximumChannels {
            handle = nil
            directWeights = weight.permuted([2, 3, 1, 0]).copy()
        } else {
            let made = weight.withUnsafeBufferPointer { w in
                bias.map { b in b.withUnsafeBufferPointer { distill_packed_convolution_create(&shape, activation.kernelValue, w.baseAddress, $0.baseAddress) } }
                    ?? distill_packed_convolution_create(&shape, activation.kernelValue, w.baseAddress, nil)
            }
            guard let made else { return nil }
            handle = made
            directWeights = nil
        }
        self.shape = shape
        self.weight = weight.copy()
        self.bias = Tensor(bias ?? [Float](repeating: 0, count: outChannels), shape: [outChannels])
        (self.geometry, self.groups, self.activation) = (geometry, groups, activation)
        inputShape = [height, width, channels]
        outputShape = [oh, ow, outChannels]
    }

    deinit { if let handle { distill_packed_convolution_destroy(handle) } }

    /// The convolution of NHWC images `input` [N, H, W, C]: a new [N, OH, OW, O], or, with
    /// `accumulating`, added into that tensor's values (overwritten) before the activation.
    /// Should oneDNN fail (out of memory), the same values come from `Tensor.conv2d` in NCHW.
    public func callAsFunction(_ input: Tensor, accumulating: Tensor? = nil) -> Tensor {
        let batch = input.shape[0]
        // Checked without building arrays: at batch 1 this runs for every layer of every call.
        require(input.rank == 4 && input.shape[1] == inputShape[0] && input.shape[2] == inputShape[1] && input.shape[3] == inputShape[2],
                "PackedConvolution: input \(input.shape) is not [N, \(inputShape.map(String.init).joined(separator: ", "))]")
        if let accumulating {
            require(accumulating.rank == 4 && accumulating.shape[0] == batch && accumulating.shape[1] == outputShape[0]
                    && accumulating.shape[2] == outputShape[1] && accumulating.shape[3] == outputShape[2],
                    "PackedConvolution: sum target \(accumulating.shape) does not fit")
        }
        // The sum's target is read before it is written; kept aside for the fallback.
        let target = accumulating.map { Self.failsForTesting ? $0.copy() : $0 }
        let output = accumulating ?? Tensor(uninitialized: Shape([batch] + outputShape))
        guard batch > 0 else { return output }
        let inputSize = inputShape.reduce(1, *), outputSize = outputShape.reduce(1, *)
        let parts = Swift.max(1, Swift.min(Compute.threadCount, batch))
        let px = input.storage.pointer, po = output.storage.pointer
        let accumulate: Int32 = accumulating == nil ? 0 : 1
        var failed = Self.failsForTesting
        let rows = shape.outputHeight, threads = Compute.threadCount
        if let directWeights {
            // Rows of every image split over the pool; the kernel cannot fail.
            let perRow = shape.outputWidth * shape.outChannels * shape.channels * shape.kernelHeight * shape.kernelWidth
            withUnsafePointer(to: shape) { plan in
                Compute.parallelFor(batch * rows, costPerItem: perRow) { range in
                    distill_direct_convolution_nhwc(plan, px, directWeights.storage.pointer, bias.storage.pointer, activation.kernelValue, accumulate,
                                                    range.lowerBound, range.upperBound, po)
                }
            }
            withExtendedLifetime((input, self)) {}
            return failed ? fallback(input, accumulating: target) : output
        }
        if !failed && batch == 1 && threads > 1 && rows >= 2 * threads && multiplyAdds >= Self.minimumSplitMultiplyAdds {
            // One image: the threads take bands of its output rows (each band a primitive of
            // its own); inside another parallel region, one band of all the rows.
            failed = withUnsafeTemporaryAllocation(of: Bool.self, capacity: threads) { flags in
                flags.initialize(repeating: false)
                Compute.parallelFor(threads, costPerItem: Int.max / threads) { chunks in
                    flags[chunks.lowerBound] = distill_packed_convolution_run_rows(handle, rows * chunks.lowerBound / threads,
                                                                                   rows * chunks.upperBound / threads, px, po, accumulate) != 1
                }
                return flags.contains(true)
            }
        } else if !failed {
            // One part a thread; a call inside another parallel region (FusedModel's chunks)
            // gets every part at once and runs them as one primitive call.
            failed = withUnsafeTemporaryAllocation(of: Bool.self, capacity: parts) { flags in
                flags.initialize(repeating: false)
                Compute.parallelFor(parts, costPerItem: Int.max / parts) { chunks in
                    let range = (batch * chunks.lowerBound / parts)..<(batch * chunks.upperBound / parts)
                    flags[chunks.lowerBound] = distill_packed_convolution_run(handle, range.count, px + range.lowerBound * inputSize,
                                                                              po + range.lowerBound * outputSize, accumulate) != 1
                }
                return flags.contains(true)
            }
        }
        withExtendedLifetime((input, self)) {}
        return failed ? fallback(input, accumulating: target) : output
    }

    /// The same convolution by `Tensor.conv2d` (NCHW): what a failed run answers. A failed run
    /// may have overwritten part of the sum's target, so the accumulating case recomputes
    /// from a copy only in tests; in use, oneDNN fails before it writes (it could not get memory).
    private func fallback(_ input: Tensor, accumulating: Tensor?) -> Tensor {
        let convolution = Tensor.conv2d(input.permuted([0, 3, 1, 2]), weight: weight, bias: bias,
                                        stride: (geometry.strideHeight, geometry.strideWidth),
                                        padding: (geometry.paddingHeight, geometry.paddingWidth),
                                        dilation: (geometry.dilationHeight, geometry.dilationWidth), groups: groups).permuted([0, 2, 3, 1])
        let y = accumulating.map { Tensor.add(convolution, $0, then: activation) } ?? activation.applied(to: convolution)
        guard let accumulating else { return y }
        accumulating.withUnsafeMutableBufferPointer { target in y.withUnsafeBufferPointer { target.baseAddress!.update(from: $0.baseAddress!, count: $0.count) } }
        return accumulating
    }

    /// Multiply-adds of one image.
    private var multiplyAdds: Int {
        outputShape.reduce(1, *) * (shape.channels / shape.groups) * shape.kernelHeight * shape.kernelWidth
    }

    /// The least multiply-adds for which one image is split between the threads (below, waking
    /// the pool costs more than the half it saves; bench/DistillBench `infer-*-b1` cases with
    /// `--split-multiply-adds`). Quiet, 2 threads: resnet20 at batch 1 took 0.60-0.77 ms split
    /// at 2^20 against 0.76-1.03 unsplit (2026-12-01). At 2^20 mobilenetv2 gained nothing from
    /// the second thread (0.43 ms against 0.45 on one): most of its layers stayed whole on one
    /// thread, and a split layer then read the other core's output. Split down to 2^16, so
    /// that nearly every layer keeps its band of rows on one core, it took 0.83-0.89 of the
    /// time at 2^20 (medians of 10-12 alternating pairs, 2026-12-02), resnet20 the same
    /// (1.00-1.03), cnn-student 1.06-1.09 (its 34 µs, 1.8× onnxruntime's speed at batch 1).
    /// (Beside another job on the second core, splitting made batch-1 inference up to 2.5×
    /// slower: a pool that waits for a busy core.)
    nonisolated(unsafe) public static var minimumSplitMultiplyAdds = 1 << 16

    /// The most input channels (groups 1) for which the direct kernel runs the layer instead
    /// of oneDNN (see the type's notes; bench/DistillBench `infer-*` cases with
    /// `--direct-channels`; 0 turns it off). The kernel takes any count; tests run it up to 4.
    nonisolated(unsafe) public static var directMaximumChannels = 1

    /// Tests set this to run every call through the fallback.
    nonisolated(unsafe) package static var failsForTesting = false
}

extension FusedActivation {
    var kernelValue: distill_activation {
        switch self {
        case .none: return DISTILL_ACTIVATION_NONE
        case .relu: return DISTILL_ACTIVATION_RELU
        case .relu6: return DISTILL_ACTIVATION_RELU6
        }
    }
}
