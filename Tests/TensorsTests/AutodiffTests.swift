import Tensors
import TestSupport
import XCTest

final class AutodiffTests: XCTestCase {
    func testGradientsAccumulateUntilCleared() {
        let x = Tensor([1, 2, 3], requiresGrad: true)
        (x * x).sum().backward()            // d/dx Σx² = 2x
        XCTAssertEqual(x.grad?.scalars, [2, 4, 6])
        (x * 3).sum().backward()            // + 3
        XCTAssertEqual(x.grad?.scalars, [5, 7, 9])
        x.zeroGrad()
        XCTAssertNil(x.grad)
    }

    func testSharedSubexpressionSumsBothPaths() {
        let x = Tensor([2], requiresGrad: true)
        let y = x * x                        // y = x²
        (y * y + y).sum().backward()         // d/dx (x⁴ + x²) = 4x³ + 2x = 36
        XCTAssertEqual(x.grad?.item, 36)
    }

    func testBroadcastGradientIsReducedToOperandShape() {
        let a = Tensor.ones([2, 3])
        let b = Tensor([1, 2, 3], requiresGrad: true)
        (a * b).sum().backward()             // b is broadcast over 2 rows: each gets 2
        XCTAssertEqual(b.grad?.shape, [3])
        XCTAssertEqual(b.grad?.scalars, [2, 2, 2])
    }

    func testSelectingNeverMixesInTheUnchosenValue() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3], requiresGrad: true)
        let masked = Tensor([-.infinity, 7, -.infinity], requiresGrad: true)
        let condition = Tensor([1, 0, 1])
        let y = Tensor.selecting(a, where: condition, otherwise: masked)     // a where 1, else the masked row
        XCTAssertEqual(y.scalars, [1, 7, 3, 4, 7, 6])
        (y * 2).sum().backward()                                             // d/da = 2 where chosen; d/dmasked sums 2 over the rows
        XCTAssertEqual(a.grad?.scalars, [2, 0, 2, 2, 0, 2])
        XCTAssertEqual(masked.grad?.scalars, [0, 4, 0])
    }

    func testNoGradientScopeRecordsNothing() {
        let x = Tensor([1, 2], requiresGrad: true)
        let y = withoutGradients { (x * x).exp().sum() }
        XCTAssertFalse(y.isRecorded)
        XCTAssertTrue((x * x).isRecorded)
        XCTAssertTrue(GradientRecording.isEnabled)
        withoutGradients {
            withoutGradients { XCTAssertFalse(GradientRecording.isEnabled) }
            XCTAssertFalse(GradientRecording.isEnabled, "nested scope restores the outer state")
        }
    }

    func testDetachedStopsGradients() {
        let x = Tensor([3], requiresGrad: true)
        let y = x * x.detached()             // gradient flows only through the first factor: d/dx = x = 3
        y.sum().backward()
        XCTAssertEqual(x.grad?.item, 3)
    }

    func testTenThousandOpChainDoesNotOverflowTheStack() {
        let x = Tensor([1], requiresGrad: true)
        var y = x
        for _ in 0..<10_000 { y = y * 1.0001 }
        y.sum().backward()
        XCTAssertEqual(x.grad!.item, Foundation.pow(1.0001, 10_000), accuracy: 1e-2)
    }

    func testDroppingADeepUnusedGraphDoesNotOverflowTheStack() {
        let x = Tensor([1], requiresGrad: true)
        var y: Tensor? = x
        for _ in 0..<200_000 { y = y! + 1 }
        y = nil                              // released iteratively, not by nested deinits
        XCTAssertNil(y)
    }

    func testGraphMemoryIsReleasedAfterBackward() {
        let x = Tensor([1, 2, 3], requiresGrad: true)
        weak var intermediate: Tensor?
        let loss: Tensor = {
            let hidden = (x * 2).exp()
            intermediate = hidden
            return hidden.sum()
        }()
        XCTAssertNotNil(intermediate, "the graph keeps intermediates alive until backward")
        loss.backward()
        XCTAssertNil(intermediate, "backward releases the graph's saved tensors")
    }

    func testRandomGeneratorIsReproducible() {
        var a = RandomGenerator(seed: 7), b = RandomGenerator(seed: 7), c = RandomGenerator(seed: 8)
        let first = Tensor.randomNormal([1000], using: &a).scalars
        XCTAssertEqual(first, Tensor.randomNormal([1000], using: &b).scalars)
        XCTAssertNotEqual(first, Tensor.randomNormal([1000], using: &c).scalars)
        var d = RandomGenerator(seed: 1)
        let big = Tensor.randomNormal([100_000], mean: 2, standardDeviation: 3, using: &d)
        XCTAssertEqual(big.mean().item, 2, accuracy: 0.05)
        XCTAssertEqual(big.variance(alongAxes: nil).item.squareRoot(), 3, accuracy: 0.05)
        let restored = RandomGenerator(state: a.state)
        var e = restored
        XCTAssertEqual(a.next(), e.next(), "a generator restored from its state continues the same stream")
    }

    func testDropoutIsSeededScaledAndOffInEvaluation() {
        let x = Tensor.ones([10_000])
        var g1 = RandomGenerator(seed: 3), g2 = RandomGenerator(seed: 3)
        let y = x.dropout(probability: 0.3, training: true, using: &g1)
        XCTAssertEqual(y.scalars, x.dropout(probability: 0.3, training: true, using: &g2).scalars)
        let kept = y.scalars.filter { $0 != 0 }
        XCTAssertEqual(Double(kept.count) / 10_000, 0.7, accuracy: 0.02)
        XCTAssertEqual(kept.first!, 1 / 0.7, accuracy: 1e-6)
        XCTAssertEqual(x.dropout(probability: 0.3, training: false, using: &g1).scalars, x.scalars)
        let leaf = Tensor.ones([100])
        leaf.requiresGrad = true
        var g3 = RandomGenerator(seed: 5)
        let dropped = leaf.dropout(probability: 0.5, training: true, using: &g3)
        dropped.sum().backward()
        XCTAssertEqual(leaf.grad!.scalars, dropped.scalars, "the gradient is the same mask")
    }
}
