import Tensors

extension ONNXOperators {
    // MARK: Softmax, LayerNormalization, ReduceMean, ReduceMax, ReduceSum, ReduceL2

    func softmax() throws -> Tensor {
        let x = try tensor(0)
        guard x.rank >= 1 else { throw fail("needs rank ≥ 1, got a scalar") }
        var axis = try int("axis", opset >= 13 ? -1 : 1)
        guard axis >= -x.rank, axis < x.rank else { throw fail("axis \(axis) is out of range for \(x.shape)") }
        if axis < 0 { axis += x.rank }
        if opset >= 13 || axis == x.rank - 1 { return x.softmax(alongAxis: axis) }
        // Before opset 13, Softmax normalises over all axes from `axis` on, as one.
        let dims = x.shape.dimensions
        let flat = x.reshaped([dims[..<axis].reduce(1, *), dims[axis...].reduce(1, *)])
        return flat.softmax(alongAxis: 1).reshaped(dims)
    }

    /// LayerNormalization (opset 17): x normalised over the axes from `axis` on, times Scale
    /// plus B, each broadcast to those axes (what torch exports for nn.LayerNorm).
    func layerNormalization() throws -> Tensor {
        guard node.outputs.dropFirst().allSatisfy(\.isEmpty) else { throw fail("the Mean and InvStdDev outputs are not supported") }
        let x = try tensor(0)
        guard x.rank >= 1, x.count > 0 else { throw fail("needs a non-empty tensor of rank ≥ 1, got \(x.shape)") }
        var axis = try int("axis", -1)
        guard axis >= -x.rank, axis < x.rank else { throw fail("axis \(axis) is out of range for \(x.shape)") }
        if axis < 0 { axis += x.rank }
        let epsilon = try float("epsilon", 1e-5)
        guard epsilon.isFinite, epsilon > 0 else { throw fail("epsilon \(epsilon) should be positive") }
        let normalized = Shape(Array(x.shape.dimensions[axis...]))
        func fitted(_ i: Int, _ name: String) throws -> Tensor? {
            guard optional(i) != nil else { return nil }
            let t = try tensor(i)
            guard Shape.broadcast(t.shape, normalized) == normalized else { throw fail("\(name) \(t.shape) does not broadcast to \(normalized)") }
            return t.shape == normalized ? t : t.expanded(to: normalized)
        }
        guard let scale = try fitted(1, "Scale") else { throw fail("input 1 (Scale) is missing") }
        return Tensor.layerNorm(x, normalizedShape: normalized, weight: scale, bias: try fitted(2, "B"), epsilon: epsilon)
    }

    func reduce() throws -> Tensor {
        let x = try tensor(0)
        let keep = try int("keepdims", 1) != 0
        // Axes became an input in opset 13 for ReduceSum and in 18 for the others (ReduceL2 included).
        let axesAsInput = node.opType == "ReduceSum" ? opset >= 13 : opset >= 18
        var axes = axesAsInput ? try axes(input: 1, attribute: "", rank: x.rank) : try axes(input: 99, attribute: "axes", rank: x.rank)
        if axes?.isEmpty ?? true {
            if try int("noop_with_empty_axes", 0) != 0 { return x }
            axes = nil
        }
        guard x.count > 0 else { throw fail("cannot reduce an empty tensor \(x.shape)") }
        switch node.opType {
        case "ReduceMean": return x.mean(alongAxes: axes, keepDims: keep)
        case "ReduceSum": return x.sum(alongAxes: axes, keepDims: keep)
        case "ReduceL2": return (x * x).sum(alongAxes: axes, keepDims: keep).sqrt()
        default: return x.max(alongAxes: axes, keepDims: keep)
        }
    }
}
