import CKernels
import Foundation

// Unary elementwise ops. Each op's per-element forward and derivative are small function
// types (see `UnaryFunction`) written beside the op; rules that need the output capture it
// detached (a strong link from a node to its own output would leak).

private struct Exp: UnaryFunction { func callAsFunction(_ x: Float) -> Float { Foundation.exp(x) } }
private struct Log: UnaryFunction { func callAsFunction(_ x: Float) -> Float { Foundation.log(x) } }
private struct SquareRoot: UnaryFunction { func callAsFunction(_ x: Float) -> Float { x.squareRoot() } }
/// d/dx √x = 1/(2√x), from g and y = √x.
private struct SquareRootGradient: BinaryFunction { func callAsFunction(_ g: Float, _ y: Float) -> Float { g * 0.5 / y } }
private struct Absolute: UnaryFunction { func callAsFunction(_ x: Float) -> Float { Swift.abs(x) } }
/// d/dx |x| = sign x (0 at 0).
private struct AbsoluteGradient: BinaryFunction { func callAsFunction(_ g: Float, _ x: Float) -> Float { x > 0 ? g : (x < 0 ? -g : 0) } }
private struct ReLU: UnaryFunction { func callAsFunction(_ x: Float) -> Float { x > 0 ? x : 0 } }
/// d/dx relu = 1 where the output is positive.
private struct ReLUGradient: BinaryFunction { func callAsFunction(_ g: Float, _ y: Float) -> Float { y > 0 ? g : 0 } }
private struct LeakyReLU: UnaryFunction {
    let slope: Float
    func callAsFunction(_ x: Float) -> Float { x > 0 ? x : slope * x }
}
private struct LeakyReLUGradient: BinaryFunction {
    let slope: Float
    func callAsFunction(_ g: Float, _ x: Float) -> Float { x > 0 ? g : slope * g }
}
private struct Erf: UnaryFunction { func callAsFunction(_ x: Float) -> Float { erff(x) } }
/// d/dx erf x = 2/√π · e^(−x²).
private struct ErfGradient: BinaryFunction {
    func callAsFunction(_ g: Float, _ x: Float) -> Float { g * 1.1283791671 * Foundation.exp(-x * x) }
}
/// 1/(1 + e⁻ˣ) without overflow for large |x|.
struct Sigmoid: UnaryFunction {
    func callAsFunction(_ x: Float) -> Float {
        x >= 0 ? 1 / (1 + Foundation.exp(-x)) : Foundation.exp(x) / (1 + Foundation.exp(x))
    }
}
/// σ' = σ(1 − σ), from g and y = σ(x).
private struct SigmoidGradient: BinaryFunction { func callAsFunction(_ g: Float, _ y: Float) -> Float { g * y * (1 - y) } }
private struct Tanh: UnaryFunction { func callAsFunction(_ x: Float) -> Float { Foundation.tanh(x) } }
/// tanh' = 1 − tanh², from g and y = tanh x.
private struct TanhGradient: BinaryFunction { func callAsFunction(_ g: Float, _ y: Float) -> Float { g * (1 - y * y) } }
private struct Softplus: UnaryFunction {
    let threshold: Float
    func callAsFunction(_ x: Float) -> Float { x > threshold ? x : log1pf(Foundation.exp(x)) }
}
/// d/dx ln(1 + eˣ) = σ(x).
private struct SoftplusGradient: BinaryFunction {
    let threshold: Float
    func callAsFunction(_ g: Float, _ x: Float) -> Float { x > threshold ? g : g / (1 + Foundation.exp(-x)) }
}
private struct Clamp: UnaryFunction {
    let low: Float, high: Float
    func callAsFunction(_ x: Float) -> Float { Swift.min(Swift.max(x, low), high) }
}
/// The gradient passes where low ≤ x ≤ high.
private struct ClampGradient: BinaryFunction {
    let low: Float, high: Float
    func callAsFunction(_ g: Float, _ x: Float) -> Float { x >= low && x <= high ? g : 0 }
}

extension Tensor {
    /// eˣ
    public func exp() -> Tensor {
        let y = ElementwiseKernels.map(self, Exp())
        let saved = y.detached()
        return y.recorded("exp", [self]) { g in [g * saved] }  // d/dx eˣ = eˣ
    }

