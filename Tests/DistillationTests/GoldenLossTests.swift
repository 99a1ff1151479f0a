import Distillation
import Foundation
import NeuralNet
import Tensors
import TestSupport
import Training
import XCTest

/// Every distillation loss against a PyTorch implementation of the same formula
/// (scripts/generate_golden_distillation.py): value and gradients.
final class GoldenLossTests: XCTestCase {
    nonisolated(unsafe) static let cases: [[String: Any]] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/losses_golden.json")
        let root = try! JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        return root["cases"] as! [[String: Any]]
    }()

    static func tensor(_ any: Any?) -> Tensor {
        let e = any as! [String: Any]
        return Tensor((e["data"] as! [NSNumber]).map(\.floatValue), shape: Shape(e["shape"] as! [Int]))
    }

    func run(_ name: String, tolerance: Float = 1e-4, _ compute: ([String: Tensor], [String: Tensor], [String: Any]) throws -> Tensor) throws {
        let c = try XCTUnwrap(Self.cases.first { $0["name"] as? String == name }, name)
        let inputs = (c["inputs"] as! [String: Any]).mapValues { value -> Tensor in
            let t = Self.tensor(value)
            t.requiresGrad = true
            return t
        }
        let teacher = (c["teacher"] as! [String: Any]).mapValues(Self.tensor)
        let loss = try compute(inputs, teacher, c)
        XCTAssertEqual(loss.item, (c["loss"] as! NSNumber).floatValue, accuracy: tolerance * max(1, abs((c["loss"] as! NSNumber).floatValue)), name)
        loss.backward()
        for (key, grad) in c["grads"] as! [String: Any] {
            assertClose(inputs[key]!.grad!.scalars, (grad as! [NSNumber]).map(\.floatValue), absolute: 1e-5, relative: 1e-3, "\(name) gradient of \(key)")
        }
    }

    func batch(_ s: [String: Tensor], _ t: [String: Tensor], labels: [Int] = Array(repeating: 0, count: 6)) -> DistillationBatch {
        DistillationBatch(studentLogits: s["logits"] ?? Tensor.zeros([6, 5]), teacherLogits: t["logits"] ?? Tensor.zeros([6, 5]), labels: labels,
                          studentFeatures: ["s": s["feature"] ?? s["embedding"] ?? Tensor.zeros([6])],
                          teacherFeatures: ["t": t["feature"] ?? t["embedding"] ?? Tensor.zeros([6])])
    }

    func prepared<L: DistillationLoss>(_ loss: L, _ s: [String: Tensor], _ t: [String: Tensor]) throws -> L {
        var g = RandomGenerator(seed: 0)
        let shape = { (x: Tensor) in Shape(Array(x.shape.dimensions.dropFirst())) }
        try loss.prepare(studentShapes: ["s": shape((s["feature"] ?? s["embedding"])!)],
                         teacherShapes: ["t": shape((t["feature"] ?? t["embedding"])!)], examples: 6, using: &g)
        return loss
    }

    func testKnowledgeDistillation() throws {
        try run("kd") { s, t, _ in KnowledgeDistillation(temperature: 4).loss(batch(s, t)) }
    }

    func testDecoupledKnowledgeDistillation() throws {
        try run("dkd") { s, t, c in
            let labels = (c["params"] as! [String: Any])["labels"] as! [Int]
            return DecoupledKnowledgeDistillation(warmupEpochs: 0).loss(batch(s, t, labels: labels))
        }
    }

    func testFitNets() throws {
        try run("fitnets") { s, t, c in
            let loss = try prepared(FitNets(studentLayer: "s", teacherLayer: "t"), s, t)
            let extra = (c["extra"] as! [String: Any]).mapValues(Self.tensor)
            try loss.module!.loadStateDict(extra)
            return loss.loss(batch(s, t))
        }
    }

    func testAttentionTransfer() throws {
        try run("at") { s, t, _ in
            try prepared(AttentionTransfer(pairs: [(student: "s", teacher: "t")]), s, t).loss(batch(s, t))
        }
    }

    func testRelationalKnowledgeDistillation() throws {
        try run("rkd") { s, t, _ in RelationalKnowledgeDistillation(studentLayer: "s", teacherLayer: "t").loss(batch(s, t)) }
    }

    func testSimilarityPreserving() throws {
        try run("sp") { s, t, _ in SimilarityPreserving(studentLayer: "s", teacherLayer: "t").loss(batch(s, t)) }
    }

    func testProbabilisticKnowledgeTransfer() throws {
        try run("pkt") { s, t, _ in ProbabilisticKnowledgeTransfer(studentLayer: "s", teacherLayer: "t").loss(batch(s, t)) }
    }

    func testContrastiveRepresentationContrast() throws {
        try run("crd contrast") { s, t, c in
            let p = c["params"] as! [String: Any]
            return ContrastiveRepresentationDistillation.contrast(
                anchors: s["anchor"]!.l2Normalized(alongAxis: 1), memory: t["memory"]!, indices: p["indices"] as! [Int],
                negativeRows: p["negativeRows"] as! [Int], temperature: (p["temperature"] as! NSNumber).floatValue)
        }
    }

    /// A packed token batch [3, 3, length] whose mask row is `mask` (ids and types 0): what the
    /// text layer losses read the padding from.
    static func packed(mask: Tensor) -> Tensor {
        let (batch, length) = (mask.shape[0], mask.shape[1])
        let m = mask.scalars
        var values: [Float] = []
        for b in 0..<batch { values += [Float](repeating: 0, count: length) + m[(b * length)..<((b + 1) * length)] + [Float](repeating: 0, count: length) }
        return Tensor(values, shape: [batch, 3, length])
    }

    func layerBatch(_ s: [String: Tensor], _ t: [String: Tensor], mask: Tensor) -> DistillationBatch {
        DistillationBatch(studentLogits: Tensor.zeros([3, 2]), teacherLogits: Tensor.zeros([3, 2]), labels: [0, 0, 0],
                          studentFeatures: s, teacherFeatures: t, inputs: Self.packed(mask: mask))
    }

    func testHiddenStateTransfer() throws {
        try run("hidden") { s, t, c in
            let extra = (c["extra"] as! [String: Any]).mapValues(Self.tensor)
            let loss = HiddenStateTransfer(pairs: [("layer0", "layer0"), ("layer1", "layer1")])
            var g = RandomGenerator(seed: 0)
            try loss.prepare(studentShapes: ["layer0": [5, 4], "layer1": [5, 4]], teacherShapes: ["layer0": [5, 6], "layer1": [5, 6]], examples: 3, using: &g)
            try loss.module!.loadStateDict(["projection.weight": extra["projection.weight"]!, "projection.bias": extra["projection.bias"]!])
            return loss.loss(layerBatch(s, t, mask: extra["mask"]!))
        }
    }

    func testAttentionDistributionTransfer() throws {
        try run("attention") { s, t, c in
            let mask = Self.tensor((c["extra"] as! [String: Any])["mask"])
            return AttentionDistributionTransfer(pairs: [("layer0", "layer0"), ("layer1", "layer1")]).loss(layerBatch(s, t, mask: mask))
        }
    }

    func testEmbeddingDistillation() throws {
        try run("embedding") { s, t, _ in EmbeddingDistillation().loss(batch(s, t)) }
    }

    func testDecoupledWarmupRampsLinearly() {
        var g = RandomGenerator(seed: 1)
        let s = Tensor.randomNormal([4, 5], using: &g), t = Tensor.randomNormal([4, 5], using: &g)
        let loss = DecoupledKnowledgeDistillation(warmupEpochs: 20)
        let full = DecoupledKnowledgeDistillation(warmupEpochs: 0).loss(DistillationBatch(studentLogits: s, teacherLogits: t, labels: [0, 1, 2, 3])).item
        let first = loss.loss(DistillationBatch(studentLogits: s, teacherLogits: t, labels: [0, 1, 2, 3], epoch: 0)).item
        XCTAssertEqual(first, full / 20, accuracy: 1e-5)
        let late = loss.loss(DistillationBatch(studentLogits: s, teacherLogits: t, labels: [0, 1, 2, 3], epoch: 30)).item
        XCTAssertEqual(late, full, accuracy: 1e-5)
    }
}
