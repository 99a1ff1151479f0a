import Distillation
import Foundation
import Tensors
import TestSupport
import XCTest

/// The event files TensorBoardWriter leaves: TFRecord framing checked byte by byte here, and
/// the scalars read back by TensorBoard itself (scripts/read_tensorboard.py).
final class TensorBoardWriterTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("distill-tensorboard-\(UUID().uuidString)")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    /// CRC-32C bit by bit, a second implementation beside the writer's table-driven one.
    func maskedCRC32C(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        crc = ~crc
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    func littleEndian<T: FixedWidthInteger>(_ bytes: ArraySlice<UInt8>, as _: T.Type) -> T {
        bytes.reversed().reduce(T(0)) { $0 << 8 | T($1) }
    }

    /// The data of each record in an event file, checking both checksums of every record.
    func records(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws -> [[UInt8]] {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var result: [[UInt8]] = []
        var position = 0
        while position < bytes.count {
            guard bytes.count - position >= 12 else { XCTFail("a torn length at byte \(position)", file: file, line: line); break }
            let header = bytes[position..<position + 8]
            XCTAssertEqual(littleEndian(bytes[position + 8..<position + 12], as: UInt32.self), maskedCRC32C(header), "length CRC of record \(result.count)", file: file, line: line)
            let length = Int(littleEndian(header, as: UInt64.self))
            guard bytes.count - position - 16 >= length else { XCTFail("a torn record at byte \(position)", file: file, line: line); break }
            let data = bytes[position + 12..<position + 12 + length]
            XCTAssertEqual(littleEndian(bytes[position + 12 + length..<position + 16 + length], as: UInt32.self), maskedCRC32C(data), "data CRC of record \(result.count)", file: file, line: line)
            result.append(Array(data))
            position += 16 + length
        }
        XCTAssertEqual(position, bytes.count, "the file ends at a record boundary", file: file, line: line)
        return result
    }

    func testTheChecksumIsTensorFlowsMaskedCRC32C() {
        // tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c(b"123456789")
        XCTAssertEqual(maskedCRC32C(Array("123456789".utf8)), 0xC78A_B0E5)
    }

    /// The first record names the format; a scalar is buffered until `flush()` and then is,
    /// framing included, byte for byte what TensorBoard 2.21's own writer gives:
    /// `tensorboard.summary.writer.record_writer.RecordWriter(io.BytesIO()).write(event_pb2.Event(
    /// wall_time=1700000000.25, step=3, summary=Summary(value=[Summary.Value(tag="loss", simple_value=0.5)])).SerializeToString())`.
    func testRecordsMatchTensorBoardsOwnWriter() throws {
        let writer = try TensorBoardWriter(directory: scratch.appendingPathComponent("run").path)
        XCTAssertTrue((writer.path as NSString).lastPathComponent.hasPrefix("events.out.tfevents."), writer.path)
        writer.addScalar("loss", value: 0.5, step: 3, wallTime: 1_700_000_000.25)
        let header = try records(writer.path)
        XCTAssertEqual(header.count, 1, "addScalar alone does not write")
        let version = try XCTUnwrap(header.first)
        XCTAssertEqual(version.first, 0x09, "wall_time, field 1, a double")
        XCTAssertEqual(Array(version.dropFirst(9)), [0x1A, 13] + Array("brain.Event:2".utf8), "file_version, field 3")

        try writer.flush()
        let golden: [UInt8] = [26, 0, 0, 0, 0, 0, 0, 0, 18, 155, 216, 45, 9, 0, 0, 16, 64, 252, 84, 217, 65, 16, 3, 42, 13, 10, 11, 10, 4,
                               108, 111, 115, 115, 21, 0, 0, 0, 63, 1, 122, 161, 108]
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: writer.path)))
        XCTAssertEqual(Array(bytes.suffix(golden.count)), golden)
        XCTAssertEqual(try records(writer.path).count, 2)
    }

    func testAFolderThatCannotBeMadeIsAThrownFileError() throws {
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let plainFile = scratch.appendingPathComponent("not-a-folder").path
        XCTAssertTrue(FileManager.default.createFile(atPath: plainFile, contents: Data()))
        XCTAssertThrowsError(try TensorBoardWriter(directory: plainFile + "/run")) { error in
            XCTAssertEqual((error as? FileError)?.file, plainFile + "/run", "\(error)")
        }
    }

    // MARK: TensorBoard as the oracle

    func readWithTensorBoard(_ directory: URL) throws -> [String: [[Double]]] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.root.appendingPathComponent("scripts/read_tensorboard.py").path, directory.path]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        process.waitUntilExit()
        // 2: the script cannot import tensorboard; 127: env finds no python3.
        if process.terminationStatus == 2 || process.terminationStatus == 127 {
            let reason = "python3 with tensorboard is not installed (make test installs it): \(errors)"
            // A CI run without the oracle would pass while checking nothing.
            try requireTool(false, reason)
        }
        guard process.terminationStatus == 0 else {
            throw FileError(file: directory.path, "read_tensorboard.py failed (\(process.terminationStatus)): \(errors)")
        }
        return try JSONDecoder().decode([String: [[Double]]].self, from: output)
    }

    /// Two curves over steps 0...9, flushed halfway and at the end, as a training loop does.
    func writeTwoCurves(to directory: URL) throws -> (writer: TensorBoardWriter, expected: [String: [[Double]]]) {
        let writer = try TensorBoardWriter(directory: directory.path)
        var expected: [String: [[Double]]] = [:]
        for step in 0..<10 {
            for (tag, value) in [("loss/train", 1 / Float(step + 3)), ("accuracy", Float(step) * 0.0731 - 0.2)] {
                writer.addScalar(tag, value: value, step: step)
                expected[tag, default: []].append([Double(step), Double(value)])
            }
            if step == 4 { try writer.flush() }
        }
        try writer.flush()
        return (writer, expected)
    }

    func testTensorBoardReadsBackEveryScalarExactly() throws {
        let run = scratch.appendingPathComponent("run")
        let (writer, expected) = try writeTwoCurves(to: run)
        // Read while the writer is open: flush(), not deinit, must have put every point on disk.
        // (Not inside XCTAssertEqual, where a thrown skip would count as an error.)
        let read = try withExtendedLifetime(writer) { try readWithTensorBoard(run) }
        XCTAssertEqual(read, expected)
    }

    /// A run killed mid-write: TensorBoard keeps every complete record before the torn one.
    func testAFileCutMidRecordKeepsTheCompleteRecords() throws {
        let run = scratch.appendingPathComponent("run")
        let (writer, written) = try writeTwoCurves(to: run)
        let lastRecord = try XCTUnwrap(try records(writer.path).last).count + 16
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: writer.path))
        try handle.truncate(atOffset: try handle.seekToEnd() - UInt64(lastRecord / 2))
        try handle.close()
        var expected = written
        expected["accuracy"]?.removeLast()
        let read = try readWithTensorBoard(run)
        XCTAssertEqual(read, expected)
    }
}
