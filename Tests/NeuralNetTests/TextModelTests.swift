import Foundation
import NeuralNet
import Tensors
import XCTest

/// The zoo's text students: padding is invisible to them, they build only with a vocabulary,
/// and a text-transformer starts from a teacher's chosen layers.
final class TextModelTests: XCTestCase {
    static let teacher = BertConfiguration(vocabularySize: 30, hiddenSize: 8, layers: 4, heads: 2, intermediateSize: 32, maxPositions: 16)

    func testStudentsIgnorePaddingAndGiveUnitEmbeddings() throws {
        for name in ModelZoo.textNames {
            var g = RandomGenerator(seed: 1)
            let options = ModelOptions.text(vocabularySize: 30, paddingId: 0, outputs: 5, hidden: 8, layers: 2, heads: 2, maxTokens: 16)
            let model = try ModelZoo.make(name, options: options, using: &g)
            model.eval()
            let short = TokenBatch(sequences: [[2, 7, 9, 3]])
            let padded = TokenBatch(ids: [2, 7, 9, 3, 0, 0, 2, 5, 3, 0, 0, 0], attentionMask: [1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0], batchSize: 2, length: 6)
            let alone = model(short.packed()), together = model(padded.packed())
            XCTAssertEqual(together.shape, [2, 5], name)
            for (a, b) in zip(alone.scalars, together.scalars.prefix(5)) { XCTAssertEqual(a, b, accuracy: 1e-5, name) }
            let norm = alone.scalars.reduce(0) { $0 + $1 * $1 }.squareRoot()
            XCTAssertEqual(norm, 1, accuracy: 1e-5, name)
        }
    }

    func testLayerStatesAreEachLayersOutputAndAttentionAndTapsFindThem() throws {
        var g = RandomGenerator(seed: 4)
        let bert = BertModel(Self.teacher, using: &g)
        bert.eval()
        let batch = TokenBatch(ids: [2, 7, 9, 3, 5, 2, 5, 3, 0, 0], attentionMask: [1, 1, 1, 1, 1, 1, 1, 1, 0, 0], batchSize: 2, length: 5)
        let (hidden, attention) = try bert.layerStates(batch)
        XCTAssertEqual(hidden.count, 4)
        XCTAssertEqual(attention.count, 4)
        XCTAssertEqual(hidden.last!.scalars, try bert.hiddenStates(batch).scalars, "the last layer's output is the encoder's")
        XCTAssertEqual(Set(hidden.map(\.shape)), [[2, 5, 8]])
        XCTAssertEqual(Set(attention.map(\.shape)), [[2, 2, 5, 5]])
        for probabilities in attention {
            let p = probabilities.scalars
            for row in 0..<(2 * 2 * 5) {
                let values = p[(row * 5)..<(row * 5 + 5)]
                XCTAssertEqual(values.reduce(0, +), 1, accuracy: 1e-5)
                if row >= 2 * 5 { XCTAssertEqual(Array(values.suffix(2)), [0, 0], "padded keys of sequence 1 get exactly 0") }
            }
        }
        // The taps are released: a second call and a capture by name give the same tensors.
        XCTAssertEqual(try bert.layerStates(batch).attention[2].scalars, attention[2].scalars)
        let student = TextTransformer(Self.teacher, outputs: 8, using: &g)
        let taps = try XCTUnwrap(EncoderLayerTaps(student))
        XCTAssertEqual(taps.hiddenStates, ["encoder.layer.0", "encoder.layer.1", "encoder.layer.2", "encoder.layer.3"])
        XCTAssertEqual(taps.attention[1], "encoder.layer.1.attention.self.probabilities")
        XCTAssertEqual([taps.heads, taps.hiddenSize, taps.layers], [2, 8, 4])
        XCTAssertEqual(EncoderLayerTaps(bert)?.hiddenStates.first, "encoder.layer.0")
        let captured = try bert.forward(batch.packed(), capturing: [taps.hiddenStates[1], taps.attention[3]]).features
        XCTAssertEqual(captured[taps.hiddenStates[1]]?.scalars, hidden[1].scalars)
        XCTAssertEqual(captured[taps.attention[3]]?.scalars, attention[3].scalars)
        XCTAssertNil(EncoderLayerTaps(BagOfEmbeddings(vocabularySize: 30, dimension: 4, outputs: 4, paddingId: 0, using: &g)))
    }

    func testTextModelsNeedAVocabularyAndImageModelsRefuseOne() {
        var g = RandomGenerator(seed: 0)
        XCTAssertThrowsError(try ModelZoo.make("text-bag", options: ModelOptions(), using: &g)) {
            XCTAssertTrue("\($0)".contains("needs text data and a tokenizer"), "\($0)")
        }
        XCTAssertThrowsError(try ModelZoo.make("mlp", options: .text(vocabularySize: 30, paddingId: 0, outputs: 4, hidden: 8), using: &g)) {
            XCTAssertTrue("\($0)".contains("mlp takes images or tables"), "\($0)")
        }
        XCTAssertThrowsError(try ModelZoo.make("text-bag", options: .text(vocabularySize: 1 << 24, paddingId: 0, outputs: 4, hidden: 4_096), using: &g)) {
            XCTAssertTrue("\($0)".contains("above 2^28 values"), "\($0)")
        }
        XCTAssertThrowsError(try ModelZoo.make("text-transformer", options: .text(vocabularySize: 30, paddingId: 0, outputs: 4, hidden: 10, heads: 3), using: &g)) {
            XCTAssertTrue("\($0)".contains("not a multiple"), "\($0)")
        }
    }

