import Foundation
import NeuralNet
import Tensors

/// An imported ONNX text graph (token inputs `input_ids`, `attention_mask`, `token_type_ids`)
/// as a sentence embedder: one vector per text from the graph's first output. When that
/// output is already one vector per text ([batch, dimension], a `sentence_embedding`) it is
/// taken as it is; when it is one vector per token ([batch, length, hidden]: the
/// `last_hidden_state` that Hugging Face optimum's feature-extraction exports give) it is
/// pooled over the attention mask and optionally L2-normalised, as sentence-transformers does.
/// A graph that fixes its sequence length gets every batch padded to that length (padding
/// the mask hides).
public final class ONNXSentenceEncoder: SentenceEmbedder {
    public let network: ONNXNetwork
    /// How per-token outputs become one vector per text; nil when the graph gives one already.
    public let pooling: TextPooling?
    /// Whether pooled vectors are L2-normalised (only with `pooling`).
    public let normalizes: Bool
    public let state = ModuleState()

    public init(_ network: ONNXNetwork, pooling: TextPooling?, normalizes: Bool) {
        self.network = network
        self.pooling = pooling
        self.normalizes = normalizes && pooling != nil
    }

    /// The text model in the ONNX file `path`. Its first output decides: [batch, dimension] is
    /// the embedding; [batch, length, hidden] is pooled by `pipeline` (sentence-transformers'
    /// modules.json and Pooling config in that folder, as `HuggingFaceBERT.sentenceEncoder`
    /// reads them: without them, mean pooling and L2 normalisation). Any other output, or a
    /// graph without token inputs, is a one-line error naming the file.
    public convenience init(contentsOf path: String, pipeline folder: String) throws {
        let network = try ONNXNetwork(contentsOf: path)
        guard let tokens = network.tokenInputs else {
            throw ModelFormatError(file: path, "reads one float input '\(network.inputName)' (an image or feature batch), not token inputs "
                + "\(ONNXTokenInputs.names.joined(separator: ", ")): it is not a text model")
        }
        let length = tokens.length ?? 2
        let trial = TokenBatch(ids: [Int](repeating: 0, count: 2 * length), batchSize: 2, length: length)
        let output = try withoutGradients { try network.run(trial.packed()) }
        switch output.rank {
        case 2: self.init(network, pooling: nil, normalizes: false)
        case 3 where output.shape[1] == length:
            let (pooling, normalizes) = try HuggingFaceBERT.sentencePipeline(folder: URL(fileURLWithPath: folder))
            self.init(network, pooling: pooling, normalizes: normalizes)
        default:
            throw ModelFormatError(file: path, "its first output '\(network.outputName)' is \(output.shape.dimensions) for 2 texts of \(length) tokens; "
                + "a text model gives one embedding per text [batch, dimension], or one vector per token [batch, length, hidden] to pool")
        }
    }

    /// One embedding per sequence; throws what the graph throws (ids outside its vocabulary,
    /// sequences longer than its positions or than the length it fixes).
    public func embed(_ batch: TokenBatch) throws -> Tensor {
        let fed = try padded(batch)
        var output = try network.run(fed.packed())
        if let pooling {
            guard output.rank == 3, output.shape[0] == fed.batchSize, output.shape[1] == fed.length else {
                throw ModelFormatError(file: network.file, "output '\(network.outputName)' is \(output.shape.dimensions) for \(fed.batchSize) texts of \(fed.length) tokens, not one vector per token")
            }
            output = pooling.pool(output, mask: fed.maskTensor)
            if normalizes { output = output.l2Normalized(alongAxis: 1) }
        }
        return output
    }

    /// `batch` padded to the sequence length the graph fixes (ids 0, mask 0), or as it is.
    func padded(_ batch: TokenBatch) throws -> TokenBatch {
        guard let length = network.tokenInputs?.length, batch.length != length else { return batch }
        guard batch.length < length else {
            throw ModelFormatError(file: network.file, "takes sequences of at most \(length) tokens (its inputs fix the length), got \(batch.length)")
        }
        var ids: [Int] = [], mask: [Int] = [], types: [Int] = []
        let padding = [Int](repeating: 0, count: length - batch.length)
        for row in 0..<batch.batchSize {
            let range = row * batch.length..<(row + 1) * batch.length
            ids += batch.ids[range] + padding
            mask += batch.attentionMask[range] + padding
            types += batch.tokenTypes[range] + padding
        }
        return TokenBatch(ids: ids, attentionMask: mask, tokenTypes: types, batchSize: batch.batchSize, length: length)
    }

    public func forward(_ input: Tensor) -> Tensor {
        do { return try embed(TokenBatch(packed: input)) } catch { requirementFailed("\(error)") }
    }

    /// The graph's parameters keep their ONNX names (no prefix).
    public var children: [(name: String, module: any Module)] { network.children }
    public var localParameters: [(name: String, tensor: Tensor)] { network.localParameters }
    public var localBuffers: [(name: String, tensor: Tensor)] { network.localBuffers }

    /// The size of the table a graph input reads rows of by id, when the graph names it as
    /// BERT's exports do (an initializer ending in `suffix`, such as
    /// `embeddings.word_embeddings.weight` or `embeddings.position_embeddings.weight`), else nil.
    public func tableRows(endingIn suffix: String) -> Int? {
        let tables = network.stateDict().filter { $0.name.hasSuffix(suffix) && $0.tensor.rank == 2 }
        return tables.count == 1 ? tables[0].tensor.shape[0] : nil
    }
}
