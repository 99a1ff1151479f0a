import NeuralNet
import Tensors

/// The token inputs of an exported text graph, as values of the graph being built.
struct ONNXTextInputs {
    let ids: String
    /// The attention mask as floats [batch, length] (1 a token, 0 padding).
    let mask: String
    let types: String
}

extension ONNXExport {
    /// A Distill text model (`text-bag`, `text-transformer`) as Hugging Face's exports have
    /// it: int64 inputs `input_ids` and `attention_mask` (and `token_type_ids` for a
    /// transformer), [batch, sequence] with both axes open, and one output,
    /// `sentence_embedding` [batch, dimension], the model's embedding (`logits` [batch,
    /// classes] for a text classifier). Initializers keep the
    /// model's state-dict names. The bag needs opset 13 or later, the transformer 17
    /// (LayerNormalization); from 20 GELU is one node.
    public static func textModel(_ model: any Module, options requested: ONNXExportOptions = ONNXExportOptions(),
                                 metadata: [String: String] = [:]) throws -> ONNXModel {
        var options = requested
        // A classifier (no L2 normalisation, or a head on the embedding) ends in its class logits.
        let classifies = (model as? BagOfEmbeddings).map { !$0.normalizes || $0.head != nil }
            ?? (model as? TextTransformer).map { !$0.normalizes || $0.head != nil } ?? false
        options.outputName = classifies ? "logits" : "sentence_embedding"
        guard (13...20).contains(options.opset) else { throw ModelFormatError(file: "ONNX export", "opset \(options.opset) is not supported (13 to 20)") }
        guard !options.appendSoftmax, !options.foldBatchNorm, options.inputScale == nil, options.inputShift == nil else {
            throw ModelFormatError(file: "ONNX export", "a text model's graph ends in its embedding and reads token ids: no softmax, batch-norm folding or built-in preprocessing")
        }
        // Shapes for the exporters that need them (Linear: rank 2 or 3 inputs), from a batch of one text of 2 tokens.
        let shapes = model.traceShapes(inputShape: [3, 2])
        let b = ONNXGraphBuilder(options: options, shapes: shapes)
        let mask = b.node("Cast", ["attention_mask"], [ONNXAttribute("to", .int(ONNXTensor.float))], path: "attention_mask_float")
        let tokens = ONNXTextInputs(ids: "input_ids", mask: mask, types: "token_type_ids")
        let result: String, names: [String]
        switch model {
        case let bag as BagOfEmbeddings:
            result = try bag.exportText(tokens, into: b)
            names = ["input_ids", "attention_mask"]
        case let transformer as TextTransformer:
            result = try transformer.exportText(tokens, into: b)
            names = ONNXTokenInputs.names
        default:
            throw ModelFormatError(file: "ONNX export", "\(type(of: model)) is not a text model the exporter knows (text-bag, text-transformer)")
        }
        guard let output = shapes[ObjectIdentifier(model)]?.output, output.rank == 2 else {
            throw ModelFormatError(file: "ONNX export", "the text model did not give one embedding per text")
        }
        let inputs = names.map { ONNXValueInfo(name: $0, elementType: ONNXTensor.int64, dims: [nil, nil]) }
        return assemble(b, result: result, inputShape: [], outputShape: [output[1]], irVersion: 8, metadata: metadata, inputs: inputs)
    }

    /// The mean over the tokens the mask keeps: `x` [batch, length, features], `mask` float
    /// [batch, length] → [batch, features], as `Tensor.maskedMean` (the count at least 1e-9).
    static func maskedMean(_ x: String, mask: String, into b: ONNXGraphBuilder, path: String) -> String {
        let weights = b.node("Unsqueeze", [mask, b.integers(b.child(path, "token_axis"), [2])], path: path)
        let axis = b.integers(b.child(path, "sequence_axis"), [1])
        let sum = b.node("ReduceSum", [b.node("Mul", [x, weights], path: path), axis], [ONNXAttribute("keepdims", .int(0))], path: path)
        let count = b.node("ReduceSum", [weights, axis], [ONNXAttribute("keepdims", .int(0))], path: path)
        return b.node("Div", [sum, b.node("Max", [count, b.scalar(b.child(path, "min_count"), 1e-9)], path: path)], path: path)
    }

