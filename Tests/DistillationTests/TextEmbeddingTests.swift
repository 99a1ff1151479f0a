import Datasets
import Distillation
import Foundation
import NeuralNet
import Tensors
import XCTest

/// Text embeddings of a dataset in its order, the agreement measures, and the embedding loss.
final class TextEmbeddingTests: XCTestCase {
    func testEmbeddingsOfTextsFollowTheDataOrderWhateverTheBatches() throws {
        var g = RandomGenerator(seed: 3)
        let model = try ModelZoo.make("text-bag", options: .text(vocabularySize: 40, paddingId: 0, outputs: 6, hidden: 8), using: &g)
        let ids: [[Int32]] = [[1, 5, 9, 2], [1, 2], [1, 7, 7, 7, 7, 2], [1, 3, 2], [1, 30, 31, 2]]
        let data = Dataset(tokenSequences: ids, padId: 0, labels: [0, 0, 0, 0, 0], classNames: ["all"])
        let one = try model.embeddings(ofTexts: data, batchSize: 1), two = try model.embeddings(ofTexts: data, batchSize: 2)
        XCTAssertEqual(one.shape, [5, 6])
        for (a, b) in zip(one.scalars, two.scalars) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        let third = model.predictions(try data.batch([2]))
        XCTAssertEqual(Array(one.scalars[12..<18]), third.scalars)
        XCTAssertThrowsError(try model.embeddings(ofTexts: Dataset(inputs: Tensor.zeros([2, 3]), labels: [0, 0], classNames: ["a"])))
    }

    func testAgreementOfEqualAndOfUnrelatedEmbeddings() throws {
        XCTAssertEqual(EmbeddingAgreement.spearman([1, 2, 3, 4], [10, 20, 40, 30]), 0.8, accuracy: 1e-12)
        XCTAssertEqual(EmbeddingAgreement.spearman([1, 1, 2], [5, 5, 9]), 1, accuracy: 1e-12)
        var g = RandomGenerator(seed: 4)
        let a = Tensor.randomNormal([50, 8], using: &g), b = Tensor.randomNormal([50, 8], using: &g)
        let same = try EmbeddingAgreement(student: a * 3, teacher: a, pairs: 500)
        XCTAssertEqual(same.meanCosine, 1, accuracy: 1e-6)
        XCTAssertEqual(same.similaritySpearman, 1, accuracy: 1e-9)
        XCTAssertEqual(same.pairs, 500)
        let unrelated = try EmbeddingAgreement(student: a, teacher: b, pairs: 2_000)
        XCTAssertLessThan(abs(unrelated.meanCosine), 0.2)
        XCTAssertLessThan(abs(unrelated.similaritySpearman), 0.15)
        XCTAssertThrowsError(try EmbeddingAgreement(student: a, teacher: Tensor.zeros([3, 8])))
    }

    func testEmbeddingLossIsZeroOnTheTeachersEmbeddingsAndPullsTowardsThem() {
        let teacher = Tensor([0.6, 0.8, 0, 1], shape: [2, 2])
        let loss = EmbeddingDistillation()
        XCTAssertEqual(loss.loss(DistillationBatch(studentLogits: teacher, teacherLogits: teacher, labels: [0, 0])).item, 0, accuracy: 1e-6)
        let student = Tensor([1, 0, 0, 2], shape: [2, 2])
        student.requiresGrad = true
        let value = loss.loss(DistillationBatch(studentLogits: student, teacherLogits: teacher, labels: [0, 0]))
        // ((0.4² + 0.8²) + 1²) / 2 for the squared distances, plus 1 − (0.6 + 1) / 2 for the cosines.
        XCTAssertEqual(value.item, 0.9 + 0.2, accuracy: 1e-5)
        value.backward()
        XCTAssertLessThan(student.grad!.scalars[1], 0, "the student's second value moves up towards the teacher's 0.8")
    }
}
