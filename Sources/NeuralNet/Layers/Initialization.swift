import Tensors

/// PyTorch's default initialisation for Linear and Conv2d: weights from
/// kaiming_uniform(a = √5), which is U(−1/√fanIn, 1/√fanIn), and biases from the same range.
func defaultUniform(_ shape: Shape, fanIn: Int, using generator: inout RandomGenerator) -> Tensor {
    let bound = 1 / Float(max(fanIn, 1)).squareRoot()
    let tensor = Tensor.randomUniform(shape, low: -bound, high: bound, using: &generator)
    tensor.requiresGrad = true
    return tensor
}

/// A trainable tensor filled with `value`.
func constantParameter(_ shape: Shape, _ value: Float) -> Tensor {
    let tensor = Tensor.full(shape, value)
    tensor.requiresGrad = true
    return tensor
}