    /// ln x
    public func log() -> Tensor {
        let x = self
        return ElementwiseKernels.map(x, Log()).recorded("log", [x]) { g in [g / x] }  // d/dx ln x = 1/x
    }

    /// √x
    public func sqrt() -> Tensor {
        let y = ElementwiseKernels.map(self, SquareRoot())
        let saved = y.detached()
        return y.recorded("sqrt", [self]) { g in [ElementwiseKernels.zip(g, saved, SquareRootGradient())] }
    }

    /// |x|; the gradient at 0 is 0.
    public func abs() -> Tensor {
        let x = self
        return ElementwiseKernels.map(x, Absolute()).recorded("abs", [x]) { g in [ElementwiseKernels.zip(g, x, AbsoluteGradient())] }
    }

    /// max(x, 0); the gradient at 0 is 0.
    public func relu() -> Tensor {
        let y = ElementwiseKernels.map(self, ReLU())
        let saved = y.detached()
        return y.recorded("relu", [self]) { g in [ElementwiseKernels.zip(g, saved, ReLUGradient())] }
    }

    /// x for x > 0, slope·x otherwise (PyTorch's default slope 0.01).
    public func leakyRelu(negativeSlope: Float = 0.01) -> Tensor {
        let x = self
        return ElementwiseKernels.map(x, LeakyReLU(slope: negativeSlope))
            .recorded("leakyRelu", [x]) { g in [ElementwiseKernels.zip(g, x, LeakyReLUGradient(slope: negativeSlope))] }
    }

    /// x·Φ(x) with the exact normal CDF (PyTorch's default GELU).
    public func gelu() -> Tensor {
        let x = self, out = Tensor(uninitialized: shape)
        let px = x.storage.pointer, po = out.storage.pointer
        Compute.parallelFor(count, costPerItem: 16) { range in
            distill_gelu(range.count, px + range.lowerBound, po + range.lowerBound)
        }
        // d/dx xΦ(x) = Φ(x) + x·φ(x), in the C kernel distill_gelu_backward.
        return out.recorded("gelu", [x]) { g in
            let dx = Tensor(uninitialized: x.shape)
            let pg = g.storage.pointer, px = x.storage.pointer, pd = dx.storage.pointer
            Compute.parallelFor(x.count, costPerItem: 24) { range in
                distill_gelu_backward(range.count, pg + range.lowerBound, px + range.lowerBound, pd + range.lowerBound)
            }
            return [dx]
        }
    }

    /// The Gauss error function (ONNX's Erf, which GELU decomposes into before opset 20).
    public func erf() -> Tensor {
        let x = self
        return ElementwiseKernels.map(x, Erf()).recorded("erf", [x]) { g in [ElementwiseKernels.zip(g, x, ErfGradient())] }
    }

    /// 1 / (1 + e⁻ˣ), computed without overflow for large |x|.
    public func sigmoid() -> Tensor {
        let y = ElementwiseKernels.map(self, Sigmoid())
        let saved = y.detached()
        return y.recorded("sigmoid", [self]) { g in [ElementwiseKernels.zip(g, saved, SigmoidGradient())] }
    }

    /// Hyperbolic tangent.
    public func tanh() -> Tensor {
        let y = ElementwiseKernels.map(self, Tanh())
        let saved = y.detached()
        return y.recorded("tanh", [self]) { g in [ElementwiseKernels.zip(g, saved, TanhGradient())] }
    }

    /// ln(1 + eˣ), and x itself above `threshold` (PyTorch's defaults: β = 1, threshold 20).
    public func softplus(threshold: Float = 20) -> Tensor {
        let x = self
        return ElementwiseKernels.map(x, Softplus(threshold: threshold))
            .recorded("softplus", [x]) { g in [ElementwiseKernels.zip(g, x, SoftplusGradient(threshold: threshold))] }
    }

    /// Limits values to [min, max]; the gradient passes where min ≤ x ≤ max.
    public func clamped(min low: Float = -.infinity, max high: Float = .infinity) -> Tensor {
        require(low <= high, "clamped: min \(low) is above max \(high)")
        let x = self
        return ElementwiseKernels.map(x, Clamp(low: low, high: high))
            .recorded("clamp", [x]) { g in [ElementwiseKernels.zip(g, x, ClampGradient(low: low, high: high))] }
    }
}
