import Tensors

extension ONNXOperators {
    // MARK: Constant, ConstantOfShape, Flatten, Reshape, Concat, Transpose, Squeeze, Unsqueeze, Slice, Split, Expand, Shape, Gather, GatherND, Cast

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
        let lists = values.compactMap { if case let .ints(v, _) = $0 { return v } else { return nil } }
        if lists.count == values.count {
            // Integers: their positions in all the lists together are concatenated, then pick the values.
            let all = lists.flatMap { $0 }
            guard all.count <= 1 << 24 else { throw fail("\(all.count) integers are too many to concatenate") }
            var offset = 0
            let positions = values.map { v -> Tensor in
                defer { offset += v.dims.reduce(1, *) }
                return Tensor((offset..<(offset + v.dims.reduce(1, *))).map(Float.init), shape: Shape(v.dims.isEmpty ? [1] : v.dims))
            }
            let joined = try concatenated(positions, axis: axis)
            return .ints(joined.scalars.map { all[Int($0)] }, dims: joined.shape.dimensions)
        }
        return .tensor(try concatenated(try inputs.indices.map { try tensor($0) }, axis: axis))
    }

    func concatenated(_ tensors: [Tensor], axis: Int) throws -> Tensor {
        let rank = tensors[0].rank
        guard axis >= -rank, axis < rank else { throw fail("axis \(axis) is out of range for rank \(rank)") }
        let a = axis < 0 ? axis + rank : axis
        for t in tensors {
            guard t.rank == rank, (0..<rank).allSatisfy({ $0 == a || t.shape[$0] == tensors[0].shape[$0] }) else {
                throw fail("shapes \(tensors.map(\.shape)) differ outside axis \(axis)")
            }
        }
        _ = try checked(tensors[0].shape.dimensions.enumerated().map { $0.offset == a ? tensors.reduce(0) { $0 + $1.shape[a] } : $0.element })
        return Tensor.concatenating(tensors, alongAxis: a)
    }

    /// A tensor of `input 0`'s shape filled with the `value` attribute's one element (float 0 by default).
    func constantOfShape() throws -> Value {
        let shape = try checked(try ints(0))
        switch node.attribute("value") {
        case nil: return .tensor(Tensor.zeros(shape))
        case let .tensor(t)?:
            do { try t.validate() } catch let error as ProtoError { throw fail(error.message) }
            switch t.values {
            case let .floats(v) where v.count == 1: return .tensor(Tensor.full(shape, v[0]))
            case let .ints(v) where v.count == 1:
                guard shape.count <= 1 << 24 else { throw fail("\(shape) integers are too many") }
                return .ints([Int](repeating: v[0], count: shape.count), dims: shape.dimensions)
            default: throw fail("value should hold one element, got \(t.count)")
            }
        default: throw fail("attribute 'value' should be a tensor")
        }
    }

    func transpose() throws -> Value {
        let v = try value(0)
        let rank = v.dims.count
        let perm = try intList("perm") ?? Array((0..<rank).reversed())
        guard perm.count == rank, Set(perm) == Set(0..<rank) else { throw fail("perm \(perm) is not a permutation of \(rank) axes") }
        return try rearranging(v) { $0.permuted(perm) }
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

    /// Slice, with any non-zero steps (negative ones walk backwards, as `x.flip` and the
    /// legacy exporter's pad reversal export), on tensors and on integers.
    func slice() throws -> Value {
        let v = try value(0)
        let dims = v.dims
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
        guard steps?.allSatisfy({ $0 != 0 }) ?? true else { throw fail("steps \(steps!) include 0") }
        var cuts: [(axis: Int, indices: StrideTo<Int>)] = []
        var seen = Set<Int>()
        for (i, rawAxis) in axes.enumerated() {
            guard rawAxis >= -dims.count, rawAxis < dims.count else { throw fail("axis \(rawAxis) is out of range for \(dims)") }
            let axis = rawAxis < 0 ? rawAxis + dims.count : rawAxis
            guard seen.insert(axis).inserted else { throw fail("axis \(axis) is sliced twice") }
            // A step longer than the axis takes one element, whatever its size.
            let size = dims[axis], step = max(min(steps?[i] ?? 1, size + 1), -(size + 1))
            // Negative positions count from the end; then both clamp to where the walk can go.
            func resolve(_ p: Int, _ low: Int, _ high: Int) -> Int { min(max(p < 0 ? p &+ size : p, low), high) }
            let start = step > 0 ? resolve(starts[i], 0, size) : resolve(starts[i], 0, size - 1)
            let end = step > 0 ? resolve(ends[i], 0, size) : resolve(ends[i], -1, size - 1)
            cuts.append((axis, stride(from: start, to: end, by: step)))
        }
        return try rearranging(v) { x in
            cuts.reduce(x) { y, cut in
                let indices = Array(cut.indices)
                if let first = indices.first, indices.count == 1 || indices[1] == first + 1 {
                    return y.sliced(alongAxis: cut.axis, first..<(first + indices.count))
                }
                return indices.isEmpty ? y.sliced(alongAxis: cut.axis, 0..<0) : y.indexSelect(alongAxis: cut.axis, indices: indices)
            }
        }
    }

    /// Split along `axis` into the node's outputs: sizes from the `split` attribute (before
    /// opset 13) or input, else `num_outputs` (opset 18) chunks of ⌈size/n⌉ with a smaller
    /// last one, else equal parts.
    func split() throws -> [Value] {
        let v = try value(0)
        let dims = v.dims
        let rawAxis = try int("axis", 0)
        guard rawAxis >= -dims.count, rawAxis < dims.count else { throw fail("axis \(rawAxis) is out of range for \(dims)") }
        let axis = rawAxis < 0 ? rawAxis + dims.count : rawAxis
        let size = dims[axis], parts = node.outputs.count
        var sizes: [Int]
        if opset >= 13, optional(1) != nil {
            sizes = try ints(1)
        } else if opset < 13, let list = try intList("split") {
            sizes = list
        } else if opset >= 18, node.attribute("num_outputs") != nil {
            let n = try int("num_outputs", parts)
            guard n == parts, n >= 1 else { throw fail("num_outputs \(n) differs from the node's \(parts) outputs") }
            let chunk = (size + n - 1) / n
            sizes = (0..<n).map { min(chunk, max(0, size - $0 * chunk)) }
        } else {
            guard size % parts == 0 else { throw fail("axis \(axis) of \(dims) does not split into \(parts) equal parts") }
            sizes = [Int](repeating: size / parts, count: parts)
        }
        guard sizes.count == parts, sizes.allSatisfy({ $0 >= 0 }), sizes.reduce(0, { $0 &+ $1 }) == size else {
            throw fail("split \(sizes) does not divide axis \(axis) of \(dims) into \(parts) outputs")
        }
        var offset = 0
        return try sizes.map { count in
            defer { offset += count }
            return try rearranging(v) { [offset] in $0.sliced(alongAxis: axis, offset..<(offset + count)) }
        }
    }

    /// Broadcasts the input with the `shape` input (NumPy rules both ways: a 1 in `shape` keeps the input's size).
    func expand() throws -> Value {
        let v = try value(0)
        let requested = try ints(1)
        guard requested.count <= 16, requested.allSatisfy({ $0 >= 0 }) else { throw fail("shape \(requested) is not a shape") }
        let target = try broadcast(Shape(v.dims), Shape(requested))
        return try rearranging(v) { $0.expanded(to: target) }
    }

    func shape() throws -> Value {
        let dims = try value(0).dims
        let rank = dims.count
        func clamp(_ i: Int) -> Int { min(max(i < 0 ? i + rank : i, 0), rank) }
        let start = clamp(try int("start", 0)), end = clamp(try int("end", rank))
        let slice = start < end ? Array(dims[start..<end]) : []
        return .ints(slice, dims: [slice.count])
    }

    /// Gather along `axis` by integer indices of any shape (negative ones count from the end),
    /// on tensors (an embedding lookup) and on integers (shapes, ids, masks).
    func gather() throws -> Value {
        let data = try value(0)
        let indices = try ints(1)
        let indexDims = try value(1).dims
        let dims = data.dims
        let axis = try int("axis", 0)
        guard dims.count >= 1, axis >= -dims.count, axis < dims.count else { throw fail("axis \(axis) is out of range for \(dims)") }
        let a = axis < 0 ? axis + dims.count : axis
        let size = dims[a]
        let resolved = try indices.map { i -> Int in
            guard i >= -size, i < size else { throw fail("index \(i) is out of range for axis \(a) of \(dims)") }
            return i < 0 ? i + size : i
        }
        var result = dims
        result.replaceSubrange(a...a, with: indexDims)
        let shape = try checked(result)
        return try rearranging(data) { $0.indexSelect(alongAxis: a, indices: resolved).reshaped(shape) }
    }

    /// GatherND: slices of `data` picked by the last axis of `indices` (index tuples into the
    /// axes after the first `batch_dims`, which data and indices share); tensors and integers.
    func gatherND() throws -> Value {
        let data = try value(0), indices = try ints(1)
        let dims = data.dims, indexDims = try value(1).dims
        let batchAxes = try int("batch_dims", 0)
        guard let depth = indexDims.last, depth >= 1, batchAxes >= 0, batchAxes < indexDims.count,
              batchAxes + depth <= dims.count, Array(dims.prefix(batchAxes)) == Array(indexDims.prefix(batchAxes)) else {
            throw fail("indices \(indexDims) with batch_dims \(batchAxes) do not fit data \(dims)")
        }
        let picked = Array(dims[batchAxes..<(batchAxes + depth)])
        let tuples = indices.count / depth
        let perBatch = tuples / Swift.max(dims.prefix(batchAxes).reduce(1, *), 1)
        // Each tuple's row in data seen as [batch · picked sizes, the rest].
        let rows = try (0..<tuples).map { tuple -> Int in
            var row = perBatch == 0 ? 0 : tuple / perBatch
            for (axis, size) in picked.enumerated() {
                let i = indices[tuple * depth + axis]
                guard i >= -size, i < size else { throw fail("index \(i) is out of range for axis \(batchAxes + axis) of \(dims)") }
                row = row * size + (i < 0 ? i + size : i)
            }
            return row
        }
        let inner = Array(dims[(batchAxes + depth)...])
        let shape = try checked(Array(indexDims.dropLast()) + inner)
        let flat = [dims.prefix(batchAxes + depth).reduce(1, *)] + inner
        return try rearranging(data) { $0.reshaped(flat).indexSelect(alongAxis: 0, indices: rows).reshaped(shape) }
    }

    func cast() throws -> Value {
        let to = try int("to", ONNXTensor.float)
        switch (try value(0), to) {
        case let (.tensor(t), ONNXTensor.float), let (.tensor(t), ONNXTensor.double): return .tensor(t)
        case let (.ints(v, dims), ONNXTensor.float), let (.ints(v, dims), ONNXTensor.double): return .tensor(Tensor(v.map(Float.init), shape: Shape(dims)))
        case let (.ints(v, dims), ONNXTensor.int64), let (.ints(v, dims), ONNXTensor.int32): return .ints(v, dims: dims)
        case let (.ints(v, dims), ONNXTensor.bool): return .ints(v.map { $0 != 0 ? 1 : 0 }, dims: dims)
        case let (.tensor(t), ONNXTensor.bool):
            guard t.count <= 1 << 24 else { throw fail("cannot cast \(t.shape) values to booleans") }
            return .ints(t.scalars.map { $0 != 0 ? 1 : 0 }, dims: t.shape.dimensions)
        case let (.tensor(t), ONNXTensor.int64), let (.tensor(t), ONNXTensor.int32):
            guard t.count <= 1 << 24, t.scalars.allSatisfy({ $0.isFinite && Swift.abs($0) < 1e15 }) else { throw fail("cannot cast these values to integers") }
            return .ints(t.scalars.map { Int($0) }, dims: t.shape.dimensions)
        default: throw fail("cast to element type \(to) is not supported")
        }
    }
}
