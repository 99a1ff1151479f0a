import Foundation

/// The IDX format of MNIST and Fashion-MNIST: a magic number (two zero bytes, a type code,
/// a rank), big-endian 32-bit dimensions, then the data. Only unsigned bytes (type 0x08)
/// are read, which is what image and label files use.
public enum IDX {
    /// Dimensions and bytes of an IDX file (gzip-compressed or raw).
    public struct Array {
        public var dimensions: [Int]
        public var bytes: [UInt8]
    }

    /// Reads the file at `path`.
    public static func read(_ path: String) throws -> Array {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DatasetError(file: path, FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist")
        }
        let raw = Gzip.isCompressed(data) ? try Gzip.decompress(data, file: path) : data
        return try parse(raw, file: path)
    }

    /// Parses IDX bytes; `file` names the source in errors.
    public static func parse(_ data: Data, file: String) throws -> Array {
        let bytes = [UInt8](data)
        guard bytes.count >= 4 else { throw DatasetError(file: file, "too short for an IDX header (\(bytes.count) bytes)") }
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw DatasetError(file: file, String(format: "wrong magic number 0x%02X%02X%02X%02X (expected 0x0000 then type and rank)", bytes[0], bytes[1], bytes[2], bytes[3]))
        }
        guard bytes[2] == 0x08 else {
            throw DatasetError(file: file, String(format: "element type 0x%02X is not supported (only unsigned bytes, 0x08)", bytes[2]))
        }
        let rank = Int(bytes[3])
        guard rank >= 1 && rank <= 4 else { throw DatasetError(file: file, "rank \(rank) is not between 1 and 4") }
        guard bytes.count >= 4 + 4 * rank else { throw DatasetError(file: file, "header is truncated") }
        var dimensions: [Int] = []
        var total = 1
        for axis in 0..<rank {
            let o = 4 + 4 * axis
            let d = Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3])
            dimensions.append(d)
            total = total.multipliedReportingOverflow(by: d).partialValue
            guard total <= bytes.count else {
                throw DatasetError(file: file, "header claims dimensions \(dimensions)... but the file has only \(bytes.count) bytes")
            }
        }
        let start = 4 + 4 * rank
        guard bytes.count - start == total else {
            throw DatasetError(file: file, "header claims \(total) values \(dimensions) but \(bytes.count - start) bytes follow")
        }
        return Array(dimensions: dimensions, bytes: Swift.Array(bytes[start...]))
    }
}
