import Tensors
import Training
import XCTest

/// The optimizers' and clipping's vector loops (16 or 8 lanes at a time, then a tail) against
/// the update written out element by element. The golden tests against PyTorch use
/// parameters of 12 and 4 values, which only reach the tails; these use 37 (two full vectors
/// of 16 and a tail of 5).
final class OptimizerLaneTests: XCTestCase {
    private func parameter(_ count: Int, seed: UInt64) -> (Tensor, [Float]) {
        var generator = RandomGenerator(seed: seed)
        let p = Tensor.randomNormal([count], using: &generator)
        p.requiresGrad = true
        let grad = Tensor.randomNormal([count], using: &generator).scalars
        return (p, grad)
    }

    func testAdamLanesMatchTheElementwiseUpdate() {
        for decoupled in [false, true] {
            let (p, grad) = parameter(37, seed: decoupled ? 2 : 1)
            var reference = p.scalars, m = [Float](repeating: 0, count: 37), v = m
            let (lr, decay, b1, b2, eps): (Float, Float, Float, Float, Float) = (0.01, 0.05, 0.9, 0.999, 1e-8)
            let adam = Adam([ParameterGroup(parameters: [p], learningRate: lr, weightDecay: decay)], decoupledWeightDecay: decoupled)
            for t in 1...3 {
                let g = grad.map { $0 * Float(t) }
                p.grad = Tensor(g, shape: [37])
                adam.step()
                let stepSize = lr / (1 - powf(b1, Float(t))), root2 = (1 - powf(b2, Float(t))).squareRoot()
                for i in 0..<37 {
                    let d = g[i] + (decoupled ? 0 : decay) * reference[i]
                    reference[i] *= decoupled ? 1 - lr * decay : 1
                    m[i] = b1 * m[i] + (1 - b1) * d
                    v[i] = b2 * v[i] + (1 - b2) * d * d
                    reference[i] -= stepSize * m[i] / (v[i].squareRoot() / root2 + eps)
                }
                XCTAssertEqual(p.scalars, reference, "decoupled \(decoupled), step \(t)")
            }
        }
    }

    func testGradientNormOverLanesAndTails() {
        let (a, ga) = parameter(37, seed: 3), (b, gb) = parameter(5, seed: 4)
        a.grad = Tensor(ga, shape: [37])
        b.grad = Tensor(gb, shape: [5])
        let exact = (ga + gb).reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let norm = clipGradientNorm([a, b], maxNorm: 1)
        XCTAssertEqual(Double(norm), exact, accuracy: exact * 1e-6)
        let clipped = (a.grad!.scalars + b.grad!.scalars).reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        XCTAssertEqual(clipped, 1, accuracy: 1e-5)
    }
}
