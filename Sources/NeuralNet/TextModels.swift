import Tensors

/// A text model that embeds a token batch, one vector per sequence, and throws (instead of
/// trapping, as `forward` must) for a batch it cannot read: ids outside its vocabulary,
/// sequences longer than its positions. Distill's text students, the BERT `SentenceEncoder`,
/// and imported ONNX text graphs (`ONNXSentenceEncoder`).
public protocol SentenceEmbedder: Module {
    /// One embedding per sequence: [batch, dimension].
    func embed(_ batch: TokenBatch) throws -> Tensor
}

extension SentenceEmbedder {
    /// `embed` in evaluation mode, recording nothing (each module's mode put back after): a
    /// text model's `predictions` that throws.
    public func predictions(_ batch: TokenBatch) throws -> Tensor { try inEvaluationMode { try embed(batch) } }
}

extension SentenceEncoder: SentenceEmbedder {}

/// A fast sentence embedder: a vector per token, their mean over the tokens the mask keeps, a
/// linear map to the output size, and L2 normalisation (as the sentence encoders it learns
/// from). No attention and no positions: a bag of embeddings. Zoo name `text-bag`.
///
/// As a classifier (`normalizes` false) the linear map gives class logits (a fastText-style
/// model); with a `head`, a linear classifier reads the unit-length embedding (an encoder
/// re-headed for a new task).
public final class BagOfEmbeddings: SentenceEmbedder {
    public let embeddings: Embedding
    public let projection: Linear
    /// Whether the projection's output is L2-normalised (an embedding) or left as it is (logits).
    public let normalizes: Bool
    /// A classification head on the embedding, or nil.
    public let head: Linear?
    public let state = ModuleState()

    /// Token vectors of `dimension` drawn from N(0, 0.01²), so that ids the training texts
    /// never hold (most of a 30,000-id vocabulary, for a small transfer set) add little noise
    /// to the texts that hold them; the padding id's vector gets no gradient.
    public init(vocabularySize: Int, dimension: Int, outputs: Int, paddingId: Int?, normalizes: Bool = true, headClasses: Int? = nil,
                using generator: inout RandomGenerator) {
        embeddings = Embedding(vocabularySize, dimension, paddingIndex: paddingId, standardDeviation: 0.01, using: &generator)
        projection = Linear(dimension, outputs, using: &generator)
        self.normalizes = normalizes
        head = headClasses.map { Linear(outputs, $0, using: &generator) }
    }

    /// One output row per sequence: [batch, outputs] (a unit-length embedding, or logits for a
    /// classifier); throws for ids outside the vocabulary.
    public func embed(_ batch: TokenBatch) throws -> Tensor {
        let vectors = try embeddings.lookup(batch.ids, shape: Shape([batch.batchSize, batch.length]))
        let projected = projection(Tensor.maskedMean(vectors, mask: batch.maskTensor))
        let embedding = normalizes ? projected.l2Normalized(alongAxis: 1) : projected
        let output = head.map { $0(embedding) } ?? embedding
        if state.tap != nil { state.report(input: batch.packed(), output: output) }
        return output
    }

    /// Embeddings of a packed batch [batch, 3, length] (see `TokenBatch.packed()`); for batches already checked.
    public func forward(_ input: Tensor) -> Tensor {
        do { return try embed(TokenBatch(packed: input)) } catch { requirementFailed("\(error)") }
    }

    public var children: [(name: String, module: any Module)] {
        [("embeddings", embeddings), ("projection", projection)] + (head.map { [(name: "head", module: $0 as any Module)] } ?? [])
    }
}

/// A small BERT-style sentence embedder: token, position and token-type embeddings, `layers`
/// encoder layers, mean pooling over the tokens the mask keeps, a linear map when the output
/// size differs from the hidden size, and L2 normalisation. Parameter names are Hugging
/// Face's (`embeddings.word_embeddings.weight`, `encoder.layer.0...`), so the layers of a
/// BERT teacher of the same width load into it by name. Zoo name `text-transformer`.
///
/// As a classifier (`normalizes` false) a linear map always follows the pooling and gives class
/// logits; with a `head`, a linear classifier reads the unit-length embedding.
public final class TextTransformer: SentenceEmbedder {
    public let bert: BertModel
    public let projection: Linear?
    public let normalizes: Bool
    /// A classification head on the embedding, or nil.
    public let head: Linear?
    public let state = ModuleState()

    public init(_ configuration: BertConfiguration, outputs: Int, normalizes: Bool = true, headClasses: Int? = nil,
                using generator: inout RandomGenerator) {
        bert = BertModel(configuration, using: &generator)
        projection = outputs == configuration.hiddenSize && normalizes ? nil : Linear(configuration.hiddenSize, outputs, using: &generator)
        self.normalizes = normalizes
        head = headClasses.map { Linear(outputs, $0, using: &generator) }
    }

