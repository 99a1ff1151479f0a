import CKernels
import Foundation

// 2-D convolution over NCHW tensors: oneDNN's convolution primitives where the build has
// them (Linux; Kernels/ConvolutionPrimitives.swift), else, and as the portable path, im2col +
// one sgemm per sample and group (`Compute.convolutionPath` chooses).
//
// The im2col path:
// Samples are split over the threads, each with its own patch matrix (a few hundred KiB,
// so it stays in the core's cache between im2col and sgemm) and single-threaded sgemms.
// An earlier version unfolded 16 MiB chunks of the batch for one large threaded sgemm; on
// the small CNNs distillation trains, its memory traffic (im2col, then a copy back to NCHW)
// cost more than the larger sgemm saved. With one sample, the kernels parallelise inside.
//
// Depthwise convolutions (groups = input channels) do not come here: they have kernels of
// their own (Kernels/DepthwiseKernels.swift), where this path would run one single-row sgemm
// per channel and sample.

/// Layout constants of one convolution call, shared by forward and backward.
struct ConvolutionPlan {
    let batch: Int, channels: Int, height: Int, width: Int
    let outChannels: Int, groups: Int
    let geometry: Convolution2DGeometry
    let outputHeight: Int, outputWidth: Int
    var channelsPerGroup: Int { channels / groups }
    var outPerGroup: Int { outChannels / groups }
    var patchSize: Int { channelsPerGroup * geometry.kernelHeight * geometry.kernelWidth }
    var outputArea: Int { outputHeight * outputWidth }
    var inputArea: Int { height * width }
    /// A 1×1 kernel with unit stride and no padding: the image is its own patch matrix.
    var isPointwise: Bool {
        geometry.kernelHeight == 1 && geometry.kernelWidth == 1 && geometry.strideHeight == 1
            && geometry.strideWidth == 1 && geometry.paddingHeight == 0 && geometry.paddingWidth == 0
    }

    /// The shape as the oneDNN primitives take it.
    var primitiveShape: distill_convolution_shape {
        distill_convolution_shape(batch: batch, channels: channels, height: height, width: width,
                                  outChannels: outChannels, groups: groups,
                                  kernelHeight: geometry.kernelHeight, kernelWidth: geometry.kernelWidth,
                                  strideHeight: geometry.strideHeight, strideWidth: geometry.strideWidth,
                                  paddingHeight: geometry.paddingHeight, paddingWidth: geometry.paddingWidth,
                                  dilationHeight: geometry.dilationHeight, dilationWidth: geometry.dilationWidth,
                                  outputHeight: outputHeight, outputWidth: outputWidth)
    }

    /// Unfolds sample `sample`'s channels of group `group` into `columns` [patchSize, outputArea],
    /// channels split over the threads (serially when called inside a parallel region).
    func unfold(_ input: UnsafePointer<Float>, sample: Int, group: Int, into columns: UnsafeMutablePointer<Float>) {
        let kernelArea = geometry.kernelHeight * geometry.kernelWidth
        Compute.parallelFor(channelsPerGroup, costPerItem: kernelArea * outputArea) { range in
            for c in range {
                let image = input + (sample * channels + group * channelsPerGroup + c) * inputArea
                ConvolutionKernels.im2col(image, channels: 1, height: height, width: width, geometry: geometry,
                                          outputHeight: outputHeight, outputWidth: outputWidth,
                                          columns: columns + c * kernelArea * outputArea, rowStride: outputArea)
            }
        }
    }

    /// Adds `columns` [patchSize, outputArea] back into sample `sample`'s input gradient, group
    /// `group`. May overwrite entries of `columns` that fall in the padding (scratch memory).
    func fold(_ columns: UnsafeMutablePointer<Float>, sample: Int, group: Int, into gradInput: UnsafeMutablePointer<Float>) {
        let kernelArea = geometry.kernelHeight * geometry.kernelWidth
        Compute.parallelFor(channelsPerGroup, costPerItem: kernelArea * outputArea) { range in
            for c in range {
                let image = gradInput + (sample * channels + group * channelsPerGroup + c) * inputArea
                ConvolutionKernels.col2im(columns + c * kernelArea * outputArea, rowStride: outputArea,
                                          channels: 1, height: height, width: width, geometry: geometry,
                                          outputHeight: outputHeight, outputWidth: outputWidth, image: image)
            }
        }
    }
}

