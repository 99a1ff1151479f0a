import Tensors
import XCTest

/// `GradientAverager`: buckets start while backward still runs, in the order backward
/// completes gradients, and the averages land in the `grad`s.
final class GradientAveragerTests: XCTestCase {
    /// A world of two whose other rank holds the same values: a sum doubles them. It records
    /// the size of each sum started, and whether backward had finished at that moment.
    final class Mirror: Communicator {
        var rank: Int { 0 }
        var size: Int { 2 }
        var started: [Int] = []
        var backwardFinished = false
        var startedDuringBackward = 0
        func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) { for i in values.indices { values[i] *= 2 } }
        func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) { for i in values.indices { values[i] *= 2 } }
        func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) {}
        func allGather(_ bytes: [UInt8]) -> [[UInt8]] { [bytes, bytes] }
        func barrier() {}
        func startAllReduceSum(_ values: UnsafeMutableBufferPointer<Float>) -> any StartedCollective {
            started.append(values.count)
            if !backwardFinished { startedDuringBackward += 1 }
            allReduceSum(values)
            return CompletedCollective()
        }
    }

    func testBucketsStartDuringBackwardAndAverage() {
        var g = RandomGenerator(seed: 1)
        // Three layers of 64×64 weights (16 KiB each) and biases; buckets of 16 KiB, so each layer fills one.
        func parameter(_ shape: Shape) -> Tensor {
            let t = Tensor.randomNormal(shape, standardDeviation: 0.2, using: &g)
            t.requiresGrad = true
            return t
        }
        let weights = (0..<3).map { _ in parameter([64, 64]) }
        let biases = (0..<3).map { _ in parameter([64]) }
        let x = Tensor.randomNormal([8, 64], using: &g)
        func loss() -> Tensor {
            var h = x
            for (w, b) in zip(weights, biases) { h = (h.matmul(w) + b).relu() }
            return h.sum()
        }
        loss().backward()
        let expected = (weights + biases).map { $0.grad!.scalars }
        for p in weights + biases { p.grad = nil }

        let world = Mirror()
        let averager = GradientAverager(world, parameters: weights + biases, bucketBytes: 16 << 10)
        loss().backward(gradientReady: averager.ready)
        world.backwardFinished = true
        averager.finish()
        XCTAssertEqual(world.startedDuringBackward, 3, "buckets started before backward ended: \(world.started)")
        // The last layer's weight completes first and fills the first bucket; each later one
        // holds a bias and the next weight; the first layer's bias goes last, from finish().
        XCTAssertEqual(world.started, [4096, 4160, 4160, 64])
        XCTAssertEqual(world.started.reduce(0, +), 3 * (64 * 64 + 64))
        for (p, e) in zip(weights + biases, expected) { XCTAssertEqual(p.grad!.scalars, e) }

        // Without overlap nothing starts before finish(), and the numbers are the same.
        for p in weights + biases { p.grad = nil }
        let late = Mirror()
        let plain = GradientAverager(late, parameters: weights + biases, bucketBytes: 16 << 10, overlap: false)
        loss().backward(gradientReady: plain.ready)
        late.backwardFinished = true
        plain.finish()
        XCTAssertEqual(late.startedDuringBackward, 0)
        XCTAssertEqual(late.started, world.started)
        for (p, e) in zip(weights + biases, expected) { XCTAssertEqual(p.grad!.scalars, e) }
    }
}
