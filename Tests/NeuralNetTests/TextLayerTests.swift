import Datasets
import Foundation
import NeuralNet
import Tensors
import TestSupport
import XCTest

/// The BERT encoder's layers against Hugging Face's modules (scripts/generate_golden_nn.py,
/// "textLayers"), their gradients against finite differences, and their masks and errors.
final class TextLayerTests: XCTestCase {
    static let configuration = BertConfiguration(vocabularySize: 20, hiddenSize: 8, layers: 2, heads: 2, intermediateSize: 16,
                                                 maxPositions: 12, tokenTypes: 2, layerNormEpsilon: 1e-12)

    /// A fixture case's module, with PyTorch's weights loaded, in evaluation mode, and the
    /// function that runs it on the case's inputs.
    static func build(_ entry: [String: Any]) throws -> (module: any Module, run: (TokenBatch, Tensor?) throws -> Tensor) {
        var g = RandomGenerator(seed: 0)
        let c = configuration
        let module: any Module, run: (TokenBatch, Tensor?) throws -> Tensor
        switch entry["kind"] as! String {
        case "embedding":
            let e = Embedding(c.vocabularySize, c.hiddenSize, using: &g)
            (module, run) = (e, { b, _ in try e.lookup(b.ids, shape: [b.batchSize, b.length]) })
        case "embeddings":
            let e = TextEmbeddings(c, using: &g)
            (module, run) = (e, { b, _ in try e.embed(b) })
        case "selfAttention":
            let a = MultiHeadSelfAttention(hiddenSize: c.hiddenSize, heads: c.heads, using: &g)
            (module, run) = (a, { b, x in a.attend(x!, keyMask: b.maskTensor) })
        case "attention":
            let a = AttentionBlock(hiddenSize: c.hiddenSize, heads: c.heads, epsilon: c.layerNormEpsilon, hiddenDropout: 0.1,
                                   attentionDropout: 0.1, using: &g)
            (module, run) = (a, { b, x in a.attend(x!, keyMask: b.maskTensor) })
        case "layer":
            let l = TransformerEncoderLayer(hiddenSize: c.hiddenSize, heads: c.heads, intermediateSize: c.intermediateSize,
                                            epsilon: c.layerNormEpsilon, hiddenDropout: 0.1, attentionDropout: 0.1, using: &g)
            (module, run) = (l, { b, x in l.encode(x!, keyMask: b.maskTensor) })
        case "modelMean", "modelCLS":
            let pooling: TextPooling = entry["kind"] as! String == "modelMean" ? .mean : .cls
            let s = SentenceEncoder(BertModel(c, using: &g), pooling: pooling, normalizes: false)
            (module, run) = (s, { b, _ in try s.embed(b) })
        case let kind: throw TextModelError("fixture kind \(kind) has no Swift counterpart")
        }
        try module.loadStateDict((entry["state"] as! [String: Any]).mapValues(GoldenNNTests.tensor))
        module.eval()
        return (module, run)
    }

    static func batch(_ entry: [String: Any]) -> TokenBatch {
        let shape = entry["shape"] as! [Int]
        return TokenBatch(ids: entry["ids"] as! [Int], attentionMask: entry["mask"] as? [Int], tokenTypes: entry["types"] as? [Int],
                          batchSize: shape[0], length: shape[1])
    }

    static var cases: [[String: Any]] { GoldenNNTests.fixture["textLayers"] as! [[String: Any]] }