extension Tensor {
    /// 2-D convolution (cross-correlation, as in PyTorch) of input [N, C, H, W] with weight
    /// [O, C/groups, kh, kw] and optional bias [O], giving [N, O, outH, outW].
    /// `groups` = C is a depthwise convolution, computed by its own kernels (DepthwiseKernels).
    public static func conv2d(_ input: Tensor, weight: Tensor, bias: Tensor? = nil,
                              stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                              dilation: (Int, Int) = (1, 1), groups: Int = 1) -> Tensor {
        require(input.rank == 4 && weight.rank == 4,
                     "conv2d: needs input [N, C, H, W] and weight [O, C/groups, kh, kw], got \(input.shape) and \(weight.shape)")
        let channels = input.shape[1], outChannels = weight.shape[0]
        require(groups >= 1 && channels % groups == 0 && outChannels % groups == 0 && weight.shape[1] * groups == channels,
                     "conv2d: input \(input.shape) and weight \(weight.shape) do not fit groups = \(groups)")
        if let bias { require(bias.shape == [outChannels], "conv2d: bias \(bias.shape) does not fit weight \(weight.shape)") }
        let geometry = Convolution2DGeometry(kernel: (weight.shape[2], weight.shape[3]), stride: stride, padding: padding, dilation: dilation)
        let (oh, ow) = geometry.outputSize(height: input.shape[2], width: input.shape[3])
        require(oh > 0 && ow > 0, "conv2d: kernel \(weight.shape) with padding \(padding), dilation \(dilation) does not fit input \(input.shape)")
        let inputs = bias.map { [input, weight, $0] } ?? [input, weight]
        if groups == channels, let plane = DepthwiseKernels.plane(height: input.shape[2], width: input.shape[3], geometry: geometry,
                                                                  outputHeight: oh, outputWidth: ow) {
            return depthwise(input, weight, bias, plane, inputs)
        }
        let plan = ConvolutionPlan(batch: input.shape[0], channels: channels, height: input.shape[2], width: input.shape[3],
                                   outChannels: outChannels, groups: groups, geometry: geometry, outputHeight: oh, outputWidth: ow)
        let out = convolutionForward(input, weight, bias, plan)
        return out.recorded("conv2d", inputs) { g in
            let (gx, gw) = convolutionBackward(g, input, weight, plan)
            var grads: [Tensor?] = [gx, gw]
            if let bias { grads.append(bias.needsGrad ? g.sum(alongAxes: [0, 2, 3]) : nil) }
            return grads
        }
    }

    /// A depthwise convolution (groups = input channels) through the C kernels.
    private static func depthwise(_ input: Tensor, _ weight: Tensor, _ bias: Tensor?, _ plane: distill_depthwise_plane,
                                  _ inputs: [Tensor]) -> Tensor {
        let batch = input.shape[0], channels = input.shape[1], multiplier = weight.shape[0] / channels
        let out = Tensor(uninitialized: [batch, weight.shape[0], plane.outputHeight, plane.outputWidth])
        DepthwiseKernels.forward(plane, input: input.storage.pointer, weight: weight.storage.pointer,
                                 bias: bias.map { UnsafePointer($0.storage.pointer) }, output: out.storage.pointer,
                                 batch: batch, channels: channels, multiplier: multiplier)
        return out.recorded("conv2d", inputs) { g in
            let gx = input.needsGrad ? Tensor.zeros(input.shape) : nil
            let gw = weight.needsGrad ? Tensor.zeros(weight.shape) : nil
            if gx != nil || gw != nil {
                DepthwiseKernels.backward(plane, input: input.storage.pointer, weight: weight.storage.pointer,
                                          gradOutput: g.storage.pointer, gradInput: gx?.storage.pointer,
                                          gradWeight: gw?.storage.pointer, batch: batch, channels: channels, multiplier: multiplier)
            }
            var grads: [Tensor?] = [gx, gw]
            if let bias { grads.append(bias.needsGrad ? g.sum(alongAxes: [0, 2, 3]) : nil) }
            return grads
        }
    }

    private static func convolutionForward(_ input: Tensor, _ weight: Tensor, _ bias: Tensor?, _ plan: ConvolutionPlan) -> Tensor {
        let out = Tensor(uninitialized: [plan.batch, plan.outChannels, plan.outputHeight, plan.outputWidth])
        let px = input.storage.pointer, pw = weight.storage.pointer, po = out.storage.pointer
        if ConvolutionPrimitives.takes(plan.primitiveShape),
           ConvolutionPrimitives.forward(plan.primitiveShape, input: px, weight: pw, bias: bias?.storage.pointer, output: po) {
            return out
        }
        let area = plan.outputArea, k = plan.patchSize, og = plan.outPerGroup
        let pb = bias?.storage.pointer
        Compute.parallelFor(plan.batch, costPerItem: plan.outChannels * k * area) { samples in
            let columns = TensorStorage(uninitializedCount: plan.isPointwise ? 0 : k * area)
            withExtendedLifetime(columns) {
                for s in samples {
                    let sampleOut = po + s * plan.outChannels * area
                    if let pb {
                        for o in 0..<plan.outChannels {
                            let value = pb[o], row = sampleOut + o * area
                            for j in 0..<area { row[j] = value }
                        }
                    }
                    for group in 0..<plan.groups {
                        let patches: UnsafePointer<Float>
                        if plan.isPointwise {
                            patches = UnsafePointer(px + (s * plan.channels + group * plan.channelsPerGroup) * area)
                        } else {
                            plan.unfold(px, sample: s, group: group, into: columns.pointer)
                            patches = UnsafePointer(columns.pointer)
                        }
                        MatrixKernels.gemm(transposeA: false, transposeB: false, m: og, n: area, k: k,
                                           a: pw + group * og * k, lda: k, b: patches, ldb: area,
                                           beta: pb == nil ? 0 : 1, c: sampleOut + group * og * area, ldc: area)
                    }
                }
            }
        }
        return out
    }

