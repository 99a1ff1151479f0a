import Tensors

// A BERT-style text encoder (Devlin et al. 2019) built from the engine's ops: embeddings
// of tokens, positions and token types; post-LN encoder layers of multi-head self-attention
// and a GELU feed-forward block; mean or CLS pooling. Module and parameter names follow
// Hugging Face's `BertModel` (`embeddings.word_embeddings.weight`,
// `encoder.layer.0.attention.self.query.weight`, ...), so its state dicts load by name.

/// The sizes of a BERT encoder (the fields of a Hugging Face `config.json`).
public struct BertConfiguration: Equatable, Sendable {
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var intermediateSize: Int
    public var maxPositions: Int
    public var tokenTypes: Int
    public var layerNormEpsilon: Float
    /// The padding token, whose embedding gets no gradient (`pad_token_id`), or nil.
    public var paddingTokenId: Int?
    public var hiddenDropout: Float
    public var attentionDropout: Float

    public init(vocabularySize: Int, hiddenSize: Int, layers: Int, heads: Int, intermediateSize: Int,
                maxPositions: Int = 512, tokenTypes: Int = 2, layerNormEpsilon: Float = 1e-12,
                paddingTokenId: Int? = 0, hiddenDropout: Float = 0.1, attentionDropout: Float = 0.1) {
        self.vocabularySize = vocabularySize
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.heads = heads
        self.intermediateSize = intermediateSize
        self.maxPositions = maxPositions
        self.tokenTypes = tokenTypes
        self.layerNormEpsilon = layerNormEpsilon
        self.paddingTokenId = paddingTokenId
        self.hiddenDropout = hiddenDropout
        self.attentionDropout = attentionDropout
    }

    /// Why these sizes cannot make an encoder, or nil.
    public var problem: String? {
        for (name, value) in [("vocab_size", vocabularySize), ("hidden_size", hiddenSize), ("num_hidden_layers", layers),
                              ("num_attention_heads", heads), ("intermediate_size", intermediateSize),
                              ("max_position_embeddings", maxPositions), ("type_vocab_size", tokenTypes)] where value <= 0 {
            return "\(name) must be positive, got \(value)"
        }
        if hiddenSize % heads != 0 { return "hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(heads)" }
        for (name, value) in [("hidden_dropout_prob", hiddenDropout), ("attention_probs_dropout_prob", attentionDropout)]
            where !(value >= 0 && value < 1) {
            return "\(name) must be in [0, 1), got \(value)"
        }
        if !(layerNormEpsilon > 0) { return "layer_norm_eps must be positive, got \(layerNormEpsilon)" }
        if let id = paddingTokenId, id < 0 || id >= vocabularySize { return "pad_token_id \(id) is outside the vocabulary of \(vocabularySize)" }
        return nil
    }
}

/// The sum of token, position and token-type embeddings, layer-normalised (BERT's input).
public final class TextEmbeddings: Module {
    public let wordEmbeddings: Embedding
    public let positionEmbeddings: Embedding
    public let tokenTypeEmbeddings: Embedding
    public let layerNorm: LayerNorm
    public let dropout: Dropout
    public let state = ModuleState()

    public init(_ configuration: BertConfiguration, using generator: inout RandomGenerator) {
        let c = configuration
        wordEmbeddings = Embedding(c.vocabularySize, c.hiddenSize, paddingIndex: c.paddingTokenId, standardDeviation: 0.02, using: &generator)
        positionEmbeddings = Embedding(c.maxPositions, c.hiddenSize, standardDeviation: 0.02, using: &generator)
        tokenTypeEmbeddings = Embedding(c.tokenTypes, c.hiddenSize, standardDeviation: 0.02, using: &generator)
        layerNorm = LayerNorm([c.hiddenSize], epsilon: c.layerNormEpsilon)
        dropout = Dropout(probability: c.hiddenDropout, using: &generator)
    }

