import Foundation

// The protobuf wire format, as much of it as ONNX files use: varints, 32- and 64-bit fixed
// values and length-delimited fields (strings, bytes, packed arrays, nested messages).
// Written by hand because the format is small and a generated swift-protobuf file would
// need a plugin build CI cannot repeat. The writer is `package`: TensorBoard's event files
// (Distillation) are protobuf records too.

/// Appends protobuf fields to a byte buffer.
package struct ProtoWriter {
    package private(set) var bytes: [UInt8] = []

    package init() {}

    package mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    private mutating func key(_ field: Int, _ wireType: UInt64) { varint(UInt64(field) << 3 | wireType) }

    /// An int32/int64/enum field (negative values as ten-byte two's complement, as protobuf does).
    package mutating func int(_ field: Int, _ value: Int) {
        key(field, 0)
        varint(UInt64(bitPattern: Int64(value)))
    }

    package mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    package mutating func double(_ field: Int, _ value: Double) {
        key(field, 1)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    package mutating func bytes(_ field: Int, _ data: [UInt8]) {
        key(field, 2)
        varint(UInt64(data.count))
        bytes.append(contentsOf: data)
    }

    package mutating func string(_ field: Int, _ text: String) { bytes(field, Array(text.utf8)) }

    /// A nested message, written by `body` into its own writer.
    package mutating func message(_ field: Int, _ body: (inout ProtoWriter) -> Void) {
        var nested = ProtoWriter()
        body(&nested)
        bytes(field, nested.bytes)
    }

    /// A packed repeated int64 field.
    mutating func packedInts(_ field: Int, _ values: [Int]) {
        var nested = ProtoWriter()
        for v in values { nested.varint(UInt64(bitPattern: Int64(v))) }
        bytes(field, nested.bytes)
    }

    /// A packed repeated float field.
    mutating func packedFloats(_ field: Int, _ values: [Float]) {
        var data = [UInt8]()
        data.reserveCapacity(values.count * 4)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        bytes(field, data)
    }
}

/// One field read from a message: its number and its value by wire type.
struct ProtoField {
    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case fixed32(UInt32)
        case bytes(ArraySlice<UInt8>)
    }

    let number: Int
    let value: Value
}

/// Why a protobuf message could not be read; the ONNX layer adds the file and the message.
struct ProtoError: Error {
    let message: String
}

/// Reads the fields of one message from a byte slice, checking every length against what
/// is left, so that no input can read out of bounds or loop forever.
struct ProtoReader {
    private let data: ArraySlice<UInt8>
    private var position: Int

    init(_ data: ArraySlice<UInt8>) {
        self.data = data
        position = data.startIndex
    }

    private mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < data.endIndex else { throw ProtoError(message: "a varint runs past the end of the data") }
            let byte = data[position]
            position += 1
            guard shift < 64 else { throw ProtoError(message: "a varint is longer than ten bytes") }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    private mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, count <= data.endIndex - position else {
            throw ProtoError(message: "a field of \(count) bytes runs past the end of the data (\(data.endIndex - position) left)")
        }
        defer { position += count }
        return data[position..<position + count]
    }

    /// The next field, or nil at the end of the message.
    mutating func next() throws -> ProtoField? {
        guard position < data.endIndex else { return nil }
        let key = try varint()
        guard key >> 3 > 0, key >> 3 <= UInt64(Int32.max) else { throw ProtoError(message: "invalid field number \(key >> 3)") }
        let number = Int(key >> 3)
        switch key & 7 {
        case 0: return ProtoField(number: number, value: .varint(try varint()))
        case 1:
            let raw = try take(8)
            return ProtoField(number: number, value: .fixed64(raw.reversed().reduce(0) { $0 << 8 | UInt64($1) }))
        case 2:
            let length = try varint()
            guard length <= UInt64(Int.max) else { throw ProtoError(message: "length \(length) is too large") }
            return ProtoField(number: number, value: .bytes(try take(Int(length))))
        case 5:
            let raw = try take(4)
            return ProtoField(number: number, value: .fixed32(raw.reversed().reduce(0) { $0 << 8 | UInt32($1) }))
        default: throw ProtoError(message: "field \(number) has unsupported wire type \(key & 7)")
        }
    }
}

extension ProtoField {
    func int() throws -> Int {
        guard case let .varint(v) = value else { throw ProtoError(message: "field \(number) should be an integer") }
        return Int(truncatingIfNeeded: Int64(bitPattern: v))
    }

    func float() throws -> Float {
        guard case let .fixed32(v) = value else { throw ProtoError(message: "field \(number) should be a float") }
        return Float(bitPattern: v)
    }

    func bytes() throws -> ArraySlice<UInt8> {
        guard case let .bytes(v) = value else { throw ProtoError(message: "field \(number) should be length-delimited") }
        return v
    }

    func string() throws -> String {
        guard let text = String(validating: try bytes(), as: UTF8.self) else {
            throw ProtoError(message: "field \(number) is not valid UTF-8")
        }
        return text
    }

    /// A repeated int64 field, packed or not: appends to `values`.
    func appendInts(to values: inout [Int]) throws {
        switch value {
        case .varint: values.append(try int())
        case let .bytes(packed):
            var reader = ProtoReader(packed)
            // A packed run is varints back to back; read them as field-less varints.
            try reader.forEachPackedVarint { values.append(Int(truncatingIfNeeded: Int64(bitPattern: $0))) }
        default: throw ProtoError(message: "field \(number) should be integers")
        }
    }

    /// A repeated float field, packed or not: appends to `values`.
    func appendFloats(to values: inout [Float]) throws {
        switch value {
        case let .fixed32(v): values.append(Float(bitPattern: v))
        case let .bytes(packed):
            guard packed.count % 4 == 0 else { throw ProtoError(message: "packed floats in field \(number) are \(packed.count) bytes, not a multiple of 4") }
            values.reserveCapacity(values.count + packed.count / 4)
            var index = packed.startIndex
            while index < packed.endIndex {
                let bits = UInt32(packed[index]) | UInt32(packed[index + 1]) << 8 | UInt32(packed[index + 2]) << 16 | UInt32(packed[index + 3]) << 24
                values.append(Float(bitPattern: bits))
                index += 4
            }
        default: throw ProtoError(message: "field \(number) should be floats")
        }
    }

    /// A repeated double field, packed or not.
    func appendDoubles(to values: inout [Float]) throws {
        switch value {
        case let .fixed64(v): values.append(Float(Double(bitPattern: v)))
        case let .bytes(packed):
            guard packed.count % 8 == 0 else { throw ProtoError(message: "packed doubles in field \(number) are \(packed.count) bytes, not a multiple of 8") }
            var index = packed.startIndex
            while index < packed.endIndex {
                let bits = packed[index..<index + 8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                values.append(Float(Double(bitPattern: bits)))
                index += 8
            }
        default: throw ProtoError(message: "field \(number) should be doubles")
        }
    }
}

extension ProtoReader {
    /// Reads the whole slice as consecutive varints (the body of a packed repeated field).
    mutating func forEachPackedVarint(_ body: (UInt64) -> Void) throws {
        while position < data.endIndex { body(try varint()) }
    }
}
