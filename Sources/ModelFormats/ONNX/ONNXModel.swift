import Foundation
import Tensors

// ONNX's messages (onnx.proto), the fields Distill reads and writes. Field numbers are the
// ones in onnx/onnx.proto; unknown fields are skipped on reading, as protobuf requires.

/// A tensor stored in an ONNX file: an initializer or a `Constant` node's value.
public struct ONNXTensor: Equatable, Sendable {
    public enum Values: Equatable, Sendable {
        /// FLOAT and DOUBLE tensors (doubles narrowed to Float).
        case floats([Float])
        /// INT64, INT32, INT8, UINT8 and BOOL tensors: shapes, axes, indices.
        case ints([Int])
    }

    public var name: String
    public var dims: [Int]
    public var values: Values

    public init(name: String, dims: [Int], values: Values) {
        self.name = name
        self.dims = dims
        self.values = values
    }

    public var count: Int {
        switch values {
        case let .floats(v): return v.count
        case let .ints(v): return v.count
        }
    }

    /// `raw_data` as `count` little-endian words of `width` bytes, checking its length.
    static func littleEndianWords(_ raw: ArraySlice<UInt8>, width: Int, count: Int, label: String, dims: [Int]) throws -> [UInt64] {
        guard raw.count == count * width else {
            throw ProtoError(message: "\(label) has dimensions \(dims) (\(count) values) but \(raw.count) bytes of data")
        }
        var words = [UInt64]()
        words.reserveCapacity(count)
        var index = raw.startIndex
        while index < raw.endIndex {
            var bits: UInt64 = 0
            for b in (0..<width).reversed() { bits = bits << 8 | UInt64(raw[index + b]) }
            words.append(bits)
            index += width
        }
        return words
    }

    /// Checks that the values fill the dimensions exactly.
    func validate() throws {
        var expected = 1
        for d in dims {
            let (p, o) = expected.multipliedReportingOverflow(by: d)
            guard d >= 0, !o else { throw ProtoError(message: "tensor '\(name)' has invalid dimensions \(dims)") }
            expected = p
        }
        guard expected == count else {
            throw ProtoError(message: "tensor '\(name)' has dimensions \(dims) (\(expected) values) but holds \(count) values")
        }
    }

    // Element types of TensorProto.DataType.
    public static let float = 1, uint8 = 2, int8 = 3, int32 = 6, int64 = 7, bool = 9, double = 11

