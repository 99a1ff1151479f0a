import Datasets
import Foundation
import TestSupport
import XCTest

final class IDXTests: XCTestCase {
    func testParsesHeaderAndData() throws {
        let bytes: [UInt8] = [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6]
        let array = try IDX.parse(Data(bytes), file: "m.idx")
        XCTAssertEqual(array.dimensions, [2, 3])
        XCTAssertEqual(array.bytes, [1, 2, 3, 4, 5, 6])
    }

    func testRejectsWrongMagic() {
        XCTAssertThrowsError(try IDX.parse(Data([1, 2, 8, 1, 0, 0, 0, 1, 7]), file: "bad.idx")) { error in
            XCTAssertTrue("\(error)".contains("bad.idx: wrong magic number"), "\(error)")
        }
    }

    func testRejectsAbsurdSizeWithoutAllocating() {
        let bytes: [UInt8] = [0, 0, 8, 3, 0x7F, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF]
        XCTAssertThrowsError(try IDX.parse(Data(bytes), file: "huge.idx")) { error in
            XCTAssertTrue("\(error)".contains("header claims"), "\(error)")
        }
    }

    func testRejectsMismatchedLength() {
        XCTAssertThrowsError(try IDX.parse(Data([0, 0, 8, 1, 0, 0, 0, 4, 1, 2]), file: "short.idx")) { error in
            XCTAssertTrue("\(error)".contains("4 values"), "\(error)")
        }
    }

    func testTruncatedGzipIsAnError() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("truncated-\(UUID()).gz").path
        // A gzip header followed by a deflate stream cut short.
        _ = FileManager.default.createFile(atPath: path, contents: Data([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3, 0x63, 0x60]))
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertThrowsError(try IDX.read(path)) { error in
            XCTAssertTrue("\(error)".contains("truncated") || "\(error)".contains("corrupt"), "\(error)")
        }
    }

    func testMissingFolderNamesIt() {
        XCTAssertThrowsError(try FashionMNIST(directory: "/nonexistent/fmnist")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/fmnist"), "\(error)")
        }
    }

    func testLoadsFashionMNISTWhenInstalled() throws {
        try requireTool(FileManager.default.fileExists(atPath: FashionMNIST.defaultDirectory),
                        "dataset-fashion-mnist is not installed (make test installs it)")
        let data = try FashionMNIST()
        XCTAssertEqual(data.train.count, 60_000)
        XCTAssertEqual(data.test.count, 10_000)
        XCTAssertEqual(data.train.inputs.shape, [60_000, 1, 28, 28])
        let mean = data.train.inputs.mean().item
        XCTAssertEqual(mean, 0, accuracy: 0.01, "normalised training pixels have mean ≈ 0")
    }
}