    func testTransformerStartsFromEveryKthTeacherLayer() throws {
        var g = RandomGenerator(seed: 2)
        let teacher = BertModel(Self.teacher, using: &g)
        XCTAssertEqual(TextTransformer.everyKthLayer(student: 2, teacher: 4), [0, 2])
        XCTAssertEqual(TextTransformer.everyKthLayer(student: 3, teacher: 6), [0, 2, 4])
        XCTAssertEqual(TextTransformer.everyKthLayer(student: 4, teacher: 3), [0, 1, 2, 2])
        var small = Self.teacher
        small.layers = 2
        let student = TextTransformer(small, outputs: 8, using: &g)
        XCTAssertNil(student.projection)
        try student.initialize(from: teacher, layers: [0, 2])
        let copied = Dictionary(uniqueKeysWithValues: student.stateDict().map { ($0.name, $0.tensor.scalars) })
        let original = Dictionary(uniqueKeysWithValues: teacher.stateDict().map { ($0.name, $0.tensor.scalars) })
        XCTAssertEqual(copied["embeddings.word_embeddings.weight"], original["embeddings.word_embeddings.weight"])
        XCTAssertEqual(copied["encoder.layer.0.attention.self.query.weight"], original["encoder.layer.0.attention.self.query.weight"])
        XCTAssertEqual(copied["encoder.layer.1.output.dense.weight"], original["encoder.layer.2.output.dense.weight"])
        XCTAssertNotEqual(copied["encoder.layer.1.output.dense.weight"], original["encoder.layer.1.output.dense.weight"])

        var wide = small
        wide.hiddenSize = 12
        XCTAssertThrowsError(try TextTransformer(wide, outputs: 8, using: &g).initialize(from: teacher, layers: [0, 2])) {
            XCTAssertTrue("\($0)".contains("the student's hidden size is 12 and the teacher's 8"), "\($0)")
        }
        XCTAssertThrowsError(try student.initialize(from: teacher, layers: [0, 4])) {
            XCTAssertTrue("\($0)".contains("does not fit"), "\($0)")
        }
    }

    /// A narrower feed-forward block keeps the teacher's neurons with the largest
    /// ‖W₁ row‖·‖W₂ column‖: with the others' weights zero, the narrow student computes
    /// exactly what a full-width one started from the same layers computes.
    func testNarrowFeedForwardKeepsTheTeachersStrongestNeurons() throws {
        var g = RandomGenerator(seed: 3)
        let teacher = BertModel(Self.teacher, using: &g)
        var state = Dictionary(uniqueKeysWithValues: teacher.stateDict().map { ($0.name, $0.tensor) })
        let kept: [[Int]] = [[1, 4, 9, 13, 17, 22, 28, 31], [0, 2, 3, 5, 8, 21, 26, 30]]  // teacher layers 0 and 2
        for (layer, neurons) in zip([0, 2], kept) {
            let prefix = "encoder.layer.\(layer)."
            var up = state[prefix + "intermediate.dense.weight"]!.scalars, down = state[prefix + "output.dense.weight"]!.scalars
            for j in 0..<32 where !neurons.contains(j) {
                for k in 0..<8 { up[j * 8 + k] = 0; down[k * 32 + j] = 0 }
            }
            state[prefix + "intermediate.dense.weight"] = Tensor(up, shape: [32, 8])
            state[prefix + "output.dense.weight"] = Tensor(down, shape: [8, 32])
        }
        _ = try teacher.loadStateDict(state)
        var full = Self.teacher, narrow = Self.teacher
        full.layers = 2
        narrow.layers = 2
        narrow.intermediateSize = 8
        let wide = TextTransformer(full, outputs: 8, using: &g), small = TextTransformer(narrow, outputs: 8, using: &g)
        try wide.initialize(from: teacher, layers: [0, 2])
        try small.initialize(from: teacher, layers: [0, 2])
        XCTAssertEqual(TextTransformer.keptNeurons(up: state["encoder.layer.2.intermediate.dense.weight"]!,
                                                   down: state["encoder.layer.2.output.dense.weight"]!, count: 8), kept[1])
        let copied = Dictionary(uniqueKeysWithValues: small.stateDict().map { ($0.name, $0.tensor.scalars) })
        XCTAssertEqual(copied["encoder.layer.1.intermediate.dense.bias"], kept[1].map { state["encoder.layer.2.intermediate.dense.bias"]!.scalars[$0] })
        XCTAssertEqual(copied["encoder.layer.0.output.dense.bias"], state["encoder.layer.0.output.dense.bias"]!.scalars)
        let batch = TokenBatch(ids: [2, 7, 9, 3, 5, 2, 5, 3, 0, 0], attentionMask: [1, 1, 1, 1, 1, 1, 1, 1, 0, 0], batchSize: 2, length: 5)
        wide.eval()
        small.eval()
        let (a, b) = (try wide.embed(batch).scalars, try small.embed(batch).scalars)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-5) }

        narrow.intermediateSize = 40
        XCTAssertThrowsError(try TextTransformer(narrow, outputs: 8, using: &g).initialize(from: teacher, layers: [0, 2])) {
            XCTAssertTrue("\($0)".contains("feed-forward block is 40 wide and the teacher's 32"), "\($0)")
        }
        var options = ModelOptions.text(vocabularySize: 30, paddingId: 0, outputs: 8, hidden: 8, layers: 2, heads: 2, maxTokens: 16, feedForward: 8)
        XCTAssertEqual(try ModelZoo.make("text-transformer", options: options, using: &g).parameterCount,
                       wide.parameterCount - 2 * (24 * 8 + 24 + 8 * 24))
        options.feedForward = 0
        XCTAssertThrowsError(try ModelZoo.make("text-transformer", options: options, using: &g)) {
            XCTAssertTrue("\($0)".contains("feed-forward width of 1 to 16384"), "\($0)")
        }
    }
}
