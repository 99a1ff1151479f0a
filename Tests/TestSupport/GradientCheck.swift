import Tensors
import XCTest

/// Compares the analytic gradient of `f` (reduced to a scalar by a fixed random weighting)
/// with central finite differences, for every input marked `requiresGrad`.
///
/// An element whose one-sided differences disagree lies within `step` of a kink (relu at 0,
/// a clamp bound, a max tie) where no finite difference is meaningful; it is skipped, and the
/// check fails if more than a quarter of an input's elements are skipped.
public func assertGradientsMatchFiniteDifferences(
    _ inputs: [Tensor], tolerance: Float = 2e-2, step: Float = 1e-2, _ message: String = "",
    file: StaticString = #filePath, line: UInt = #line, _ f: ([Tensor]) -> Tensor
) {
    var generator = RandomGenerator(seed: 1234)
    let probe = f(inputs)
    let weights = Tensor.randomNormal(probe.shape, using: &generator)
    func objective() -> Float { withoutGradients { (f(inputs) * weights).sum().item } }
    for input in inputs { input.zeroGrad() }
    (f(inputs) * weights).sum().backward()
    for (index, input) in inputs.enumerated() where input.requiresGrad {
        guard let analytic = input.grad?.scalars else {
            XCTFail("\(message): input \(index) received no gradient", file: file, line: line)
            continue
        }
        let center = objective()
        var skipped = 0
        for i in 0..<input.count {
            let original = input.withUnsafeMutableBufferPointer { $0[i] }
            input.withUnsafeMutableBufferPointer { $0[i] = original + step }
            let plus = objective()
            input.withUnsafeMutableBufferPointer { $0[i] = original - step }
            let minus = objective()
            input.withUnsafeMutableBufferPointer { $0[i] = original }
            let numeric = (plus - minus) / (2 * step)
            let scale = max(1, abs(numeric), abs(analytic[i]))
            let forward = (plus - center) / step, backward = (center - minus) / step
            if abs(forward - backward) > 4 * tolerance * max(1, abs(forward), abs(backward)) {
                skipped += 1
                continue
            }
            if abs(numeric - analytic[i]) > tolerance * scale {
                XCTFail("\(message): input \(index) element \(i): analytic \(analytic[i]) vs finite difference \(numeric)", file: file, line: line)
                return
            }
        }
        if skipped * 4 > input.count {
            XCTFail("\(message): input \(index) has \(skipped) of \(input.count) elements at kinks; the check says nothing", file: file, line: line)
        }
    }
}

/// Asserts two float arrays agree elementwise within `absolute + relative·|expected|`.
public func assertClose(_ actual: [Float], _ expected: [Float], absolute: Float = 1e-5, relative: Float = 1e-4,
                        _ message: String = "", file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == expected.count else {
        XCTFail("\(message): \(actual.count) values, expected \(expected.count)", file: file, line: line)
        return
    }
    for i in 0..<actual.count {
        let bound = absolute + relative * abs(expected[i])
        if !(abs(actual[i] - expected[i]) <= bound) && !(actual[i].isNaN && expected[i].isNaN) && actual[i] != expected[i] {
            XCTFail("\(message): element \(i) is \(actual[i]), expected \(expected[i])", file: file, line: line)
            return
        }
    }
}

/// A tensor of seeded normal values that asks for gradients.
public func randomLeaf(_ shape: Shape, seed: UInt64, scale: Float = 1) -> Tensor {
    var generator = RandomGenerator(seed: seed)
    let t = Tensor.randomNormal(shape, standardDeviation: scale, using: &generator)
    t.requiresGrad = true
    return t
}