    /// Each row divided by its L2 norm (at least 1e-12), as `Tensor.l2Normalized(alongAxis: 1)`.
    static func l2Normalized(_ x: String, into b: ONNXGraphBuilder, path: String) -> String {
        let squares = b.node("ReduceSum", [b.node("Mul", [x, x], path: path), b.integers(b.child(path, "axis"), [1])],
                             [ONNXAttribute("keepdims", .int(1))], path: path)
        let norm = b.node("Max", [b.node("Sqrt", [squares], path: path), b.scalar(b.child(path, "min_norm"), 1e-12)], path: path)
        return b.node("Div", [x, norm], path: path)
    }

    /// A text model's end: L2 normalisation when it `normalizes` (an embedding), then its
    /// classification head when it has one, as the models' `embed` computes.
    static func textOutput(_ x: String, normalizes: Bool, head: Linear?, into b: ONNXGraphBuilder) throws -> String {
        let embedding = normalizes ? l2Normalized(x, into: b, path: "normalize") : x
        return try head.map { try b.emit($0, embedding, path: "head") } ?? embedding
    }

    /// Rows of `table` picked by the integer ids `indices`: [batch, length, width].
    static func lookup(_ table: Embedding, _ indices: String, into b: ONNXGraphBuilder, path: String) -> String {
        b.node("Gather", [b.initializer(b.child(path, "weight"), table.weight), indices], [ONNXAttribute("axis", .int(0))], path: path)
    }
}

extension BagOfEmbeddings {
    /// Token vectors, their mean over the mask, the projection, L2 normalisation (an
    /// embedding) and the head, as the model has them.
    func exportText(_ tokens: ONNXTextInputs, into b: ONNXGraphBuilder) throws -> String {
        let vectors = ONNXExport.lookup(embeddings, tokens.ids, into: b, path: "embeddings")
        let pooled = ONNXExport.maskedMean(vectors, mask: tokens.mask, into: b, path: "pooling")
        return try ONNXExport.textOutput(try b.emit(projection, pooled, path: "projection"), normalizes: normalizes, head: head, into: b)
    }
}

extension TextTransformer {
    /// BERT's embeddings and encoder layers, mean pooling, the projection when there is one,
    /// L2 normalisation (an embedding) and the head, as the model has them.
    func exportText(_ tokens: ONNXTextInputs, into b: ONNXGraphBuilder) throws -> String {
        let c = bert.configuration
        guard b.options.opset >= 17 else {
            throw ModelFormatError(file: "ONNX export", "text-transformer needs opset 17 or later (LayerNormalization); export with a later opset")
        }
        // Embeddings: words + token types + the first `length` positions, layer-normalised.
        let e = bert.embeddings
        let words = ONNXExport.lookup(e.wordEmbeddings, tokens.ids, into: b, path: "embeddings.word_embeddings")
        let types = ONNXExport.lookup(e.tokenTypeEmbeddings, tokens.types, into: b, path: "embeddings.token_type_embeddings")
        let length = b.node("Slice", [b.node("Shape", [tokens.ids], path: "sequence_length"), b.integers("sequence_length.start", [1]),
                                      b.integers("sequence_length.end", [2])], path: "sequence_length")
        let positions = b.node("Slice", [b.initializer("embeddings.position_embeddings.weight", e.positionEmbeddings.weight),
                                         b.integers("embeddings.position_embeddings.start", [0]), length,
                                         b.integers("embeddings.position_embeddings.axis", [0])], path: "embeddings.position_embeddings")
        let summed = b.node("Add", [b.node("Add", [words, types], path: "embeddings"), positions], path: "embeddings")
        var x = try b.emit(e.layerNorm, summed, path: "embeddings.LayerNorm")

        // Padded keys: a [batch, 1, 1, length] boolean mask; their scores become the lowest float, so their weights are exactly 0.
        let keys = b.node("Unsqueeze", [b.node("Cast", [tokens.mask], [ONNXAttribute("to", .int(ONNXTensor.bool))], path: "key_mask"),
                                        b.integers("key_mask.axes", [1, 2])], path: "key_mask")
        let lowest = b.scalar("key_mask.lowest", -Float.greatestFiniteMagnitude)
        for (index, layer) in bert.encoder.layers.enumerated() {
            x = try layer.exportText(x, keys: keys, lowest: lowest, heads: c.heads, into: b, path: "encoder.layer.\(index)")
        }
        var pooled = ONNXExport.maskedMean(x, mask: tokens.mask, into: b, path: "pooling")
        if let projection { pooled = try b.emit(projection, pooled, path: "projection") }
        return try ONNXExport.textOutput(pooled, normalizes: normalizes, head: head, into: b)
    }
}

