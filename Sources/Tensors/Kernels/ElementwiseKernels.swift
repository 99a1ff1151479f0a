/// A per-element function of one value. Elementwise kernels are generic over these
/// function types rather than taking closures: a closure reaching a worker thread through
/// the pool would be called indirectly for every element (measured 3-6× slower), while a
/// generic kernel is specialised, inlined and vectorised for each function type.
///
/// Public, with `ElementwiseKernels.map`/`zip` and `Tensor.recorded`, so that other modules
/// define differentiable ops the way this one does (the losses in NeuralNet).
public protocol UnaryFunction {
    func callAsFunction(_ x: Float) -> Float
}

/// A per-element function of two values (see `UnaryFunction`).
public protocol BinaryFunction {
    func callAsFunction(_ a: Float, _ b: Float) -> Float
}

/// Elementwise loops over raw buffers. Kernels compute values only; the ops that call
/// them record gradients. `map` and `zip` are inlinable so that a function type defined in
/// another module is specialised into the loop there too.
public enum ElementwiseKernels {
    /// out[i] = f(x[i]), not recorded.
    @inlinable @inline(__always)
    public static func map<F: UnaryFunction>(_ x: Tensor, _ f: F) -> Tensor {
        let out = Tensor(uninitialized: x.shape)
        let px = x.storage.pointer, po = out.storage.pointer
        Compute.parallelFor(x.count) { range in
            for i in range { po[i] = f(px[i]) }
        }
        return out
    }

    /// out[i] = f(a[i], b[i]) for tensors of one shape, not recorded.
    @inlinable @inline(__always)
    public static func zip<F: BinaryFunction>(_ a: Tensor, _ b: Tensor, _ f: F) -> Tensor {
        require(a.shape == b.shape, "zip: shapes \(a.shape) and \(b.shape) differ")
        let out = Tensor(uninitialized: a.shape)
        let pa = a.storage.pointer, pb = b.storage.pointer, po = out.storage.pointer
        Compute.parallelFor(a.count) { range in
            for i in range { po[i] = f(pa[i], pb[i]) }
        }
        return out
    }

    /// out = f(a, b) with NumPy broadcasting; `op` names the caller in shape errors.
    @inline(__always)
    static func broadcast<F: BinaryFunction>(_ a: Tensor, _ b: Tensor, op: String, _ f: F) -> Tensor {
        if a.shape == b.shape { return zip(a, b, f) }
        guard let shape = Shape.broadcast(a.shape, b.shape) else {
            requirementFailed("\(op): shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        let out = Tensor(uninitialized: shape)
        let pa = a.storage.pointer, pb = b.storage.pointer, po = out.storage.pointer
        if b.count == 1 && a.count == shape.count {
            let s = pb[0]
            Compute.parallelFor(shape.count) { range in for i in range { po[i] = f(pa[i], s) } }
            return out
        }
        if a.count == 1 && b.count == shape.count {
            let s = pa[0]
            Compute.parallelFor(shape.count) { range in for i in range { po[i] = f(s, pb[i]) } }
            return out
        }
        let plan = BroadcastPlan(output: shape, a.shape, b.shape)
        let inner = plan.inner
        Compute.parallelFor(plan.rows, costPerItem: inner) { rows in
            for row in rows {
                let (oa, ob) = plan.offsets(row: row)
                let o = po + row * inner, qa = pa + oa, qb = pb + ob
                switch (plan.innerStrideA, plan.innerStrideB) {
                case (1, 1): for j in 0..<inner { o[j] = f(qa[j], qb[j]) }
                case (1, _): let s = qb[0]; for j in 0..<inner { o[j] = f(qa[j], s) }
                case (_, 1): let s = qa[0]; for j in 0..<inner { o[j] = f(s, qb[j]) }
                default: let v = f(qa[0], qb[0]); for j in 0..<inner { o[j] = v }
                }
            }
        }
        return out
    }
}

/// How two broadcast operands are walked: output dims coalesced where possible, the last
/// dim as a contiguous inner loop, and per-row starting offsets into each operand.
struct BroadcastPlan {
    var outerDims: [Int] = []
    var outerStridesA: [Int] = []
    var outerStridesB: [Int] = []
    var inner = 1
    var innerStrideA = 0
    var innerStrideB = 0
    var rows: Int { outerDims.reduce(1, *) }

    init(output: Shape, _ a: Shape, _ b: Shape) {
        let rank = output.rank
        func broadcastStrides(_ s: Shape) -> [Int] {
            let padded = [Int](repeating: 1, count: rank - s.rank) + s.dimensions
            let strides = Shape(padded).strides
            return (0..<rank).map { padded[$0] == 1 ? 0 : strides[$0] }
        }
        var dims: [Int] = [], sa: [Int] = [], sb: [Int] = []
        let fullA = broadcastStrides(a), fullB = broadcastStrides(b)
        for axis in 0..<rank where output.dimensions[axis] != 1 {
            let d = output.dimensions[axis]
            if let last = dims.last, sa.last! == fullA[axis] * d, sb.last! == fullB[axis] * d {
                dims[dims.count - 1] = last * d
                sa[sa.count - 1] = fullA[axis]
                sb[sb.count - 1] = fullB[axis]
            } else {
                dims.append(d); sa.append(fullA[axis]); sb.append(fullB[axis])
            }
        }
        if let d = dims.popLast() {
            inner = d
            innerStrideA = sa.removeLast()
            innerStrideB = sb.removeLast()
        }
        outerDims = dims
        outerStridesA = sa
        outerStridesB = sb
    }

    @inline(__always)
    func offsets(row: Int) -> (Int, Int) {
        var rest = row, oa = 0, ob = 0
        for axis in stride(from: outerDims.count - 1, through: 0, by: -1) {
            let d = outerDims[axis]
            let index = rest % d
            rest /= d
            oa += index * outerStridesA[axis]
            ob += index * outerStridesB[axis]
        }
        return (oa, ob)
    }
}