    func testTextLayersMatchHuggingFace() throws {
        XCTAssertEqual(Self.cases.count, 7)
        for entry in Self.cases {
            let name = entry["name"] as! String
            let (module, run) = try Self.build(entry)
            let x = entry["input"].map { input -> Tensor in
                let t = GoldenNNTests.tensor(input)
                t.requiresGrad = true
                return t
            }
            let y = try run(Self.batch(entry), x)
            let expected = GoldenNNTests.tensor(entry["output"])
            XCTAssertEqual(y.shape, expected.shape, name)
            assertClose(y.scalars, expected.scalars, absolute: 1e-4, relative: 1e-4, "\(name) output")
            (y * Tensor(GoldenNNTests.floats(entry["upstream"]), shape: y.shape)).sum().backward()
            if let x {
                assertClose(x.grad!.scalars, GoldenNNTests.floats(entry["inputGrad"]), absolute: 1e-4, relative: 1e-3, "\(name) input gradient")
            }
            let parameters = Dictionary(uniqueKeysWithValues: module.namedParameters().map { ($0.name, $0.tensor) })
            let grads = entry["paramGrads"] as! [String: Any]
            XCTAssertEqual(Set(grads.keys), Set(parameters.keys), "\(name): parameters")
            for (key, grad) in grads {
                guard let parameter = parameters[key] else { continue }
                assertClose(parameter.grad?.scalars ?? [], GoldenNNTests.floats(grad), absolute: 1e-4, relative: 1e-3, "\(name) gradient of \(key)")
            }
        }
    }

    func testTextLayerGradientsMatchFiniteDifferences() throws {
        for entry in Self.cases {
            let name = entry["name"] as! String
            let (module, run) = try Self.build(entry)
            // No padding token (id 0): its embedding gets no gradient by design (padding_idx),
            // which finite differences would see where it is not masked.
            let fixtureBatch = Self.batch(entry)
            let batch = TokenBatch(ids: fixtureBatch.ids.map { $0 == 0 ? 1 : $0 }, attentionMask: fixtureBatch.attentionMask,
                                   tokenTypes: fixtureBatch.tokenTypes, batchSize: fixtureBatch.batchSize, length: fixtureBatch.length)
            let x = entry["input"].map { input -> Tensor in
                let t = GoldenNNTests.tensor(input)
                t.requiresGrad = true
                return t
            }
            // Every parameter of the small layers; for the whole models, one of each kind.
            var checked = module.namedParameters().filter { entry["kind"] as! String != "modelMean" && entry["kind"] as! String != "modelCLS"
                || ["embeddings.word_embeddings.weight", "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                    "encoder.layer.0.attention.self.key.weight", "encoder.layer.1.intermediate.dense.bias",
                    "encoder.layer.1.output.LayerNorm.bias"].contains($0.name) }.map(\.tensor)
            if let x { checked.append(x) }
            assertGradientsMatchFiniteDifferences(checked, tolerance: 3e-2, step: 1e-2, name) { _ in try! run(batch, x) }
        }
    }

    /// Padded positions take no part: changing what sits there (ids or hidden states) leaves
    /// every real token's output bit for bit the same, and their attention weights are exactly 0.
    func testPaddingIsInvisible() throws {
        var g = RandomGenerator(seed: 3)
        let bert = BertModel(Self.configuration, using: &g)
        bert.eval()
        let padded = TokenBatch(ids: [4, 9, 2, 0, 0, 7, 3, 1, 5, 6], attentionMask: [1, 1, 1, 0, 0, 1, 1, 1, 1, 1], batchSize: 2, length: 5)
        let changed = TokenBatch(ids: [4, 9, 2, 13, 18, 7, 3, 1, 5, 6], attentionMask: padded.attentionMask, batchSize: 2, length: 5)
        let a = try bert.hiddenStates(padded).scalars, b = try bert.hiddenStates(changed).scalars
        for position in [0, 1, 2, 5, 6, 7, 8, 9] {
            XCTAssertEqual(Array(a[position * 8..<(position + 1) * 8]), Array(b[position * 8..<(position + 1) * 8]), "position \(position)")
        }
        let alone = try bert.hiddenStates(TokenBatch(sequences: [[4, 9, 2]])).scalars
        assertClose(Array(a[0..<24]), alone, absolute: 1e-5, relative: 1e-5, "a padded sequence against itself unpadded")

        let (_, features) = try bert.forward(padded.packed(), capturing: ["encoder.layer.0.attention.self.probabilities"])
        let weights = try XCTUnwrap(features["encoder.layer.0.attention.self.probabilities"])
        XCTAssertEqual(weights.shape, [2, 2, 5, 5])
        for row in 0..<10 {  // the first sequence's 2 heads × 5 queries
            XCTAssertEqual(weights.scalars[row * 5 + 3], 0)
            XCTAssertEqual(weights.scalars[row * 5 + 4], 0)
            XCTAssertEqual(weights.scalars[row * 5..<row * 5 + 5].reduce(0, +), 1, accuracy: 1e-6)
        }
    }