    private static func convolutionBackward(_ g: Tensor, _ input: Tensor, _ weight: Tensor,
                                            _ plan: ConvolutionPlan) -> (Tensor?, Tensor?) {
        if ConvolutionPrimitives.takes(plan.primitiveShape) {
            // The primitives overwrite the gradients; false (oneDNN refused): the im2col path.
            let gx = input.needsGrad ? Tensor(uninitialized: input.shape) : nil
            let gw = weight.needsGrad ? Tensor(uninitialized: weight.shape) : nil
            if gx == nil && gw == nil { return (nil, nil) }
            if ConvolutionPrimitives.backward(plan.primitiveShape, input: input.storage.pointer, weight: weight.storage.pointer,
                                              gradOutput: g.storage.pointer, gradInput: gx?.storage.pointer, gradWeight: gw?.storage.pointer) {
                return (gx, gw)
            }
        }
        let gx = input.needsGrad ? Tensor.zeros(input.shape) : nil
        let gw = weight.needsGrad ? Tensor.zeros(weight.shape) : nil
        let px = input.storage.pointer, pw = weight.storage.pointer, pg = g.storage.pointer
        let area = plan.outputArea, k = plan.patchSize, og = plan.outPerGroup
        let mergeLock = NSLock()
        var partials: [(first: Int, sum: Tensor)] = []
        Compute.parallelFor(plan.batch, costPerItem: 2 * plan.outChannels * k * area) { samples in
            // Each thread sums its samples' weight gradients privately; the sums are added in
            // sample order afterwards, so results do not depend on which thread finished first.
            let columns = TensorStorage(uninitializedCount: plan.isPointwise ? 0 : k * area)
            let partial = gw.map { _ in Tensor.zeros(weight.shape) }
            withExtendedLifetime((columns, partial)) {
                for s in samples {
                    for group in 0..<plan.groups {
                        let gOut = pg + (s * plan.outChannels + group * og) * area
                        let image = px + (s * plan.channels + group * plan.channelsPerGroup) * area
                        if let partial {
                            // dW = G · colsᵀ
                            let patches: UnsafePointer<Float>
                            if plan.isPointwise {
                                patches = UnsafePointer(image)
                            } else {
                                plan.unfold(px, sample: s, group: group, into: columns.pointer)
                                patches = UnsafePointer(columns.pointer)
                            }
                            MatrixKernels.gemm(transposeA: false, transposeB: true, m: og, n: k, k: area,
                                               a: gOut, lda: area, b: patches, ldb: area,
                                               beta: 1, c: partial.storage.pointer + group * og * k, ldc: k)
                        }
                        if let gx {
                            // dcols = Wᵀ · G, folded back into the image (pointwise: dX = Wᵀ · G directly).
                            let gImage = gx.storage.pointer + (s * plan.channels + group * plan.channelsPerGroup) * area
                            MatrixKernels.gemm(transposeA: true, transposeB: false, m: k, n: area, k: og,
                                               a: pw + group * og * k, lda: k, b: gOut, ldb: area,
                                               c: plan.isPointwise ? gImage : columns.pointer, ldc: area)
                            if !plan.isPointwise {
                                plan.fold(columns.pointer, sample: s, group: group, into: gx.storage.pointer)
                            }
                        }
                    }
                }
                if let partial {
                    mergeLock.lock()
                    partials.append((samples.lowerBound, partial))
                    mergeLock.unlock()
                }
            }
        }
        if let gw {
            let target = gw.storage.pointer
            for (_, partial) in partials.sorted(by: { $0.first < $1.first }) {
                let source = partial.storage.pointer
                for i in 0..<gw.count { target[i] += source[i] }
                withExtendedLifetime(partial) {}
            }
        }
        return (gx, gw)
    }
}
