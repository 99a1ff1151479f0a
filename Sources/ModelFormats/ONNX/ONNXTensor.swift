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
    /// TensorProto's element type (`ONNXTensor.float`, `.int8`, ...): how the file stored the
    /// values. Quantized models need it (a zero point's type decides the integer range).
    public var elementType: Int

    /// `elementType` defaults to FLOAT for floats and INT64 for integers.
    public init(name: String, dims: [Int], values: Values, elementType: Int? = nil) {
        self.name = name
        self.dims = dims
        self.values = values
        if case .floats = values { self.elementType = ONNXTensor.float } else { self.elementType = elementType ?? ONNXTensor.int64 }
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
            w.int(2, elementType)
            w.string(8, name)
            // INT64 in int64_data; INT32, INT8, UINT8 and BOOL in int32_data.
            w.packedInts(elementType == ONNXTensor.int64 ? 7 : 5, v)
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
        self.init(name: name, dims: dims, values: values, elementType: dataType == ONNXTensor.double ? ONNXTensor.float : dataType)
        guard self.count == count else {
            throw ProtoError(message: "\(label) has dimensions \(dims) (\(count) values) but holds \(self.count) values")
        }
    }
}
