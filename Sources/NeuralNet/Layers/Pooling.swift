import Tensors

/// Max over kernel windows of NCHW input (stride defaults to the kernel size).
public final class MaxPool2d: Module {
    public let kernelSize: Int, stride: Int, padding: Int
    public let state = ModuleState()
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
    }
    public func forward(_ input: Tensor) -> Tensor {
        Tensor.maxPool2d(input, kernel: (kernelSize, kernelSize), stride: (stride, stride), padding: (padding, padding))
    }
}

/// Mean over kernel windows of NCHW input (padded zeros count, as PyTorch's default).
public final class AvgPool2d: Module {
    public let kernelSize: Int, stride: Int, padding: Int
    public let state = ModuleState()
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
    }
    public func forward(_ input: Tensor) -> Tensor {
        Tensor.avgPool2d(input, kernel: (kernelSize, kernelSize), stride: (stride, stride), padding: (padding, padding))
    }
}

/// Averages NCHW input to a fixed spatial size (1 × 1: global average pooling).
public final class AdaptiveAvgPool2d: Module {
    public let outputSize: (Int, Int)
    public let state = ModuleState()
    public init(outputSize: Int) { self.outputSize = (outputSize, outputSize) }
    public func forward(_ input: Tensor) -> Tensor { Tensor.adaptiveAvgPool2d(input, outputSize: outputSize) }
}
