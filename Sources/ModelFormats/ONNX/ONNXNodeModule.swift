import NeuralNet
import Tensors

/// A node's place in the module tree: it lets `forward(_:capturing:)` tap the node's output.
final class ONNXNodeModule: Module, CountsMultiplyAdds {
    let node: ONNXNode
    let state = ModuleState()
    private(set) var multiplyAddsPerExample = 0
    init(_ node: ONNXNode) { self.node = node }

    /// Multiply-adds per example of Conv, Gemm and MatMul, from the operands of the last run.
    func count(inputs: [ONNXNetwork.Value?], output: Tensor) {
        guard inputs.count >= 2, case let .tensor(w)? = inputs[1], output.rank >= 1, output.shape[0] > 0 else { return }
        let perExample = output.count / output.shape[0]
        switch node.opType {
        case "Conv" where w.rank == 4: multiplyAddsPerExample = perExample * w.shape[1] * w.shape[2] * w.shape[3]
        case "Gemm" where w.rank == 2, "MatMul" where w.rank == 2:
            let transB: Bool = { if case let .int(v)? = node.attribute("transB") { return v != 0 }; return false }()
            multiplyAddsPerExample = perExample * (transB ? w.shape[1] : w.shape[0])
        default: break
        }
    }
    func forward(_ input: Tensor) -> Tensor {
        requirementFailed("ONNX node '\(node.name)' runs inside its graph, not on its own")
    }
}
