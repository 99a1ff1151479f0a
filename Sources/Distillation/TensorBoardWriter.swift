import Foundation
import ModelFormats
import Tensors

/// Writes scalars as a TensorBoard event file, so that `tensorboard --logdir runs` plots a
/// run's curves while Distill itself needs no Python and no protobuf package at run time.
///
/// The file is append-only TFRecord framing around `tensorflow.Event` messages (fields from
/// `tensorflow/core/util/event.proto` and `summary.proto`). Records are buffered in memory
/// and reach the file on `flush()`; call it after each epoch. A run killed mid-write leaves
/// at most a partial last record, which TensorBoard skips, keeping every earlier point.
///
/// Not thread-safe: one training loop owns one writer.
public final class TensorBoardWriter {
    /// The event file. TensorBoard finds it by the `tfevents` in its name, so one folder
    /// may hold files from several writers (a resumed run adds a second file).
    public let path: String
    private let descriptor: Int32
    private var pending: [UInt8] = []

    /// Creates `directory` (and its parents) if needed and starts a new event file in it,
    /// named `events.out.tfevents.<unix seconds>.<hostname>`, the pattern TensorBoard scans for.
    /// The file-version record is on disk when this returns, so a run that dies before its
    /// first flush still leaves a file TensorBoard recognises.
    ///
    /// A second writer in the same folder within the same second (a run resumed at once)
    /// gets `.1`, `.2`, ... after the name rather than appending to the first's file, which
    /// would interleave two writers' records. Throws `FileError` when the folder or file
    /// cannot be created.
    public init(directory: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            // The POSIX reason ("Not a directory"): the Cocoa error's own text is generic on Linux.
            var reason = error.localizedDescription
            if let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? Error,
               (underlying as NSError).domain == NSPOSIXErrorDomain {
                reason = String(cString: strerror(Int32((underlying as NSError).code)))
            }
            throw FileError(file: directory, "the folder cannot be created: \(reason)")
        }
        let wallTime = Date().timeIntervalSince1970
        let name = "events.out.tfevents.\(Int(wallTime)).\(Self.hostname())"
        var candidate = (directory as NSString).appendingPathComponent(name), attempt = 0
        var opened = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0o644)
        while opened < 0 && errno == EEXIST && attempt < 1000 {
            attempt += 1
            candidate = (directory as NSString).appendingPathComponent("\(name).\(attempt)")
            opened = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0o644)
        }
        path = candidate
        descriptor = opened
        guard descriptor >= 0 else { throw FileError(file: path, "cannot be created: \(String(cString: strerror(errno)))") }
        var event = ProtoWriter()
        event.double(1, wallTime)
        event.string(3, "brain.Event:2")
        appendRecord(event.bytes)
        try flush()
    }

    /// Flushes what is still buffered; a failure here cannot be reported, so call `flush()`
    /// yourself at the end of a run to hear about it.
    deinit {
        try? flush()
        close(descriptor)
    }

    /// Buffers one point of the curve `tag` (shown as a chart of that name; a `/` groups
    /// charts, as in `loss/train`). It does not touch the disk, so it is cheap per batch.
    public func addScalar(_ tag: String, value: Float, step: Int, wallTime: Double = Date().timeIntervalSince1970) {
        // Event{wall_time = 1, step = 2, summary = 5 {value = 1 {tag = 1, simple_value = 2}}}
        var event = ProtoWriter()
        event.double(1, wallTime)
        event.int(2, step)
        event.message(5) { summary in
            summary.message(1) { point in
                point.string(1, tag)
                point.float(2, value)
            }
        }
        appendRecord(event.bytes)
    }

    /// Writes the buffered records to the file. It does not `fsync`: the records survive the
    /// process being killed, which is the failure a training run meets; a power cut may lose
    /// the last epochs, which a log can afford. After a failed write the unwritten bytes stay
    /// buffered, so a later flush continues where this one stopped.
    public func flush() throws {
        var written = 0
        defer { pending.removeFirst(written) }
        while written < pending.count {
            let count = pending.withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if count < 0 {
                if errno == EINTR { continue }
                throw FileError(file: path, "could not be written: \(String(cString: strerror(errno)))")
            }
            written += count
        }
    }

    /// TFRecord framing: length, checksum of the length (so a reader never trusts a torn
    /// length), data, checksum of the data.
    private func appendRecord(_ data: [UInt8]) {
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian) { Array($0) }
        pending += length
        withUnsafeBytes(of: maskedCRC32C(length).littleEndian) { pending += $0 }
        pending += data
        withUnsafeBytes(of: maskedCRC32C(data).littleEndian) { pending += $0 }
    }

    /// `gethostname` directly: Foundation's `hostName` may wait on a DNS lookup.
    private static func hostname() -> String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "localhost" }
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one table entry per byte value.
private let crc32cTable: [UInt32] = (0..<256).map { index in
    var crc = UInt32(index)
    for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
    return crc
}

/// The CRC-32C of `bytes`, rotated and offset as TFRecord stores it: TensorFlow masks its
/// checksums because a CRC computed over data that itself holds CRCs is weak.
private func maskedCRC32C(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes { crc = crc32cTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
    crc = ~crc
    return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
}
