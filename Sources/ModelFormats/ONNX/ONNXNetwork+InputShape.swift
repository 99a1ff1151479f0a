extension ONNXNetwork {
    /// The per-example shape (without the batch axis) the network runs at: the model's
    /// declared sizes, with symbolic ones (a `dim_param`, or a negative `dim_value` as
    /// Paddle writes) taken from `given`. A model whose input declares no shape at all takes
    /// `given` as it is. At most 2²⁴ values per example.
    static func exampleShape(of input: ONNXValueInfo, given: [Int]?, fail: (String) -> ModelFormatError) throws -> [Int] {
        let shape = try resolvedShape(of: input, given: given, fail: fail)
        var count = 1
        for size in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: size)
            guard !overflow, product <= 1 << 24 else { throw fail("input '\(input.name)' shape \(shape) is too large") }
            count = product
        }
        return shape
    }

    private static func resolvedShape(of input: ONNXValueInfo, given: [Int]?, fail: (String) -> ModelFormatError) throws -> [Int] {
        func describe(_ dims: [Int?]) -> String { "[" + dims.map { d in d.flatMap { $0 >= 0 ? String($0) : nil } ?? "?" }.joined(separator: ", ") + "]" }
        let declared = input.dims.map { d in d.flatMap { $0 >= 0 ? $0 : nil } }
        if let given {
            guard !given.isEmpty, given.allSatisfy({ $0 > 0 }) else { throw fail("the input shape \(given) should be positive sizes, one per axis after the batch axis") }
            guard declared.isEmpty || (declared.count == given.count + 1
                                       && zip(declared.dropFirst(), given).allSatisfy { fixed, size in fixed == nil || fixed == size }) else {
                throw fail("input '\(input.name)' has shape \(describe(input.dims)) (batch first), which does not fit the data's examples of shape \(given)")
            }
            return given
        }
        guard declared.count >= 2 else {
            throw fail("input '\(input.name)' needs a batch axis and sizes after it, got \(describe(input.dims)); give the per-example input shape (inputShape:)")
        }
        guard declared.dropFirst().allSatisfy({ $0 != nil }) else {
            throw fail("input '\(input.name)' has shape \(describe(input.dims)) with sizes left open after the batch axis; "
                + "give the per-example input shape, such as \(describe(Array(input.dims.dropFirst()))) with every ? filled "
                + "(inputShape: in Swift, --teacher-input-size on the command line)")
        }
        let shape = declared.dropFirst().map { $0! }
        guard shape.allSatisfy({ $0 > 0 }) else { throw fail("input '\(input.name)' has an empty axis: \(describe(input.dims))") }
        return shape
    }
}
