import Foundation

// Binary ops with NumPy broadcasting. Each backward rule reduces the upstream gradient
// back to the operand's shape (`sumToShape`), which is where broadcasting is undone.

private struct Add: BinaryFunction { func callAsFunction(_ a: Float, _ b: Float) -> Float { a + b } }
private struct Subtract: BinaryFunction { func callAsFunction(_ a: Float, _ b: Float) -> Float { a - b } }
private struct Multiply: BinaryFunction { func callAsFunction(_ a: Float, _ b: Float) -> Float { a * b } }
private struct Divide: BinaryFunction { func callAsFunction(_ a: Float, _ b: Float) -> Float { a / b } }
/// x·scale + shift: negation, scalar addition and multiplication in one kernel.
struct Affine: UnaryFunction {
    let scale: Float, shift: Float
    func callAsFunction(_ x: Float) -> Float { x * scale + shift }
}
private struct ScalarDivide: UnaryFunction {
    let numerator: Float
    func callAsFunction(_ x: Float) -> Float { numerator / x }
}
/// d(s/a)/da = −s/a².
private struct ScalarDivideGradient: BinaryFunction {
    let numerator: Float
    func callAsFunction(_ g: Float, _ a: Float) -> Float { -g * numerator / (a * a) }
}
private struct Power: BinaryFunction {
    var exponentOffset: Float = 0
    func callAsFunction(_ a: Float, _ b: Float) -> Float { Foundation.pow(a, b + exponentOffset) }
}
/// d(aᵇ)/db = aᵇ·ln a, taken as 0 where a = 0 (as PyTorch does), from y = aᵇ and a.
private struct PowerExponentGradient: BinaryFunction {
    func callAsFunction(_ y: Float, _ a: Float) -> Float { a == 0 ? 0 : y * Foundation.log(a) }
}
private struct PowerScalar: UnaryFunction {
    let exponent: Float
    func callAsFunction(_ x: Float) -> Float { Foundation.pow(x, exponent) }
}
/// d(xᵖ)/dx = p·xᵖ⁻¹.
private struct PowerScalarGradient: BinaryFunction {
    let exponent: Float
    func callAsFunction(_ g: Float, _ x: Float) -> Float { exponent == 0 ? 0 : g * exponent * Foundation.pow(x, exponent - 1) }
}
/// max or min of two values.
private struct Extreme: BinaryFunction {
    let isMax: Bool
    func callAsFunction(_ a: Float, _ b: Float) -> Float { (isMax ? a >= b : a <= b) ? a : b }
}
/// The share of the gradient that goes to the first operand: 1 if it was chosen, ½ at ties.
private struct ExtremeWeight: BinaryFunction {
    let isMax: Bool
    func callAsFunction(_ a: Float, _ b: Float) -> Float { a == b ? 0.5 : ((isMax ? a > b : a < b) ? 1 : 0) }
}
private struct Equal: BinaryFunction { func callAsFunction(_ a: Float, _ b: Float) -> Float { a == b ? 1 : 0 } }
private struct Less: BinaryFunction { func callAsFunction(_ a: Float, _ b: Float) -> Float { a < b ? 1 : 0 } }
private struct Greater: BinaryFunction { func callAsFunction(_ a: Float, _ b: Float) -> Float { a > b ? 1 : 0 } }
private struct LessOrEqual: BinaryFunction { func callAsFunction(_ a: Float, _ b: Float) -> Float { a <= b ? 1 : 0 } }
private struct GreaterOrEqual: BinaryFunction { func callAsFunction(_ a: Float, _ b: Float) -> Float { a >= b ? 1 : 0 } }
/// g/d where d > 0, else 0 (gradients of norms and distances at zero).
public struct SafeDivide: BinaryFunction {
    public init() {}
    @inlinable public func callAsFunction(_ g: Float, _ d: Float) -> Float { d > 0 ? g / d : 0 }
}