    /// Attention runs head by head (`Tensor.multiHeadAttention`) unless its weights are
    /// watched or dropped out; both ways give the same outputs and gradients, in training and
    /// in evaluation, with and without padding, one sequence or several, on 1 and 2 threads,
    /// on every kernel path this CPU executes (the softmax rows are the paths' own).
    func testHeadByHeadAttentionEqualsTheWholeWeightsPath() throws {
        defer {
            Compute.forceKernelPath(nil)
            Compute.threadCount = 1
        }
        // The last case is large enough to be split over the threads, forward and backward.
        let long = (0..<4).flatMap { i in (0..<64).map { Float($0 < 64 - 13 * i ? 1 : 0) } }
        let cases: [(Int, Int, [Float]?)] = [(2, 5, [1, 1, 1, 0, 0, 1, 1, 1, 1, 1]), (1, 7, nil), (4, 64, long)]
        for path in KernelPath.allCases where path.isSupported {
            Compute.forceKernelPath(path)
            for threads in [1, 2] {
                Compute.threadCount = threads
                for (batch, length, mask) in cases {
                    var g = RandomGenerator(seed: 5)
                    let attention = MultiHeadSelfAttention(hiddenSize: 12, heads: 3, using: &g)
                    let x = Tensor.randomNormal([batch, length, 12], using: &g)
                    let upstream = Tensor.randomNormal([batch, length, 12], using: &g)
                    let keyMask = mask.map { Tensor($0, shape: [batch, length]) }
                    for training in [true, false] {
                        if training { attention.train() } else { attention.eval() }
                        func run(watched: Bool) -> (output: [Float], grads: [[Float]]) {
                            attention.probabilities.state.outputTransform = watched ? { $0 } : nil
                            let input = x.detached()
                            input.requiresGrad = true
                            let parameters = attention.parameters
                            for p in parameters { p.zeroGrad() }
                            let y = attention.attend(input, keyMask: keyMask)
                            (y * upstream).sum().backward()
                            return (y.scalars, [input.grad!.scalars] + parameters.map { $0.grad!.scalars })
                        }
                        let headByHead = run(watched: false), whole = run(watched: true)
                        let name = "\(batch)×\(length), \(mask == nil ? "no mask" : "masked"), \(training ? "training" : "evaluation"), "
                            + "\(threads) threads, \(path)"
                        assertClose(headByHead.output, whole.output, absolute: 1e-6, relative: 1e-5, name)
                        for (a, b) in zip(headByHead.grads, whole.grads) { assertClose(a, b, absolute: 1e-5, relative: 1e-4, name) }
                    }
                }
            }
        }
    }

    func testMaskedSoftmaxRowWithoutKeysIsZero() {
        let scores = randomLeaf([1, 2, 3], seed: 5)
        let weights = Tensor.maskedSoftmax(scores, keyMask: Tensor([0, 0, 0], shape: [1, 3]))
        XCTAssertEqual(weights.scalars, [Float](repeating: 0, count: 6))
        weights.sum().backward()
        XCTAssertEqual(scores.grad?.scalars, [Float](repeating: 0, count: 6))
    }

    func testMeanAndCLSPooling() {
        let hidden = Tensor((0..<12).map(Float.init), shape: [2, 3, 2])
        let mask = Tensor([1, 1, 0, 1, 0, 0], shape: [2, 3])
        XCTAssertEqual(TextPooling.mean.pool(hidden, mask: mask).scalars, [1, 2, 6, 7])
        XCTAssertEqual(TextPooling.cls.pool(hidden, mask: mask).scalars, [0, 1, 6, 7])
        XCTAssertEqual(Tensor.maskedMean(hidden, mask: Tensor.zeros([2, 3])).scalars, [0, 0, 0, 0], "no token: zeros, not NaN")
    }

