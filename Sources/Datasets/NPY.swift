import Foundation
import Tensors

/// NumPy's `.npy` format, versions 1.0, 2.0 and 3.0: the magic `\x93NUMPY`, a version, a
/// header length (2 bytes in 1.0, 4 after), a Python dict literal with `descr`,
/// `fortran_order` and `shape`, then the values in C order.
///
/// Reads float32, float64, float16, int8/16/32/64, uint8/16/32/64 and bool, in either byte
/// order; Fortran-order and object arrays are rejected with a message that says how to
/// convert them. Writes float32 (version 1.0).
public enum NPY {
    /// A decoded array.
    public struct Array {
        public var shape: [Int]
        /// The numpy type string, such as "<f4".
        public var descr: String
        /// Every value as Float.
        public var values: [Float]

        /// The values as integers (labels); throws if any is not a whole number.
        public func integers(file: String) throws -> [Int] {
            try values.enumerated().map { index, value in
                guard value.isFinite, value == value.rounded() else {
                    throw DatasetError(file: file, "value \(value) at position \(index) is not a whole number (labels must be integers)")
                }
                return Int(value)
            }
        }

        public var tensor: Tensor { Tensor(values, shape: Shape(shape)) }
    }

    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY

    /// Reads the file at `path`.
    public static func read(_ path: String) throws -> Array {
        try parse(readFile(path), file: path)
    }

    /// Parses `.npy` bytes; `file` names the source in errors.
    public static func parse(_ data: Data, file: String) throws -> Array {
        let bytes = [UInt8](data)
        guard bytes.count >= 10, Swift.Array(bytes[0..<6]) == magic else {
            throw DatasetError(file: file, "not an .npy file (the magic string \\x93NUMPY is missing)")
        }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw DatasetError(file: file, "header is truncated") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        default:
            throw DatasetError(file: file, "format version \(major).\(bytes[7]) is not supported (1.0, 2.0 and 3.0 are)")
        }
        guard headerStart + headerLength <= bytes.count else {
            throw DatasetError(file: file, "header length \(headerLength) runs beyond the end of the file (\(bytes.count) bytes)")
        }
        guard let header = String(bytes: bytes[headerStart..<(headerStart + headerLength)], encoding: major == 3 ? .utf8 : .ascii) else {
            throw DatasetError(file: file, "header is not \(major == 3 ? "UTF-8" : "ASCII") text")
        }
        var parser = HeaderParser(text: header, file: file)
        let dict = try parser.parseDict()
        guard case let .string(descr)? = dict["descr"] else { throw DatasetError(file: file, "header has no 'descr' string") }
        guard case let .bool(fortran)? = dict["fortran_order"] else { throw DatasetError(file: file, "header has no 'fortran_order' flag") }
        guard case let .tuple(shape)? = dict["shape"], shape.allSatisfy({ $0 >= 0 }) else {
            throw DatasetError(file: file, "header has no 'shape' tuple of non-negative integers")
        }
        guard !fortran else {
            throw DatasetError(file: file, "array is in Fortran order; save it in C order (numpy.ascontiguousarray) first")
        }
        guard let (kind, size, bigEndian) = decodeDescr(descr) else {
            if descr.contains("O") { throw DatasetError(file: file, "object arrays ('\(descr)') cannot be read; save a numeric array") }
            throw DatasetError(file: file, "dtype '\(descr)' is not supported (floats, integers and bool are)")
        }
        let start = headerStart + headerLength
        var count = 1
        for d in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, product <= bytes.count else {
                throw DatasetError(file: file, "shape \(shape) needs more data than the file's \(bytes.count) bytes")
            }
            count = product
        }
        guard bytes.count - start == count * size else {
            throw DatasetError(file: file, "shape \(shape) of '\(descr)' needs \(count * size) bytes of data but \(bytes.count - start) follow the header")
        }
        let values = bytes.withUnsafeBytes { raw in
            decodeValues(raw.baseAddress! + start, count: count, kind: kind, size: size, bigEndian: bigEndian)
        }
        return Array(shape: shape, descr: descr, values: values)
    }

    /// (kind 'f'/'i'/'u'/'b', element size, big-endian) for a supported descr.
    static func decodeDescr(_ descr: String) -> (Character, Int, Bool)? {
        let chars = Swift.Array(descr)
        guard chars.count >= 3, "<>|=".contains(chars[0]), let size = Int(String(chars[2...])) else { return nil }
        let kind = chars[1]
        let valid: Bool
        switch kind {
        case "f": valid = [2, 4, 8].contains(size)
        case "i", "u": valid = [1, 2, 4, 8].contains(size)
        case "b": valid = size == 1
        default: valid = false
        }
        return valid ? (kind, size, chars[0] == ">") : nil
    }

    static func decodeValues(_ p: UnsafeRawPointer, count: Int, kind: Character, size: Int, bigEndian: Bool) -> [Float] {
        func word<T: FixedWidthInteger>(_ i: Int, _: T.Type) -> T {
            let v = p.loadUnaligned(fromByteOffset: i * size, as: T.self)
            return bigEndian ? T(bigEndian: v) : T(littleEndian: v)
        }
        return (0..<count).map { i -> Float in
            switch (kind, size) {
            case ("f", 2): return halfToFloat(word(i, UInt16.self))
            case ("f", 4): return Float(bitPattern: word(i, UInt32.self))
            case ("f", 8): return Float(Double(bitPattern: word(i, UInt64.self)))
            case ("i", 1): return Float(Int8(bitPattern: word(i, UInt8.self)))
            case ("i", 2): return Float(Int16(bitPattern: word(i, UInt16.self)))
            case ("i", 4): return Float(Int32(bitPattern: word(i, UInt32.self)))
            case ("i", 8): return Float(Int64(bitPattern: word(i, UInt64.self)))
            case ("u", 1), ("b", 1): return Float(word(i, UInt8.self))
            case ("u", 2): return Float(word(i, UInt16.self))
            case ("u", 4): return Float(word(i, UInt32.self))
            default: return Float(word(i, UInt64.self))
            }
        }
    }

    static func halfToFloat(_ h: UInt16) -> Float {
        let sign: Float = h >> 15 == 1 ? -1 : 1
        let exponent = Int((h >> 10) & 0x1F), mantissa = Float(h & 0x3FF)
        if exponent == 0 { return sign * mantissa * Float(sign: .plus, exponent: -24, significand: 1) }
        if exponent == 31 { return mantissa == 0 ? sign * .infinity : .nan }
        return sign * (1 + mantissa / 1024) * Float(sign: .plus, exponent: exponent - 15, significand: 1)
    }

    /// `.npy` version 1.0 bytes holding `values` as little-endian float32 with `shape`.
    public static func encode(_ values: [Float], shape: [Int]) -> Data {
        require(shape.reduce(1, *) == values.count, "NPY.encode: \(values.count) values do not fill shape \(shape)")
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
        // Pad so that magic + version + length + header (ending in a newline) is a multiple of 64.
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var data = Data(magic + [1, 0])
        let length = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
        data.append(contentsOf: Swift.Array(header.utf8))
        for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        return data
    }

    /// Writes `tensor` to `path` atomically as a float32 `.npy` file.
    public static func write(_ tensor: Tensor, to path: String) throws {
        try AtomicFile.write(encode(tensor.scalars, shape: tensor.shape.dimensions), to: path)
    }
}