    /// [batch, length, hidden]. Throws for an id or token type outside its table, or a batch
    /// longer than the learned positions.
    public func embed(_ batch: TokenBatch) throws -> Tensor {
        guard batch.length <= positionEmbeddings.count else {
            throw TextModelError("a sequence of \(batch.length) tokens is longer than the model's \(positionEmbeddings.count) positions")
        }
        let shape: Shape = [batch.batchSize, batch.length]
        let words: Tensor
        do { words = try wordEmbeddings.lookup(batch.ids, shape: shape) } catch let error as IndexOutOfRangeError {
            throw TextModelError("token id \(error.index) (sequence \(error.position / Swift.max(batch.length, 1)), "
                + "position \(error.position % Swift.max(batch.length, 1))) is outside the vocabulary of \(error.count)")
        }
        let types: Tensor
        do { types = try tokenTypeEmbeddings.lookup(batch.tokenTypes, shape: shape) } catch let error as IndexOutOfRangeError {
            throw TextModelError("token type \(error.index) is outside the model's \(error.count) token types")
        }
        let positions = positionEmbeddings.firstRows(batch.length)
        let output = dropout(layerNorm(words + types + positions))
        if state.tap != nil { state.report(input: batch.packed(), output: output) }
        return output
    }

    /// Embeds a packed batch (see `TokenBatch.packed()`); for batches already checked.
    public func forward(_ input: Tensor) -> Tensor {
        do { return try embed(TokenBatch(packed: input)) } catch { requirementFailed("\(error)") }
    }

    public var children: [(name: String, module: any Module)] {
        [("word_embeddings", wordEmbeddings), ("position_embeddings", positionEmbeddings),
         ("token_type_embeddings", tokenTypeEmbeddings), ("LayerNorm", layerNorm), ("dropout", dropout)]
    }
}

/// Multi-head scaled dot-product self-attention (Vaswani et al. 2017) over [batch, length,
/// hidden]: per head softmax(Q·Kᵀ/√d) · V, with padded keys given exactly zero weight.
/// Returns the heads' outputs concatenated (the output projection is `AttentionBlock`'s).
public final class MultiHeadSelfAttention: Module {
    public let query: Linear
    public let key: Linear
    public let value: Linear
    public let heads: Int
    public let dropout: Dropout
    /// Observes the attention weights [batch, heads, length, length] (attention transfer).
    public let probabilities = Identity()
    public let state = ModuleState()

    public init(hiddenSize: Int, heads: Int, dropout: Float = 0, using generator: inout RandomGenerator) {
        require(heads > 0 && hiddenSize % heads == 0, "MultiHeadSelfAttention: hidden size \(hiddenSize) is not a multiple of \(heads) heads")
        query = Linear(hiddenSize, hiddenSize, using: &generator)
        key = Linear(hiddenSize, hiddenSize, using: &generator)
        value = Linear(hiddenSize, hiddenSize, using: &generator)
        self.heads = heads
        self.dropout = Dropout(probability: dropout, using: &generator)
    }

    /// `x` [batch, length, hidden]; `keyMask` [batch, length] of 1s (tokens) and 0s (padding), or nil.
    public func attend(_ x: Tensor, keyMask: Tensor?) -> Tensor {
        require(x.rank == 3 && x.shape[2] == query.inFeatures, "MultiHeadSelfAttention: input must be [batch, length, \(query.inFeatures)], got \(x.shape)")
        let (batch, length, hidden) = (x.shape[0], x.shape[1], x.shape[2])
        let width = hidden / heads
        let scale = 1 / Float(width).squareRoot()
        // The weights computed head by head, never whole, unless they are watched (attention
        // transfer taps `probabilities`) or dropped out: the same values, without the
        // [batch, heads, length, length] tensor and the heads' copies.
        let weightsDropped = dropout.probability > 0 && dropout.state.isTraining
        let weightsWatched = probabilities.state.tap != nil || probabilities.state.inputTransform != nil
            || probabilities.state.outputTransform != nil
        if !weightsDropped && !weightsWatched {
            return Tensor.multiHeadAttention(query: query(x), key: key(x), value: value(x), heads: heads, keyMask: keyMask, scale: scale)
        }
        // [batch, length, hidden] → [batch, heads, length, width]
        func split(_ y: Tensor) -> Tensor { y.reshaped([batch, length, heads, width]).permuted([0, 2, 1, 3]) }
        let q = split(query(x)), k = split(key(x)), v = split(value(x))
        let weights = probabilities(Tensor.maskedSoftmax(q.matmul(k, transposingOther: true), keyMask: keyMask, scale: scale))
        return dropout(weights).matmul(v).permuted([0, 2, 1, 3]).reshaped([batch, length, hidden])
    }

