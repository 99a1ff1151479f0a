import Foundation
import Tensors
import XCTest

/// Synchronised batch norm: processes that each hold part of a batch, summing their
/// per-channel statistics, compute what one process computes on the whole batch — the
/// output, the input's gradient, the running statistics, and (summed over the parts) γ's
/// and β's gradients. The "processes" here are threads summing through a shared buffer.
final class SynchronizedBatchNormTests: XCTestCase {
    /// Sums per-channel values over `size` threads (each call blocks until all have called).
    final class ThreadSum: @unchecked Sendable {
        let size: Int
        private let condition = NSCondition()
        private var partial: [Double] = [], result: [Double] = []
        private var arrived = 0, round = 0
        init(size: Int) { self.size = size }

        func sum(_ values: UnsafeMutableBufferPointer<Double>) {
            condition.lock()
            defer { condition.unlock() }
            if arrived == 0 { partial = [Double](repeating: 0, count: values.count) }
            for i in values.indices { partial[i] += values[i] }
            arrived += 1
            let mine = round
            if arrived == size {
                result = partial
                arrived = 0
                round += 1
                condition.broadcast()
            } else {
                while round == mine { condition.wait() }
            }
            for i in values.indices { values[i] = result[i] }
        }
    }

    struct Outcome {
        var output: [Float], inputGradient: [Float], weightGradient: [Float], biasGradient: [Float], runningMean: [Float], runningVariance: [Float]
    }

    /// Batch norm of `x` ([n, c, h, w] as scalars) in training, with loss Σ y·r, and its gradients.
    static func run(_ x: [Float], _ r: [Float], n: Int, c: Int, spatial: Int, synchronize: ((UnsafeMutableBufferPointer<Double>) -> Void)?) -> Outcome {
        let input = Tensor(x, shape: [n, c, spatial], requiresGrad: true)
        let weight = Tensor((0..<c).map { 1 + Float($0) * 0.25 }, shape: [c], requiresGrad: true)
        let bias = Tensor((0..<c).map { Float($0) * 0.1 }, shape: [c], requiresGrad: true)
        let mean = Tensor([Float](repeating: 0, count: c), shape: [c]), variance = Tensor([Float](repeating: 1, count: c), shape: [c])
        let y = Tensor.batchNorm(input, runningMean: mean, runningVariance: variance, weight: weight, bias: bias, training: true, synchronize: synchronize)
        (y * Tensor(r, shape: [n, c, spatial])).sum().backward()
        return Outcome(output: y.scalars, inputGradient: input.grad!.scalars, weightGradient: weight.grad!.scalars, biasGradient: bias.grad!.scalars,
                       runningMean: mean.scalars, runningVariance: variance.scalars)
    }

    func testTwoPartsSynchronisedEqualTheWholeBatch() {
        checkTwoParts(offset: 0)
    }

    /// The statistics travel as Σx and Σx² in one exchange: a mean 2,000 times the spread
    /// still gives the whole batch's numbers (no cancellation in the variance, which float
    /// sums of x² would lose entirely here). The inputs themselves are then only as exact as
    /// float's step at 1,000 (6e-5) over σ ≈ 0.3, 2e-4 in x̂: hence the tolerance.
    func testTwoPartsSynchronisedKeepTheVarianceOfOffsetValues() {
        checkTwoParts(offset: 1000, spread: 0.5, tolerance: 1e-3)
    }

    func checkTwoParts(offset: Float, spread: Float = 2.5, tolerance: Float = 1e-5, file: StaticString = #filePath, line: UInt = #line) {
        let n = 6, c = 3, spatial = 5, perExample = c * spatial
        var generator = RandomGenerator(seed: 7)
        let x = (0..<(n * perExample)).map { _ in offset + 0.5 + Float.random(in: -spread...spread, using: &generator) }
        let r = (0..<(n * perExample)).map { _ in Float.random(in: -1...1, using: &generator) }
        let whole = Self.run(x, r, n: n, c: c, spatial: spatial, synchronize: nil)

        // Two parts of 2 and 4 examples (unequal, as a short last batch can be), on two threads.
        let cuts = [0, 2, n]
        let hub = ThreadSum(size: 2)
        nonisolated(unsafe) var parts = [Outcome?](repeating: nil, count: 2)
        let threads = Compute.threadCount
        Compute.threadCount = 1  // one caller per worker pool
        defer { Compute.threadCount = threads }
        DispatchQueue.concurrentPerform(iterations: 2) { k in
            let range = (cuts[k] * perExample)..<(cuts[k + 1] * perExample)
            parts[k] = Self.run(Array(x[range]), Array(r[range]), n: cuts[k + 1] - cuts[k], c: c, spatial: spatial, synchronize: { hub.sum($0) })
        }
        let first = parts[0]!, second = parts[1]!
        func close(_ a: [Float], _ b: [Float], _ what: String) {
            XCTAssertEqual(a.count, b.count, what)
            for (u, v) in zip(a, b) { XCTAssertEqual(u, v, accuracy: tolerance * max(1, abs(u)), what, file: file, line: line) }
        }
        close(first.output + second.output, whole.output, "output")
        // The loss is a sum over the parts, so x's gradient is each part's own.
        close(first.inputGradient + second.inputGradient, whole.inputGradient, "dL/dx")
        // dγ = Σ g·x̂ and dβ = Σ g: each part holds its share; their sum is the whole's.
        close(zip(first.weightGradient, second.weightGradient).map { $0 + $1 }, whole.weightGradient, "dL/dγ")
        close(zip(first.biasGradient, second.biasGradient).map { $0 + $1 }, whole.biasGradient, "dL/dβ")
        close(first.runningMean, whole.runningMean, "running mean")
        close(second.runningVariance, whole.runningVariance, "running variance (unbiased over the global batch)")

        // Unsynchronised parts do not: the test can tell the difference.
        let alone = Self.run(Array(x[0..<(2 * perExample)]), Array(r[0..<(2 * perExample)]), n: 2, c: c, spatial: spatial, synchronize: nil)
        XCTAssertGreaterThan(zip(alone.output, whole.output).map { abs($0 - $1) }.max()!, 1e-2, file: file, line: line)
    }
}
