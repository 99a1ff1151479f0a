/// Geometry of a 2-D convolution or pooling window over NCHW data.
public struct Convolution2DGeometry: Equatable, Sendable {
    public var kernelHeight: Int, kernelWidth: Int
    public var strideHeight: Int, strideWidth: Int
    public var paddingHeight: Int, paddingWidth: Int
    public var dilationHeight: Int, dilationWidth: Int

    public init(kernel: (Int, Int), stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1)) {
        (kernelHeight, kernelWidth) = kernel
        (strideHeight, strideWidth) = stride
        (paddingHeight, paddingWidth) = padding
        (dilationHeight, dilationWidth) = dilation
        require(kernelHeight > 0 && kernelWidth > 0 && strideHeight > 0 && strideWidth > 0
                     && paddingHeight >= 0 && paddingWidth >= 0 && dilationHeight > 0 && dilationWidth > 0,
                     "Convolution2DGeometry: kernel \(kernel), stride \(stride), padding \(padding), dilation \(dilation) must be positive (padding ≥ 0)")
    }

    /// Output height and width for an input of `height` × `width`.
    public func outputSize(height: Int, width: Int) -> (Int, Int) {
        let h = (height + 2 * paddingHeight - dilationHeight * (kernelHeight - 1) - 1) / strideHeight + 1
        let w = (width + 2 * paddingWidth - dilationWidth * (kernelWidth - 1) - 1) / strideWidth + 1
        return (h, w)
    }
}

/// im2col / col2im: unfold image patches into matrix columns so that a convolution is one sgemm.
enum ConvolutionKernels {
    /// Writes the patch matrix of one image [channels, height, width] into `columns`, a
    /// [channels·kh·kw, outH·outW] block whose rows are `rowStride` apart.
    static func im2col(_ image: UnsafePointer<Float>, channels: Int, height: Int, width: Int,
                       geometry g: Convolution2DGeometry, outputHeight: Int, outputWidth: Int,
                       columns: UnsafeMutablePointer<Float>, rowStride: Int) {
        let kernelArea = g.kernelHeight * g.kernelWidth
        // "Same" convolutions (stride 1, no dilation, output as large as the input: 3×3 with
        // padding 1) copy each kernel tap's row as one shifted plane, then clear the
        // columns that wrapped around from the neighbouring image row. Row by row, the
        // loop overhead of 28- and 14-float rows was 22% of a cnn-student training step.
        if g.strideHeight == 1 && g.strideWidth == 1 && g.dilationHeight == 1 && g.dilationWidth == 1
            && outputHeight == height && outputWidth == width {
            let area = height * width
            for row in 0..<(channels * kernelArea) {
                let c = row / kernelArea, dy = (row % kernelArea) / g.kernelWidth - g.paddingHeight, dx = row % g.kernelWidth - g.paddingWidth
                let src = image + c * area, dst = columns + row * rowStride
                let shift = dy * width + dx
                let start = Swift.min(area, Swift.max(0, -shift)), end = Swift.max(start, Swift.min(area, area - shift))
                for i in 0..<start { dst[i] = 0 }
                (dst + start).update(from: src + start + shift, count: end - start)
                for i in end..<area { dst[i] = 0 }
                if dx > 0 {
                    for y in 0..<height { for x in (width - dx)..<width { dst[y * width + x] = 0 } }
                } else if dx < 0 {
                    for y in 0..<height { for x in 0..<(-dx) { dst[y * width + x] = 0 } }
                }
            }
            return
        }
        for row in 0..<(channels * kernelArea) {
            let c = row / kernelArea, ki = (row % kernelArea) / g.kernelWidth, kj = row % g.kernelWidth
            let plane = image + c * height * width
            var dst = columns + row * rowStride
            let offsetW = kj * g.dilationWidth - g.paddingWidth
            // Output columns whose input column lies inside the image: [low, high).
            let low = Swift.min(outputWidth, Swift.max(0, (-offsetW + g.strideWidth - 1) / g.strideWidth))
            let high = Swift.max(low, Swift.min(outputWidth, (width - offsetW + g.strideWidth - 1) / g.strideWidth))
            for oh in 0..<outputHeight {
                let ih = oh * g.strideHeight - g.paddingHeight + ki * g.dilationHeight
                if ih < 0 || ih >= height {
                    for ow in 0..<outputWidth { dst[ow] = 0 }
                } else {
                    let src = plane + ih * width + offsetW
                    for ow in 0..<low { dst[ow] = 0 }
                    if g.strideWidth == 1 {
                        // Rows are short (tens of floats): an inline loop beats a memmove call.
                        for ow in low..<high { dst[ow] = src[ow] }
                    } else {
                        for ow in low..<high { dst[ow] = src[ow * g.strideWidth] }
                    }
                    for ow in high..<outputWidth { dst[ow] = 0 }
                }
                dst += outputWidth
            }
        }
    }

    /// The adjoint of im2col: adds every column entry back into the image position it came from.
    /// `image` must be zeroed (or hold values to add to) beforehand.
    static func col2im(_ columns: UnsafeMutablePointer<Float>, rowStride: Int, channels: Int, height: Int, width: Int,
                       geometry g: Convolution2DGeometry, outputHeight: Int, outputWidth: Int,
                       image: UnsafeMutablePointer<Float>) {
        let kernelArea = g.kernelHeight * g.kernelWidth
        // "Same" convolutions, as in im2col: each kernel tap's row adds back as one shifted
        // plane, after the entries that wrapped around a row edge (they belong to the
        // padding, so their gradient is dropped) are zeroed in the scratch columns.
        if g.strideHeight == 1 && g.strideWidth == 1 && g.dilationHeight == 1 && g.dilationWidth == 1
            && outputHeight == height && outputWidth == width {
            let area = height * width
            for row in 0..<(channels * kernelArea) {
                let c = row / kernelArea, dy = (row % kernelArea) / g.kernelWidth - g.paddingHeight, dx = row % g.kernelWidth - g.paddingWidth
                let src = columns + row * rowStride, dst = image + c * area
                if dx > 0 {
                    for y in 0..<height { for x in (width - dx)..<width { src[y * width + x] = 0 } }
                } else if dx < 0 {
                    for y in 0..<height { for x in 0..<(-dx) { src[y * width + x] = 0 } }
                }
                let shift = dy * width + dx
                let start = Swift.min(area, Swift.max(0, -shift)), end = Swift.max(start, Swift.min(area, area - shift))
                let target = dst + shift
                for i in start..<end { target[i] += src[i] }
            }
            return
        }
        for row in 0..<(channels * kernelArea) {
            let c = row / kernelArea, ki = (row % kernelArea) / g.kernelWidth, kj = row % g.kernelWidth
            let plane = image + c * height * width
            var src = columns + row * rowStride
            let offsetW = kj * g.dilationWidth - g.paddingWidth
            let low = Swift.min(outputWidth, Swift.max(0, (-offsetW + g.strideWidth - 1) / g.strideWidth))
            let high = Swift.max(low, Swift.min(outputWidth, (width - offsetW + g.strideWidth - 1) / g.strideWidth))
            for oh in 0..<outputHeight {
                let ih = oh * g.strideHeight - g.paddingHeight + ki * g.dilationHeight
                if ih >= 0 && ih < height {
                    let dst = plane + ih * width + offsetW
                    if g.strideWidth == 1 {
                        for ow in low..<high { dst[ow] += src[ow] }
                    } else {
                        for ow in low..<high { dst[ow * g.strideWidth] += src[ow] }
                    }
                }
                src += outputWidth
            }
        }
    }
}
