import Tensors

extension ONNXOperators {
    // MARK: Gelu, Clip, Add, Sub, Mul, Div, comparisons, Max, Min, Pow, Where

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
        // Integer arithmetic: shapes (PyTorch's exporter computes them this way), token ids and masks.
        if case let (.ints(a, da)?, .ints(b, db)?) = (optional(0), optional(1)) {
            return try combining(a, da, b, db) { x, y in
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

    /// Max and Min of any number of inputs, broadcast; integers stay integers (index
    /// arithmetic), tensors take the gradient where they win (split at ties).
    func extreme() throws -> Value {
        let values = try inputs.indices.map { try value($0) }
        guard var result = values.first else { throw fail("has no inputs") }
        let isMax = node.opType == "Max"
        for next in values.dropFirst() {
            if case let (.ints(a, da), .ints(b, db)) = (result, next) {
                result = try combining(a, da, b, db) { isMax ? Swift.max($0, $1) : Swift.min($0, $1) }
            } else {
                let a = try ONNXOperators.floats(result), b = try ONNXOperators.floats(next)
                _ = try broadcast(a.shape, b.shape)
                result = .tensor(isMax ? a.maximum(b) : a.minimum(b))
            }
        }
        return result
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
            let chosen = condition.expanded(to: shape).scalars
            let fromA = try positions(da, in: shape), fromB = try positions(db, in: shape)
            return .ints(chosen.indices.map { chosen[$0] != 0 ? a[fromA[$0]] : b[fromB[$0]] }, dims: shape.dimensions)
        }
        let a = try tensor(1), b = try tensor(2)
        _ = try broadcast(try broadcast(a.shape, b.shape), condition.shape)
        return .tensor(Tensor.selecting(a, where: condition, otherwise: b))
    }
}

extension ONNXOperators {
    /// For each element of `shape`, the position in a value of `dims` that broadcasting reads.
    func positions(_ dims: [Int], in shape: Shape) throws -> [Int] {
        let count = Shape(dims).count
        guard count <= 1 << 24, shape.count <= 1 << 24 else { throw fail("too many integers to broadcast (\(dims) to \(shape))") }
        return Tensor((0..<count).map(Float.init), shape: Shape(dims)).expanded(to: shape).scalars.map { Int($0) }
    }

    /// Integers of shapes `da` and `db` broadcast together (NumPy's rules) and combined.
    func combining(_ a: [Int], _ da: [Int], _ b: [Int], _ db: [Int], _ combine: (Int, Int) throws -> Int) throws -> Value {
        let shape = try broadcast(Shape(da), Shape(db))
        if da == db { return .ints(try zip(a, b).map { try combine($0, $1) }, dims: da) }
        let fromA = try positions(da, in: shape), fromB = try positions(db, in: shape)
        return .ints(try zip(fromA, fromB).map { try combine(a[$0], b[$1]) }, dims: shape.dimensions)
    }
}