    func encode(into w: inout ProtoWriter) {
        w.packedInts(1, dims)
        switch values {
        case let .floats(v):
            w.int(2, ONNXTensor.float)
            w.string(8, name)
            var raw = [UInt8]()
            raw.reserveCapacity(v.count * 4)
            for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { raw.append(contentsOf: $0) } }
            w.bytes(9, raw)
        case let .ints(v):
            w.int(2, ONNXTensor.int64)
            w.string(8, name)
            w.packedInts(7, v)
        }
    }

    /// Reads a TensorProto, checking that its values agree with its dimensions.
    init(decoding data: ArraySlice<UInt8>) throws {
        var reader = ProtoReader(data)
        var dims: [Int] = [], dataType = 0, name = "", location = 0
        var floats: [Float] = [], ints: [Int] = [], raw: ArraySlice<UInt8>?
        var hasDoubles = false
        while let field = try reader.next() {
            switch field.number {
            case 1: try field.appendInts(to: &dims)
            case 2: dataType = try field.int()
            case 4: try field.appendFloats(to: &floats)
            case 5, 7: try field.appendInts(to: &ints)
            case 8: name = try field.string()
            case 9: raw = try field.bytes()
            case 10: hasDoubles = true; try field.appendDoubles(to: &floats)
            case 14: location = try field.int()
            default: continue
            }
        }
        let label = name.isEmpty ? "a tensor" : "tensor '\(name)'"
        guard location == 0 else { throw ProtoError(message: "\(label) keeps its data in an external file, which Distill does not read") }
        guard dims.allSatisfy({ $0 >= 0 }) else { throw ProtoError(message: "\(label) has negative dimensions \(dims)") }
        var count = 1
        for d in dims {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, product <= 1 << 31 else { throw ProtoError(message: "\(label) with dimensions \(dims) is too large") }
            count = product
        }
        let values: Values
        switch dataType {
        case ONNXTensor.float, ONNXTensor.double:
            if let raw {
                let width = dataType == ONNXTensor.float ? 4 : 8
                let words = try ONNXTensor.littleEndianWords(raw, width: width, count: count, label: label, dims: dims)
                values = .floats(words.map { width == 4 ? Float(bitPattern: UInt32($0)) : Float(Double(bitPattern: $0)) })
            } else {
                guard !hasDoubles || dataType == ONNXTensor.double else { throw ProtoError(message: "\(label) is FLOAT but holds doubles") }
                values = .floats(floats)
            }
        case ONNXTensor.int64, ONNXTensor.int32, ONNXTensor.int8, ONNXTensor.uint8, ONNXTensor.bool:
            if let raw {
                let width = [ONNXTensor.int64: 8, ONNXTensor.int32: 4][dataType] ?? 1
                let words = try ONNXTensor.littleEndianWords(raw, width: width, count: count, label: label, dims: dims)
                values = .ints(words.map { bits in
                    switch width {
                    case 8: return Int(Int64(bitPattern: bits))
                    case 4: return Int(Int32(bitPattern: UInt32(bits)))
                    default: return dataType == ONNXTensor.int8 ? Int(Int8(bitPattern: UInt8(bits))) : Int(bits)
                    }
                })
            } else {
                values = .ints(ints)
            }
        default:
            throw ProtoError(message: "\(label) has element type \(dataType), which Distill does not read (float, double and integer types only)")
        }
        self.init(name: name, dims: dims, values: values)
        guard self.count == count else {
            throw ProtoError(message: "\(label) has dimensions \(dims) (\(count) values) but holds \(self.count) values")
        }
    }
}

/// A node attribute.
public enum ONNXAttributeValue: Equatable, Sendable {
    case float(Float)
    case int(Int)
    case string(String)
    case tensor(ONNXTensor)
    case floats([Float])
    case ints([Int])
    /// Graphs, sparse tensors, strings lists and type protos: recorded, never interpreted.
    case unsupported(type: Int)
}

public struct ONNXAttribute: Equatable, Sendable {
    public var name: String
    public var value: ONNXAttributeValue

    public init(_ name: String, _ value: ONNXAttributeValue) {
        self.name = name
        self.value = value
    }

    func encode(into w: inout ProtoWriter) {
        w.string(1, name)
        switch value {
        case let .float(f): w.float(2, f); w.int(20, 1)
        case let .int(i): w.int(3, i); w.int(20, 2)
        case let .string(s): w.string(4, s); w.int(20, 3)
        case let .tensor(t): w.message(5) { t.encode(into: &$0) }; w.int(20, 4)
        case let .floats(v): w.packedFloats(7, v); w.int(20, 6)
        case let .ints(v): w.packedInts(8, v); w.int(20, 7)
        case .unsupported: break
        }
    }

    init(decoding data: ArraySlice<UInt8>) throws {
        var reader = ProtoReader(data)
        var name = "", type = 0
        var f: Float?, i: Int?, s: String?, t: ONNXTensor?
        var floats: [Float] = [], ints: [Int] = []
        while let field = try reader.next() {
            switch field.number {
            case 1: name = try field.string()
            case 2: f = try field.float()
            case 3: i = try field.int()
            case 4: s = String(decoding: try field.bytes(), as: UTF8.self)
            case 5: t = try ONNXTensor(decoding: try field.bytes())
            case 7: try field.appendFloats(to: &floats)
            case 8: try field.appendInts(to: &ints)
            case 20: type = try field.int()
            default: continue
            }
        }
        let value: ONNXAttributeValue
        switch type {
        case 1: value = .float(f ?? 0)
        case 2: value = .int(i ?? 0)
        case 3: value = .string(s ?? "")
        case 4:
            guard let t else { throw ProtoError(message: "attribute '\(name)' says TENSOR but holds none") }
            value = .tensor(t)
        case 6: value = .floats(floats)
        case 7: value = .ints(ints)
        default: value = .unsupported(type: type)
        }
        self.init(name, value)
    }
}

