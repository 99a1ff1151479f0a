// Reductions over any set of axes, with or without keeping reduced axes as size 1.

/// x where finite, else 0 (an all −∞ row must not shift logsumexp to NaN).
private struct FiniteOrZero: UnaryFunction { func callAsFunction(_ x: Float) -> Float { x.isFinite ? x : 0 } }

extension Tensor {
    /// Resolves axes (negative allowed; nil means all) into sorted unique indices.
    func resolvedAxes(_ axes: [Int]?, op: String) -> [Int] {
        guard let axes else { return Array(0..<rank) }
        return Array(Set(axes.map { shape.normalizedAxis($0, op: op) })).sorted()
    }

    /// The shape after reducing `axes` with keepDims (those axes become 1).
    func keptShape(_ axes: [Int]) -> Shape {
        var dims = shape.dimensions
        for axis in axes { dims[axis] = 1 }
        return Shape(dims)
    }

    /// The shape after reducing `axes`: kept as 1 with keepDims, removed otherwise.
    func reducedShape(_ axes: [Int], keepDims: Bool) -> Shape {
        keepDims ? keptShape(axes) : Shape(shape.dimensions.enumerated().filter { !axes.contains($0.offset) }.map(\.element))
    }

    /// Sum of all elements (a rank-0 tensor).
    public func sum() -> Tensor { sum(alongAxes: nil) }

    /// Sum over `axes` (nil: all).
    public func sum(alongAxes axes: [Int]?, keepDims: Bool = false) -> Tensor {
        let resolved = resolvedAxes(axes, op: "sum")
        let kept = keptShape(resolved)
        var current = self.detached()
        for axis in resolved.reversed() where current.shape.dimensions[axis] != 1 {
            let (outer, size, inner) = current.shape.split(at: axis)
            var dims = current.shape.dimensions
            dims[axis] = 1
            let out = Tensor(uninitialized: Shape(dims))
            // The pointer alone does not keep `current` alive; its storage must outlive the kernel.
            withExtendedLifetime(current) {
                ReductionKernels.sum(current.storage.pointer, into: out.storage.pointer, outer: outer, size: size, inner: inner)
            }
            current = out
        }
        let input = self
        let result = Tensor(storage: current.storage, shape: reducedShape(resolved, keepDims: keepDims))
        // d(Σx)/dx = 1: the gradient is broadcast back over the reduced axes.
        return result.recorded("sum", [input]) { g in [g.reshaped(kept).expanded(to: input.shape)] }
    }

    /// Sum along one axis.
    public func sum(alongAxis axis: Int, keepDims: Bool = false) -> Tensor { sum(alongAxes: [axis], keepDims: keepDims) }

    /// Mean of all elements.
    public func mean() -> Tensor { mean(alongAxes: nil) }

    /// Mean over `axes` (nil: all).
    public func mean(alongAxes axes: [Int]?, keepDims: Bool = false) -> Tensor {
        let resolved = resolvedAxes(axes, op: "mean")
        let n = resolved.reduce(1) { $0 * shape.dimensions[$1] }
        return sum(alongAxes: resolved, keepDims: keepDims) * (1 / Float(Swift.max(n, 1)))
    }

    public func mean(alongAxis axis: Int, keepDims: Bool = false) -> Tensor { mean(alongAxes: [axis], keepDims: keepDims) }

    /// Variance over `axes` with `correction` subtracted from the count (1: unbiased, PyTorch's default).
    public func variance(alongAxes axes: [Int]?, correction: Int = 1, keepDims: Bool = false) -> Tensor {
        let resolved = resolvedAxes(axes, op: "variance")
        let n = resolved.reduce(1) { $0 * shape.dimensions[$1] }
        let centered = self - mean(alongAxes: resolved, keepDims: true)
        return (centered * centered).sum(alongAxes: resolved, keepDims: keepDims) * (1 / Float(Swift.max(n - correction, 1)))
    }

    /// Largest value along `axis` and its index (the first one on ties); the gradient goes to that index.
    public func max(alongAxis axis: Int, keepDims: Bool = false) -> (values: Tensor, indices: [Int]) {
        extreme(alongAxis: axis, keepDims: keepDims, isMax: true)
    }

