import Datasets
import Foundation
import Tensors
import TestSupport
import XCTest

/// NPY, NPZ, CSV, images and IDX: files written by NumPy and Pillow
/// (scripts/generate_data_fixtures.py), and broken files that must be named and explained.
final class FileFormatTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    var expected: [String: Any] {
        try! JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("expected.json"))) as! [String: Any]
    }
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("distill-data-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    func path(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    func assertError(_ body: @autoclosure () throws -> Any, contains fragments: String..., file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            for fragment in fragments {
                XCTAssertTrue("\(error)".contains(fragment), "expected '\(fragment)' in: \(error)", file: file, line: line)
            }
        }
    }

    func testReadsEveryNumPyDtypeAndVersion() throws {
        for name in ["f4", "f8", "f2", "u1", "i4", "i8", "be_f4", "v2", "v3"] {
            let array = try NPY.read(path("\(name).npy"))
            let e = expected[name] as! [String: Any]
            XCTAssertEqual(array.shape, e["shape"] as! [Int], name)
            XCTAssertEqual(array.values, (e["values"] as! [NSNumber]).map(\.floatValue), name)
        }
        XCTAssertEqual(try NPY.read(path("scalar.npy")).shape, [])
        XCTAssertEqual(try NPY.read(path("scalar.npy")).values, [4.5])
        XCTAssertEqual(try NPY.read(path("i8.npy")).integers(file: "i8.npy"), [1, 2, 3, 0, 7, 0])
    }

    func testRejectsFortranAndObjectArraysClearly() {
        assertError(try NPY.read(path("fortran.npy")), contains: "fortran.npy", "Fortran order", "ascontiguousarray")
        assertError(try NPY.read(path("object.npy")), contains: "object.npy", "object arrays")
    }

    func testNPYRoundTripIsReadByNumPy() throws {
        let file = scratch.appendingPathComponent("out.npy").path
        try NPY.write(Tensor([1, 2.5, -3, 4, 5, 6], shape: [3, 2]), to: file)
        let back = try NPY.read(file)
        XCTAssertEqual(back.shape, [3, 2])
        XCTAssertEqual(back.values, [1, 2.5, -3, 4, 5, 6])
        // Only a missing numpy skips; numpy failing on our file is a format bug.
        try requireTool(pythonCanImport("numpy"), "python3 with numpy is not installed (make test installs it)")
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", "import numpy, sys; a = numpy.load(sys.argv[1]); print(a.dtype, a.shape, a.sum())", file]
        let output = Pipe(), errors = Pipe()
        python.standardOutput = output
        python.standardError = errors
        try python.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        python.waitUntilExit()
        XCTAssertEqual(python.terminationStatus, 0, "numpy cannot read the .npy file Distill wrote: \(errorText)")
        XCTAssertEqual(text.trimmingCharacters(in: .whitespacesAndNewlines), "float32 (3, 2) 15.5")
    }

    func testBrokenNPYHeaders() {
        func npy(_ header: String, data: [UInt8] = []) -> Data {
            Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(header.utf8.count), 0] + Array(header.utf8) + data)
        }
        assertError(try NPY.parse(Data("not numpy".utf8), file: "a.npy"), contains: "a.npy", "magic string")
        assertError(try NPY.parse(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", data: [0, 0, 0, 0]), file: "b.npy"),
                    contains: "b.npy", "needs 8 bytes of data but 4 follow")
        assertError(try NPY.parse(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,  "), file: "c.npy"), contains: "malformed header")
        assertError(try NPY.parse(npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", data: Array(repeating: 0, count: 8)), file: "d.npy"),
                    contains: "dtype '<c8' is not supported")
        assertError(try NPY.parse(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999, 99999999, 99999), }"), file: "e.npy"),
                    contains: "needs more data than the file")
        var future = npy("{}")
        future[6] = 9
        assertError(try NPY.parse(future, file: "f.npy"), contains: "version 9.0 is not supported")
    }

    func testReadsStoredAndCompressedNPZ() throws {
        for name in ["stored.npz", "compressed.npz"] {
            let arrays = try NPZ.read(path(name))
            XCTAssertEqual(Set(arrays.keys), ["images", "labels"], name)
            XCTAssertEqual(arrays["images"]?.shape, [2, 3], name)
            XCTAssertEqual(arrays["images"]?.values, [1.5, -2, 3.25, 0, 7, -0.5], name)
            XCTAssertEqual(try arrays["labels"]?.integers(file: name), [3, 1], name)
        }
        assertError(try NPZ.parse(Data(repeating: 0, count: 40), file: "z.npz"), contains: "z.npz", "not a zip archive")
        var truncated = try Data(contentsOf: URL(fileURLWithPath: path("compressed.npz")))
        truncated.removeSubrange(60..<120)
        XCTAssertThrowsError(try NPZ.parse(truncated, file: "t.npz"))
    }

    func testCSVWithHeaderNamedLabelAndErrorsWithLineNumbers() throws {
        let text = "width,height,kind\n1.5,2,cat\n\"3\",4.25,dog\n\n5,6,cat\n"
        let data = try CSV.parse(text, file: "pets.csv", label: .name("kind"))
        XCTAssertEqual(data.inputs.shape, [3, 2])
        XCTAssertEqual(data.inputs.scalars, [1.5, 2, 3, 4.25, 5, 6])
        XCTAssertEqual(data.classNames, ["cat", "dog"])
        XCTAssertEqual(data.labels, [0, 1, 0])
        let numeric = try CSV.parse("0.5,1,2\n0.25,3,0\n", file: "n.csv", label: .index(2), hasHeader: false)
        XCTAssertEqual(numeric.labels, [2, 0])
        XCTAssertEqual(numeric.classNames, ["0", "1", "2"])
        assertError(try CSV.parse("a,b,c\n1,2,3\n4,5\n", file: "ragged.csv"), contains: "ragged.csv:3", "has 2 fields, expected 3")
        assertError(try CSV.parse("a,b,c\n1,2,3\n4,x,5\n", file: "text.csv"), contains: "text.csv:3", "column 2 ('b')", "'x' is not a finite number")
        assertError(try CSV.parse("a,b,c\n1,2,3\n", file: "n.csv", label: .name("d")), contains: "no column named 'd'")
        assertError(try CSV.parse("a,b\n\"1,2\n", file: "q.csv"), contains: "q.csv:2", "unterminated quoted field")
        assertError(try CSV.parse("\n\n", file: "empty.csv"), contains: "empty.csv", "has no rows")
    }

    func testDecodesPNGAndJPEG() throws {
        let gray = try ImageDecoder.decode(Data(contentsOf: URL(fileURLWithPath: path("gray.png"))), file: "gray.png", channels: 1)
        let e = expected["gray.png"] as! [String: Any]
        XCTAssertEqual(gray.width, 6)
        XCTAssertEqual(gray.height, 4)
        XCTAssertEqual(gray.pixels.map(Int.init), e["pixels"] as! [Int])
        let rgb = try ImageDecoder.decode(Data(contentsOf: URL(fileURLWithPath: path("rgb.png"))), file: "rgb.png", channels: 3)
        XCTAssertEqual(rgb.pixels.map(Int.init), (expected["rgb.png"] as! [String: Any])["pixels"] as! [Int])
        let jpeg = try ImageDecoder.decode(Data(contentsOf: URL(fileURLWithPath: path("rgb.jpg"))), file: "rgb.jpg", channels: 3)
        XCTAssertEqual(jpeg.width, 6)
        // Pillow's decode of the same file; IDCT implementations may differ by a level or two.
        let pillow = (expected["rgb.jpg"] as! [String: Any])["pixels"] as! [Int]
        XCTAssertLessThanOrEqual(zip(jpeg.pixels, pillow).map { abs(Int($0) - $1) }.max()!, 2)
        assertError(try ImageDecoder.decode(Data("hello".utf8), file: "x.png", channels: 1), contains: "x.png", "neither PNG nor JPEG")
        var broken = try Data(contentsOf: URL(fileURLWithPath: path("rgb.jpg")))
        broken = broken.prefix(200) + Data(repeating: 0x55, count: 50)
        assertError(try ImageDecoder.decode(broken, file: "broken.jpg", channels: 1), contains: "broken.jpg", "JPEG data is invalid")
    }

    func testImageFolderScansStreamsResizesAndNormalises() throws {
        let root = scratch.appendingPathComponent("images")
        for (folder, files) in [("boots", ["gray.png", "rgb.jpg"]), ("shirts", ["rgb.png"])] {
            let dir = root.appendingPathComponent(folder)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for file in files { try FileManager.default.copyItem(atPath: path(file), toPath: dir.appendingPathComponent(file).path) }
        }
        try Data("not an image".utf8).write(to: root.appendingPathComponent("shirts/readme.txt"))
        let listing = try ImageFolder.scan(root.path)
        XCTAssertEqual(listing.files.map { ($0 as NSString).lastPathComponent }, ["gray.png", "rgb.jpg", "rgb.png"])
        XCTAssertEqual(listing.labels, [0, 0, 1])
        XCTAssertEqual(listing.classNames, ["boots", "shirts"])
        let dataset = try ImageFolder.dataset(listing, channels: 3, size: (height: 8, width: 8))
        XCTAssertTrue(dataset.isStreamed)
        XCTAssertEqual(dataset.exampleShape, [3, 8, 8])
        let statistics = try dataset.channelStatistics()
        XCTAssertEqual(statistics.mean.count, 3)
        XCTAssertEqual(try dataset.normalized(statistics).batch([0, 1, 2]).mean().item, 0, accuracy: 1e-4,
                       "normalised with the folder's own statistics")
        let same = try ImageFolder.dataset(listing, channels: 1, size: nil)
        XCTAssertEqual(same.exampleShape, [1, 4, 6], "the first image's size")
        let e = expected["gray.png"] as! [String: Any]
        assertClose(try same.batch([0]).scalars, (e["pixels"] as! [Int]).map { Float($0) / 255 }, absolute: 1e-6,
                    "same size: no interpolation")

        try FileManager.default.createDirectory(at: root.appendingPathComponent("empty"), withIntermediateDirectories: true)
        assertError(try ImageFolder.scan(root.path), contains: "empty", "class folder has no PNG or JPEG images")
        try FileManager.default.removeItem(at: root.appendingPathComponent("empty"))
        try Data("garbage".utf8).write(to: root.appendingPathComponent("shirts/bad.png"))
        let withBad = try ImageFolder.dataset(try ImageFolder.scan(root.path), channels: 1, size: (height: 4, width: 4))
        assertError(try withBad.batch([2]), contains: "shirts/bad.png", "neither PNG nor JPEG")
        assertError(try ImageFolder.scan(scratch.appendingPathComponent("nowhere").path), contains: "image folder does not exist")
    }

    func testIDXReadsOtherTypesAndMismatchedCountsAreNamed() throws {
        let floats = Data([0, 0, 0x0D, 1, 0, 0, 0, 2] + [0x3F, 0xC0, 0, 0] + [0xC0, 0x20, 0, 0])
        XCTAssertEqual(try IDX.parse(floats, file: "f.idx").values, [1.5, -2.5])
        let folder = scratch.appendingPathComponent("fmnist")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        func idx(_ dims: [Int], _ count: Int) -> Data {
            var bytes: [UInt8] = [0, 0, 8, UInt8(dims.count)]
            for d in dims {
                let word = UInt32(d)
                bytes += [UInt8(word >> 24), UInt8((word >> 16) & 255), UInt8((word >> 8) & 255), UInt8(word & 255)]
            }
            bytes += [UInt8](repeating: 1, count: count)
            return Data(bytes)
        }
        for prefix in ["train", "t10k"] {
            try idx([3, 28, 28], 3 * 784).write(to: folder.appendingPathComponent("\(prefix)-images-idx3-ubyte"))
            try idx([2], 2).write(to: folder.appendingPathComponent("\(prefix)-labels-idx1-ubyte"))
        }
        assertError(try FashionMNIST(directory: folder.path), contains: "train-labels-idx1-ubyte", "2 labels but 3 images")
    }
}
