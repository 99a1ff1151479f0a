import Foundation
import Tensors

/// Every answer a served teacher gave, kept on disk as it arrives so that no example is paid
/// for twice.
///
/// One file per teacher (model URL and model version): an append-only log of records
/// `[example hash: 8 bytes][scores: classes × Float32][checksum: 8 bytes]`, little-endian,
/// after a header naming the kind of answer (when not logits), URL, version and class count.
/// The scores are the logits, or the distribution a partial answer gives (`ServedAnswerKind`). Each answered batch is appended
/// and fsync'd before the next is asked for. A process killed mid-write leaves at most a torn
/// last record, which the checksum exposes and `open` cuts off; every earlier answer stays.
/// Appending (rather than rewriting the whole file atomically per batch) keeps the cost of
/// saving a batch proportional to the batch, not to everything answered so far.
public final class ServedAnswers: @unchecked Sendable {
    /// The log's path.
    public let path: String
    /// Scores per example.
    public let classes: Int
    private var answers: [UInt64: [Float]] = [:]
    private let handle: FileHandle
    private let lock = NSLock()

    /// How many examples have an answer.
    public var count: Int { lock.withLock { answers.count } }

    /// The file for `url` at `version` answering `kind` inside `directory` (logits keep the key
    /// they had before other kinds existed).
    public static func path(in directory: String, url: String, version: String, kind: ServedAnswerKind = .logits) -> String {
        let key = url + "\n" + version + (kind == .logits ? "" : "\n\(kind)")
        return (directory as NSString).appendingPathComponent("served-\(String(fnv1a(Array(key.utf8)), radix: 16)).answers")
    }

    /// Opens (creating when absent) the log at `path` for a teacher at `url`, `version`, giving
    /// `classes` scores per example of `kind` (logits, or the distribution a partial answer gives);
    /// reads every whole record and cuts off a torn tail. A file written for another teacher,
    /// version, class count or kind is an error naming it.
    public init(path: String, url: String, version: String, classes: Int, kind: ServedAnswerKind = .logits) throws {
        self.path = path
        self.classes = classes
        let header = Data("distill served answers 1\(kind == .logits ? "" : " \(kind)")\n\(url)\n\(version)\n\(classes)\n".utf8)
        let manager = FileManager.default
        try? manager.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if !manager.fileExists(atPath: path) {
            try AtomicFile.write(header, to: path)
        }
        guard let contents = manager.contents(atPath: path), let handle = FileHandle(forUpdatingAtPath: path) else {
            throw DistillationError("\(path): cannot read or write the served teacher's answers")
        }
        self.handle = handle
        guard contents.count >= header.count, contents.prefix(header.count) == header else {
            throw DistillationError("\(path): not the answers of \(url) (version '\(version)', \(classes) classes\(kind == .logits ? "" : ", \(kind) answers"))")
        }
        let recordSize = 16 + 4 * classes
        var offset = header.count
        contents.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            while offset + recordSize <= raw.count {
                let record = UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + recordSize)])
                let stored = record.loadUnaligned(fromByteOffset: recordSize - 8, as: UInt64.self).littleEndian
                guard Self.fnv1a(UnsafeRawBufferPointer(rebasing: record[0..<(recordSize - 8)])) == stored else { break }
                let key = record.loadUnaligned(as: UInt64.self).littleEndian
                answers[key] = (0..<classes).map { Float(bitPattern: record.loadUnaligned(fromByteOffset: 8 + 4 * $0, as: UInt32.self).littleEndian) }
                offset += recordSize
            }
        }
        if offset < contents.count {
            try handle.truncate(atOffset: UInt64(offset))
        }
        try handle.seekToEnd()
    }

    deinit { try? handle.close() }

    /// The answer kept for the example whose sent bytes hash to `key`.
    public func answer(_ key: UInt64) -> [Float]? { lock.withLock { answers[key] } }

    /// Appends one batch of answers (`logits` [keys.count × classes], row-major) and syncs
    /// the file before returning.
    public func append(keys: [UInt64], logits: [Float]) throws {
        var data = Data(capacity: keys.count * (16 + 4 * classes))
        for (row, key) in keys.enumerated() {
            var record = [UInt8]()
            record.reserveCapacity(16 + 4 * classes)
            withUnsafeBytes(of: key.littleEndian) { record.append(contentsOf: $0) }
            for value in logits[(row * classes)..<((row + 1) * classes)] { withUnsafeBytes(of: value.bitPattern.littleEndian) { record.append(contentsOf: $0) } }
            let checksum = record.withUnsafeBytes { Self.fnv1a($0) }
            withUnsafeBytes(of: checksum.littleEndian) { record.append(contentsOf: $0) }
            data.append(contentsOf: record)
        }
        try lock.withLock {
            do {
                try handle.write(contentsOf: data)
                try handle.synchronize()
            } catch { throw DistillationError("\(path): cannot keep the served teacher's answers: \(error)") }
            for (row, key) in keys.enumerated() { answers[key] = Array(logits[(row * classes)..<((row + 1) * classes)]) }
        }
    }

    /// FNV-1a (64-bit) of `bytes`: the example keys and the record checksums.
    public static func fnv1a(_ bytes: UnsafeRawBufferPointer) -> UInt64 { FNV1a.hash(bytes) }

    static func fnv1a(_ bytes: [UInt8]) -> UInt64 { bytes.withUnsafeBytes { fnv1a($0) } }
}
