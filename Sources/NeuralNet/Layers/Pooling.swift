import Tensors

/// A square pooling window: kernel size, stride (defaults to the kernel size) and padding.
public struct PoolingWindow: Equatable, Sendable {
    public let kernelSize: Int, stride: Int, padding: Int

    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
    }

    var kernel: (Int, Int) { (kernelSize, kernelSize) }
    var strides: (Int, Int) { (stride, stride) }
    var paddings: (Int, Int) { (padding, padding) }
}

/// Max over kernel windows of NCHW input (stride defaults to the kernel size).
public final class MaxPool2d: Module {
    public let window: PoolingWindow
    public let state = ModuleState()
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
        window = PoolingWindow(kernelSize: kernelSize, stride: stride, padding: padding)
    }
    public func forward(_ input: Tensor) -> Tensor {
        Tensor.maxPool2d(input, kernel: window.kernel, stride: window.strides, padding: window.paddings)
    }
}

/// Mean over kernel windows of NCHW input (padded zeros count, as PyTorch's default).
public final class AvgPool2d: Module {
    public let window: PoolingWindow
    public let state = ModuleState()
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
        window = PoolingWindow(kernelSize: kernelSize, stride: stride, padding: padding)
    }
    public func forward(_ input: Tensor) -> Tensor {
        Tensor.avgPool2d(input, kernel: window.kernel, stride: window.strides, padding: window.paddings)
    }
}

/// Averages NCHW input to a fixed spatial size (1 × 1: global average pooling).
public final class AdaptiveAvgPool2d: Module {
    public let outputSize: (Int, Int)
    public let state = ModuleState()
    public init(outputSize: Int) { self.outputSize = (outputSize, outputSize) }
    public func forward(_ input: Tensor) -> Tensor { Tensor.adaptiveAvgPool2d(input, outputSize: outputSize) }
}
