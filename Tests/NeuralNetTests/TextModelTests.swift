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
}
