import Tensors

/// The operators, one node at a time. Every check that the engine would otherwise trap on
/// is made here first and thrown as a `Failure`.
struct ONNXOperators {
    struct Failure: Error { let message: String }
    typealias Value = ONNXNetwork.Value

    let node: ONNXNode
    let inputs: [Value?]
    let opset: Int
    /// Each input's integer element type when it is an integer initializer (else nil).
    var inputTypes: [Int?] = []

    static let maximumElements = 1 << 28

    func fail(_ message: String) -> Failure { Failure(message: message) }

    // MARK: Inputs and attributes

    func value(_ i: Int) throws -> Value {
        guard i < inputs.count, let v = inputs[i] else { throw fail("input \(i) is missing") }
        return v
    }

    func optional(_ i: Int) -> Value? { i < inputs.count ? inputs[i] : nil }

    func tensor(_ i: Int) throws -> Tensor { try ONNXOperators.floats(try value(i)) }

    /// A value as a float tensor (integers converted).
    static func floats(_ value: Value) throws -> Tensor {
        switch value {
        case let .tensor(t): return t
        case let .ints(v, dims): return Tensor(v.map(Float.init), shape: Shape(dims))
        }
    }

    func ints(_ i: Int) throws -> [Int] {
        guard case let .ints(v, _) = try value(i) else { throw fail("input \(i) should be integers") }
        return v
    }

    func int(_ name: String, _ fallback: Int) throws -> Int {
        switch node.attribute(name) {
        case nil: return fallback
        case let .int(v)?: return v
        default: throw fail("attribute '\(name)' should be an integer")
        }
    }

    func float(_ name: String, _ fallback: Float) throws -> Float {
        switch node.attribute(name) {
        case nil: return fallback
        case let .float(v)?: return v
        default: throw fail("attribute '\(name)' should be a float")
        }
    }

    func intList(_ name: String) throws -> [Int]? {
        switch node.attribute(name) {
        case nil: return nil
        case let .ints(v)?: return v
        default: throw fail("attribute '\(name)' should be a list of integers")
        }
    }

    func string(_ name: String, _ fallback: String) throws -> String {
        switch node.attribute(name) {
        case nil: return fallback
        case let .string(v)?: return v
        default: throw fail("attribute '\(name)' should be a string")
        }
    }

    /// Axes from an input (newer opsets) or an attribute (older ones), normalised for `rank`.
    func axes(input: Int, attribute: String, rank: Int) throws -> [Int]? {
        let raw: [Int]?
        if let v = optional(input) {
            guard case let .ints(list, _) = v else { throw fail("axes should be integers") }
            raw = list
        } else {
            raw = try intList(attribute)
        }
        guard let raw else { return nil }
        let normalized = try raw.map { a -> Int in
            guard a >= -rank, a < rank else { throw fail("axis \(a) is out of range for rank \(rank)") }
            return a < 0 ? a + rank : a
        }
        guard Set(normalized).count == normalized.count else { throw fail("axes \(raw) repeat an axis") }
        return normalized
    }

    func checked(_ shape: [Int]) throws -> Shape {
        var count = 1
        for d in shape {
            guard d >= 0 else { throw fail("negative dimension in \(shape)") }
            let (p, o) = count.multipliedReportingOverflow(by: d)
            guard !o, p <= ONNXOperators.maximumElements else { throw fail("result shape \(shape) is too large") }
            count = p
        }
        return Shape(shape)
    }

    /// Applies an op that only moves values (slice, transpose, expand) to either kind of
    /// value; integers move exactly, as positions 0..<n that then pick them.
    func rearranging(_ v: Value, _ move: (Tensor) throws -> Tensor) throws -> Value {
        switch v {
        case let .tensor(t): return .tensor(try move(t))
        case let .ints(list, dims):
            guard list.count <= 1 << 24 else { throw fail("\(list.count) integers are too many to rearrange") }
            let moved = try move(Tensor(list.indices.map(Float.init), shape: Shape(dims)))
            return .ints(moved.scalars.map { list[Int($0)] }, dims: moved.shape.dimensions)
        }
    }