extension TransformerEncoderLayer {
    /// Post-LN self-attention, then the GELU feed-forward block, as `encode(_:keyMask:)`.
    func exportText(_ x: String, keys: String, lowest: String, heads: Int, into b: ONNXGraphBuilder, path: String) throws -> String {
        let selfAttention = attention.attention
        let hidden = selfAttention.query.inFeatures, width = hidden / heads
        let split = b.integers(b.child(path, "attention.heads_shape"), [0, 0, heads, width])
        func project(_ linear: Linear, _ name: String, _ permutation: [Int]) throws -> String {
            let projected = try b.emit(linear, x, path: b.child(path, "attention.self.\(name)"))
            let reshaped = b.node("Reshape", [projected, split], path: b.child(path, "attention.self.\(name)_heads"))
            return b.node("Transpose", [reshaped], [ONNXAttribute("perm", .ints(permutation))], path: b.child(path, "attention.self.\(name)_heads"))
        }
        // [batch, heads, length, width], and K as [batch, heads, width, length].
        let q = try project(selfAttention.query, "query", [0, 2, 1, 3]), k = try project(selfAttention.key, "key", [0, 2, 3, 1])
        let v = try project(selfAttention.value, "value", [0, 2, 1, 3])
        let scorePath = b.child(path, "attention.self.scores")
        let scores = b.node("Mul", [b.node("MatMul", [q, k], path: scorePath), b.scalar(b.child(scorePath, "scale"), 1 / Float(width).squareRoot())], path: scorePath)
        let masked = b.node("Where", [keys, scores, lowest], path: scorePath)
        let probabilities = b.node("Softmax", [masked], [ONNXAttribute("axis", .int(-1))], path: b.child(path, "attention.self.probabilities"))
        let context = b.node("Transpose", [b.node("MatMul", [probabilities, v], path: b.child(path, "attention.self"))],
                             [ONNXAttribute("perm", .ints([0, 2, 1, 3]))], path: b.child(path, "attention.self"))
        let merged = b.node("Reshape", [context, b.integers(b.child(path, "attention.merged_shape"), [0, 0, hidden])], path: b.child(path, "attention.self"))
        let attended = try residual(attention.output, merged, x, into: b, path: b.child(path, "attention.output"))
        let inner = try b.emit(intermediate, attended, path: b.child(path, "intermediate"))
        return try residual(output, inner, attended, into: b, path: b.child(path, "output"))
    }

    /// LayerNorm(dense(x) + residual), as `ResidualLayerNorm` (dropout is not in inference graphs).
    func residual(_ block: ResidualLayerNorm, _ x: String, _ residual: String, into b: ONNXGraphBuilder, path: String) throws -> String {
        let dense = try b.emit(block.dense, x, path: b.child(path, "dense"))
        return try b.emit(block.layerNorm, b.node("Add", [dense, residual], path: path), path: b.child(path, "LayerNorm"))
    }
}
