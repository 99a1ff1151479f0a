import Datasets
import DistillInference
import Foundation
import Tensors
import TestSupport
import XCTest

/// `UserData`: which kind of data a path holds, the test split carved first, class names
/// from the data; `Preprocessing`: fitted on training examples, applied to single inputs and
/// converted between two models' inputs.
final class UserDataTests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("distill-userdata-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    /// `classes` folders of `count` gray 6×6 images whose brightness is the class index × 40.
    func imageFolder(_ name: String, classes: [String], count: Int) throws -> URL {
        let root = scratch.appendingPathComponent(name)
        for (label, name) in classes.enumerated() {
            let folder = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for i in 0..<count {
                try PNGWriter.write([UInt8](repeating: UInt8(label * 40 + i % 3), count: 36), width: 6, height: 6, channels: 1, to: folder.appendingPathComponent("\(i).png").path)
            }
        }
        return root
    }

    func testOneImageFolderIsSplitStratifiedWithAFixedSeed() throws {
        let root = try imageFolder("pets", classes: ["cat", "dog", "owl"], count: 10)
        let data = try UserData.load(UserData.Request(path: root.path, testFraction: 0.2, channels: 1))
        XCTAssertEqual(data.kind, .imageFolder)
        XCTAssertEqual(data.train.classNames, ["cat", "dog", "owl"])
        XCTAssertEqual(data.test.classCounts, [2, 2, 2], "a fifth of each class")
        XCTAssertEqual(data.train.classCounts, [8, 8, 8])
        XCTAssertEqual(data.train.exampleShape, [1, 6, 6])
        // The test split does not depend on anything but the data: every run is scored on the same examples.
        let again = try UserData.load(UserData.Request(path: root.path, testFraction: 0.2, channels: 1))
        XCTAssertEqual(try again.test.batch(Array(0..<6)).scalars, try data.test.batch(Array(0..<6)).scalars)
    }

    func testTrainTestAndValidationFoldersAndTheirErrors() throws {
        let root = scratch.appendingPathComponent("split")
        for split in ["train", "test", "val"] {
            let folder = try imageFolder("split/\(split)", classes: ["a", "b"], count: split == "train" ? 4 : 2)
            XCTAssertEqual(folder.deletingLastPathComponent().path, root.path)
        }
        let data = try UserData.load(UserData.Request(path: root.path, imageHeight: 4, imageWidth: 8, channels: 3))
        XCTAssertEqual(data.kind, .splitImageFolders)
        XCTAssertEqual([data.train.count, data.validation?.count, data.test.count], [8, 4, 4])
        XCTAssertEqual(data.train.exampleShape, [3, 4, 8], "resized to the size asked for, gray made RGB")
        XCTAssertThrowsError(try UserData.load(UserData.Request(path: root.path, testFraction: 0.2))) { error in
            XCTAssertTrue("\(error)".contains("has a test set of its own"), "\(error)")
        }
        XCTAssertThrowsError(try UserData.load(UserData.Request(path: root.path, labels: "y"))) { error in
            XCTAssertTrue("\(error)".contains("--inputs and --labels apply to NPZ, NPY and CSV data"), "\(error)")
        }
    }

    func testTestImagesOfAnotherSizeTakeTheTrainingSize() throws {
        let root = scratch.appendingPathComponent("sizes")
        _ = try imageFolder("sizes/train", classes: ["a", "b"], count: 2)
        let test = root.appendingPathComponent("test/a"), other = root.appendingPathComponent("test/b")
        for folder in [test, other] {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try PNGWriter.write([UInt8](repeating: 80, count: 100), width: 10, height: 10, channels: 1, to: folder.appendingPathComponent("0.png").path)
        }
        let data = try UserData.load(UserData.Request(path: root.path, channels: 1))
        XCTAssertEqual(data.train.exampleShape, [1, 6, 6])
        XCTAssertEqual(data.test.exampleShape, [1, 6, 6], "the model takes one size: the training images'")
    }

    func testArraysMustBeChannelsFirstAndNonEmpty() throws {
        func write(_ name: String, shape: [Int]) throws -> String {
            let count = shape.reduce(1, *)
            var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(shape.map(String.init).joined(separator: ", "))\(shape.count == 1 ? "," : "")), }"
            while (10 + header.count + 1) % 64 != 0 { header += " " }
            header += "\n"
            var data = Data([0x93]) + Data("NUMPY".utf8) + Data([1, 0, UInt8(header.count & 0xFF), UInt8(header.count >> 8)]) + Data(header.utf8)
            for i in 0..<count { withUnsafeBytes(of: Float(i % 2).bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            let url = scratch.appendingPathComponent(name)
            try data.write(to: url)
            return url.path
        }
        let labels = try write("y.npy", shape: [4])
        XCTAssertThrowsError(try UserData.load(UserData.Request(path: try write("nhwc.npy", shape: [4, 8, 8, 3]), labels: labels))) { error in
            XCTAssertTrue("\(error)".contains("it looks like [N, H, W, C]: transpose it"), "\(error)")
        }
        XCTAssertThrowsError(try UserData.load(UserData.Request(path: try write("empty.npy", shape: [4, 0]), labels: labels))) { error in
            XCTAssertTrue("\(error)".contains("every size after N must be positive"), "\(error)")
        }
        // [N, H, W] arrays are gray images; 4 examples of 2 classes leave 1 a class for testing at 0.5.
        XCTAssertEqual(try UserData.load(UserData.Request(path: try write("gray.npy", shape: [4, 5, 5]), testFraction: 0.5, labels: labels)).train.exampleShape, [1, 5, 5])
    }

    func testTablesKeepTheTrainingClassesInTheirTestFile() throws {
        let train = scratch.appendingPathComponent("train.csv"), test = scratch.appendingPathComponent("test.csv")
        try "x,y,kind\n1,2,cat\n3,4,dog\n5,6,cat\n7,8,owl\n".write(to: train, atomically: true, encoding: .utf8)
        try "x,y,kind\n1,2,owl\n3,4,owl\n".write(to: test, atomically: true, encoding: .utf8)
        let data = try UserData.load(UserData.Request(path: train.path, testPath: test.path))
        XCTAssertEqual(data.kind, .table)
        XCTAssertEqual(data.featureNames, ["x", "y"])
        XCTAssertEqual(data.test.classNames, ["cat", "dog", "owl"])
        XCTAssertEqual(data.test.labels, [2, 2], "owl keeps the training table's index")
        try "x,y,kind\n1,2,emu\n".write(to: test, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try UserData.load(UserData.Request(path: train.path, testPath: test.path))) { error in
            XCTAssertTrue("\(error)".contains("test.csv:2: label 'emu' is not a class of the training data"), "\(error)")
        }
        // Per-feature standardisation, fitted on the training examples only.
        let preprocessing = try data.preprocessing(fittedOn: data.train)
        XCTAssertEqual(preprocessing.kind, .features)
        XCTAssertEqual(preprocessing.normalization.mean, [4, 5])  // (1+3+5+7)/4, (2+4+6+8)/4
        XCTAssertEqual(preprocessing.normalization.standardDeviation[0], Float(5).squareRoot(), accuracy: 1e-5)  // population std of 1,3,5,7
        XCTAssertEqual(try Preprocessing.decode(preprocessing.json, file: "m"), preprocessing)
        // A table without a header keeps its first row; its text labels do not make it a header.
        let bare = scratch.appendingPathComponent("bare.csv")
        try "1,2,cat\n3,4,dog\n5,6,cat\n7,8,dog\n9,1,cat\n".write(to: bare, atomically: true, encoding: .utf8)
        let headerless = try UserData.load(UserData.Request(path: bare.path, testFraction: 0.4))
        XCTAssertEqual(headerless.train.count + headerless.test.count, 5)
        XCTAssertNil(headerless.featureNames)
    }

    func testKindIsDetectedAndAWrongLayoutSaysWhatWasExpected() throws {
        let notes = scratch.appendingPathComponent("notes.txt")
        try "hello".write(to: notes, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try UserData.load(UserData.Request(path: notes.path))) { error in
            XCTAssertTrue("\(error)".contains("notes.txt: is not data Distill reads: expected a folder of Fashion-MNIST IDX files"), "\(error)")
        }
        let empty = scratch.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        XCTAssertThrowsError(try UserData.load(UserData.Request(path: empty.path))) { error in
            XCTAssertTrue("\(error)".contains("holds no data Distill reads"), "\(error)")
        }
        XCTAssertTrue(UserData.isImageFolder(try imageFolder("folder", classes: ["a"], count: 1).path))
        XCTAssertFalse(UserData.isImageFolder(notes.path))
    }

    /// A batch prepared for one model becomes what another expects: the same values as
    /// preprocessing the raw image for it directly (gray → RGB, other normalisation, BGR).
    func testConversionMatchesPreprocessingDirectly() throws {
        let file = scratch.appendingPathComponent("gray.png")
        let pixels = (0..<16).map { UInt8($0 * 15) }
        try PNGWriter.write(pixels, width: 4, height: 4, channels: 1, to: file.path)
        let student = Preprocessing.images(channels: 1, height: 4, width: 4, normalization: Normalization(mean: [0.3], standardDeviation: [0.2]), classNames: ["a"])
        var teacher = Preprocessing.images(channels: 3, height: 4, width: 4,
                                           normalization: Normalization(mean: [0.5, 0.4, 0.3], standardDeviation: [0.5, 0.25, 0.2]), classNames: ["a"])
        teacher.channelOrder = .bgr
        let conversion = try XCTUnwrap(try teacher.conversion(from: student))
        let converted = conversion(Tensor(try student.image(contentsOf: file.path), shape: [1, 1, 4, 4]))
        let direct = try teacher.image(contentsOf: file.path)
        for (a, b) in zip(converted.scalars, direct) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        XCTAssertNil(try student.conversion(from: student), "the same preprocessing needs no conversion")
        // Resizing: a constant image stays constant.
        let small = Preprocessing.images(channels: 1, height: 2, width: 3, normalization: Normalization(mean: [0], standardDeviation: [1]), classNames: ["a"])
        let resized = try XCTUnwrap(try small.conversion(from: student))(Tensor([Float](repeating: 1, count: 16), shape: [1, 1, 4, 4]))
        XCTAssertEqual(resized.shape, [1, 1, 2, 3])
        for value in resized.scalars { XCTAssertEqual(value, 1 * 0.2 + 0.3, accuracy: 1e-6) }
        let table = Preprocessing.features(3, names: nil, normalization: Normalization(mean: [0, 0, 0], standardDeviation: [1, 1, 1]), classNames: ["a"])
        XCTAssertThrowsError(try table.conversion(from: student)) { error in XCTAssertTrue("\(error)".contains("features cannot learn from one that takes images"), "\(error)") }
    }
}
