import Tensors

extension ONNXOperators {
    // MARK: Pad

    /// Pads (or, with negative amounts, crops) each axis: with a constant, by reflecting
    /// the values next to the edge (`reflect`, the edge itself not repeated), by repeating
    /// the edge (`edge`) or by wrapping around (`wrap`, opset 19).
    ///
    /// The amounts are an attribute before opset 11 and an input after; opset 18 adds the
    /// axes they apply to. Built from slices, concatenations and index selections, so the
    /// gradient flows to the input (not to the constant).
    func pad() throws -> Tensor {
        let x = try tensor(0)
        let mode = try string("mode", "constant")
        guard ["constant", "reflect", "edge", "wrap"].contains(mode) else { throw fail("mode '\(mode)' is not constant, reflect, edge or wrap") }
        let pads: [Int]
        var value: Float = 0
        if opset < 11 {
            guard let list = try intList("pads") ?? intList("paddings") else { throw fail("pads are missing") }
            pads = list
            value = try float("value", 0)
        } else {
            pads = try ints(1)
            if optional(2) != nil {
                let constant = try tensor(2)
                guard constant.count <= 1 else { throw fail("the constant value should be a scalar, got \(constant.shape)") }
                value = constant.scalars.first ?? 0
            }
        }
        let axes = try axes(input: 3, attribute: "", rank: x.rank) ?? Array(0..<x.rank)
        guard pads.count == 2 * axes.count else { throw fail("pads \(pads) should hold a start and an end for each of \(axes.count) axes") }
        var y = x
        for (i, axis) in axes.enumerated() where pads[i] != 0 || pads[i + axes.count] != 0 {
            y = try padded(y, axis: axis, before: pads[i], after: pads[i + axes.count], mode: mode, value: value)
        }
        return y
    }

    /// One axis of `pad`: `before` and `after` values added (or, negative, removed).
    func padded(_ x: Tensor, axis: Int, before: Int, after: Int, mode: String, value: Float) throws -> Tensor {
        let size = x.shape[axis]
        let limit = -(1 << 20)...(1 << 20)
        guard limit.contains(before), limit.contains(after), size + before + after > 0, size + min(before, 0) + min(after, 0) >= 0 else {
            throw fail("pads \(before) and \(after) do not fit axis \(axis) of \(x.shape)")
        }
        guard size > 0 || mode == "constant" else { throw fail("\(mode) padding needs values on axis \(axis) of \(x.shape)") }
        var dims = x.shape.dimensions
        dims[axis] = size + before + after
        _ = try checked(dims)
        // Output position j shows input position j − before (when inside the input).
        let positions = (0..<dims[axis]).map { $0 - before }
        switch mode {
        case "constant":
            func constant(_ amount: Int) -> [Tensor] {
                guard amount > 0 else { return [] }
                var block = x.shape.dimensions
                block[axis] = amount
                return [Tensor.full(Shape(block), value)]
            }
            let kept = max(0, -before)..<(size - max(0, -after))
            let parts = constant(before) + [kept.count == size ? x : x.sliced(alongAxis: axis, kept)] + constant(after)
            return parts.count == 1 ? parts[0] : Tensor.concatenating(parts, alongAxis: axis)
        case "reflect":
            guard size >= 2, before < size, after < size else {
                throw fail("reflect padding by \(before) and \(after) needs more than \(size) values on axis \(axis) of \(x.shape)")
            }
            return x.indexSelect(alongAxis: axis, indices: positions.map { p in p < 0 ? -p : (p >= size ? 2 * (size - 1) - p : p) })
        case "edge":
            return x.indexSelect(alongAxis: axis, indices: positions.map { min(max($0, 0), size - 1) })
        default:
            return x.indexSelect(alongAxis: axis, indices: positions.map { (($0 % size) + size) % size })
        }
    }
}