    /// One output row per sequence: [batch, outputs] (a unit-length embedding, or logits for a
    /// classifier); throws for ids outside the vocabulary or sequences longer than the learned positions.
    public func embed(_ batch: TokenBatch) throws -> Tensor {
        let pooled = Tensor.maskedMean(try bert.hiddenStates(batch), mask: batch.maskTensor)
        let projected = projection.map { $0(pooled) } ?? pooled
        let embedding = normalizes ? projected.l2Normalized(alongAxis: 1) : projected
        let output = head.map { $0(embedding) } ?? embedding
        if state.tap != nil { state.report(input: batch.packed(), output: output) }
        return output
    }

    public func forward(_ input: Tensor) -> Tensor {
        do { return try embed(TokenBatch(packed: input)) } catch { requirementFailed("\(error)") }
    }

    public var children: [(name: String, module: any Module)] {
        bert.children + (projection.map { [("projection", $0)] } ?? []) + (head.map { [(name: "head", module: $0 as any Module)] } ?? [])
    }

    /// Every k-th of `teacher` layers for `student` layers (k = teacher ÷ student, at least 1),
    /// from the first: 6 → 3 gives [0, 2, 4], DistilBERT's choice.
    public static func everyKthLayer(student: Int, teacher: Int) -> [Int] {
        let k = max(teacher / max(student, 1), 1)
        return (0..<student).map { min($0 * k, teacher - 1) }
    }

    /// Copies `teacher`'s embeddings, and into student layer i the teacher's layer
    /// `mapping[i]`. The hidden and vocabulary sizes, heads, positions and token types must
    /// agree, and the student's feed-forward block may be no wider than the teacher's:
    /// otherwise a `TextModelError` names the first that differs. A narrower block keeps, in
    /// each layer, the teacher's neurons with the largest product of their input and output
    /// weight norms (`keptNeurons`), in their order: structured pruning's simplest score, which
    /// keeps the neurons that move the layer's output most for a given input.
    public func initialize(from teacher: BertModel, layers mapping: [Int]) throws {
        let (s, t) = (bert.configuration, teacher.configuration)
        for (what, mine, theirs) in [("hidden size", s.hiddenSize, t.hiddenSize), ("number of attention heads", s.heads, t.heads),
                                     ("vocabulary", s.vocabularySize, t.vocabularySize),
                                     ("number of positions", s.maxPositions, t.maxPositions), ("number of token types", s.tokenTypes, t.tokenTypes)]
            where mine != theirs {
            throw TextModelError("the student's \(what) is \(mine) and the teacher's \(theirs): starting from the teacher's layers needs them equal")
        }
        guard s.intermediateSize <= t.intermediateSize else {
            throw TextModelError("the student's feed-forward block is \(s.intermediateSize) wide and the teacher's \(t.intermediateSize): "
                + "starting from the teacher's layers keeps some of its neurons, so it can be no wider")
        }
        guard mapping.count == s.layers, mapping.allSatisfy({ (0..<t.layers).contains($0) }) else {
            throw TextModelError("the layer mapping \(mapping) does not fit \(s.layers) student layers and \(t.layers) teacher layers")
        }
        var source: [String: Tensor] = [:]
        let teacherState = Dictionary(teacher.stateDict().map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        for (name, tensor) in teacherState {
            if name.hasPrefix("embeddings.") {
                source[name] = tensor
                continue
            }
            let parts = name.split(separator: ".", maxSplits: 3)
            guard parts.count == 4, parts[0] == "encoder", parts[1] == "layer", let index = Int(parts[2]) else { continue }
            for (i, chosen) in mapping.enumerated() where chosen == index { source["encoder.layer.\(i).\(parts[3])"] = tensor }
        }
        if s.intermediateSize < t.intermediateSize {
            for i in 0..<s.layers {
                let prefix = "encoder.layer.\(i)."
                guard let up = source[prefix + "intermediate.dense.weight"], let upBias = source[prefix + "intermediate.dense.bias"],
                      let down = source[prefix + "output.dense.weight"] else { continue }
                let kept = Self.keptNeurons(up: up, down: down, count: s.intermediateSize)
                source[prefix + "intermediate.dense.weight"] = up.indexSelect(alongAxis: 0, indices: kept)
                source[prefix + "intermediate.dense.bias"] = upBias.indexSelect(alongAxis: 0, indices: kept)
                source[prefix + "output.dense.weight"] = down.indexSelect(alongAxis: 1, indices: kept)
            }
        }
        _ = try bert.loadStateDict(source)
    }

    /// The `count` feed-forward neurons j with the largest ‖up[j, :]‖·‖down[:, j]‖ (up
    /// [neurons, hidden], down [hidden, neurons]), in increasing order; ties go to the lower index.
    public static func keptNeurons(up: Tensor, down: Tensor, count: Int) -> [Int] {
        let (neurons, hidden) = (up.shape[0], up.shape[1])
        let u = up.scalars, d = down.scalars
        var score = [Double](repeating: 0, count: neurons)
        for j in 0..<neurons {
            var inNorm = 0.0, outNorm = 0.0
            for k in 0..<hidden {
                inNorm += Double(u[j * hidden + k]) * Double(u[j * hidden + k])
                outNorm += Double(d[k * neurons + j]) * Double(d[k * neurons + j])
            }
            score[j] = (inNorm * outNorm).squareRoot()
        }
        let order = (0..<neurons).sorted { score[$0] != score[$1] ? score[$0] > score[$1] : $0 < $1 }
        return order.prefix(count).sorted()
    }
}

extension ModelZoo {
    /// The zoo's text models (sentence embedders over a tokenizer's ids): they need
    /// `ModelOptions.text(...)`, and `classes` is their output size.
    public static let textNames = ["text-bag", "text-transformer"]