    public func forward(_ input: Tensor) -> Tensor { attend(input, keyMask: nil) }

    public var children: [(name: String, module: any Module)] {
        [("query", query), ("key", key), ("value", value), ("dropout", dropout), ("probabilities", probabilities)]
    }
}

/// A projection, dropout, residual sum and layer norm: LayerNorm(dropout(dense(x)) + residual),
/// BERT's post-LN sublayer output (Hugging Face's BertSelfOutput and BertOutput).
public final class ResidualLayerNorm: Module {
    public let dense: Linear
    public let layerNorm: LayerNorm
    public let dropout: Dropout
    public let state = ModuleState()

    public init(_ inFeatures: Int, _ outFeatures: Int, epsilon: Float, dropout: Float, using generator: inout RandomGenerator) {
        dense = Linear(inFeatures, outFeatures, using: &generator)
        layerNorm = LayerNorm([outFeatures], epsilon: epsilon)
        self.dropout = Dropout(probability: dropout, using: &generator)
    }

    public func callAsFunction(_ x: Tensor, residual: Tensor) -> Tensor {
        let output = layerNorm(dropout(dense(x)) + residual)
        state.report(input: x, output: output)
        return output
    }

    /// Without a residual: LayerNorm(dropout(dense(x))).
    public func forward(_ input: Tensor) -> Tensor { layerNorm(dropout(dense(input))) }

    public var children: [(name: String, module: any Module)] {
        [("dense", dense), ("LayerNorm", layerNorm), ("dropout", dropout)]
    }
}

/// Self-attention with its output projection and post-LN residual (Hugging Face's BertAttention).
public final class AttentionBlock: Module {
    public let attention: MultiHeadSelfAttention
    public let output: ResidualLayerNorm
    public let state = ModuleState()

    public init(hiddenSize: Int, heads: Int, epsilon: Float, hiddenDropout: Float, attentionDropout: Float,
                using generator: inout RandomGenerator) {
        attention = MultiHeadSelfAttention(hiddenSize: hiddenSize, heads: heads, dropout: attentionDropout, using: &generator)
        output = ResidualLayerNorm(hiddenSize, hiddenSize, epsilon: epsilon, dropout: hiddenDropout, using: &generator)
    }

    public func attend(_ x: Tensor, keyMask: Tensor?) -> Tensor {
        let y = output(attention.attend(x, keyMask: keyMask), residual: x)
        state.report(input: x, output: y)
        return y
    }

    public func forward(_ input: Tensor) -> Tensor { attend(input, keyMask: nil) }

    public var children: [(name: String, module: any Module)] { [("self", attention), ("output", output)] }
}

/// One BERT encoder layer (post-LN): a = LayerNorm(x + Attention(x)), then
/// LayerNorm(a + W₂·GELU(W₁·a)), the feed-forward block.
public final class TransformerEncoderLayer: Module {
    public let attention: AttentionBlock
    /// W₁ and GELU (Hugging Face's `intermediate.dense`).
    public let intermediate: Sequential
    /// W₂, residual and layer norm (Hugging Face's `output`).
    public let output: ResidualLayerNorm
    public let state = ModuleState()

    public init(hiddenSize: Int, heads: Int, intermediateSize: Int, epsilon: Float = 1e-12,
                hiddenDropout: Float = 0, attentionDropout: Float = 0, using generator: inout RandomGenerator) {
        attention = AttentionBlock(hiddenSize: hiddenSize, heads: heads, epsilon: epsilon, hiddenDropout: hiddenDropout,
                                   attentionDropout: attentionDropout, using: &generator)
        intermediate = Sequential(named: [("dense", Linear(hiddenSize, intermediateSize, using: &generator)), ("activation", Activation(.gelu))])
        output = ResidualLayerNorm(intermediateSize, hiddenSize, epsilon: epsilon, dropout: hiddenDropout, using: &generator)
    }