    func broadcast(_ a: Shape, _ b: Shape) throws -> Shape {
        guard let s = Shape.broadcast(a, b) else { throw fail("shapes \(a) and \(b) do not broadcast") }
        return try checked(s.dimensions)
    }

    // MARK: Dispatch

    func run() throws -> [Value] {
        switch node.opType {
        case "Identity": return [try value(0)]
        case "Dropout":
            guard node.outputs.count < 2 || node.outputs[1].isEmpty else { throw fail("the dropout mask output is not supported") }
            // From opset 12 the training mode is an input; a graph that trains its dropout is not a teacher.
            if optional(2) != nil, try tensor(2).scalars.contains(where: { $0 != 0 }) { throw fail("training mode is not supported") }
            return [try value(0)]
        case "Constant": return [try constant()]
        case "Relu": return [.tensor(try tensor(0).relu())]
        case "Sigmoid": return [.tensor(try tensor(0).sigmoid())]
        case "Tanh": return [.tensor(try tensor(0).tanh())]
        case "Erf": return [.tensor(try tensor(0).erf())]
        case "LeakyRelu": return [.tensor(try tensor(0).leakyRelu(negativeSlope: try float("alpha", 0.01)))]
        case "Gelu": return [.tensor(try gelu())]
        case "LayerNormalization": return [.tensor(try layerNormalization())]
        case "Clip": return [.tensor(try clip())]
        case "HardSigmoid": return [.tensor(try hardSigmoid())]
        case "HardSwish": return [.tensor(try hardSwish())]
        case "PRelu": return [.tensor(try prelu())]
        case "Sqrt": return [.tensor(try tensor(0).sqrt())]
        case "Pow": return [.tensor(try power())]
        case "Add", "Sub", "Mul", "Div", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual": return [try arithmetic()]
        case "Where": return [try select()]
        case "And", "Or", "Xor": return [try logical()]
        case "Not": return [try not()]
        case "Max", "Min": return [try extreme()]
        case "GatherND": return [try gatherND()]
        case "Range": return [try range()]
        case "Pad": return [.tensor(try pad())]
        case "Resize": return [.tensor(try resize())]
        case "Split": return try split()
        case "Expand": return [try expand()]
        case "ConstantOfShape": return [try constantOfShape()]
        case "Conv": return [.tensor(try conv())]
        case "BatchNormalization": return [.tensor(try batchNorm())]
        case "MaxPool", "AveragePool": return [.tensor(try pool())]
        case "GlobalAveragePool":
            let x = try tensor(0)
            guard x.rank == 4 else { throw fail("needs [N, C, H, W], got \(x.shape)") }
            guard x.shape[2] > 0, x.shape[3] > 0 else { throw fail("empty spatial axes in \(x.shape)") }
            return [.tensor(Tensor.adaptiveAvgPool2d(x, outputSize: (1, 1)))]
        case "Flatten": return [try flatten()]
        case "Reshape": return [try reshape()]
        case "Gemm": return [.tensor(try gemm())]
        case "MatMul": return [.tensor(try matmul())]
        case "Concat": return [try concat()]
        case "Softmax": return [.tensor(try softmax())]
        case "Transpose": return [try transpose()]
        case "Squeeze", "Unsqueeze": return [try squeezeOrUnsqueeze()]
        case "ReduceMean", "ReduceMax", "ReduceSum", "ReduceL2": return [.tensor(try reduce())]
        case "Slice": return [try slice()]
        case "Shape": return [try shape()]
        case "Gather": return [try gather()]
        case "Cast": return [try cast()]
        case "QuantizeLinear": return [.tensor(try quantizeLinear())]
        case "DequantizeLinear": return [.tensor(try dequantizeLinear())]
        default: throw fail("operator \(node.opType) is not supported")
        }
    }
}
