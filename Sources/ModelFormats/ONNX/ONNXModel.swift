import Foundation
import Tensors

// ONNX's messages (onnx.proto), the fields Distill reads and writes. Field numbers are the
// ones in onnx/onnx.proto; unknown fields are skipped on reading, as protobuf requires.

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
                    // Open axes get names of their own: the first is the batch, the second a text's sequence.
                    let names = ["batch", "sequence"]
                    for (axis, d) in dims.enumerated() {
                        shape.message(1) { dim in
                            if let d { dim.int(1, d) } else { dim.string(2, axis < names.count ? names[axis] : "axis_\(axis)") }
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
