import Foundation
import NeuralNet
import Tensors
import TestSupport
import Training
import XCTest

/// Values and gradients of the losses against PyTorch (fixture: scripts/generate_golden_ops.py,
/// which writes them to Fixtures/losses_golden.json), and finite-difference checks.
final class LossTests: XCTestCase {
    static func loadCases() throws -> [GoldenCase] {
        try GoldenCase.load(URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/losses_golden.json"))
    }

    /// Applies the fixture's loss to `x` with its parameters.
    static func apply(_ c: GoldenCase, _ x: [Tensor]) -> Tensor {
        switch c.op {
        case "crossEntropy":
            return Tensor.crossEntropy(logits: x[0], labels: c.params["labels"] as! [Int], labelSmoothing: c.float("smoothing"),
                                       classWeights: c.params["weights"] == nil ? nil : c.floats("weights"))
        case "crossEntropySoft": return Tensor.crossEntropy(logits: x[0], targetProbabilities: x[1])
        case "klDivergence": return Tensor.klDivergence(logProbabilities: x[0], target: x[1], targetIsLog: c.bool("targetIsLog"))
        case "mse": return Tensor.meanSquaredError(x[0], x[1])
        case "smoothL1": return Tensor.smoothL1(x[0], x[1], beta: c.params["beta"] == nil ? 1 : c.float("beta"))
        case "cosineSimilarity": return Tensor.cosineSimilarity(x[0], x[1], alongAxis: c.int("axis"))
        case "pairwiseDistances": return Tensor.pairwiseDistances(x[0], x[1])
        case "l2Normalize": return x[0].l2Normalized(alongAxis: c.int("axis"))
        default: preconditionFailure("fixture op \(c.op) has no Swift counterpart")
        }
    }

    func testEveryLossMatchesPyTorch() throws {
        let cases = try Self.loadCases()
        XCTAssertGreaterThanOrEqual(cases.count, 15)
        XCTAssertEqual(cases.filter { $0.params["weights"] != nil }.count, 2, "class-weighted cross-entropy, with and without smoothing")
        assertMatchPyTorch(cases, Self.apply)
    }

    func testEveryLossPassesFiniteDifferences() throws {
        assertFiniteDifferences(try Self.loadCases(), Self.apply)
    }

    /// Weights of 1 are no weights; the weighted mean is Σ w[yᵢ]·ceᵢ / Σ w[yᵢ], by hand.
    func testClassWeightsGiveTheWeightedMean() {
        let logits = Tensor([2, 0, 0,  0, 1, 0,  0, 0, 3,  1, 1, 1], shape: [4, 3])
        let labels = [0, 1, 0, 2]
        let plain = Tensor.crossEntropy(logits: logits, labels: labels).item
        XCTAssertEqual(Tensor.crossEntropy(logits: logits, labels: labels, classWeights: [1, 1, 1]).item, plain)
        let perExample = (0..<4).map { i -> Float in
            let row = logits.scalars[(i * 3)..<(i * 3 + 3)]
            return log(row.map { exp($0) }.reduce(0, +)) - row[i * 3 + labels[i]]
        }
        let weights: [Float] = [0.5, 2, 4]
        // (0.5·ce₀ + 2·ce₁ + 0.5·ce₂ + 4·ce₃) / (0.5 + 2 + 0.5 + 4)
        let expected = (0.5 * perExample[0] + 2 * perExample[1] + 0.5 * perExample[2] + 4 * perExample[3]) / 7
        XCTAssertEqual(Tensor.crossEntropy(logits: logits, labels: labels, classWeights: weights).item, expected, accuracy: 1e-5)
    }
}
