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
/// erf(x) as x·P(x²)/Q(x²) on [−4, 4] and ±1 beyond (where erf is within 2e-8 of ±1):
/// within 4e-7 of erf in Float32. The coefficients are a least-squares fit made by
/// scripts/fit_erf.py. Branch-free and without a libm call, so the loops that use it
/// vectorise: GELU over a BERT's intermediate activations spent most of its time in erff.
@inline(__always)
func rationalErf(_ x: Float) -> Float {
    let c = Swift.min(Swift.max(x, -4), 4), t = c * c
    var p: Float = -1.3695023e-08
    p = p * t + 4.7873177e-06
    p = p * t + 3.8289864e-04
    p = p * t + 3.8375582e-03
    p = p * t + 5.4329578e-02
    p = p * t + 1.8464218e-01
    p = p * t + 1.1283792
    var q: Float = 6.4074775e-05
    q = q * t + 1.3094628e-03
    q = q * t + 1.5450255e-02
    q = q * t + 1.1380347e-01
    q = q * t + 4.9696842e-01
    q = q * t + 1
    return c * p / q
}

/// eˣ for x ≤ 0 down to −87 (attention's shifted scores), within 2 ulp of expf: x = n·ln 2 + r
/// with |r| ≤ ln 2 / 2, e^r by its Taylor series to r⁷ (truncation below 6e-9), times 2ⁿ set
/// in the exponent bits. Below −87 it gives 2⁻¹²⁶ rather than 0. Branch-free, so softmax's
/// loops over it vectorise.
@inline(__always)
func nonPositiveExp(_ x: Float) -> Float {
    let c = Swift.max(Swift.min(x, 0), -87)
    // n = round(c·log₂e) by adding and taking off 1.5·2²³; that sum's low mantissa bits hold n.
    let shifted = c * 1.442695041 + 12_582_912
    let n = shifted - 12_582_912
    let r = (c - n * 0.693145752) - n * 1.428606765e-06
    var e: Float = 1.0 / 5040
    e = e * r + 1.0 / 720
    e = e * r + 1.0 / 120
    e = e * r + 1.0 / 24
    e = e * r + 1.0 / 6
    e = e * r + 0.5
    e = e * r + 1
    e = e * r + 1
    return e * Float(bitPattern: (shifted.bitPattern &- 0x4B40_0000 &+ 127) << 23)
}

/// d/dx xΦ(x) = Φ(x) + x·φ(x). (The forward pass is the C kernel distill_gelu.)
private struct GELUGradient: BinaryFunction {
    func callAsFunction(_ g: Float, _ x: Float) -> Float {
        let cdf = 0.5 * (1 + rationalErf(x * 0.70710678))
        let pdf = 0.39894228 * nonPositiveExp(-0.5 * x * x)
        return g * (cdf + x * pdf)
    }
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
        return out.recorded("gelu", [x]) { g in [ElementwiseKernels.zip(g, x, GELUGradient())] }
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
