import Tensors

extension ONNXOperators {
    // MARK: Conv, BatchNormalization, MaxPool, AveragePool (asymmetric padding made explicit)

    /// Padding from `pads` and `auto_pad`: [top, left, bottom, right]. SAME_UPPER puts the
    /// odd pixel at the end, SAME_LOWER at the start.
    func padding(kernel: [Int], strides: [Int], dilations: [Int], input: [Int]) throws -> [Int] {
        switch try string("auto_pad", "NOTSET") {
        case "NOTSET":
            let pads = try intList("pads") ?? [0, 0, 0, 0]
            guard pads.count == 4, pads.allSatisfy({ $0 >= 0 && $0 <= 1 << 16 }) else { throw fail("pads \(pads) should be four non-negative numbers") }
            return pads
        case "VALID": return [0, 0, 0, 0]
        case let mode where mode == "SAME_UPPER" || mode == "SAME_LOWER":
            var result = [0, 0, 0, 0]
            for a in 0..<2 {
                let out = (input[a] + strides[a] - 1) / strides[a]
                let total = max(0, (out - 1) * strides[a] + (kernel[a] - 1) * dilations[a] + 1 - input[a])
                result[a] = mode == "SAME_UPPER" ? total / 2 : total - total / 2
                result[a + 2] = total - result[a]
            }
            return result
        case let other: throw fail("auto_pad '\(other)' is not known")
        }
    }

    /// The part of `pads` ([top, left, bottom, right]) a kernel can apply itself (the same on
    /// both sides), and `x` with the rest added explicitly as `value`.
    func symmetricPadding(_ x: Tensor, _ pads: [Int], value: Float) throws -> (input: Tensor, padding: (Int, Int)) {
        let common = (min(pads[0], pads[2]), min(pads[1], pads[3]))
        var y = x
        for (axis, before, after) in [(2, pads[0] - common.0, pads[2] - common.0), (3, pads[1] - common.1, pads[3] - common.1)] where before + after > 0 {
            y = try padded(y, axis: axis, before: before, after: after, mode: "constant", value: value)
        }
        return (y, common)
    }

    func window(_ name: String, _ fallback: Int) throws -> [Int] {
        let v = try intList(name) ?? [fallback, fallback]
        guard v.count == 2, v.allSatisfy({ $0 >= 1 && $0 <= 1 << 16 }) else { throw fail("\(name) \(v) should be two positive numbers (2-D only)") }
        return v
    }

    func conv() throws -> Tensor {
        let x = try tensor(0), w = try tensor(1)
        guard x.rank == 4, w.rank == 4 else { throw fail("only 2-D convolutions are supported: input \(x.shape), weight \(w.shape)") }
        let groups = try int("group", 1)
        guard groups >= 1, w.shape[0] % groups == 0, w.shape[1] * groups == x.shape[1], w.shape[0] > 0, w.shape[1] > 0 else {
            throw fail("weight \(w.shape) with \(groups) groups does not fit input \(x.shape)")
        }
        let kernel = [w.shape[2], w.shape[3]]
        guard kernel.allSatisfy({ $0 >= 1 }) else { throw fail("empty kernel in weight \(w.shape)") }
        if let k = try intList("kernel_shape"), k != kernel { throw fail("kernel_shape \(k) disagrees with weight \(w.shape)") }
        let strides = try window("strides", 1), dilations = try window("dilations", 1)
        let pads = try padding(kernel: kernel, strides: strides, dilations: dilations, input: [x.shape[2], x.shape[3]])
        let (input, pad) = try symmetricPadding(x, pads, value: 0)
        var bias: Tensor?
        if optional(2) != nil {
            let b = try tensor(2)
            guard b.shape == [w.shape[0]] else { throw fail("bias \(b.shape) does not fit weight \(w.shape)") }
            bias = b
        }
        let geometry = Convolution2DGeometry(kernel: (kernel[0], kernel[1]), stride: (strides[0], strides[1]),
                                             padding: pad, dilation: (dilations[0], dilations[1]))
        let (oh, ow) = geometry.outputSize(height: input.shape[2], width: input.shape[3])
        guard oh > 0, ow > 0 else { throw fail("kernel \(kernel) does not fit input \(x.shape)") }
        _ = try checked([x.shape[0], w.shape[0], oh, ow])
        _ = try checked([x.shape[1] / groups * kernel[0] * kernel[1], oh * ow])
        return Tensor.conv2d(input, weight: w, bias: bias, stride: (strides[0], strides[1]), padding: pad,
                             dilation: (dilations[0], dilations[1]), groups: groups)
    }

