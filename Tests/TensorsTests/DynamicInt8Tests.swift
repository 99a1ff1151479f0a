import Foundation
import Tensors
import TestSupport
import XCTest

/// Dynamic int8 linear layers (`Int8Kernels.dynamicLinear`, `DynamicInt8Weights`): the bits of
/// a straightforward Swift reference on every kernel path and thread count, each row's
/// result independent of the other rows, and errors within what int8 rounding allows.
final class DynamicInt8Tests: XCTestCase {
    override func tearDown() {
        Compute.forceKernelPath(nil)
        Compute.threadCount = ProcessInfo.processInfo.activeProcessorCount
    }

    /// The steps `dynamicLinear` documents, written out for one row at a time, in Int64.
    private static func reference(_ x: [Float], rows: Int, _ w: DynamicInt8Weights, bias: [Float]?) -> [Float] {
        let (n, k) = (w.outputs, w.inputs)
        let q8 = w.packed.weights
        var out = [Float](repeating: 0, count: rows * n)
        for i in 0..<rows {
            let row = Array(x[(i * k)..<((i + 1) * k)])
            let lo = min(row.min()!, 0), hi = max(row.max()!, 0)
            guard row.allSatisfy(\.isFinite) else {
                for j in 0..<n { out[i * n + j] = .nan }
                continue
            }
            var a: Float = 1, z: Float = 0
            if hi > lo {
                a = (hi - lo) / 255
                z = min(max((-lo / a).rounded(.toNearestOrEven), 0), 255)
            }
            let inverse = 1 / a
            let q = row.map { hi > lo ? Int64(min(max(($0 * inverse).rounded(.toNearestOrEven) + z, 0), 255)) : 0 }
            for j in 0..<n {
                var sum: Int64 = 0
                for c in 0..<k { sum += (q[c] - Int64(z)) * Int64(q8[j * k + c]) }
                let v = Float(Int32(sum)) * (a * w.scales[j])
                out[i * n + j] = bias.map { v + $0[j] } ?? v
            }
        }
        return out
    }

    private func random(_ count: Int, _ g: inout RandomGenerator, scale: Float = 1) -> [Float] {
        Tensor.randomNormal([count], standardDeviation: scale, using: &g).scalars
    }

    func testDynamicLinearGivesTheReferenceBitsOnEveryPathAndThreadCount() throws {
        var g = RandomGenerator(seed: 3)
        // Rows past one block of 64, inputs not a multiple of 4 or 16, outputs past a panel of 16.
        for (rows, inputs, outputs) in [(1, 1, 1), (3, 7, 5), (70, 100, 37), (130, 384, 48)] {
            let w = DynamicInt8Weights(quantizing: random(outputs * inputs, &g, scale: 0.2), outputs: outputs, inputs: inputs)
            var x = random(rows * inputs, &g, scale: 2)
            if rows > 2 {
                for c in 0..<inputs { x[inputs + c] = 0 }                 // a row of zeros: the bias alone
                for c in 0..<inputs { x[2 * inputs + c] = abs(x[2 * inputs + c]) } // no negative value: zero point 0
            }
            if rows > 64 { x[65 * inputs + 1] = .nan }                          // a bad row in the second block: NaN
            let bias = random(outputs, &g)
            let expected = Self.reference(x, rows: rows, w, bias: bias)
            let withoutBias = Self.reference(x, rows: rows, w, bias: nil)
            let input = Tensor(x, shape: [rows, inputs]), b = Tensor(bias)
            for path in KernelPath.allCases where path.isSupported {
                for threads in [1, 2] {
                    Compute.forceKernelPath(path)
                    Compute.threadCount = threads
                    let y = Tensor.int8Linear(input, weights: w, bias: b).scalars
                    XCTAssertEqual(y.map(\.bitPattern), expected.map(\.bitPattern), "\(rows)×\(inputs)→\(outputs) on \(path), \(threads) threads")
                    let unbiased = Tensor.int8Linear(input, weights: w, bias: nil).scalars
                    XCTAssertEqual(unbiased.map(\.bitPattern), withoutBias.map(\.bitPattern), "\(rows)×\(inputs)→\(outputs) without bias on \(path)")
                }
            }
            if rows > 2 { XCTAssertEqual(Array(expected[outputs..<(2 * outputs)]), bias) }
        }
    }

