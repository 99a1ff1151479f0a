import Tensors

/// 2-D convolution over NCHW input [N, in, H, W] → [N, out, H', W']; weight
/// [out, in/groups, kh, kw], bias [out]. `groups` = in = out is depthwise.
public final class Conv2d: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: (Int, Int)
    public let padding: (Int, Int)
    public let dilation: (Int, Int)
    public let groups: Int
    public let state = ModuleState()

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                dilation: Int = 1, groups: Int = 1, bias: Bool = true, using generator: inout RandomGenerator) {
        require(inChannels > 0 && outChannels > 0 && groups > 0 && inChannels % groups == 0 && outChannels % groups == 0,
                     "Conv2d: channels \(inChannels) → \(outChannels) do not fit groups = \(groups)")
        let fanIn = inChannels / groups * kernelSize * kernelSize
        weight = defaultUniform([outChannels, inChannels / groups, kernelSize, kernelSize], fanIn: fanIn, using: &generator)
        self.bias = bias ? defaultUniform([outChannels], fanIn: fanIn, using: &generator) : nil
        self.stride = (stride, stride)
        self.padding = (padding, padding)
        self.dilation = (dilation, dilation)
        self.groups = groups
    }

    public var outChannels: Int { weight.shape[0] }

    public func forward(_ input: Tensor) -> Tensor {
        Tensor.conv2d(input, weight: state.weightTransform?(weight) ?? weight, bias: bias, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }

    public var localParameters: [(name: String, tensor: Tensor)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }
}
