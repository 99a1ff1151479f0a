// 2-D convolution over NCHW tensors: im2col + one sgemm per chunk of samples and group.
// Chunks bound the patch-matrix memory (about 16 MiB) while keeping each sgemm large.

/// Layout constants of one convolution call, shared by forward and backward.
private struct ConvolutionPlan {
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
    var samplesPerChunk: Int { Swift.max(1, Swift.min(batch, (4 << 20) / Swift.max(1, patchSize * outputArea))) }

    /// Unfolds samples [first, first+count) of group `group` into `columns` [patchSize, count·outputArea].
    func unfold(_ input: UnsafePointer<Float>, first: Int, count: Int, group: Int, into columns: UnsafeMutablePointer<Float>) {
        let kernelArea = geometry.kernelHeight * geometry.kernelWidth
        let rowStride = count * outputArea
        Compute.parallelFor(count * channelsPerGroup, costPerItem: kernelArea * outputArea) { range in
            for item in range {
                let s = item / channelsPerGroup, c = item % channelsPerGroup
                let image = input + ((first + s) * channels + group * channelsPerGroup + c) * inputArea
                ConvolutionKernels.im2col(image, channels: 1, height: height, width: width, geometry: geometry,
                                          outputHeight: outputHeight, outputWidth: outputWidth,
                                          columns: columns + c * kernelArea * rowStride + s * outputArea, rowStride: rowStride)
            }
        }
    }

    /// Adds `columns` [patchSize, count·outputArea] back into the input gradient of group `group`.
    func fold(_ columns: UnsafePointer<Float>, first: Int, count: Int, group: Int, into gradInput: UnsafeMutablePointer<Float>) {
        let kernelArea = geometry.kernelHeight * geometry.kernelWidth
        let rowStride = count * outputArea
        Compute.parallelFor(count * channelsPerGroup, costPerItem: kernelArea * outputArea) { range in
            for item in range {
                let s = item / channelsPerGroup, c = item % channelsPerGroup
                let image = gradInput + ((first + s) * channels + group * channelsPerGroup + c) * inputArea
                ConvolutionKernels.col2im(columns + c * kernelArea * rowStride + s * outputArea, rowStride: rowStride,
                                          channels: 1, height: height, width: width, geometry: geometry,
                                          outputHeight: outputHeight, outputWidth: outputWidth, image: image)
            }
        }
    }

    /// Copies rows of group `group` between NCHW [batch, outChannels, area] and a chunk matrix
    /// [outPerGroup, count·area]; `toMatrix` picks the direction.
    func shuffle(_ nchw: UnsafeMutablePointer<Float>, _ matrix: UnsafeMutablePointer<Float>,
                 first: Int, count: Int, group: Int, toMatrix: Bool) {
        let area = outputArea
        Compute.parallelFor(count * outPerGroup, costPerItem: area) { range in
            for item in range {
                let s = item / outPerGroup, o = item % outPerGroup
                let a = nchw + ((first + s) * outChannels + group * outPerGroup + o) * area
                let m = matrix + o * count * area + s * area
                if toMatrix { m.update(from: a, count: area) } else { a.update(from: m, count: area) }
            }
        }
    }
}

extension Tensor {
    /// 2-D convolution (cross-correlation, as in PyTorch) of input [N, C, H, W] with weight
    /// [O, C/groups, kh, kw] and optional bias [O], giving [N, O, outH, outW].
    /// `groups` = C = O is a depthwise convolution.
    public static func conv2d(_ input: Tensor, weight: Tensor, bias: Tensor? = nil,
                              stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                              dilation: (Int, Int) = (1, 1), groups: Int = 1) -> Tensor {
        precondition(input.rank == 4 && weight.rank == 4,
                     "conv2d: needs input [N, C, H, W] and weight [O, C/groups, kh, kw], got \(input.shape) and \(weight.shape)")
        let channels = input.shape[1], outChannels = weight.shape[0]
        precondition(groups >= 1 && channels % groups == 0 && outChannels % groups == 0 && weight.shape[1] * groups == channels,
                     "conv2d: input \(input.shape) and weight \(weight.shape) do not fit groups = \(groups)")
        if let bias { precondition(bias.shape == [outChannels], "conv2d: bias \(bias.shape) does not fit weight \(weight.shape)") }
        let geometry = Convolution2DGeometry(kernel: (weight.shape[2], weight.shape[3]), stride: stride, padding: padding, dilation: dilation)
        let (oh, ow) = geometry.outputSize(height: input.shape[2], width: input.shape[3])
        precondition(oh > 0 && ow > 0, "conv2d: kernel \(weight.shape) with padding \(padding), dilation \(dilation) does not fit input \(input.shape)")
        let plan = ConvolutionPlan(batch: input.shape[0], channels: channels, height: input.shape[2], width: input.shape[3],
                                   outChannels: outChannels, groups: groups, geometry: geometry, outputHeight: oh, outputWidth: ow)
        let out = convolutionForward(input, weight, bias, plan)
        let inputs = bias.map { [input, weight, $0] } ?? [input, weight]
        return out.recorded("conv2d", inputs) { g in
            let (gx, gw) = convolutionBackward(g, input, weight, plan)
            var grads: [Tensor?] = [gx, gw]
            if let bias { grads.append(bias.needsGrad ? g.sum(alongAxes: [0, 2, 3]) : nil) }
            return grads
        }
    }

