import Distillation
import NeuralNet
import Tensors
import TestSupport
import XCTest

/// Hidden-state and attention-distribution transfer between text encoders: gradients against
/// finite differences, padding ignored, the layer map and its errors, and the pairing of two
/// encoders' layers (the PyTorch values are in GoldenLossTests).
final class TextLayerTransferTests: XCTestCase {
    /// Two sequences of 4 positions: 4 tokens and 2 tokens.
    static let mask = Tensor([1, 1, 1, 1, 1, 1, 0, 0], shape: [2, 4])

    func batch(student: Tensor, teacher: Tensor) -> DistillationBatch {
        DistillationBatch(studentLogits: Tensor.zeros([2, 2]), teacherLogits: Tensor.zeros([2, 2]), labels: [0, 0],
                          studentFeatures: ["s": student], teacherFeatures: ["t": teacher], inputs: GoldenLossTests.packed(mask: Self.mask))
    }

    func testHiddenStateGradientsMatchFiniteDifferencesAndPaddingAddsNothing() throws {
        let loss = HiddenStateTransfer(pairs: [("s", "t")])
        var g = RandomGenerator(seed: 5)
        try loss.prepare(studentShapes: ["s": [4, 3]], teacherShapes: ["t": [4, 5]], examples: 2, using: &g)
        let projection = try XCTUnwrap(loss.module, "widths 3 and 5 need a projection")
        XCTAssertEqual(projection.namedParameters().map(\.name), ["projection.weight", "projection.bias"])
        let student = randomLeaf([2, 4, 3], seed: 6), teacher = Tensor.randomNormal([2, 4, 5], using: &g)
        assertGradientsMatchFiniteDifferences([student] + projection.parameters, "hidden") { _ in loss.loss(self.batch(student: student, teacher: teacher)) }

        // The padded positions (sequence 1, positions 2 and 3) get no gradient, and what the teacher holds there changes nothing.
        student.zeroGrad()
        let value = loss.loss(batch(student: student, teacher: teacher))
        value.backward()
        let grad = student.grad!.scalars
        XCTAssertEqual(Array(grad[(4 * 3 + 2 * 3)...]), [Float](repeating: 0, count: 6))
        XCTAssertTrue(grad[0..<(4 * 3 + 2 * 3)].contains { $0 != 0 })
        var other = teacher.scalars
        for i in (4 * 5 + 2 * 5)..<(8 * 5) { other[i] = 100 }
        XCTAssertEqual(loss.loss(batch(student: student, teacher: Tensor(other, shape: [2, 4, 5]))).item, value.item)

        // Equal widths: no projection, and zero on the teacher's own states.
        let same = HiddenStateTransfer(pairs: [("s", "t")])
        try same.prepare(studentShapes: ["s": [4, 5]], teacherShapes: ["t": [4, 5]], examples: 2, using: &g)
        XCTAssertNil(same.module)
        XCTAssertEqual(same.loss(batch(student: teacher, teacher: teacher)).item, 0)
    }

