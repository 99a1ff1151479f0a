import NeuralNet
import Tensors

/// Gives every batch norm of `model` statistics and affine parameters far from the identity
/// (so that folding them into a convolution matters), and puts the model in evaluation mode.
/// Shared by the quantizer's and the fused model's tests.
func perturbNorms(_ model: any Module) {
    for case let norm as BatchNorm in model.namedModules().map(\.module) {
        let c = norm.weight.shape[0]
        norm.runningMean.withUnsafeMutableBufferPointer { for i in 0..<c { $0[i] = Float(i % 5) * 0.05 - 0.1 } }
        norm.runningVariance.withUnsafeMutableBufferPointer { for i in 0..<c { $0[i] = 0.6 + Float(i % 3) * 0.3 } }
        norm.weight.withUnsafeMutableBufferPointer { for i in 0..<c { $0[i] = 0.8 + Float(i % 4) * 0.1 } }
        norm.bias.withUnsafeMutableBufferPointer { for i in 0..<c { $0[i] = Float(i % 3) * 0.05 } }
    }
    model.eval()
}