extension Tensor {
    /// Sums a broadcast gradient back down to `target` (the inverse of broadcasting).
    public func sumToShape(_ target: Shape) -> Tensor {
        if shape == target { return self }
        let lead = rank - target.rank
        require(lead >= 0, "sumToShape: cannot reduce \(shape) to larger rank \(target)")
        var axes = Array(0..<lead)
        for axis in 0..<target.rank where target.dimensions[axis] == 1 && shape.dimensions[lead + axis] != 1 {
            axes.append(lead + axis)
        }
        return sum(alongAxes: axes, keepDims: true).reshaped(target)
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor {
        // d(a+b)/da = 1, d(a+b)/db = 1
        ElementwiseKernels.broadcast(a, b, op: "add", Add())
            .recorded("add", [a, b]) { g in [g.sumToShape(a.shape), g.sumToShape(b.shape)] }
    }

    public static func - (a: Tensor, b: Tensor) -> Tensor {
        // d(a-b)/da = 1, d(a-b)/db = -1
        ElementwiseKernels.broadcast(a, b, op: "subtract", Subtract())
            .recorded("subtract", [a, b]) { g in [g.sumToShape(a.shape), (-g).sumToShape(b.shape)] }
    }

    public static func * (a: Tensor, b: Tensor) -> Tensor {
        // d(ab)/da = b, d(ab)/db = a
        ElementwiseKernels.broadcast(a, b, op: "multiply", Multiply())
            .recorded("multiply", [a, b]) { g in
                [a.needsGrad ? (g * b).sumToShape(a.shape) : nil,
                 b.needsGrad ? (g * a).sumToShape(b.shape) : nil]
            }
    }

    public static func / (a: Tensor, b: Tensor) -> Tensor {
        // d(a/b)/da = 1/b, d(a/b)/db = -a/b²
        ElementwiseKernels.broadcast(a, b, op: "divide", Divide())
            .recorded("divide", [a, b]) { g in
                [a.needsGrad ? (g / b).sumToShape(a.shape) : nil,
                 b.needsGrad ? (-g * a / (b * b)).sumToShape(b.shape) : nil]
            }
    }

    public static prefix func - (x: Tensor) -> Tensor {
        ElementwiseKernels.map(x, Affine(scale: -1, shift: 0)).recorded("negate", [x]) { g in [-g] }
    }

    public static func + (a: Tensor, s: Float) -> Tensor {
        ElementwiseKernels.map(a, Affine(scale: 1, shift: s)).recorded("addScalar", [a]) { g in [g] }
    }

    public static func + (s: Float, a: Tensor) -> Tensor { a + s }

    public static func - (a: Tensor, s: Float) -> Tensor { a + (-s) }

    public static func - (s: Float, a: Tensor) -> Tensor {
        ElementwiseKernels.map(a, Affine(scale: -1, shift: s)).recorded("scalarSubtract", [a]) { g in [-g] }
    }

    public static func * (a: Tensor, s: Float) -> Tensor {
        ElementwiseKernels.map(a, Affine(scale: s, shift: 0)).recorded("multiplyScalar", [a]) { g in [g * s] }
    }

    public static func * (s: Float, a: Tensor) -> Tensor { a * s }

    public static func / (a: Tensor, s: Float) -> Tensor { a * (1 / s) }

    public static func / (s: Float, a: Tensor) -> Tensor {
        // d(s/a)/da = -s/a²
        ElementwiseKernels.map(a, ScalarDivide(numerator: s))
            .recorded("scalarDivide", [a]) { g in [ElementwiseKernels.zip(g, a, ScalarDivideGradient(numerator: s))] }
    }

    /// Elementwise aᵇ with broadcasting.
    public func pow(_ exponent: Tensor) -> Tensor {
        let base = self
        let y = ElementwiseKernels.broadcast(base, exponent, op: "pow", Power())
        let saved = y.detached()
        return y.recorded("pow", [base, exponent]) { g in
            // d(aᵇ)/da = b·aᵇ⁻¹ ; d(aᵇ)/db = aᵇ·ln a (taken as 0 where a = 0, as PyTorch does)
            let ga = base.needsGrad
                ? (g * exponent * ElementwiseKernels.broadcast(base, exponent, op: "pow", Power(exponentOffset: -1))).sumToShape(base.shape)
                : nil
            let gb = exponent.needsGrad
                ? (g * ElementwiseKernels.broadcast(saved, base, op: "pow", PowerExponentGradient())).sumToShape(exponent.shape)
                : nil
            return [ga, gb]
        }
    }

    /// Elementwise xᵖ for a constant p.
    public func pow(_ exponent: Float) -> Tensor {
        let x = self
        // d(xᵖ)/dx = p·xᵖ⁻¹
        return ElementwiseKernels.map(x, PowerScalar(exponent: exponent))
            .recorded("powScalar", [x]) { g in
                [ElementwiseKernels.zip(g, x, PowerScalarGradient(exponent: exponent))]
            }
    }

    /// x² (cheaper and exact compared with pow(2)).
    public func squared() -> Tensor { self * self }

    /// Elementwise maximum; at ties the gradient is split evenly (as in PyTorch).
    public func maximum(_ other: Tensor) -> Tensor { Tensor.extreme(self, other, isMax: true) }

    /// Elementwise minimum; at ties the gradient is split evenly (as in PyTorch).
    public func minimum(_ other: Tensor) -> Tensor { Tensor.extreme(self, other, isMax: false) }

    private static func extreme(_ a: Tensor, _ b: Tensor, isMax: Bool) -> Tensor {
        let op = isMax ? "maximum" : "minimum"
        return ElementwiseKernels.broadcast(a, b, op: op, Extreme(isMax: isMax))
            .recorded(op, [a, b]) { g in
                let weightA = ElementwiseKernels.broadcast(a, b, op: op, ExtremeWeight(isMax: isMax))
                return [(g * weightA).sumToShape(a.shape), (g * (1 - weightA)).sumToShape(b.shape)]
            }
    }
}

// Comparisons give 0/1 masks with the broadcast shape; they are not differentiable.
extension Tensor {
    public func isEqual(to other: Tensor) -> Tensor { ElementwiseKernels.broadcast(self, other, op: "equal", Equal()) }
    public func isLess(than other: Tensor) -> Tensor { ElementwiseKernels.broadcast(self, other, op: "less", Less()) }
    public func isGreater(than other: Tensor) -> Tensor { ElementwiseKernels.broadcast(self, other, op: "greater", Greater()) }
    public func isLessOrEqual(to other: Tensor) -> Tensor { ElementwiseKernels.broadcast(self, other, op: "lessEqual", LessOrEqual()) }
    public func isGreaterOrEqual(to other: Tensor) -> Tensor { ElementwiseKernels.broadcast(self, other, op: "greaterEqual", GreaterOrEqual()) }
    public func isGreater(than value: Float) -> Tensor { isGreater(than: Tensor(scalar: value)) }
    public func isLess(than value: Float) -> Tensor { isLess(than: Tensor(scalar: value)) }
}

extension Tensor {
    /// Elementwise choice, NumPy's `where`: `a` where `condition` is nonzero, `b` elsewhere,
    /// the three shapes broadcast together. A value that is not chosen never reaches the
    /// result (an infinite `b` under a true condition leaves no NaN), and gets no gradient.
    public static func selecting(_ a: Tensor, where condition: Tensor, otherwise b: Tensor) -> Tensor {
        guard let pair = Shape.broadcast(a.shape, b.shape), let shape = Shape.broadcast(pair, condition.shape) else {
            requirementFailed("selecting: shapes \(a.shape), \(b.shape) and condition \(condition.shape) do not broadcast")
        }
        let chosen = ElementwiseKernels.map(CopyKernels.expand(condition, to: shape), NonZero())
        let ea = CopyKernels.expand(a, to: shape), eb = CopyKernels.expand(b, to: shape)
        let out = Tensor(uninitialized: shape)
        let pc = chosen.storage.pointer, pa = ea.storage.pointer, pb = eb.storage.pointer, po = out.storage.pointer
        Compute.parallelFor(shape.count) { range in
            for i in range { po[i] = pc[i] != 0 ? pa[i] : pb[i] }
        }
        // d(out)/da = 1 where chosen, 0 elsewhere; d(out)/db = the complement.
        return out.recorded("select", [a, b]) { g in
            [a.needsGrad ? ElementwiseKernels.zip(g, chosen, Masked(keepWhere: 1)).sumToShape(a.shape) : nil,
             b.needsGrad ? ElementwiseKernels.zip(g, chosen, Masked(keepWhere: 0)).sumToShape(b.shape) : nil]
        }
    }
}

/// 1 where x ≠ 0 (NaN included), else 0.
private struct NonZero: UnaryFunction { func callAsFunction(_ x: Float) -> Float { x != 0 ? 1 : 0 } }
/// g where the mask equals `keepWhere`, else 0 (not g·mask: a NaN gradient must not leak across).
private struct Masked: BinaryFunction {
    let keepWhere: Float
    func callAsFunction(_ g: Float, _ mask: Float) -> Float { mask == keepWhere ? g : 0 }
}
