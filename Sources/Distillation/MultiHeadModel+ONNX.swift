import ModelFormats
import NeuralNet
import Tensors

extension MultiHeadModel {
    /// Re-heads an imported ONNX classifier (a model exported from PyTorch, say): the graph up
    /// to the input of its classifier node `head` (a Gemm or MatMul, by node or output name;
    /// nil: the last one) is the backbone, a new `ONNXNetwork` whose parameters all train; the
    /// node's weights become the old head (`ONNXNetwork.classifierHead(named:)`: Gemm's
    /// transposition, alpha and beta applied, a MatMul's Add as the bias). A Softmax after the
    /// head is dropped, so both heads give logits. `network` itself is not changed.
    public convenience init(from network: ONNXNetwork, head: String?, newClasses: Int, using generator: inout RandomGenerator) throws {
        let classifier = try network.classifierHead(named: head)
        let backbone = try network.truncated(at: classifier.features)
        try backbone.unfreeze([""])
        try self.init(backbone: backbone, oldHead: Linear(weight: classifier.weight, bias: classifier.bias), newClasses: newClasses, using: &generator)
    }
}

extension MultiHeadModel: ONNXExportable {
    /// The new task's model: the backbone, then the new head as a Gemm, under the state-dict
    /// names (`backbone.*`, `new_head.weight`); the old head is not written.
    public func exportONNX(_ input: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        func child(_ name: String) -> String { path.isEmpty ? name : path + "." + name }
        let features = try b.emit(backbone, input, path: child("backbone"))
        return try b.emit(head("new"), features, path: child("new_head"))
    }
}
