import CKernels

/// Depthwise convolution (groups = input channels; each output channel sees one input
/// channel, `multiplier` = output channels ÷ input channels of them per input channel)
/// through the C kernels (Sources/CKernels/depthwise.c), one plane at a time.
///
/// The general grouped path ran one im2col and one sgemm of a single output row per
/// channel and sample: for MobileNetV2 that is thousands of tiny sgemm calls a step.
enum DepthwiseKernels {
    /// The C kernels' description of one plane, or nil when they do not take this geometry
    /// (dilation, or more than `DISTILL_MAX_TAPS` kernel taps): the general path runs then.
    static func plane(height: Int, width: Int, geometry g: Convolution2DGeometry,
                      outputHeight: Int, outputWidth: Int) -> distill_depthwise_plane? {
        guard g.dilationHeight == 1 && g.dilationWidth == 1 else { return nil }
        var plane = distill_depthwise_plane(height: height, width: width, kernelHeight: g.kernelHeight, kernelWidth: g.kernelWidth,
                                            strideHeight: g.strideHeight, strideWidth: g.strideWidth,
                                            paddingHeight: g.paddingHeight, paddingWidth: g.paddingWidth,
                                            outputHeight: outputHeight, outputWidth: outputWidth)
        return distill_depthwise_plane_valid(&plane) == 1 ? plane : nil
    }

    /// output [batch, channels·multiplier, outH, outW] = input [batch, channels, H, W] ⋆ weight
    /// [channels·multiplier, 1, kh, kw] + bias. Split over the threads by (sample, output channel) planes.
    static func forward(_ plane: distill_depthwise_plane, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                        batch: Int, channels: Int, multiplier: Int) {
        let outChannels = channels * multiplier, taps = plane.kernelHeight * plane.kernelWidth
        let inArea = plane.height * plane.width, outArea = plane.outputHeight * plane.outputWidth
        Compute.parallelFor(batch * outChannels, costPerItem: taps * outArea) { planes in
            var p = plane
            let scratch = TensorStorage(uninitializedCount: distill_depthwise_scratch_count(&p))
            withExtendedLifetime(scratch) {
                for index in planes {
                    let sample = index / outChannels, o = index % outChannels
                    distill_depthwise_forward(&p, input + (sample * channels + o / multiplier) * inArea, weight + o * taps,
                                              bias?[o] ?? 0, output + index * outArea, scratch.pointer)
                }
            }
        }
    }

    /// Adds the input's gradient into `gradInput` and the weight's into `gradWeight` (each
    /// when not nil; both zeroed by the caller). Split over the threads by input channel, so
    /// that each weight's gradient is summed over the samples in order on one thread: the
    /// result does not depend on the thread count.
    static func backward(_ plane: distill_depthwise_plane, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                         gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
                         gradWeight: UnsafeMutablePointer<Float>?, batch: Int, channels: Int, multiplier: Int) {
        let outChannels = channels * multiplier, taps = plane.kernelHeight * plane.kernelWidth
        let inArea = plane.height * plane.width, outArea = plane.outputHeight * plane.outputWidth
        Compute.parallelFor(channels, costPerItem: 2 * batch * multiplier * taps * outArea) { range in
            var p = plane
            let scratch = TensorStorage(uninitializedCount: distill_depthwise_scratch_count(&p))
            withExtendedLifetime(scratch) {
                for c in range {
                    for o in (c * multiplier)..<((c + 1) * multiplier) {
                        for sample in 0..<batch {
                            let inOffset = (sample * channels + c) * inArea
                            distill_depthwise_backward(&p, input + inOffset, weight + o * taps,
                                                       gradOutput + (sample * outChannels + o) * outArea,
                                                       gradInput.map { $0 + inOffset }, gradWeight.map { $0 + o * taps },
                                                       scratch.pointer)
                        }
                    }
                }
            }
        }
    }
}
