import Tensors

extension ONNXOperators {
    // MARK: Gelu, Clip, Add, Sub, Mul, Div, comparisons, Pow, Where

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

    /// Add, Sub, Mul, Div, and the comparisons (Equal, Greater, Less and their OrEqual
    /// forms), which give 0/1 masks that carry no gradient (ONNX's booleans).
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
                case "Equal": return x == y ? 1 : 0
                case "Greater": return x > y ? 1 : 0
                case "GreaterOrEqual": return x >= y ? 1 : 0
                case "Less": return x < y ? 1 : 0
                case "LessOrEqual": return x <= y ? 1 : 0
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
        case "Div": return .tensor(a / b)
        case "Equal": return .tensor(a.isEqual(to: b))
        case "Greater": return .tensor(a.isGreater(than: b))
        case "GreaterOrEqual": return .tensor(a.isGreaterOrEqual(to: b))
        case "Less": return .tensor(a.isLess(than: b))
        default: return .tensor(a.isLessOrEqual(to: b))
        }
    }

    /// aᵇ, broadcast; gradients to both (the exponent's is aᵇ·ln a, as in PyTorch).
    func power() throws -> Tensor {
        let a = try tensor(0), b = try tensor(1)
        _ = try broadcast(a.shape, b.shape)
        return a.pow(b)
    }

    /// Where(condition, X, Y): X where the condition holds, else Y, all three broadcast.
    /// Integers (shape arithmetic) stay integers.
    func select() throws -> Value {
        let condition = try tensor(0)
        if case let (.ints(a, da), .ints(b, db)) = (try value(1), try value(2)) {
            let shape = try broadcast(try broadcast(condition.shape, Shape(da)), Shape(db))
            guard a.count <= 1 << 24, b.count <= 1 << 24 else { throw fail("too many integers to choose from") }
            let chosen = condition.expanded(to: shape).scalars
            let fromA = Tensor(a.indices.map(Float.init), shape: Shape(da)).expanded(to: shape).scalars
            let fromB = Tensor(b.indices.map(Float.init), shape: Shape(db)).expanded(to: shape).scalars
            return .ints(chosen.indices.map { chosen[$0] != 0 ? a[Int(fromA[$0])] : b[Int(fromB[$0])] }, dims: shape.dimensions)
        }
        let a = try tensor(1), b = try tensor(2)
        _ = try broadcast(try broadcast(a.shape, b.shape), condition.shape)
        return .tensor(Tensor.selecting(a, where: condition, otherwise: b))
    }
}
