import Tensors

extension ONNXOperators {
    // MARK: Constant, Flatten, Reshape, Concat, Transpose, Squeeze, Unsqueeze, Slice, Shape, Gather, Cast

    func constant() throws -> Value {
        switch node.attribute("value") {
        case let .tensor(t)?:
            do { try t.validate() } catch let error as ProtoError { throw fail(error.message) }
            switch t.values {
            case let .floats(v): return .tensor(Tensor(v, shape: Shape(t.dims)))
            case let .ints(v): return .ints(v, dims: t.dims)
            }
        case nil: break
        default: throw fail("attribute 'value' should be a tensor")
        }
        switch (node.attribute("value_float"), node.attribute("value_floats"), node.attribute("value_int"), node.attribute("value_ints")) {
        case let (.float(f)?, _, _, _): return .tensor(Tensor(scalar: f))
        case let (_, .floats(v)?, _, _): return .tensor(Tensor(v))
        case let (_, _, .int(i)?, _): return .ints([i], dims: [])
        case let (_, _, _, .ints(v)?): return .ints(v, dims: [v.count])
        default: throw fail("has no value this reader understands (value, value_float(s), value_int(s))")
        }
    }

    func flatten() throws -> Value {
        let v = try value(0)
        let dims = v.dims
        var axis = try int("axis", 1)
        guard axis >= -dims.count, axis <= dims.count else { throw fail("axis \(axis) is out of range for rank \(dims.count)") }
        if axis < 0 { axis += dims.count }
        let target = [dims[..<axis].reduce(1, *), dims[axis...].reduce(1, *)]
        return try reshaped(v, to: target)
    }

    func reshaped(_ v: Value, to target: [Int]) throws -> Value {
        switch v {
        case let .tensor(t):
            guard Shape(target).count == t.count else { throw fail("cannot reshape \(t.shape) to \(target)") }
            return .tensor(t.reshaped(target))
        case let .ints(list, _):
            guard target.reduce(1, *) == list.count else { throw fail("cannot reshape \(list.count) integers to \(target)") }
            return .ints(list, dims: target)
        }
    }

    func reshape() throws -> Value {
        let v = try value(0)
        let dims = v.dims
        let requested = try ints(1)
        let allowZero = try int("allowzero", 0) != 0
        guard requested.count <= 16 else { throw fail("shape \(requested) has too many axes") }
        var target = try requested.enumerated().map { i, d -> Int in
            if d == 0 && !allowZero {
                guard i < dims.count else { throw fail("shape \(requested) copies axis \(i), which \(dims) lacks") }
                return dims[i]
            }
            guard d >= -1 else { throw fail("shape \(requested) has a negative size") }
            return d
        }
        let count = dims.reduce(1, *)
        let inferred = target.indices.filter { target[$0] == -1 }
        guard inferred.count <= 1 else { throw fail("shape \(requested) infers more than one axis") }
        if let i = inferred.first {
            let known = target.enumerated().filter { $0.offset != i }.reduce(1) { $0 * $1.element }
            guard known > 0, count % known == 0 else { throw fail("cannot reshape \(dims) to \(requested)") }
            target[i] = count / known
        }
        _ = try checked(target)
        return try reshaped(v, to: target)
    }

    func concat() throws -> Value {
        let values = try inputs.indices.map { try value($0) }
        guard !values.isEmpty else { throw fail("has no inputs") }
        let axis = try int("axis", 0)
        if values.allSatisfy({ if case .ints = $0 { return true } else { return false } }) {
            var all: [Int] = []
            for case let .ints(v, dims) in values {
                guard dims.count <= 1 else { throw fail("integer concatenation supports vectors only") }
                all += v
            }
            guard axis == 0 || axis == -1 else { throw fail("axis \(axis) is out of range for vectors") }
            return .ints(all, dims: [all.count])
        }
        let tensors = try inputs.indices.map { try tensor($0) }
        let rank = tensors[0].rank
        guard axis >= -rank, axis < rank else { throw fail("axis \(axis) is out of range for rank \(rank)") }
        let a = axis < 0 ? axis + rank : axis
        for t in tensors {
            guard t.rank == rank, (0..<rank).allSatisfy({ $0 == a || t.shape[$0] == tensors[0].shape[$0] }) else {
                throw fail("shapes \(tensors.map(\.shape)) differ outside axis \(axis)")
            }
        }
        _ = try checked(tensors[0].shape.dimensions.enumerated().map { $0.offset == a ? tensors.reduce(0) { $0 + $1.shape[a] } : $0.element })
        return .tensor(Tensor.concatenating(tensors, alongAxis: a))
    }

    func transpose() throws -> Tensor {
        let x = try tensor(0)
        let perm = try intList("perm") ?? Array((0..<x.rank).reversed())
        guard perm.count == x.rank, Set(perm) == Set(0..<x.rank) else { throw fail("perm \(perm) is not a permutation of \(x.rank) axes") }
        return x.permuted(perm)
    }