public struct ONNXNode: Equatable, Sendable {
    public var name: String
    public var opType: String
    public var domain: String
    public var inputs: [String]
    public var outputs: [String]
    public var attributes: [ONNXAttribute]

    public init(name: String, opType: String, domain: String = "", inputs: [String], outputs: [String], attributes: [ONNXAttribute] = []) {
        self.name = name
        self.opType = opType
        self.domain = domain
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
    }

    public func attribute(_ name: String) -> ONNXAttributeValue? { attributes.first { $0.name == name }?.value }

    func encode(into w: inout ProtoWriter) {
        for i in inputs { w.string(1, i) }
        for o in outputs { w.string(2, o) }
        w.string(3, name)
        w.string(4, opType)
        for a in attributes { w.message(5) { a.encode(into: &$0) } }
        if !domain.isEmpty { w.string(7, domain) }
    }

    init(decoding data: ArraySlice<UInt8>) throws {
        var reader = ProtoReader(data)
        self.init(name: "", opType: "", inputs: [], outputs: [])
        while let field = try reader.next() {
            switch field.number {
            case 1: inputs.append(try field.string())
            case 2: outputs.append(try field.string())
            case 3: name = try field.string()
            case 4: opType = try field.string()
            case 5: attributes.append(try ONNXAttribute(decoding: try field.bytes()))
            case 7: domain = try field.string()
            default: continue
            }
        }
    }
}

/// A graph input or output: name, element type and dimensions (nil where symbolic).
public struct ONNXValueInfo: Equatable, Sendable {
    public var name: String
    public var elementType: Int
    public var dims: [Int?]

    public init(name: String, elementType: Int = ONNXTensor.float, dims: [Int?]) {
        self.name = name
        self.elementType = elementType
        self.dims = dims
    }

    func encode(into w: inout ProtoWriter) {
        w.string(1, name)
        w.message(2) { type in
            type.message(1) { tensorType in
                tensorType.int(1, elementType)
                tensorType.message(2) { shape in
                    for d in dims {
                        shape.message(1) { dim in
                            if let d { dim.int(1, d) } else { dim.string(2, "batch") }
                        }
                    }
                }
            }
        }
    }

    init(decoding data: ArraySlice<UInt8>) throws {
        var reader = ProtoReader(data)
        self.init(name: "", elementType: 0, dims: [])
        while let field = try reader.next() {
            switch field.number {
            case 1: name = try field.string()
            case 2:
                var type = ProtoReader(try field.bytes())
                while let t = try type.next() {
                    guard t.number == 1 else { continue }
                    var tensorType = ProtoReader(try t.bytes())
                    while let tt = try tensorType.next() {
                        if tt.number == 1 { elementType = try tt.int() }
                        if tt.number == 2 {
                            var shape = ProtoReader(try tt.bytes())
                            while let s = try shape.next() {
                                guard s.number == 1 else { continue }
                                var dim = ProtoReader(try s.bytes())
                                var value: Int?
                                while let d = try dim.next() { if d.number == 1 { value = try d.int() } }
                                dims.append(value)
                            }
                        }
                    }
                }
            default: continue
            }
        }
    }
}

public struct ONNXGraph: Equatable, Sendable {
    public var name: String
    public var nodes: [ONNXNode]
    public var initializers: [ONNXTensor]
    public var inputs: [ONNXValueInfo]
    public var outputs: [ONNXValueInfo]

    public init(name: String, nodes: [ONNXNode], initializers: [ONNXTensor], inputs: [ONNXValueInfo], outputs: [ONNXValueInfo]) {
        self.name = name
        self.nodes = nodes
        self.initializers = initializers
        self.inputs = inputs
        self.outputs = outputs
    }

    func encode(into w: inout ProtoWriter) {
        for n in nodes { w.message(1) { n.encode(into: &$0) } }
        w.string(2, name)
        for t in initializers { w.message(5) { t.encode(into: &$0) } }
        for i in inputs { w.message(11) { i.encode(into: &$0) } }
        for o in outputs { w.message(12) { o.encode(into: &$0) } }
    }

