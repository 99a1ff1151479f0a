import Foundation
import Tensors

/// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes
/// of JSON mapping each tensor name to its dtype, shape and [begin, end) byte range in the
/// data that follows, an optional `__metadata__` map of strings, then the data.
///
/// Reading converts every numeric dtype to Float32 (PyTorch saves `num_batches_tracked` as
/// I64, half-precision models as F16 or BF16). Every structural rule is checked before
/// anything is allocated from the header's numbers. Reading lives here, in the inference
/// library; writing (F32) is ModelFormats' extension (`SafeTensors.encode`, `write`).
public enum SafeTensors {
    /// Tensors by name, and the metadata map.
    public struct Contents {
        public var tensors: [String: Tensor]
        public var metadata: [String: String]

        public init(tensors: [String: Tensor], metadata: [String: String] = [:]) {
            self.tensors = tensors
            self.metadata = metadata
        }
    }

    /// The largest header accepted (the format's reference implementation uses 100 MB).
    static let maximumHeaderBytes = 100_000_000

    package static let elementSizes: [String: Int] = ["F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1]

    /// Reads the file at `path`.
    public static func read(_ path: String) throws -> Contents {
        try parse(bytes(of: path), file: path)
    }

    /// The bytes of the file at `path`, or an error saying it does not exist or cannot be read.
    package static func bytes(of path: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FileError(file: path, FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist")
        }
        return data
    }

    /// The metadata map of safetensors bytes, with the same checks as `parse` (for telling a
    /// quantized model file from a float one before decoding either).
    public static func metadata(_ data: Data, file: String) throws -> [String: String] {
        try layout(data, file: file).metadata
    }

    /// One tensor as stored: its dtype, shape and little-endian bytes (for formats that need
    /// exact integers, which `parse` would turn into floats).
    public struct RawTensor: Equatable {
        public var dtype: String
        public var shape: [Int]
        public var bytes: [UInt8]

        public init(dtype: String, shape: [Int], bytes: [UInt8]) {
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }
    }

    /// Parses safetensors bytes; `file` names the source in errors.
    public static func parse(_ data: Data, file: String) throws -> Contents {
        let (bytes, headerEnd, entries, metadata) = try layout(data, file: file)
        var tensors: [String: Tensor] = [:]
        bytes.withUnsafeBytes { raw in
            for entry in entries {
                tensors[entry.name] = decode(raw.baseAddress! + headerEnd + entry.begin, dtype: entry.dtype, shape: Shape(entry.shape))
            }
        }
        return Contents(tensors: tensors, metadata: metadata)
    }

    /// Parses safetensors bytes keeping each tensor's stored dtype and bytes, with the same checks as `parse`.
    public static func parseRaw(_ data: Data, file: String) throws -> (tensors: [String: RawTensor], metadata: [String: String]) {
        let (bytes, headerEnd, entries, metadata) = try layout(data, file: file)
        var tensors: [String: RawTensor] = [:]
        for entry in entries {
            tensors[entry.name] = RawTensor(dtype: entry.dtype, shape: entry.shape, bytes: Array(bytes[(headerEnd + entry.begin)..<(headerEnd + entry.end)]))
        }
        return (tensors, metadata)
    }

    /// The header's checked entries (sorted by offset) and metadata, and where the data starts.
    private static func layout(_ data: Data, file: String) throws
        -> (bytes: [UInt8], headerEnd: Int, entries: [(name: String, dtype: String, shape: [Int], begin: Int, end: Int)], metadata: [String: String]) {
        let bytes = [UInt8](data)
        guard bytes.count >= 8 else { throw FileError(file: file, "too short for a safetensors header (\(bytes.count) bytes)") }
        let headerLength = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[$1]) << (8 * UInt64($1)) }
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw FileError(file: file, "header length \(headerLength) runs beyond the end of the file (\(bytes.count) bytes)")
        }
        guard headerLength <= UInt64(maximumHeaderBytes) else {
            throw FileError(file: file, "header length \(headerLength) exceeds the \(maximumHeaderBytes)-byte limit")
        }
        let headerEnd = 8 + Int(headerLength)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes[8..<headerEnd]))
        } catch {
            throw FileError(file: file, "header is not valid JSON")
        }
        guard let header = json as? [String: Any] else { throw FileError(file: file, "header is not a JSON object") }
        let dataLength = bytes.count - headerEnd
        var metadata: [String: String] = [:]
        var entries: [(name: String, dtype: String, shape: [Int], begin: Int, end: Int)] = []
        for (name, value) in header {
            if name == "__metadata__" {
                guard let map = value as? [String: Any], map.values.allSatisfy({ $0 is String }) else {
                    throw FileError(file: file, "__metadata__ must map strings to strings")
                }
                metadata = map.mapValues { $0 as! String }
                continue
            }
            guard let info = value as? [String: Any] else { throw FileError(file: file, "tensor '\(name)': entry is not a JSON object") }
            guard let dtype = info["dtype"] as? String else { throw FileError(file: file, "tensor '\(name)': missing dtype") }
            guard let size = elementSizes[dtype] else {
                throw FileError(file: file, "tensor '\(name)': unknown dtype '\(dtype)' (known: \(elementSizes.keys.sorted().joined(separator: ", ")))")
            }
            guard let rawShape = info["shape"] as? [Any], let shape = integers(rawShape), shape.allSatisfy({ $0 >= 0 }) else {
                throw FileError(file: file, "tensor '\(name)': shape must be a list of non-negative integers")
            }
            guard let rawOffsets = info["data_offsets"] as? [Any], let offsets = integers(rawOffsets), offsets.count == 2 else {
                throw FileError(file: file, "tensor '\(name)': data_offsets must be two integers")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw FileError(file: file, "tensor '\(name)': data_offsets [\(begin), \(end)] lie outside the \(dataLength)-byte data section")
            }
            var count = 1, overflow = false
            for d in shape {
                (count, overflow) = count.multipliedReportingOverflow(by: d)
                if overflow || count > dataLength { break }
            }
            guard !overflow, count <= dataLength, count * size == end - begin else {
                throw FileError(file: file, "tensor '\(name)': shape \(shape) of \(dtype) needs \(overflow || count > dataLength ? "more than \(dataLength)" : String(count * size)) bytes but data_offsets give \(end - begin)")
            }
            entries.append((name, dtype, shape, begin, end))
        }
        entries.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var covered = 0
        for (index, entry) in entries.enumerated() {
            if entry.begin < covered {
                throw FileError(file: file, "tensors '\(entries[index - 1].name)' and '\(entry.name)' overlap in the data section")
            }
            if entry.begin > covered {
                throw FileError(file: file, "bytes \(covered)..<\(entry.begin) of the data section belong to no tensor")
            }
            covered = entry.end
        }
        guard covered == dataLength else {
            throw FileError(file: file, "bytes \(covered)..<\(dataLength) of the data section belong to no tensor")
        }
        return (bytes, headerEnd, entries, metadata)
    }

    private static func integers(_ values: [Any]) -> [Int]? {
        var result: [Int] = []
        for value in values {
            // Whole numbers only, and small enough to be exact in a Double (2⁵³).
            guard let number = value as? NSNumber, let int = Int(exactly: number.doubleValue),
                  Swift.abs(int) < 1 << 53 else { return nil }
            result.append(int)
        }
        return result
    }

    private static func decode(_ source: UnsafeRawPointer, dtype: String, shape: Shape) -> Tensor {
        let count = shape.count
        var values = [Float](repeating: 0, count: count)
        for i in 0..<count {
            switch dtype {
            case "F32": values[i] = Float(bitPattern: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian)
            case "F64": values[i] = Float(Double(bitPattern: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self).littleEndian))
            case "F16": values[i] = halfToFloat(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian)
            case "BF16": values[i] = Float(bitPattern: UInt32(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) << 16)
            case "I64": values[i] = Float(Int64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)))
            case "I32": values[i] = Float(Int32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
            case "I16": values[i] = Float(Int16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
            case "I8": values[i] = Float(source.load(fromByteOffset: i, as: Int8.self))
            default: values[i] = Float(source.load(fromByteOffset: i, as: UInt8.self))  // U8, BOOL
            }
        }
        return Tensor(values, shape: shape)
    }

    /// IEEE half to single precision (subnormals, infinities and NaN included).
    package static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h >> 15) << 31
        let exponent = Int((h >> 10) & 0x1F), mantissa = UInt32(h & 0x3FF)
        if exponent == 0 {
            let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
            return sign != 0 ? -magnitude : magnitude
        }
        if exponent == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
        return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
    }
}