    /// `x` [batch, length, hidden], `keyMask` [batch, length] or nil → [batch, length, hidden].
    public func encode(_ x: Tensor, keyMask: Tensor?) -> Tensor {
        let attended = attention.attend(x, keyMask: keyMask)
        let y = output(intermediate(attended), residual: attended)
        state.report(input: x, output: y)
        return y
    }

    public func forward(_ input: Tensor) -> Tensor { encode(input, keyMask: nil) }

    public var children: [(name: String, module: any Module)] {
        [("attention", attention), ("intermediate", intermediate), ("output", output)]
    }
}

/// A stack of encoder layers, named `layer.0`, `layer.1`, ...
public final class TransformerEncoder: Module {
    public let layer: Sequential
    public let state = ModuleState()

    public init(_ layers: [TransformerEncoderLayer]) { layer = Sequential(layers) }

    public var layers: [TransformerEncoderLayer] { layer.layers.map { $0.module as! TransformerEncoderLayer } }

    public func encode(_ x: Tensor, keyMask: Tensor?) -> Tensor {
        let y = layers.reduce(x) { hidden, layer in layer.encode(hidden, keyMask: keyMask) }
        state.report(input: x, output: y)
        return y
    }

    public func forward(_ input: Tensor) -> Tensor { encode(input, keyMask: nil) }

    public var children: [(name: String, module: any Module)] { [("layer", layer)] }
}

/// A BERT encoder: embeddings, then the encoder layers. `hiddenStates` gives the last
/// layer's output [batch, length, hidden] (Hugging Face's `last_hidden_state`).
public final class BertModel: Module {
    public let configuration: BertConfiguration
    public let embeddings: TextEmbeddings
    public let encoder: TransformerEncoder
    public let state = ModuleState()

    public init(_ configuration: BertConfiguration, using generator: inout RandomGenerator) {
        if let problem = configuration.problem { requirementFailed("BertModel: \(problem)") }
        let c = configuration
        self.configuration = c
        embeddings = TextEmbeddings(c, using: &generator)
        encoder = TransformerEncoder((0..<c.layers).map { _ in
            TransformerEncoderLayer(hiddenSize: c.hiddenSize, heads: c.heads, intermediateSize: c.intermediateSize,
                                    epsilon: c.layerNormEpsilon, hiddenDropout: c.hiddenDropout,
                                    attentionDropout: c.attentionDropout, using: &generator)
        })
    }

    /// The last layer's output [batch, length, hidden]; throws for ids outside the vocabulary
    /// or sequences longer than the learned positions.
    public func hiddenStates(_ batch: TokenBatch) throws -> Tensor {
        let mask = batch.attentionMask.allSatisfy { $0 != 0 } ? nil : batch.maskTensor
        let output = encoder.encode(try embeddings.embed(batch), keyMask: mask)
        if state.tap != nil { state.report(input: batch.packed(), output: output) }
        return output
    }

    /// Every layer's output [batch, length, hidden] and attention probabilities [batch, heads,
    /// length (queries), length (keys)] (softmax over the keys; padded keys exactly 0), first
    /// layer first: what hidden-state and attention transfer compare (Hugging Face's
    /// `output_hidden_states` without the embeddings, and `output_attentions`). Taps the layers
    /// for this call only, so `hiddenStates` keeps its cost; throws as `hiddenStates`.
    public func layerStates(_ batch: TokenBatch) throws -> (hidden: [Tensor], attention: [Tensor]) {
        let layers = encoder.layers
        var hidden = [Tensor?](repeating: nil, count: layers.count), attention = hidden
        for (i, layer) in layers.enumerated() {
            let probabilities = layer.attention.attention.probabilities
            require(layer.state.tap == nil && probabilities.state.tap == nil, "layerStates: layer \(i) is already tapped")
            layer.state.tap = { _, output in hidden[i] = output }
            probabilities.state.tap = { _, output in attention[i] = output }
        }
        defer {
            for layer in layers {
                layer.state.tap = nil
                layer.attention.attention.probabilities.state.tap = nil
            }
        }
        _ = try hiddenStates(batch)
        return (hidden.map { $0! }, attention.map { $0! })
    }

