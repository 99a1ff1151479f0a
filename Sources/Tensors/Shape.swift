/// The dimensions of a tensor, outermost first (row-major, like PyTorch and NumPy).
public struct Shape: Equatable, Hashable, Sendable, ExpressibleByArrayLiteral, CustomStringConvertible {
    /// The size of each axis; empty for a scalar.
    public var dimensions: [Int]

    public init(_ dimensions: [Int]) {
        require(dimensions.allSatisfy { $0 >= 0 }, "Shape: negative dimension in \(dimensions)")
        self.dimensions = dimensions
    }

    public init(arrayLiteral elements: Int...) { self.init(elements) }

    /// Number of axes.
    public var rank: Int { dimensions.count }

    /// Number of elements (1 for a scalar).
    public var count: Int { dimensions.reduce(1, *) }

    public subscript(axis: Int) -> Int {
        get { dimensions[normalizedAxis(axis, op: "Shape")] }
        set { dimensions[normalizedAxis(axis, op: "Shape")] = newValue }
    }

    /// Row-major strides in elements.
    public var strides: [Int] {
        var result = [Int](repeating: 1, count: rank)
        var running = 1
        for axis in stride(from: rank - 1, through: 0, by: -1) {
            result[axis] = running
            running *= dimensions[axis]
        }
        return result
    }

    public var description: String { "[" + dimensions.map(String.init).joined(separator: ", ") + "]" }

    /// Resolves a possibly negative axis (-1 is the last), trapping with the op's name when out of range.
    public func normalizedAxis(_ axis: Int, op: String) -> Int {
        let resolved = axis < 0 ? axis + rank : axis
        require(resolved >= 0 && resolved < rank, "\(op): axis \(axis) is out of range for shape \(self)")
        return resolved
    }

    /// The product of the dimensions before `axis`, the dimension itself, and the product after it.
    func split(at axis: Int) -> (outer: Int, size: Int, inner: Int) {
        let outer = dimensions[..<axis].reduce(1, *)
        let inner = dimensions[(axis + 1)...].reduce(1, *)
        return (outer, dimensions[axis], inner)
    }

    /// NumPy broadcasting of two shapes, or nil when they are incompatible.
    public static func broadcast(_ a: Shape, _ b: Shape) -> Shape? {
        let rank = max(a.rank, b.rank)
        var result = [Int](repeating: 1, count: rank)
        for i in 0..<rank {
            let da = i < rank - a.rank ? 1 : a.dimensions[i - (rank - a.rank)]
            let db = i < rank - b.rank ? 1 : b.dimensions[i - (rank - b.rank)]
            if da == db || db == 1 {
                result[i] = da
            } else if da == 1 {
                result[i] = db
            } else {
                return nil
            }
        }
        return Shape(result)
    }
}