    func squeezeOrUnsqueeze() throws -> Value {
        let v = try value(0)
        let dims = v.dims
        if node.opType == "Squeeze" {
            let axes = try axes(input: 1, attribute: "axes", rank: dims.count) ?? dims.indices.filter { dims[$0] == 1 }
            for a in axes where dims[a] != 1 { throw fail("axis \(a) of \(dims) is not of size 1") }
            return try reshaped(v, to: dims.enumerated().filter { !axes.contains($0.offset) }.map(\.element))
        }
        guard let axes = try axes(input: 1, attribute: "axes", rank: dims.count + ((try? ints(1))?.count ?? intList("axes")?.count ?? 0)) else {
            throw fail("axes are missing")
        }
        var result = dims
        for a in axes.sorted() { result.insert(1, at: min(a, result.count)) }
        return try reshaped(v, to: result)
    }

    /// Slice with unit steps (what PyTorch's `x[:, a:b]` exports).
    func slice() throws -> Tensor {
        let x = try tensor(0)
        let starts: [Int], ends: [Int], axesList: [Int]?, steps: [Int]?
        if opset >= 10 {
            starts = try ints(1)
            ends = try ints(2)
            axesList = optional(3) == nil ? nil : try ints(3)
            steps = optional(4) == nil ? nil : try ints(4)
        } else {
            starts = try intList("starts") ?? []
            ends = try intList("ends") ?? []
            axesList = try intList("axes")
            steps = nil
        }
        let axes = axesList ?? Array(0..<starts.count)
        guard starts.count == ends.count, axes.count == starts.count, steps.map({ $0.count == starts.count }) ?? true else {
            throw fail("starts \(starts), ends \(ends) and axes \(axes) differ in length")
        }
        guard steps?.allSatisfy({ $0 == 1 }) ?? true else { throw fail("steps other than 1 are not supported") }
        var y = x
        var seen = Set<Int>()
        for (i, rawAxis) in axes.enumerated() {
            guard rawAxis >= -x.rank, rawAxis < x.rank else { throw fail("axis \(rawAxis) is out of range for \(x.shape)") }
            let axis = rawAxis < 0 ? rawAxis + x.rank : rawAxis
            guard seen.insert(axis).inserted else { throw fail("axis \(axis) is sliced twice") }
            let size = x.shape[axis]
            func clamp(_ v: Int) -> Int { min(max(v < 0 ? v + size : v, 0), size) }
            let lower = clamp(starts[i]), upper = max(clamp(ends[i]), lower)
            y = y.sliced(alongAxis: axis, lower..<upper)
        }
        return y
    }

    func shape() throws -> Value {
        let dims = try value(0).dims
        let rank = dims.count
        func clamp(_ i: Int) -> Int { min(max(i < 0 ? i + rank : i, 0), rank) }
        let start = clamp(try int("start", 0)), end = clamp(try int("end", rank))
        let slice = start < end ? Array(dims[start..<end]) : []
        return .ints(slice, dims: [slice.count])
    }

    func gather() throws -> Value {
        let indices = try ints(1)
        let indexDims: [Int]
        if case let .ints(_, d) = try value(1) { indexDims = d } else { indexDims = [indices.count] }
        let axis = try int("axis", 0)
        switch try value(0) {
        case let .ints(data, dims):
            guard dims.count <= 1, axis == 0 || axis == -1 else { throw fail("integer gather supports vectors only") }
            let picked = try indices.map { i -> Int in
                guard i >= -data.count, i < data.count else { throw fail("index \(i) is out of range for \(data.count) values") }
                return data[i < 0 ? i + data.count : i]
            }
            return .ints(picked, dims: indexDims)
        case let .tensor(t):
            guard t.rank >= 1, axis >= -t.rank, axis < t.rank else { throw fail("axis \(axis) is out of range for \(t.shape)") }
            let a = axis < 0 ? axis + t.rank : axis
            let size = t.shape[a]
            let resolved = try indices.map { i -> Int in
                guard i >= -size, i < size else { throw fail("index \(i) is out of range for axis \(a) of \(t.shape)") }
                return i < 0 ? i + size : i
            }
            let selected = t.indexSelect(alongAxis: a, indices: resolved)
            var dims = t.shape.dimensions
            dims.replaceSubrange(a...a, with: indexDims)
            return .tensor(selected.reshaped(try checked(dims)))
        }
    }

    func cast() throws -> Value {
        let to = try int("to", ONNXTensor.float)
        switch (try value(0), to) {
        case let (.tensor(t), ONNXTensor.float), let (.tensor(t), ONNXTensor.double): return .tensor(t)
        case let (.ints(v, dims), ONNXTensor.float), let (.ints(v, dims), ONNXTensor.double): return .tensor(Tensor(v.map(Float.init), shape: Shape(dims)))
        case let (.ints(v, dims), ONNXTensor.int64), let (.ints(v, dims), ONNXTensor.int32): return .ints(v, dims: dims)
        case let (.tensor(t), ONNXTensor.int64), let (.tensor(t), ONNXTensor.int32):
            guard t.count <= 1 << 20, t.scalars.allSatisfy({ $0.isFinite && Swift.abs($0) < 1e15 }) else { throw fail("cannot cast these values to integers") }
            return .ints(t.scalars.map { Int($0) }, dims: t.shape.dimensions)
        default: throw fail("cast to element type \(to) is not supported")
        }
    }
}