    func batchNorm() throws -> Tensor {
        let x = try tensor(0)
        guard x.rank >= 2 else { throw fail("needs [N, C, ...], got \(x.shape)") }
        guard try int("training_mode", 0) == 0 else { throw fail("training mode is not supported; export the model in eval mode") }
        let parts = try (1...4).map { try tensor($0) }
        for (name, p) in zip(["scale", "B", "mean", "var"], parts) where p.shape != [x.shape[1]] {
            throw fail("\(name) \(p.shape) does not fit \(x.shape[1]) channels")
        }
        let epsilon = try float("epsilon", 1e-5)
        guard epsilon >= 0 else { throw fail("epsilon \(epsilon) is negative") }
        return Tensor.batchNorm(x, runningMean: parts[2], runningVariance: parts[3], weight: parts[0], bias: parts[1],
                                training: false, momentum: 0.1, epsilon: epsilon)
    }

    func pool() throws -> Tensor {
        let x = try tensor(0)
        guard x.rank == 4 else { throw fail("only 2-D pooling is supported, input \(x.shape)") }
        guard let kernel = try intList("kernel_shape") else { throw fail("kernel_shape is missing") }
        guard kernel.count == 2, kernel.allSatisfy({ $0 >= 1 && $0 <= 1 << 16 }) else { throw fail("kernel_shape \(kernel) should be two positive numbers") }
        let strides = try window("strides", 1)
        guard try window("dilations", 1) == [1, 1] else { throw fail("dilated pooling is not supported") }
        guard try int("ceil_mode", 0) == 0 else { throw fail("ceil_mode 1 is not supported") }
        let pads = try padding(kernel: kernel, strides: strides, dilations: [1, 1], input: [x.shape[2], x.shape[3]])
        guard pads[0] * 2 <= kernel[0], pads[2] * 2 <= kernel[0], pads[1] * 2 <= kernel[1], pads[3] * 2 <= kernel[1] else {
            throw fail("padding \(pads) is more than half of kernel \(kernel)")
        }
        let isMax = node.opType == "MaxPool", includePadding = try int("count_include_pad", 0) != 0
        guard isMax || includePadding || (pads[0] == pads[2] && pads[1] == pads[3]) else {
            throw fail("asymmetric pads \(pads) are supported with count_include_pad 1 only")
        }
        // Explicit padding that max pooling never picks, or that averaging counts as zeros.
        let (input, pad) = try symmetricPadding(x, pads, value: isMax ? -.infinity : 0)
        let geometry = Convolution2DGeometry(kernel: (kernel[0], kernel[1]), stride: (strides[0], strides[1]), padding: pad)
        let (oh, ow) = geometry.outputSize(height: input.shape[2], width: input.shape[3])
        guard oh > 0, ow > 0 else { throw fail("kernel \(kernel) does not fit input \(x.shape)") }
        if isMax {
            guard node.outputs.count < 2 || node.outputs[1].isEmpty else { throw fail("the indices output is not supported") }
            return Tensor.maxPool2d(input, kernel: (kernel[0], kernel[1]), stride: (strides[0], strides[1]), padding: pad)
        }
        return Tensor.avgPool2d(input, kernel: (kernel[0], kernel[1]), stride: (strides[0], strides[1]), padding: pad,
                                countIncludePadding: includePadding)
    }
}