    /// Hidden states of a packed batch (see `TokenBatch.packed()`); for batches already checked.
    public func forward(_ input: Tensor) -> Tensor {
        do { return try hiddenStates(TokenBatch(packed: input)) } catch { requirementFailed("\(error)") }
    }

    public var children: [(name: String, module: any Module)] { [("embeddings", embeddings), ("encoder", encoder)] }
}

/// Where a model's encoder layers can be tapped (`forward(_:capturing:)`): each layer's output
/// and its attention probabilities by module path, for a model holding a `TransformerEncoder`
/// (a `SentenceEncoder`, a `TextTransformer`, a `BertModel`). Tapping costs nothing when not asked.
public struct EncoderLayerTaps: Equatable, Sendable {
    /// Layer i's output [batch, length, hidden]: `encoder.layer.i`.
    public var hiddenStates: [String]
    /// Layer i's attention probabilities [batch, heads, length, length]: `encoder.layer.i.attention.self.probabilities`.
    public var attention: [String]
    public var heads: Int
    public var hiddenSize: Int

    /// The first transformer encoder in `model`'s tree, or nil when it has none (a bag of embeddings).
    public init?(_ model: any Module) {
        guard let (path, found) = model.namedModules().first(where: { $0.module is TransformerEncoder }),
              let encoder = found as? TransformerEncoder, let first = encoder.layers.first else { return nil }
        let prefix = path.isEmpty ? "layer." : path + ".layer."
        hiddenStates = encoder.layers.indices.map { prefix + "\($0)" }
        attention = hiddenStates.map { $0 + ".attention.self.probabilities" }
        heads = first.attention.attention.heads
        hiddenSize = first.attention.attention.query.inFeatures
    }

    public var layers: Int { hiddenStates.count }
}

/// How a sentence's token vectors become one vector.
public enum TextPooling: String, Sendable, CaseIterable {
    /// The mean over the tokens the mask keeps (sentence-transformers' mean pooling).
    case mean
    /// The first token's vector ([CLS]).
    case cls

    /// `hidden` [batch, length, features], `mask` [batch, length] of 1s and 0s → [batch, features].
    public func pool(_ hidden: Tensor, mask: Tensor) -> Tensor {
        switch self {
        case .mean: return Tensor.maskedMean(hidden, mask: mask)
        case .cls: return hidden.sliced(alongAxis: 1, 0..<1).squeezed(axis: 1)
        }
    }
}

extension Tensor {
    /// The mean of `x` [batch, length, features] over the positions `mask` [batch, length]
    /// keeps (1) → [batch, features]; a row with no position is all zeros.
    public static func maskedMean(_ x: Tensor, mask: Tensor) -> Tensor {
        require(x.rank == 3 && mask.shape == [x.shape[0], x.shape[1]], "maskedMean: mask \(mask.shape) does not fit \(x.shape)")
        let weights = mask.unsqueezed(axis: -1)
        return (x * weights).sum(alongAxis: 1) / weights.sum(alongAxis: 1).clamped(min: 1e-9)
    }
}

/// A sentence embedder: an encoder, a pooling, and optionally L2 normalisation (the
/// sentence-transformers pipeline of models such as all-MiniLM-L6-v2).
public final class SentenceEncoder: Module {
    public let bert: BertModel
    public let pooling: TextPooling
    public let normalizes: Bool
    public let state = ModuleState()

    public init(_ bert: BertModel, pooling: TextPooling = .mean, normalizes: Bool = true) {
        self.bert = bert
        self.pooling = pooling
        self.normalizes = normalizes
    }

    /// One embedding per sequence: [batch, hidden].
    public func embed(_ batch: TokenBatch) throws -> Tensor {
        let pooled = pooling.pool(try bert.hiddenStates(batch), mask: batch.maskTensor)
        let output = normalizes ? pooled.l2Normalized(alongAxis: 1) : pooled
        if state.tap != nil { state.report(input: batch.packed(), output: output) }
        return output
    }

    public func forward(_ input: Tensor) -> Tensor {
        do { return try embed(TokenBatch(packed: input)) } catch { requirementFailed("\(error)") }
    }

    /// The encoder's parameters keep their Hugging Face names (no prefix).
    public var children: [(name: String, module: any Module)] { bert.children }
}