    func testEachRowIsQuantizedOnItsOwn() {
        var g = RandomGenerator(seed: 5)
        let w = DynamicInt8Weights(quantizing: random(24 * 40, &g), outputs: 24, inputs: 40)
        let x = Tensor(random(90 * 40, &g), shape: [3, 30, 40])
        let all = Tensor.int8Linear(x, weights: w, bias: nil)
        XCTAssertEqual(all.shape, [3, 30, 24])
        // A row alone, and the same row beside one 100 times larger, give the same bits.
        for row in [0, 41, 89] {
            let alone = Tensor(Array(x.scalars[(row * 40)..<((row + 1) * 40)]), shape: [1, 40])
            let loud = Tensor(alone.scalars + alone.scalars.map { $0 * 100 }, shape: [2, 40])
            let expected = Array(all.scalars[(row * 24)..<((row + 1) * 24)])
            XCTAssertEqual(Tensor.int8Linear(alone, weights: w, bias: nil).scalars, expected)
            XCTAssertEqual(Array(Tensor.int8Linear(loud, weights: w, bias: nil).scalars.prefix(24)), expected)
        }
    }

    func testErrorsStayWithinInt8RoundingAndBadRowsGiveNaN() {
        var g = RandomGenerator(seed: 7)
        let (rows, inputs, outputs) = (50, 384, 64)
        let weights = random(outputs * inputs, &g, scale: 0.05), x = random(rows * inputs, &g)
        let w = DynamicInt8Weights(quantizing: weights, outputs: outputs, inputs: inputs)
        let y = Tensor.int8Linear(Tensor(x, shape: [rows, inputs]), weights: w, bias: nil).scalars
        let exact = Tensor.linear(Tensor(x, shape: [rows, inputs]), weight: Tensor(weights, shape: [outputs, inputs]), bias: nil).scalars
        // Each product is off by at most half a step of each factor: the sum's error is far below its size.
        let error = zip(y, exact).map { abs($0 - $1) }.max()!, size = exact.map(abs).max()!
        XCTAssertLessThan(error, 0.03 * size, "largest error \(error) against outputs up to \(size)")
        var bad = x
        bad[3] = .nan
        bad[inputs + 5] = .infinity
        let out = Tensor.int8Linear(Tensor(bad, shape: [rows, inputs]), weights: w, bias: nil).scalars
        XCTAssertTrue(out[0..<(2 * outputs)].allSatisfy(\.isNaN))
        XCTAssertEqual(Array(out[(2 * outputs)...]), Array(y[(2 * outputs)...]))
    }

    func testWeightsAreSymmetricPerChannelAndCheckedWhenGiven() {
        let w = DynamicInt8Weights(quantizing: [0.5, -1, 0.25, 0, 0, 0, Float.leastNormalMagnitude * 2, Float.leastNormalMagnitude, 0], outputs: 3, inputs: 3)
        XCTAssertEqual(Array(w.packed.weights[1...]), [-127, 32, 0, 0, 0, 2, 1, 0])
        XCTAssertTrue((63...64).contains(w.packed.weights[0]))
        XCTAssertEqual(w.scales[0], 1 / 127)
        XCTAssertEqual(w.scales[1], 1) // a channel of zeros
        XCTAssertEqual(w.scales[2], Float.leastNormalMagnitude) // 2/127 of it raised to a normal float
        XCTAssertEqual(w.dequantized[1], -1)
        for (scales, message) in [([1, 0, 1], "scale 0.0 of output 1"), ([1, 1, .nan], "scale nan of output 2"), ([1, 1], "3 weights and 2 scales")] as [([Float], String)] {
            switch DynamicInt8Weights.make([1, 2, 3], scales: scales, outputs: 3, inputs: 1) {
            case .success: XCTFail("\(scales) accepted")
            case let .failure(error): XCTAssertTrue(error.description.contains(message), error.description)
            }
        }
    }
}