    /// Builds the text model `name`; options without a vocabulary are an error (a text model
    /// needs a tokenizer's).
    static func makeText(_ name: String, options o: ModelOptions, using g: inout RandomGenerator) throws -> any Module {
        guard textNames.contains(name) else {
            throw ModuleError.invalidOption("\(name) takes images or tables, not texts (text models: \(textNames.joined(separator: ", ")))")
        }
        guard let vocabulary = o.vocabularySize else {
            throw ModuleError.invalidOption("\(name) embeds texts: it needs text data and a tokenizer (a teacher folder with tokenizer.json)")
        }
        let hidden = o.hiddenSizes.first ?? 0
        guard vocabulary > 0, vocabulary <= 1 << 24, o.classes > 0, (1...65_536).contains(hidden) else {
            throw ModuleError.invalidOption("\(name) needs a vocabulary of 1 to 2^24 ids, a positive output size and a hidden size of 1 to 65536, got \(vocabulary), \(o.classes), \(hidden)")
        }
        let (weights, overflow) = vocabulary.multipliedReportingOverflow(by: hidden)
        guard !overflow, weights <= 1 << 28 else {
            throw ModuleError.invalidOption("\(name) would have a \(vocabulary)×\(hidden) token table (above 2^28 values, 1 GiB): give a smaller --hidden")
        }
        if let id = o.paddingId, !(0..<vocabulary).contains(id) {
            throw ModuleError.invalidOption("\(name): padding id \(id) is outside the vocabulary of \(vocabulary)")
        }
        if let head = o.headClasses, !(1...1_000_000).contains(head) || o.classifies == true {
            throw ModuleError.invalidOption("\(name): a classification head needs 1 to 1000000 classes on an embedding (not on a classifier), got \(head)")
        }
        let normalizes = o.classifies != true
        switch name {
        case "text-transformer":
            let layers = o.layers ?? 3, heads = o.heads ?? max(1, hidden / 64), positions = o.maxTokens ?? 512
            let feedForward = o.feedForward ?? 4 * hidden
            var configuration = BertConfiguration(vocabularySize: vocabulary, hiddenSize: hidden, layers: layers, heads: heads,
                                                  intermediateSize: feedForward, maxPositions: positions, paddingTokenId: o.paddingId)
            if let dropout = o.dropout { (configuration.hiddenDropout, configuration.attentionDropout) = (dropout, dropout) }
            guard (1...48).contains(layers), (1...64).contains(heads), (1...8_192).contains(positions), hidden <= 4_096, (1...16_384).contains(feedForward) else {
                throw ModuleError.invalidOption("text-transformer needs 1 to 48 layers, 1 to 64 heads, 1 to 8192 positions, a hidden size of at most 4096 and a feed-forward width of 1 to 16384, got \(layers), \(heads), \(positions), \(hidden), \(feedForward)")
            }
            if let problem = configuration.problem { throw ModuleError.invalidOption("text-transformer: \(problem)") }
            return TextTransformer(configuration, outputs: o.classes, normalizes: normalizes, headClasses: o.headClasses, using: &g)
        default:
            return BagOfEmbeddings(vocabularySize: vocabulary, dimension: hidden, outputs: o.classes, paddingId: o.paddingId,
                                   normalizes: normalizes, headClasses: o.headClasses, using: &g)
        }
    }
}
