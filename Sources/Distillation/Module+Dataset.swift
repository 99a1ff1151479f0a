import Datasets
import NeuralNet
import Tensors

extension Module {
    /// The model's outputs [N, ...] for every example of `data` — its logits, or with `output`
    /// those of that submodule (one head of a multi-head model) — in evaluation mode, recording
    /// nothing. A streamed set is decoded in batches of `data.readingBatch`, never held
    /// whole; throws a `DatasetError` naming a file that does not decode, or when there is no
    /// module `output` or a streamed set is empty.
    /// Texts run in batches of similar lengths, each padded to its own longest (`embeddings(ofTexts:)`).
    public func predictions(on data: Dataset, output: String? = nil) throws -> Tensor {
        if data.isText { return try embeddings(ofTexts: data, output: output) }
        guard data.isStreamed else {
            let size = Evaluation.inferenceBatch(exampleCount: data.exampleShape.count)
            return try output.map { try predictions(data.inputs, output: $0, batchSize: size) } ?? predictions(data.inputs, batchSize: size)
        }
        guard data.count > 0 else { throw DistillationError("there are no examples to predict") }
        var parts: [Tensor] = []
        for first in stride(from: 0, to: data.count, by: data.readingBatch) {
            let inputs = try data.batch(Array(first..<min(first + data.readingBatch, data.count)))
            parts.append(try output.map { try predictions(inputs, output: $0) } ?? predictions(inputs))
        }
        return withoutGradients { Tensor.concatenating(parts, alongAxis: 0) }
    }
}
