// Shape manipulation. Reshape shares storage; everything else copies into a new
// contiguous tensor, so no kernel ever sees a strided view.

extension Tensor {
    /// The same values under a new shape; one dimension may be -1 (inferred).
    public func reshaped(_ newShape: Shape) -> Tensor { reshaped(newShape.dimensions) }

    /// The same values under new dimensions; one may be -1 (inferred from the element count).
    public func reshaped(_ newDimensions: [Int]) -> Tensor {
        var dims = newDimensions
        if let inferred = dims.firstIndex(of: -1) {
            let known = dims.enumerated().filter { $0.offset != inferred }.reduce(1) { $0 * $1.element }
            require(known > 0 && count % known == 0, "reshaped: cannot infer -1 in \(dims) for \(count) elements of \(shape)")
            dims[inferred] = count / known
        }
        let target = Shape(dims)
        require(target.count == count, "reshaped: shape \(shape) (\(count) elements) cannot become \(target)")
        if target == shape { return self }
        let input = self
        return Tensor(storage: storage, shape: target)
            .recorded("reshape", [input]) { g in [g.reshaped(input.shape)] }
    }

    /// Collapses axes `startAxis...` into one: [N, C, H, W] → [N, C·H·W] by default.
    public func flattened(startAxis: Int = 1) -> Tensor {
        let start = shape.normalizedAxis(startAxis, op: "flattened")
        return reshaped(Shape(Array(shape.dimensions[..<start]) + [shape.dimensions[start...].reduce(1, *)]))
    }

    /// Inserts a size-1 axis at `axis`.
    public func unsqueezed(axis: Int) -> Tensor {
        var dims = shape.dimensions
        let resolved = axis < 0 ? axis + rank + 1 : axis
        require(resolved >= 0 && resolved <= rank, "unsqueezed: axis \(axis) out of range for \(shape)")
        dims.insert(1, at: resolved)
        return reshaped(Shape(dims))
    }

    /// Removes size-1 axes (all of them, or the one at `axis`).
    public func squeezed(axis: Int? = nil) -> Tensor {
        if let axis {
            let resolved = shape.normalizedAxis(axis, op: "squeezed")
            require(shape.dimensions[resolved] == 1, "squeezed: axis \(axis) of \(shape) is not of size 1")
            var dims = shape.dimensions
            dims.remove(at: resolved)
            return reshaped(Shape(dims))
        }
        return reshaped(Shape(shape.dimensions.filter { $0 != 1 }))
    }

    /// Broadcasts to `target` by NumPy rules (a copy). The gradient sums back.
    public func expanded(to target: Shape) -> Tensor {
        if target == shape { return self }
        require(Shape.broadcast(shape, target) == target, "expanded: shape \(shape) does not broadcast to \(target)")
        let input = self
        return CopyKernels.expand(self, to: target)
            .recorded("expand", [input]) { g in [g.sumToShape(input.shape)] }
    }

