import Tensors

extension ONNXOperators {
    // MARK: Conv, BatchNormalization, MaxPool, AveragePool

    /// Symmetric (top/left = bottom/right) padding from `pads` and `auto_pad`.
    func padding(kernel: [Int], strides: [Int], dilations: [Int], input: [Int]) throws -> (Int, Int) {
        switch try string("auto_pad", "NOTSET") {
        case "NOTSET":
            let pads = try intList("pads") ?? [0, 0, 0, 0]
            guard pads.count == 4, pads.allSatisfy({ $0 >= 0 }) else { throw fail("pads \(pads) should be four non-negative numbers") }
            guard pads[0] == pads[2], pads[1] == pads[3] else { throw fail("asymmetric pads \(pads) are not supported") }
            return (pads[0], pads[1])
        case "VALID": return (0, 0)
        case "SAME_UPPER", "SAME_LOWER":
            var result = [0, 0]
            for a in 0..<2 {
                let out = (input[a] + strides[a] - 1) / strides[a]
                let total = max(0, (out - 1) * strides[a] + (kernel[a] - 1) * dilations[a] + 1 - input[a])
                guard total % 2 == 0 else { throw fail("auto_pad SAME needs asymmetric padding here, which is not supported") }
                result[a] = total / 2
            }
            return (result[0], result[1])
        case let other: throw fail("auto_pad '\(other)' is not known")
        }
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
        let pad = try padding(kernel: kernel, strides: strides, dilations: dilations, input: [x.shape[2], x.shape[3]])
        guard pad.0 <= 1 << 16, pad.1 <= 1 << 16 else { throw fail("padding \(pad) is too large") }
        var bias: Tensor?
        if optional(2) != nil {
            let b = try tensor(2)
            guard b.shape == [w.shape[0]] else { throw fail("bias \(b.shape) does not fit weight \(w.shape)") }
            bias = b
        }
        let geometry = Convolution2DGeometry(kernel: (kernel[0], kernel[1]), stride: (strides[0], strides[1]),
                                             padding: pad, dilation: (dilations[0], dilations[1]))
        let (oh, ow) = geometry.outputSize(height: x.shape[2], width: x.shape[3])
        guard oh > 0, ow > 0 else { throw fail("kernel \(kernel) does not fit input \(x.shape)") }
        _ = try checked([x.shape[0], w.shape[0], oh, ow])
        _ = try checked([x.shape[1] / groups * kernel[0] * kernel[1], oh * ow])
        return Tensor.conv2d(x, weight: w, bias: bias, stride: (strides[0], strides[1]), padding: pad,
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
        let pad = try padding(kernel: kernel, strides: strides, dilations: [1, 1], input: [x.shape[2], x.shape[3]])
        guard pad.0 * 2 <= kernel[0], pad.1 * 2 <= kernel[1] else { throw fail("padding \(pad) is more than half of kernel \(kernel)") }
        let geometry = Convolution2DGeometry(kernel: (kernel[0], kernel[1]), stride: (strides[0], strides[1]), padding: pad)
        let (oh, ow) = geometry.outputSize(height: x.shape[2], width: x.shape[3])
        guard oh > 0, ow > 0 else { throw fail("kernel \(kernel) does not fit input \(x.shape)") }
        if node.opType == "MaxPool" {
            guard node.outputs.count < 2 || node.outputs[1].isEmpty else { throw fail("the indices output is not supported") }
            return Tensor.maxPool2d(x, kernel: (kernel[0], kernel[1]), stride: (strides[0], strides[1]), padding: pad)
        }
        return Tensor.avgPool2d(x, kernel: (kernel[0], kernel[1]), stride: (strides[0], strides[1]), padding: pad,
                                countIncludePadding: try int("count_include_pad", 0) != 0)
    }
}
