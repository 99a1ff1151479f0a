import Tensors

/// ResNet basic block (He et al. 2016): relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)),
/// where the shortcut is a 1×1 conv + BN (`downsample`) when the shape changes.
public final class BasicBlock: Module {
    public let conv1: Conv2d, bn1: BatchNorm, conv2: Conv2d, bn2: BatchNorm
    public let downsample: Sequential?
    public let state = ModuleState()

    public init(_ inChannels: Int, _ outChannels: Int, stride: Int, using generator: inout RandomGenerator) {
        conv1 = Conv2d(inChannels, outChannels, kernelSize: 3, stride: stride, padding: 1, bias: false, using: &generator)
        bn1 = BatchNorm(outChannels)
        conv2 = Conv2d(outChannels, outChannels, kernelSize: 3, padding: 1, bias: false, using: &generator)
        bn2 = BatchNorm(outChannels)
        downsample = stride != 1 || inChannels != outChannels
            ? Sequential([Conv2d(inChannels, outChannels, kernelSize: 1, stride: stride, bias: false, using: &generator),
                          BatchNorm(outChannels)])
            : nil
    }

    public func forward(_ input: Tensor) -> Tensor {
        let main = bn2(conv2(bn1(conv1(input), then: .relu)))
        return Tensor.add(main, downsample.map { $0(input) } ?? input, then: .relu)
    }

    public var children: [(name: String, module: any Module)] {
        [("conv1", conv1), ("bn1", bn1), ("conv2", conv2), ("bn2", bn2)] + (downsample.map { [("downsample", $0)] } ?? [])
    }
}

/// Wide-ResNet block (Zagoruyko & Komodakis 2016), pre-activation:
/// conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut, the shortcut a 1×1 conv when the shape changes.
public final class WideBasicBlock: Module {
    public let bn1: BatchNorm, conv1: Conv2d, bn2: BatchNorm, conv2: Conv2d
    public let convShortcut: Conv2d?
    public let state = ModuleState()

    public init(_ inChannels: Int, _ outChannels: Int, stride: Int, using generator: inout RandomGenerator) {
        bn1 = BatchNorm(inChannels)
        conv1 = Conv2d(inChannels, outChannels, kernelSize: 3, stride: stride, padding: 1, bias: false, using: &generator)
        bn2 = BatchNorm(outChannels)
        conv2 = Conv2d(outChannels, outChannels, kernelSize: 3, padding: 1, bias: false, using: &generator)
        convShortcut = stride != 1 || inChannels != outChannels
            ? Conv2d(inChannels, outChannels, kernelSize: 1, stride: stride, bias: false, using: &generator)
            : nil
    }

    public func forward(_ input: Tensor) -> Tensor {
        let activated = bn1(input, then: .relu)
        let main = conv2(bn2(conv1(activated), then: .relu))
        // As in the reference implementation, a projecting shortcut sees the activated input.
        return main + (convShortcut.map { $0(activated) } ?? input)
    }

    public var children: [(name: String, module: any Module)] {
        [("bn1", bn1), ("conv1", conv1), ("bn2", bn2), ("conv2", conv2)] + (convShortcut.map { [("convShortcut", $0)] } ?? [])
    }
}

/// MobileNetV2 inverted residual (Sandler et al. 2018): 1×1 expand, 3×3 depthwise, 1×1
/// linear projection, with the input added when stride is 1 and channels agree.
public final class InvertedResidual: Module {
    public let conv: Sequential
    public let usesResidual: Bool
    public let state = ModuleState()

    public init(_ inChannels: Int, _ outChannels: Int, stride: Int, expansion: Int, using generator: inout RandomGenerator) {
        let hidden = inChannels * expansion
        var layers: [any Module] = []
        if expansion != 1 {
            layers += [Conv2d(inChannels, hidden, kernelSize: 1, bias: false, using: &generator), BatchNorm(hidden), Activation(.relu6)]
        }
        layers += [Conv2d(hidden, hidden, kernelSize: 3, stride: stride, padding: 1, groups: hidden, bias: false, using: &generator),
                   BatchNorm(hidden), Activation(.relu6),
                   Conv2d(hidden, outChannels, kernelSize: 1, bias: false, using: &generator), BatchNorm(outChannels)]
        conv = Sequential(layers)
        usesResidual = stride == 1 && inChannels == outChannels
    }

    public func forward(_ input: Tensor) -> Tensor {
        usesResidual ? input + conv(input) : conv(input)
    }

    public var children: [(name: String, module: any Module)] { [("conv", conv)] }
}
