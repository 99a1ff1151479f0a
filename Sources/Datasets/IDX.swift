import Foundation

/// The IDX format of MNIST and Fashion-MNIST: a magic number (two zero bytes, a type code,
/// a rank), big-endian 32-bit dimensions, then the values, big-endian.
/// Types: 0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
public enum IDX {
    /// Dimensions and values of an IDX file.
    public struct Array {
        public var dimensions: [Int]
        /// The element type code (0x08 for image and label files).
        public var typeCode: UInt8
        /// The stored bytes after the header (the values themselves for unsigned-byte files).
        public var bytes: [UInt8]

        /// The values of any type as Float.
        public var values: [Float] {
            let total = dimensions.reduce(1, *)
            if typeCode == 0x08 { return bytes.map(Float.init) }
            return bytes.withUnsafeBytes { raw in
                let p = raw.baseAddress!
                return (0..<total).map { i -> Float in
                    switch typeCode {
                    case 0x09: return Float(p.load(fromByteOffset: i, as: Int8.self))
                    case 0x0B: return Float(Int16(bigEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
                    case 0x0C: return Float(Int32(bigEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
                    case 0x0D: return Float(bitPattern: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                    default: return Float(Double(bitPattern: UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
                    }
                }
            }
        }
    }

    static let elementSizes: [UInt8: Int] = [0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8]

    /// Reads the file at `path` (gzip-compressed or raw).
    public static func read(_ path: String) throws -> Array {
        try parse(readFile(path), file: path)
    }

    /// Parses IDX bytes, gzip-compressed or raw; `file` names the source in errors.
    public static func parse(_ data: Data, file: String) throws -> Array {
        let bytes = [UInt8](Gzip.isCompressed(data) ? try Gzip.decompress(data, file: file) : data)
        guard bytes.count >= 4 else { throw DatasetError(file: file, "too short for an IDX header (\(bytes.count) bytes)") }
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw DatasetError(file: file, String(format: "wrong magic number 0x%02X%02X%02X%02X (expected 0x0000 then type and rank)", bytes[0], bytes[1], bytes[2], bytes[3]))
        }
        guard let size = elementSizes[bytes[2]] else {
            throw DatasetError(file: file, String(format: "unknown element type 0x%02X (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)", bytes[2]))
        }
        let rank = Int(bytes[3])
        guard rank >= 1 && rank <= 8 else { throw DatasetError(file: file, "rank \(rank) is not between 1 and 8") }
        guard bytes.count >= 4 + 4 * rank else { throw DatasetError(file: file, "header is truncated") }
        var dimensions: [Int] = []
        var total = 1
        for axis in 0..<rank {
            let o = 4 + 4 * axis
            let d = Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3])
            dimensions.append(d)
            let (product, overflow) = total.multipliedReportingOverflow(by: d)
            guard !overflow, product * size <= bytes.count else {
                throw DatasetError(file: file, "header claims dimensions \(dimensions)... but the file has only \(bytes.count) bytes")
            }
            total = product
        }
        let start = 4 + 4 * rank
        guard bytes.count - start == total * size else {
            throw DatasetError(file: file, "header claims \(total) values \(dimensions) (\(total * size) bytes) but \(bytes.count - start) bytes follow")
        }
        return Array(dimensions: dimensions, typeCode: bytes[2], bytes: Swift.Array(bytes[start...]))
    }
}

/// The bytes of `path`, or an error that says whether it is missing or unreadable.
func readFile(_ path: String) throws -> Data {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw DatasetError(file: path, "does not exist") }
    guard !isDirectory.boolValue else { throw DatasetError(file: path, "is a folder, not a file") }
    guard let data = FileManager.default.contents(atPath: path) else { throw DatasetError(file: path, "cannot be read") }
    return data
}