    init(decoding data: ArraySlice<UInt8>) throws {
        var reader = ProtoReader(data)
        self.init(name: "", nodes: [], initializers: [], inputs: [], outputs: [])
        while let field = try reader.next() {
            switch field.number {
            case 1: nodes.append(try ONNXNode(decoding: try field.bytes()))
            case 2: name = try field.string()
            case 5: initializers.append(try ONNXTensor(decoding: try field.bytes()))
            case 11: inputs.append(try ONNXValueInfo(decoding: try field.bytes()))
            case 12: outputs.append(try ONNXValueInfo(decoding: try field.bytes()))
            case 15: throw ProtoError(message: "the graph has sparse initializers, which Distill does not read")
            default: continue
            }
        }
    }
}

/// An ONNX model file: IR version, operator sets, producer and the graph.
public struct ONNXModel: Equatable, Sendable {
    public var irVersion: Int
    public var opsets: [String: Int]
    public var producerName: String
    public var producerVersion: String
    public var graph: ONNXGraph
    public var metadata: [String: String]

    public init(irVersion: Int = 8, opsets: [String: Int] = ["": 17], producerName: String = "distill",
                producerVersion: String = "", graph: ONNXGraph, metadata: [String: String] = [:]) {
        self.irVersion = irVersion
        self.opsets = opsets
        self.producerName = producerName
        self.producerVersion = producerVersion
        self.graph = graph
        self.metadata = metadata
    }

    /// The default-domain operator set version.
    public var opset: Int { opsets[""] ?? opsets["ai.onnx"] ?? 1 }

    /// The serialized ModelProto.
    public func serialized() -> [UInt8] {
        var w = ProtoWriter()
        w.int(1, irVersion)
        w.string(2, producerName)
        if !producerVersion.isEmpty { w.string(3, producerVersion) }
        w.message(7) { graph.encode(into: &$0) }
        for (domain, version) in opsets.sorted(by: { $0.key < $1.key }) {
            w.message(8) { o in
                if !domain.isEmpty { o.string(1, domain) }
                o.int(2, version)
            }
        }
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            w.message(14) { e in e.string(1, key); e.string(2, value) }
        }
        return w.bytes
    }

    /// Parses a ModelProto. `file` names the source in errors.
    public init(parsing bytes: [UInt8], file: String = "ONNX data") throws {
        var reader = ProtoReader(bytes[...])
        var irVersion = 0, opsets: [String: Int] = [:], producer = "", producerVersion = ""
        var graph: ONNXGraph?
        var metadata: [String: String] = [:]
        do {
            while let field = try reader.next() {
                switch field.number {
                case 1: irVersion = try field.int()
                case 2: producer = try field.string()
                case 3: producerVersion = try field.string()
                case 7: graph = try ONNXGraph(decoding: try field.bytes())
                case 8:
                    var o = ProtoReader(try field.bytes())
                    var domain = "", version = 0
                    while let f = try o.next() {
                        if f.number == 1 { domain = try f.string() }
                        if f.number == 2 { version = try f.int() }
                    }
                    opsets[domain] = version
                case 14:
                    var e = ProtoReader(try field.bytes())
                    var key = "", value = ""
                    while let f = try e.next() {
                        if f.number == 1 { key = try f.string() }
                        if f.number == 2 { value = try f.string() }
                    }
                    metadata[key] = value
                default: continue
                }
            }
        } catch let error as ProtoError {
            throw ModelFormatError(file: file, "is not a valid ONNX model: \(error.message)")
        }
        guard let graph else { throw ModelFormatError(file: file, "is not an ONNX model: it has no graph") }
        self.init(irVersion: irVersion, opsets: opsets, producerName: producer, producerVersion: producerVersion, graph: graph, metadata: metadata)
    }

    /// Reads an ONNX file.
    public static func read(_ path: String) throws -> ONNXModel {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelFormatError(file: path, FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist")
        }
        return try ONNXModel(parsing: [UInt8](data), file: path)
    }

    /// Writes the model to `path` atomically.
    public func write(to path: String) throws {
        try AtomicFile.write(Data(serialized()), to: path)
    }
}
