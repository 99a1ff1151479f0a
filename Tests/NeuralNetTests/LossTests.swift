import Foundation
import NeuralNet
import Tensors
import TestSupport
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
            return Tensor.crossEntropy(logits: x[0], labels: c.params["labels"] as! [Int], labelSmoothing: c.float("smoothing"))
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
        XCTAssertGreaterThanOrEqual(cases.count, 13)
        assertMatchPyTorch(cases, Self.apply)
    }

    func testEveryLossPassesFiniteDifferences() throws {
        assertFiniteDifferences(try Self.loadCases(), Self.apply)
    }
}