    /// Reorders axes: axis i of the result is axis `axes[i]` of self.
    public func permuted(_ axes: [Int]) -> Tensor {
        let resolved = axes.map { shape.normalizedAxis($0, op: "permuted") }
        require(resolved.count == rank && Set(resolved).count == rank, "permuted: \(axes) is not a permutation of the axes of \(shape)")
        if resolved == Array(0..<rank) { return self }
        let out = Tensor(uninitialized: Shape(resolved.map { shape.dimensions[$0] }))
        CopyKernels.permute(self, axes: resolved, into: out)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, axis) in resolved.enumerated() { inverse[axis] = i }
        return out.recorded("permute", [self]) { [inverse] g in [g.permuted(inverse)] }
    }

    /// Swaps two axes (the last two by default: the matrix transpose).
    public func transposed(_ first: Int = -2, _ second: Int = -1) -> Tensor {
        var axes = Array(0..<rank)
        axes.swapAt(shape.normalizedAxis(first, op: "transposed"), shape.normalizedAxis(second, op: "transposed"))
        return permuted(axes)
    }

    /// Elements `range` along `axis`. The gradient is zero outside the slice.
    public func sliced(alongAxis axis: Int, _ range: Range<Int>) -> Tensor {
        let axis = shape.normalizedAxis(axis, op: "sliced")
        let (outer, size, inner) = shape.split(at: axis)
        require(range.lowerBound >= 0 && range.upperBound <= size,
                     "sliced: range \(range) out of bounds for axis \(axis) of shape \(shape)")
        var dims = shape.dimensions
        dims[axis] = range.count
        let out = Tensor(uninitialized: Shape(dims))
        let px = storage.pointer, po = out.storage.pointer
        let block = range.count * inner
        for o in 0..<outer {
            (po + o * block).update(from: px + (o * size + range.lowerBound) * inner, count: block)
        }
        let input = self
        return out.recorded("slice", [input]) { g in
            let gx = Tensor.zeros(input.shape)
            let pg = g.storage.pointer, pgx = gx.storage.pointer
            for o in 0..<outer {
                (pgx + (o * size + range.lowerBound) * inner).update(from: pg + o * block, count: block)
            }
            return [gx]
        }
    }

    /// Joins tensors along `axis`; all other dimensions must agree.
    public static func concatenating(_ tensors: [Tensor], alongAxis axis: Int) -> Tensor {
        require(!tensors.isEmpty, "concatenating: needs at least one tensor")
        let first = tensors[0].shape
        let axis = first.normalizedAxis(axis, op: "concatenating")
        for t in tensors {
            var a = t.shape.dimensions, b = first.dimensions
            require(t.rank == first.rank, "concatenating: ranks differ, \(t.shape) vs \(first)")
            a[axis] = 0; b[axis] = 0
            require(a == b, "concatenating: shapes \(t.shape) and \(first) differ outside axis \(axis)")
        }
        var dims = first.dimensions
        dims[axis] = tensors.reduce(0) { $0 + $1.shape.dimensions[axis] }
        let out = Tensor(uninitialized: Shape(dims))
        let (outer, total, inner) = out.shape.split(at: axis)
        var offset = 0
        var ranges: [Range<Int>] = []
        for t in tensors {
            let size = t.shape.dimensions[axis]
            let block = size * inner
            for o in 0..<outer {
                (out.storage.pointer + (o * total + offset) * inner).update(from: t.storage.pointer + o * block, count: block)
            }
            ranges.append(offset..<(offset + size))
            offset += size
        }
        return out.recorded("concatenate", tensors) { g in
            zip(tensors, ranges).map { t, range in t.needsGrad ? g.sliced(alongAxis: axis, range) : nil }
        }
    }

    /// Stacks same-shaped tensors along a new axis.
    public static func stacking(_ tensors: [Tensor], alongAxis axis: Int = 0) -> Tensor {
        require(!tensors.isEmpty, "stacking: needs at least one tensor")
        require(tensors.allSatisfy { $0.shape == tensors[0].shape }, "stacking: shapes differ: \(tensors.map(\.shape))")
        return concatenating(tensors.map { $0.unsqueezed(axis: axis) }, alongAxis: axis)
    }

    /// Picks the slices `indices` along `axis` (repeats allowed). The gradient scatter-adds back.
    public func indexSelect(alongAxis axis: Int, indices: [Int]) -> Tensor {
        let axis = shape.normalizedAxis(axis, op: "indexSelect")
        let (outer, size, inner) = shape.split(at: axis)
        for index in indices {
            require(index >= 0 && index < size, "indexSelect: index \(index) out of range 0..<\(size) for axis \(axis) of \(shape)")
        }
        var dims = shape.dimensions
        dims[axis] = indices.count
        let out = Tensor(uninitialized: Shape(dims))
        let px = storage.pointer, po = out.storage.pointer
        for o in 0..<outer {
            for (k, index) in indices.enumerated() {
                (po + (o * indices.count + k) * inner).update(from: px + (o * size + index) * inner, count: inner)
            }
        }
        let input = self
        return out.recorded("indexSelect", [input]) { g in
            let gx = Tensor.zeros(input.shape)
            let pg = g.storage.pointer, pgx = gx.storage.pointer
            for o in 0..<outer {
                for (k, index) in indices.enumerated() {
                    let dst = pgx + (o * size + index) * inner, src = pg + (o * indices.count + k) * inner
                    for j in 0..<inner { dst[j] += src[j] }
                }
            }
            return [gx]
        }
    }

    /// `torch.gather`: out[..., i, ...] = self[..., indices[..., i, ...], ...] along `axis`, where
    /// `indices` (row-major, shape `indexShape`) has the rank of self and is no larger on other axes.
    public func gathering(alongAxis axis: Int, indices: [Int], indexShape: Shape) -> Tensor {
        let axis = shape.normalizedAxis(axis, op: "gathering")
        require(indexShape.rank == rank && indices.count == indexShape.count,
                     "gathering: index shape \(indexShape) (\(indices.count) indices) does not fit tensor \(shape)")
        for a in 0..<rank where a != axis {
            require(indexShape.dimensions[a] <= shape.dimensions[a], "gathering: index shape \(indexShape) exceeds \(shape) on axis \(a)")
        }
        let size = shape.dimensions[axis]
        let inStrides = shape.strides
        let outShape = indexShape
        let outStrides = outShape.strides
        var sourceOffsets = [Int](repeating: 0, count: indices.count)
        for flat in 0..<indices.count {
            let index = indices[flat]
            require(index >= 0 && index < size, "gathering: index \(index) out of range 0..<\(size) on axis \(axis)")
            var rest = flat, offset = 0
            for a in 0..<rank {
                let i = rest / outStrides[a]
                rest %= outStrides[a]
                offset += (a == axis ? index : i) * inStrides[a]
            }
            sourceOffsets[flat] = offset
        }
        let out = Tensor(uninitialized: outShape)
        let px = storage.pointer, po = out.storage.pointer
        for (flat, offset) in sourceOffsets.enumerated() { po[flat] = px[offset] }
        let input = self
        return out.recorded("gather", [input]) { g in
            let gx = Tensor.zeros(input.shape)
            let pg = g.storage.pointer, pgx = gx.storage.pointer
            for (flat, offset) in sourceOffsets.enumerated() { pgx[offset] += pg[flat] }
            return [gx]
        }
    }

    /// One-hot rows: [labels.count, classes] with 1 at each label.
    public static func oneHot(_ labels: [Int], classes: Int) -> Tensor {
        let out = Tensor.zeros([labels.count, classes])
        for (row, label) in labels.enumerated() {
            require(label >= 0 && label < classes, "oneHot: label \(label) is outside 0..<\(classes)")
            out.storage.pointer[row * classes + label] = 1
        }
        return out
    }
}