    func testAttentionGradientsThroughTheSoftmaxMatchFiniteDifferences() throws {
        let loss = AttentionDistributionTransfer(pairs: [("s", "t")])
        var g = RandomGenerator(seed: 7)
        try loss.prepare(studentShapes: ["s": [2, 4, 4]], teacherShapes: ["t": [2, 4, 4]], examples: 2, using: &g)
        let scores = randomLeaf([2, 2, 4, 4], seed: 8)
        let teacher = Tensor.maskedSoftmax(Tensor.randomNormal([2, 2, 4, 4], using: &g), keyMask: Self.mask, scale: 1)
        func student() -> Tensor { Tensor.maskedSoftmax(scores, keyMask: Self.mask, scale: 1) }
        assertGradientsMatchFiniteDifferences([scores], "attention") { _ in loss.loss(self.batch(student: student(), teacher: teacher)) }
        XCTAssertEqual(loss.loss(batch(student: teacher, teacher: teacher)).item, 0, accuracy: 1e-6)
        XCTAssertGreaterThan(loss.loss(batch(student: student(), teacher: teacher)).item, 0)

        // Padded queries (sequence 1, queries 2 and 3) add nothing, and padded keys have probability exactly 0.
        let probabilities = student().scalars
        for head in 0..<2 {
            for query in 0..<4 {
                let row = ((1 * 2 + head) * 4 + query) * 4
                XCTAssertEqual(Array(probabilities[(row + 2)..<(row + 4)]), [0, 0])
            }
        }
        scores.zeroGrad()
        let value = loss.loss(batch(student: student(), teacher: teacher))
        value.backward()
        for head in 0..<2 {
            let row = ((1 * 2 + head) * 4 + 2) * 4
            XCTAssertEqual(Array(scores.grad!.scalars[row..<(row + 8)]), [Float](repeating: 0, count: 8), "padded queries of head \(head)")
        }
        XCTAssertThrowsError(try loss.prepare(studentShapes: ["s": [2, 4, 4]], teacherShapes: ["t": [3, 4, 4]], examples: 2, using: &g)) {
            XCTAssertTrue("\($0)".contains("the student has 2 attention heads and the teacher 3"), "\($0)")
        }
    }

    func testLayerMapDefaultsToTinyBERTsUniformMappingAndRefusesMistakes() throws {
        func pairs(_ p: [(student: Int, teacher: Int)]) -> [[Int]] { p.map { [$0.student, $0.teacher] } }
        XCTAssertEqual(pairs(TextLayerMap.uniform(student: 3, teacher: 6)), [[0, 1], [1, 3], [2, 5]])
        XCTAssertEqual(pairs(TextLayerMap.uniform(student: 2, teacher: 6)), [[0, 2], [1, 5]])
        XCTAssertEqual(pairs(TextLayerMap.uniform(student: 4, teacher: 4)), [[0, 0], [1, 1], [2, 2], [3, 3]])
        XCTAssertEqual(pairs(TextLayerMap.uniform(student: 4, teacher: 2)), [[0, 0], [1, 0], [2, 0], [3, 1]])
        XCTAssertEqual(pairs(try TextLayerMap.parse("0:1, 1:3,2:5", student: 3, teacher: 6)), [[0, 1], [1, 3], [2, 5]])
        XCTAssertEqual(pairs(try TextLayerMap.parse("2:5", student: 3, teacher: 6)), [[2, 5]])
        for (map, message) in [("0-1", "layer map item '0-1' is not STUDENT:TEACHER"), ("", "layer map item '' is not STUDENT:TEACHER"),
                               ("0:1,", "layer map item '' is not"), ("-1:2", "item '-1:2' is not"), ("0:x", "item '0:x' is not"),
                               ("0:6", "layer map item '0:6': the teacher has 6 layers (0 to 5)"),
                               ("3:1", "layer map item '3:1': the student has 3 layers (0 to 2)"),
                               ("0:1,0:2", "layer map item '0:2': student layer 0 is mapped twice")] {
            XCTAssertThrowsError(try TextLayerMap.parse(map, student: 3, teacher: 6), map) {
                XCTAssertTrue("\($0)".contains(message), "\(map): \($0)")
                XCTAssertFalse("\($0)".contains("\n"))
            }
        }
    }

