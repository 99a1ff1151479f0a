import Tensors

extension ONNXOperators {
    // MARK: And, Or, Xor, Not, Range (attention masks as exporters build them)

    /// And, Or, Xor of two boolean values (0/1), broadcast; integers in, integers out, and
    /// 0/1 float masks (no gradient) for tensors.
    func logical() throws -> Value {
        func combine(_ x: Bool, _ y: Bool) -> Bool {
            switch node.opType {
            case "And": return x && y
            case "Or": return x || y
            default: return x != y
            }
        }
        if case let (.ints(a, da)?, .ints(b, db)?) = (optional(0), optional(1)) {
            return try combining(a, da, b, db) { combine($0 != 0, $1 != 0) ? 1 : 0 }
        }
        let a = try tensor(0), b = try tensor(1)
        let shape = try broadcast(a.shape, b.shape)
        let x = a.expanded(to: shape).scalars, y = b.expanded(to: shape).scalars
        return .tensor(Tensor(zip(x, y).map { combine($0 != 0, $1 != 0) ? 1 : 0 }, shape: shape))
    }

    func not() throws -> Value {
        switch try value(0) {
        case let .ints(v, dims): return .ints(v.map { $0 == 0 ? 1 : 0 }, dims: dims)
        case let .tensor(t): return .tensor(Tensor(t.scalars.map { $0 == 0 ? 1 : 0 }, shape: t.shape))
        }
    }

    /// Range(start, limit, delta): start, start + delta, ... up to (not including) limit, as
    /// integers when the operands are integers (`torch.arange` of positions).
    func range() throws -> Value {
        func scalar(_ i: Int) throws -> Value {
            let v = try value(i)
            guard v.dims.reduce(1, *) == 1 else { throw fail("input \(i) should be a scalar, got \(v.dims)") }
            return v
        }
        let (start, limit, delta) = (try scalar(0), try scalar(1), try scalar(2))
        if case let (.ints(s, _), .ints(l, _), .ints(d, _)) = (start, limit, delta) {
            guard d[0] != 0 else { throw fail("delta is 0") }
            let (distance, overflow) = l[0].subtractingReportingOverflow(s[0])
            guard !overflow else { throw fail("range \(s[0])..<\(l[0]) is too long") }
            let (steps, tooMany) = (distance &+ d[0] &+ (d[0] > 0 ? -1 : 1)).dividedReportingOverflow(by: d[0])
            guard !tooMany else { throw fail("range \(s[0])..<\(l[0]) is too long") }
            let count = max(0, steps)
            guard count <= 1 << 24 else { throw fail("range of \(count) values is too long") }
            return .ints((0..<count).map { s[0] &+ $0 &* d[0] }, dims: [count])
        }
        let s = try tensor(0).scalars[0], l = try tensor(1).scalars[0], d = try tensor(2).scalars[0]
        guard d != 0, s.isFinite, l.isFinite, d.isFinite else { throw fail("range from \(s) to \(l) by \(d) cannot be counted") }
        let steps = ((l - s) / d).rounded(.up)
        guard steps <= Float(1 << 24) else { throw fail("range of \(steps) values is too long") }
        let count = steps > 0 ? Int(steps) : 0
        return .tensor(Tensor((0..<count).map { s + Float($0) * d }, shape: [count]))
    }
}