    private static func convolutionForward(_ input: Tensor, _ weight: Tensor, _ bias: Tensor?, _ plan: ConvolutionPlan) -> Tensor {
        let out = Tensor(uninitialized: [plan.batch, plan.outChannels, plan.outputHeight, plan.outputWidth])
        let px = input.storage.pointer, pw = weight.storage.pointer, po = out.storage.pointer
        let area = plan.outputArea, k = plan.patchSize, og = plan.outPerGroup
        if plan.isPointwise {
            for s in 0..<plan.batch {
                for group in 0..<plan.groups {
                    MatrixKernels.gemm(transposeA: false, transposeB: false, m: og, n: area, k: k,
                                       a: pw + group * og * k, lda: k,
                                       b: px + (s * plan.channels + group * plan.channelsPerGroup) * area, ldb: area,
                                       c: po + (s * plan.outChannels + group * og) * area, ldc: area)
                }
            }
        } else {
            let chunk = plan.samplesPerChunk
            let columns = TensorStorage(uninitializedCount: k * chunk * area)
            let product = TensorStorage(uninitializedCount: chunk > 1 ? og * chunk * area : 0)
            defer { withExtendedLifetime((columns, product)) {} }  // kernels only see their pointers
            for first in stride(from: 0, to: plan.batch, by: chunk) {
                let count = Swift.min(chunk, plan.batch - first)
                for group in 0..<plan.groups {
                    plan.unfold(px, first: first, count: count, group: group, into: columns.pointer)
                    if count == 1 {
                        MatrixKernels.gemm(transposeA: false, transposeB: false, m: og, n: area, k: k,
                                           a: pw + group * og * k, lda: k, b: columns.pointer, ldb: area,
                                           c: po + (first * plan.outChannels + group * og) * area, ldc: area)
                    } else {
                        MatrixKernels.gemm(transposeA: false, transposeB: false, m: og, n: count * area, k: k,
                                           a: pw + group * og * k, lda: k, b: columns.pointer, ldb: count * area,
                                           c: product.pointer, ldc: count * area)
                        plan.shuffle(po, product.pointer, first: first, count: count, group: group, toMatrix: false)
                    }
                }
            }
        }
        if let bias {
            let pb = bias.storage.pointer
            Compute.parallelFor(plan.batch * plan.outChannels, costPerItem: area) { range in
                for item in range {
                    let value = pb[item % plan.outChannels]
                    let row = po + item * area
                    for j in 0..<area { row[j] += value }
                }
            }
        }
        return out
    }

    private static func convolutionBackward(_ g: Tensor, _ input: Tensor, _ weight: Tensor,
                                            _ plan: ConvolutionPlan) -> (Tensor?, Tensor?) {
        let gx = input.needsGrad ? Tensor.zeros(input.shape) : nil
        let gw = weight.needsGrad ? Tensor.zeros(weight.shape) : nil
        let px = input.storage.pointer, pw = weight.storage.pointer, pg = g.storage.pointer
        let area = plan.outputArea, k = plan.patchSize, og = plan.outPerGroup
        if plan.isPointwise {
            for s in 0..<plan.batch {
                for group in 0..<plan.groups {
                    let gOut = pg + (s * plan.outChannels + group * og) * area
                    let x = px + (s * plan.channels + group * plan.channelsPerGroup) * area
                    if let gw {
                        MatrixKernels.gemm(transposeA: false, transposeB: true, m: og, n: k, k: area,
                                           a: gOut, lda: area, b: x, ldb: area,
                                           beta: 1, c: gw.storage.pointer + group * og * k, ldc: k)
                    }
                    if let gx {
                        MatrixKernels.gemm(transposeA: true, transposeB: false, m: k, n: area, k: og,
                                           a: pw + group * og * k, lda: k, b: gOut, ldb: area,
                                           c: gx.storage.pointer + (s * plan.channels + group * plan.channelsPerGroup) * area, ldc: area)
                    }
                }
            }
            return (gx, gw)
        }
        let chunk = plan.samplesPerChunk
        let columns = TensorStorage(uninitializedCount: k * chunk * area)
        let gradOut = TensorStorage(uninitializedCount: og * chunk * area)
        defer { withExtendedLifetime((columns, gradOut)) {} }  // kernels only see their pointers
        for first in stride(from: 0, to: plan.batch, by: chunk) {
            let count = Swift.min(chunk, plan.batch - first)
            for group in 0..<plan.groups {
                plan.shuffle(UnsafeMutablePointer(mutating: pg), gradOut.pointer, first: first, count: count, group: group, toMatrix: true)
                if let gw {
                    // dW = G · colsᵀ, summed over the chunk's samples.
                    plan.unfold(px, first: first, count: count, group: group, into: columns.pointer)
                    MatrixKernels.gemm(transposeA: false, transposeB: true, m: og, n: k, k: count * area,
                                       a: gradOut.pointer, lda: count * area, b: columns.pointer, ldb: count * area,
                                       beta: 1, c: gw.storage.pointer + group * og * k, ldc: k)
                }
                if let gx {
                    // dcols = Wᵀ · G, folded back into the image.
                    MatrixKernels.gemm(transposeA: true, transposeB: false, m: k, n: count * area, k: og,
                                       a: pw + group * og * k, lda: k, b: gradOut.pointer, ldb: count * area,
                                       c: columns.pointer, ldc: count * area)
                    plan.fold(columns.pointer, first: first, count: count, group: group, into: gx.storage.pointer)
                }
            }
        }
        return (gx, gw)
    }
}
