import Tensors

extension ONNXOperators {
    // MARK: Gelu, Clip, Add, Sub, Mul, Div

    func gelu() throws -> Tensor {
        let x = try tensor(0)
        switch try string("approximate", "none") {
        case "none": return x.gelu()
        case "tanh":
            // 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 x³)))
            let inner = (x + x * x * x * 0.044715) * Float(0.7978845608)
            return x * 0.5 * (inner.tanh() + 1)
        case let other: throw fail("approximate '\(other)' is not 'none' or 'tanh'")
        }
    }

    func clip() throws -> Tensor {
        let x = try tensor(0)
        var low = -Float.infinity, high = Float.infinity
        if opset < 11 {
            low = try float("min", low)
            high = try float("max", high)
        } else {
            for (i, bound) in [(1, 0), (2, 1)] where optional(i) != nil {
                let t = try tensor(i)
                guard t.count == 1 else { throw fail("min and max must be scalars, got \(t.shape)") }
                if bound == 0 { low = t.scalars[0] } else { high = t.scalars[0] }
            }
        }
        guard !low.isNaN, !high.isNaN, low <= high else { throw fail("min \(low) is above max \(high)") }
        return x.clamped(min: low, max: high)
    }

    func arithmetic() throws -> Value {
        // Integer arithmetic on shapes (PyTorch's exporter computes shapes this way).
        if case let (.ints(a, da)?, .ints(b, db)?) = (optional(0), optional(1)) {
            guard a.count == b.count || a.count == 1 || b.count == 1 else { throw fail("integer operands of sizes \(a.count) and \(b.count)") }
            let n = max(a.count, b.count)
            let result = try (0..<n).map { i -> Int in
                let x = a[a.count == 1 ? 0 : i], y = b[b.count == 1 ? 0 : i]
                switch node.opType {
                case "Add": return x &+ y
                case "Sub": return x &- y
                case "Mul": return x &* y
                default:
                    guard y != 0 else { throw fail("integer division by zero") }
                    return x / y
                }
            }
            return .ints(result, dims: a.count >= b.count ? da : db)
        }
        let a = try tensor(0), b = try tensor(1)
        _ = try broadcast(a.shape, b.shape)
        switch node.opType {
        case "Add": return .tensor(a + b)
        case "Sub": return .tensor(a - b)
        case "Mul": return .tensor(a * b)
        default: return .tensor(a / b)
        }
    }
}