    func testEncodersArePairedByLayerAndWhatCannotPairIsAnError() throws {
        var g = RandomGenerator(seed: 9)
        let teacher = SentenceEncoder(BertModel(BertConfiguration(vocabularySize: 20, hiddenSize: 12, layers: 4, heads: 2, intermediateSize: 24, maxPositions: 8),
                                                using: &g))
        let student = try ModelZoo.make("text-transformer", options: .text(vocabularySize: 20, paddingId: 0, outputs: 12, hidden: 8, layers: 2, heads: 2, maxTokens: 8),
                                        using: &g)
        let made = try TextLayerTransfer.losses(student: student, teacher: teacher, pairs: nil, hiddenWeight: 2, attentionWeight: 3)
        XCTAssertEqual(made.pairs.map { [$0.student, $0.teacher] }, [[0, 1], [1, 3]])
        XCTAssertEqual(made.losses.map(\.loss.name), ["hidden", "attention"])
        XCTAssertEqual(made.losses.map(\.weight), [2, 3])
        XCTAssertEqual(made.losses[0].loss.studentTaps, ["encoder.layer.0", "encoder.layer.1"])
        XCTAssertEqual(made.losses[1].loss.teacherTaps, ["encoder.layer.1.attention.self.probabilities", "encoder.layer.3.attention.self.probabilities"])
        XCTAssertEqual(try TextLayerTransfer.losses(student: student, teacher: teacher, pairs: nil, hiddenWeight: 0, attentionWeight: 1).losses.map(\.loss.name), ["attention"])

        // The taps exist, and the losses prepare and compute on both models' features of one padded batch.
        let inputs = TokenBatch(ids: [2, 7, 9, 3, 2, 5, 0, 0], attentionMask: [1, 1, 1, 1, 1, 1, 0, 0], batchSize: 2, length: 4).packed()
        student.eval()
        teacher.eval()
        let s = try student.forward(inputs, capturing: made.losses.flatMap(\.loss.studentTaps)).features
        let t = try teacher.forward(inputs, capturing: made.losses.flatMap(\.loss.teacherTaps)).features
        let shapes = { (d: [String: Tensor]) in d.mapValues { Shape(Array($0.shape.dimensions.dropFirst())) } }
        for weighted in made.losses {
            try weighted.loss.prepare(studentShapes: shapes(s), teacherShapes: shapes(t), examples: 2, using: &g)
            let value = weighted.loss.loss(DistillationBatch(studentLogits: Tensor.zeros([2, 12]), teacherLogits: Tensor.zeros([2, 12]), labels: [0, 0],
                                                             studentFeatures: s, teacherFeatures: t, inputs: inputs)).item
            XCTAssertTrue(value.isFinite && value > 0, "\(weighted.loss.name): \(value)")
        }
        XCTAssertNotNil(made.losses[0].loss.module, "widths 8 and 12: a projection")

        let fourHeads = try ModelZoo.make("text-transformer", options: .text(vocabularySize: 20, paddingId: 0, outputs: 12, hidden: 8, layers: 2, heads: 4, maxTokens: 8),
                                          using: &g)
        XCTAssertThrowsError(try TextLayerTransfer.losses(student: fourHeads, teacher: teacher, pairs: nil, hiddenWeight: 0, attentionWeight: 1)) {
            XCTAssertTrue("\($0)".contains("the student has 4 attention heads and the teacher 2"), "\($0)")
        }
        XCTAssertEqual(try TextLayerTransfer.losses(student: fourHeads, teacher: teacher, pairs: nil, hiddenWeight: 1, attentionWeight: 0).losses.count, 1)
        let bag = try ModelZoo.make("text-bag", options: .text(vocabularySize: 20, paddingId: 0, outputs: 12, hidden: 8), using: &g)
        XCTAssertThrowsError(try TextLayerTransfer.losses(student: bag, teacher: teacher, pairs: nil, hiddenWeight: 1, attentionWeight: 0)) {
            XCTAssertTrue("\($0)".contains("the student has no encoder layers"), "\($0)")
        }
        XCTAssertThrowsError(try TextLayerTransfer.losses(student: student, teacher: teacher, pairs: [(0, 4)], hiddenWeight: 1, attentionWeight: 0)) {
            XCTAssertTrue("\($0)".contains("do not fit 2 student and 4 teacher layers"), "\($0)")
        }
    }
}
