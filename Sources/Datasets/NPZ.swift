import Foundation

/// NumPy's `.npz` format: a zip archive of `.npy` files (stored or deflated). Arrays are
/// named by their file names without `.npy`. ZIP64 archives (over 4 GiB) are not read.
public enum NPZ {
    /// Reads every array in the archive at `path`.
    public static func read(_ path: String) throws -> [String: NPY.Array] {
        try parse(readFile(path), file: path)
    }

    /// Parses `.npz` bytes; `file` names the source in errors.
    public static func parse(_ data: Data, file: String) throws -> [String: NPY.Array] {
        let bytes = [UInt8](data)
        func u16(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        // The end-of-central-directory record: signature, then counts and the directory's place.
        guard bytes.count >= 22 else { throw DatasetError(file: file, "too short for a zip archive (\(bytes.count) bytes)") }
        var end = -1
        var o = bytes.count - 22
        let lowest = max(0, bytes.count - 22 - 65_535)
        while o >= lowest {
            if u32(o) == 0x0605_4B50 { end = o; break }
            o -= 1
        }
        guard end >= 0 else { throw DatasetError(file: file, "not a zip archive (no end-of-central-directory record)") }
        let entries = u16(end + 10), directorySize = u32(end + 12), directoryOffset = u32(end + 16)
        guard entries != 0xFFFF, directoryOffset != 0xFFFF_FFFF else { throw DatasetError(file: file, "ZIP64 archives are not supported") }
        guard directoryOffset + directorySize <= end else {
            throw DatasetError(file: file, "central directory (\(directorySize) bytes at \(directoryOffset)) lies outside the archive")
        }
        var arrays: [String: NPY.Array] = [:]
        var cursor = directoryOffset
        for _ in 0..<entries {
            guard cursor + 46 <= end, u32(cursor) == 0x0201_4B50 else {
                throw DatasetError(file: file, "central directory entry at \(cursor) is malformed")
            }
            let method = u16(cursor + 10), compressed = u32(cursor + 20), uncompressed = u32(cursor + 24)
            let nameLength = u16(cursor + 28), extraLength = u16(cursor + 30), commentLength = u16(cursor + 32)
            let localOffset = u32(cursor + 42)
            guard cursor + 46 + nameLength <= end else { throw DatasetError(file: file, "central directory entry at \(cursor) is truncated") }
            let name = String(decoding: bytes[(cursor + 46)..<(cursor + 46 + nameLength)], as: UTF8.self)
            cursor += 46 + nameLength + extraLength + commentLength
            let member = "\(file)[\(name)]"
            guard compressed != 0xFFFF_FFFF, uncompressed != 0xFFFF_FFFF, localOffset != 0xFFFF_FFFF else {
                throw DatasetError(file: member, "ZIP64 members are not supported")
            }
            guard localOffset + 30 <= bytes.count, u32(localOffset) == 0x0403_4B50 else {
                throw DatasetError(file: member, "local header at \(localOffset) is missing")
            }
            let dataStart = localOffset + 30 + u16(localOffset + 26) + u16(localOffset + 28)
            guard dataStart + compressed <= bytes.count else {
                throw DatasetError(file: member, "\(compressed) compressed bytes at \(dataStart) run beyond the archive")
            }
            let stored = Data(bytes[dataStart..<(dataStart + compressed)])
            let content: Data
            switch method {
            case 0: content = stored
            case 8: content = try Gzip.decompress(stored, file: member, limit: uncompressed, raw: true)
            default: throw DatasetError(file: member, "compression method \(method) is not supported (stored and deflate are)")
            }
            guard content.count == uncompressed else {
                throw DatasetError(file: member, "holds \(content.count) bytes but the directory says \(uncompressed)")
            }
            guard name.hasSuffix(".npy") else { continue }
            arrays[String(name.dropLast(4))] = try NPY.parse(content, file: member)
        }
        return arrays
    }
}