/// The subset of Python literals an `.npy` header uses: a dict of string keys to strings,
/// booleans and tuples of integers.
private struct HeaderParser {
    enum Value { case string(String), bool(Bool), tuple([Int]) }

    let chars: [Character]
    let file: String
    var position = 0

    init(text: String, file: String) {
        chars = Swift.Array(text)
        self.file = file
    }

    func fail(_ what: String) -> DatasetError { DatasetError(file: file, "malformed header: \(what) at character \(position)") }

    mutating func skipSpace() { while position < chars.count, chars[position].isWhitespace { position += 1 } }

    mutating func expect(_ c: Character) throws {
        skipSpace()
        guard position < chars.count, chars[position] == c else { throw fail("expected '\(c)'") }
        position += 1
    }

    mutating func parseDict() throws -> [String: Value] {
        try expect("{")
        var result: [String: Value] = [:]
        while true {
            skipSpace()
            guard position < chars.count else { throw fail("unterminated dict") }
            if chars[position] == "}" { position += 1; break }
            let key = try parseString()
            try expect(":")
            result[key] = try parseValue()
            skipSpace()
            guard position < chars.count else { throw fail("unterminated dict") }
            if chars[position] == "," { position += 1 } else if chars[position] != "}" { throw fail("expected ',' or '}'") }
        }
        return result
    }

    mutating func parseString() throws -> String {
        skipSpace()
        guard position < chars.count, chars[position] == "'" || chars[position] == "\"" else { throw fail("expected a string") }
        let quote = chars[position]
        position += 1
        let start = position
        while position < chars.count, chars[position] != quote { position += 1 }
        guard position < chars.count else { throw fail("unterminated string") }
        defer { position += 1 }
        return String(chars[start..<position])
    }

    mutating func parseValue() throws -> Value {
        skipSpace()
        guard position < chars.count else { throw fail("missing value") }
        switch chars[position] {
        case "'", "\"": return .string(try parseString())
        case "(":
            position += 1
            var items: [Int] = []
            while true {
                skipSpace()
                guard position < chars.count else { throw fail("unterminated tuple") }
                if chars[position] == ")" { position += 1; break }
                let start = position
                while position < chars.count, chars[position].isNumber { position += 1 }
                guard position > start, position - start <= 18, let value = Int(String(chars[start..<position])) else { throw fail("expected an integer") }
                // Python 2 headers may write 3L.
                if position < chars.count, chars[position] == "L" { position += 1 }
                items.append(value)
                skipSpace()
                guard position < chars.count else { throw fail("unterminated tuple") }
                if chars[position] == "," { position += 1 } else if chars[position] != ")" { throw fail("expected ',' or ')'") }
            }
            return .tuple(items)
        default:
            for (word, value) in [("True", true), ("False", false)] where chars[position...].starts(with: word) {
                position += word.count
                return .bool(value)
            }
            throw fail("unexpected value")
        }
    }
}
