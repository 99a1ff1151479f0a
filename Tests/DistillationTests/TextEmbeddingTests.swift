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

    /// The Trainer's teacher cache for texts (`Trainer.textTeacherLogits`: batches of similar
    /// lengths): every row is the teacher's output for that text, in the data's order, as the
    /// teacher gives it text by text; the KD run reads it back from the cache folder.
    func testTeacherLogitsOfTextsAreCachedInTheDataOrder() throws {
        var g = RandomGenerator(seed: 5)
        var options = ModelOptions.text(vocabularySize: 40, paddingId: 0, outputs: 3, hidden: 8)
        options.classifies = true
        let teacher = try ModelZoo.make("text-bag", options: options, using: &g)
        let student = try ModelZoo.make("text-bag", options: options, using: &g)
        var ids: [[Int32]] = []
        for i in 0..<70 {
            let words: [Int32] = (0..<(1 + (i * 7) % 11)).map { (k: Int) -> Int32 in Int32(4 + (i * 13 + k * 5) % 30) }
            ids.append([1] + words + [2])
        }
        let data = Dataset(tokenSequences: ids, padId: 0, labels: ids.indices.map { $0 % 3 }, classNames: ["a", "b", "c"])
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("text-teacher-cache-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var configuration = TrainerConfiguration()
        configuration.epochs = 1
        configuration.batchSize = 16
        configuration.cacheDirectory = folder
        configuration.lengthBuckets = true
        let trainer = try Trainer(model: student, teachers: [Teacher(.model(teacher))], losses: [WeightedLoss(KnowledgeDistillation(temperature: 2), weight: 0.5)],
                                  configuration: configuration)
        try trainer.fit(train: data)
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix("teacher-") }
        XCTAssertEqual(files.count, 1)
        let cached = try TeacherCache.load((folder as NSString).appendingPathComponent(files[0])).logits
        XCTAssertEqual(cached.shape, [70, 3])
        for (row, sequence) in ids.enumerated() {
            let alone = teacher.predictions(TokenBatch(sequences: [sequence.map(Int.init)]).packed()).scalars
            for (a, b) in zip(Array(cached.scalars[(row * 3)..<(row * 3 + 3)]), alone) { XCTAssertEqual(a, b, accuracy: 1e-5, "text \(row)") }
        }
    }
}