    /// Smallest value along `axis` and its index; the gradient goes to that index.
    public func min(alongAxis axis: Int, keepDims: Bool = false) -> (values: Tensor, indices: [Int]) {
        extreme(alongAxis: axis, keepDims: keepDims, isMax: false)
    }

    private func extreme(alongAxis axis: Int, keepDims: Bool, isMax: Bool) -> (values: Tensor, indices: [Int]) {
        let axis = shape.normalizedAxis(axis, op: isMax ? "max" : "min")
        require(shape.dimensions[axis] > 0, "\(isMax ? "max" : "min"): axis \(axis) of shape \(shape) is empty")
        let (outer, size, inner) = shape.split(at: axis)
        let values = Tensor(uninitialized: reducedShape([axis], keepDims: keepDims))
        var indices = [Int](repeating: 0, count: outer * inner)
        indices.withUnsafeMutableBufferPointer { idx in
            ReductionKernels.extreme(storage.pointer, values: values.storage.pointer, indices: idx.baseAddress!,
                                     outer: outer, size: size, inner: inner, isMax: isMax)
        }
        let input = self
        let chosen = indices
        values.recorded(isMax ? "max" : "min", [input]) { g in
            let gx = Tensor.zeros(input.shape)
            let pg = g.storage.pointer, px = gx.storage.pointer
            for item in 0..<(outer * inner) {
                let o = item / inner, j = item % inner
                px[(o * size + chosen[item]) * inner + j] += pg[item]
            }
            return [gx]
        }
        return (values, indices)
    }

    /// Largest value over `axes` (nil: all); ties share the gradient evenly (like `torch.amax`).
    public func max(alongAxes axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        extreme(alongAxes: axes, keepDims: keepDims, isMax: true)
    }

    /// Smallest value over `axes` (nil: all); ties share the gradient evenly (like `torch.amin`).
    public func min(alongAxes axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        extreme(alongAxes: axes, keepDims: keepDims, isMax: false)
    }

    private func extreme(alongAxes axes: [Int]?, keepDims: Bool, isMax: Bool) -> Tensor {
        let resolved = resolvedAxes(axes, op: isMax ? "max" : "min")
        var current = self.detached()
        for axis in resolved.reversed() {
            current = current.extreme(alongAxis: axis, keepDims: true, isMax: isMax).values
        }
        let kept = keptShape(resolved)
        let input = self
        let best = current
        let result = current.reshaped(reducedShape(resolved, keepDims: keepDims))
        return result.detached().recorded(isMax ? "amax" : "amin", [input]) { g in
            let mask = input.isEqual(to: best)
            let ties = mask.sum(alongAxes: resolved, keepDims: true)
            return [g.reshaped(kept) * mask / ties]
        }
    }

    /// log Σ exp(x) over `axes`, stable for large inputs (the maximum is subtracted first).
    public func logSumExp(alongAxes axes: [Int]?, keepDims: Bool = false) -> Tensor {
        let resolved = resolvedAxes(axes, op: "logSumExp")
        let shift = withoutGradients {
            ElementwiseKernels.map(max(alongAxes: resolved, keepDims: true), FiniteOrZero())
        }
        let result = (self - shift).exp().sum(alongAxes: resolved, keepDims: true).log() + shift
        return result.reshaped(reducedShape(resolved, keepDims: keepDims))
    }

    /// Euclidean (L2) norm over `axes` (nil: all). The gradient x/‖x‖ is taken as 0 where ‖x‖ = 0.
    public func norm(alongAxes axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let resolved = resolvedAxes(axes, op: "norm")
        let x = self
        let kept = keptShape(resolved)
        let normKept = withoutGradients { (x * x).sum(alongAxes: resolved, keepDims: true).sqrt() }
        let result = normKept.reshaped(reducedShape(resolved, keepDims: keepDims))
        return result.detached().recorded("norm", [x]) { g in
            // d‖x‖/dx = x / ‖x‖
            let scale = ElementwiseKernels.zip(g.reshaped(kept), normKept, SafeDivide())
            return [x * scale]
        }
    }
}