    func testBadIdsAreThrownErrorsNamingTheToken() throws {
        var g = RandomGenerator(seed: 4)
        let bert = BertModel(Self.configuration, using: &g)
        XCTAssertThrowsError(try bert.hiddenStates(TokenBatch(sequences: [[1, 2], [3, 20, 4]]))) { error in
            XCTAssertEqual("\(error)", "token id 20 (sequence 1, position 1) is outside the vocabulary of 20")
        }
        XCTAssertThrowsError(try bert.hiddenStates(TokenBatch(sequences: [[1, -1]])))
        XCTAssertThrowsError(try bert.hiddenStates(TokenBatch(ids: [1, 2], tokenTypes: [0, 2], batchSize: 1, length: 2))) { error in
            XCTAssertEqual("\(error)", "token type 2 is outside the model's 2 token types")
        }
        XCTAssertThrowsError(try bert.hiddenStates(TokenBatch(sequences: [[Int](repeating: 1, count: 13)]))) { error in
            XCTAssertEqual("\(error)", "a sequence of 13 tokens is longer than the model's 12 positions")
        }
        XCTAssertThrowsError(try Tensor.embedding(Tensor.zeros([3, 2]), indices: [0, 3], indexShape: [2])) { error in
            XCTAssertEqual(error as? IndexOutOfRangeError, IndexOutOfRangeError(op: "embedding", index: 3, position: 1, count: 3))
        }
        XCTAssertThrowsError(try TokenBatch(packed: Tensor([1, 2.5], shape: [1, 2])))
        XCTAssertThrowsError(try TokenBatch(packed: Tensor.zeros([1, 2, 2])))
    }

    /// A text dataset's batches (Datasets pads each to its longest sequence, packed as
    /// [batch, 3, length]) are what the encoder reads as a Module.
    func testTextDatasetBatchesRunThroughTheEncoder() throws {
        let sequences: [[Int]] = [[1, 4, 9, 2], [1, 7, 2], [1, 3, 5, 6, 8, 2]]
        let data = Dataset(tokenSequences: sequences.map { $0.map(Int32.init) }, labels: [0, 1, 0], classNames: ["a", "b"])
        let loader = try DataLoader(data, batchSize: 3, shuffle: false, seed: 0)
        let batch = try XCTUnwrap(loader.batches(epoch: 0).makeIterator().nextBatch())
        XCTAssertEqual(try TokenBatch(packed: batch.inputs), TokenBatch(sequences: sequences))
        var g = RandomGenerator(seed: 7)
        let encoder = SentenceEncoder(BertModel(Self.configuration, using: &g))
        encoder.eval()
        XCTAssertEqual(encoder(batch.inputs).scalars, try encoder.embed(TokenBatch(sequences: sequences)).scalars)
    }

    func testPackedBatchRoundTripsAndRunsAsAModule() throws {
        let batch = TokenBatch(ids: [4, 9, 2, 7, 3, 0], attentionMask: [1, 1, 1, 1, 1, 0], tokenTypes: [0, 0, 1, 0, 1, 0],
                               batchSize: 2, length: 3)
        XCTAssertEqual(try TokenBatch(packed: batch.packed()), batch)
        var g = RandomGenerator(seed: 6)
        let encoder = SentenceEncoder(BertModel(Self.configuration, using: &g))
        encoder.eval()
        let embedded = try encoder.embed(batch)
        XCTAssertEqual(encoder(batch.packed()).scalars, embedded.scalars)
        for row in 0..<2 {
            XCTAssertEqual(embedded.scalars[row * 8..<(row + 1) * 8].map { $0 * $0 }.reduce(0, +), 1, accuracy: 1e-5, "normalised")
        }
        XCTAssertTrue(encoder.namedParameters().contains { $0.name == "encoder.layer.1.attention.self.query.weight" })
    }
}
