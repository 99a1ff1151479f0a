import Foundation
import TestSupport
import XCTest

/// The user's own data through the binary: colour image folders, tables and arrays, and the
/// errors that bad data gives.
extension CommandLineTests {
    static let colours: [(String, [UInt8])] = [
        ("red", [230, 30, 30]), ("green", [30, 200, 40]), ("blue", [40, 60, 230]), ("yellow", [240, 230, 40]), ("cyan", [40, 220, 230]),
        ("magenta", [220, 40, 220]), ("white", [245, 245, 245]), ("orange", [250, 140, 20]), ("purple", [120, 40, 160]), ("teal", [20, 120, 110]),
    ]

    /// One 32×32 RGB image of class `label`: a noisy dark background and a 12×12 square of the
    /// class's colour at a random place.
    static func colourImage(label: Int, seed: inout UInt64) -> [UInt8] {
        func next() -> Int {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(seed >> 33)
        }
        var pixels = (0..<(32 * 32 * 3)).map { _ in UInt8(next() % 60) }
        let (x0, y0) = (next() % 20, next() % 20)
        let colour = colours[label].1
        for y in y0..<(y0 + 12) {
            for x in x0..<(x0 + 12) {
                for c in 0..<3 { pixels[(y * 32 + x) * 3 + c] = UInt8(max(0, min(255, Int(colour[c]) - 20 + next() % 40))) }
            }
        }
        return pixels
    }

    /// A folder `root/SPLIT/CLASS/NNN.png` of colour images for each split and count.
    func makeColourFolders(_ root: URL, splits: [(String, Int)]) throws {
        var seed: UInt64 = 7
        for (split, count) in splits {
            for (label, (name, _)) in Self.colours.enumerated() {
                let folder = root.appendingPathComponent(split).appendingPathComponent(name)
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                for i in 0..<count {
                    try PNGWriter.write(Self.colourImage(label: label, seed: &seed), width: 32, height: 32, channels: 3,
                                        to: folder.appendingPathComponent(String(format: "%03d.png", i)).path)
                }
            }
        }
    }

    func json(_ url: URL) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    /// The issue's end-to-end path on colour images: a teacher trained on a folder of 3×32×32
    /// PNGs in 10 classes (train/, val/, test/), a student distilled from it, then evaluate,
    /// predict and export through the binary, every number consistent across them.
    func testColourImagesEndToEnd() throws {
        let data = folder("colours"), teacher = folder("colour-teacher"), student = folder("colour-student"), exported = folder("colour-onnx")
        try makeColourFolders(data, splits: [("train", 30), ("val", 6), ("test", 10)])
        try FileManager.default.createDirectory(at: exported, withIntermediateDirectories: true)

        var output = try assertSucceeds(["train", "--model", "cnn-teacher", "--width", "0.5", "--data", data.path, "--epochs", "6", "--batch", "32",
                                         "--lr", "0.003", "--optimizer", "adam", "--augment", "--out", teacher.path])
        XCTAssertTrue(output.contains("on 300 images, 60 held out for validation"), output)
        let teacherAccuracy = try XCTUnwrap((try json(teacher.appendingPathComponent("evaluation.json"))["student"] as? [String: Any])?["top1"] as? Double)
        XCTAssertGreaterThan(teacherAccuracy, 0.8, "the teacher learns the colours")

        output = try assertSucceeds(["distill", "--teacher", teacher.path, "--student", "cnn-student", "--data", data.path, "--epochs", "6",
                                     "--batch", "32", "--lr", "0.003", "--optimizer", "adam", "--out", student.path])
        let evaluation = try json(student.appendingPathComponent("evaluation.json"))
        let studentAccuracy = try XCTUnwrap((evaluation["student"] as? [String: Any])?["top1"] as? Double)
        XCTAssertGreaterThan(studentAccuracy, 0.7, output)
        let classNames = try XCTUnwrap((evaluation["student"] as? [String: Any])?["classNames"] as? [String])
        XCTAssertEqual(classNames, Self.colours.map(\.0).sorted(), "class names come from the folders")

        // A teacher keeps its own size: a student at 16×16 distils from it, each batch resized for it.
        let small = try assertSucceeds(["distill", "--teacher", teacher.path, "--student", "mlp", "--data", data.path, "--image-size", "16",
                                        "--epochs", "1", "--out", folder("colour-small").path, "--quiet"])
        XCTAssertTrue(small.contains("; teacher "), small)

        // evaluate applies the run's recorded preprocessing: the same accuracy as the run reported.
        let evaluated = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try assertSucceeds(["evaluate", student.path, "--data", data.path, "--json"]).utf8)) as? [String: Any])
        XCTAssertEqual((evaluated["student"] as? [String: Any])?["top1"] as? Double, studentAccuracy)

        // predict on the test folder agrees with evaluate: the fraction whose class is the folder's name.
        let lines = try assertSucceeds(["predict", student.path, data.appendingPathComponent("test").path, "--format", "csv", "--top-k", "3"])
            .split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
        XCTAssertEqual(lines.first, ["input", "class", "probability", "class_2", "probability_2", "class_3", "probability_3"])
        XCTAssertEqual(lines.count, 101)
        let correct = lines.dropFirst().filter { $0[0].split(separator: "/").dropLast().last.map(String.init) == $0[1] }.count
        XCTAssertEqual(Double(correct) / 100, studentAccuracy, accuracy: 1e-9)

        // The exported graph with preprocessing built in takes raw pixels; predict reads its metadata.
        let onnx = exported.appendingPathComponent("student.onnx").path
        _ = try assertSucceeds(["export", student.path, "--out", onnx, "--include-preprocessing"])
        let image = data.appendingPathComponent("test/red/000.png").path
        func probability(_ model: String) throws -> Double {
            let line = try assertSucceeds(["predict", model, image, "--format", "jsonl"])
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            XCTAssertEqual(object["input"] as? String, image)
            return try XCTUnwrap(object["probability"] as? Double)
        }
        XCTAssertEqual(try probability(onnx), try probability(student.path), accuracy: 1e-5)
        // A safetensors export keeps the preprocessing record: predict reads it as it reads the run.
        let weights = exported.appendingPathComponent("student.safetensors").path
        _ = try assertSucceeds(["export", student.path, "--out", weights])
        XCTAssertEqual(try probability(weights), try probability(student.path))
        XCTAssertTrue(try assertSucceeds(["inspect", student.path]).contains("preprocessing: images 3×32×32 RGB"))

        // Transfer on the same folders: an old model of five colours re-headed for the other five;
        // the new-task model records the new classes, and predict names them.
        let old = folder("colour-old"), transferred = folder("colour-transfer")
        _ = try assertSucceeds(["train", "--model", "cnn-student", "--data", data.path, "--classes", "0-4", "--epochs", "2", "--out", old.path, "--quiet"])
        _ = try assertSucceeds(["transfer", "--from", old.path, "--data", data.path, "--old-classes", "0-4", "--classes", "5-9",
                                "--strategy", "finetune", "--steps", "20", "--out", transferred.path, "--quiet"])
        let newClasses = Array(Self.colours.map(\.0).sorted()[5...])
        let predicted = try assertSucceeds(["predict", transferred.path, data.appendingPathComponent("test").path, "--format", "csv"])
            .split(separator: "\n").dropFirst().map { String($0.split(separator: ",")[1]) }
        XCTAssertEqual(predicted.count, 100)
        XCTAssertTrue(Set(predicted).isSubset(of: newClasses), "\(Set(predicted)) are new-task classes \(newClasses)")
        try assertFails(["evaluate", student.path], mentioning: "the model takes examples of shape [3, 32, 32]")
    }

    /// Tables (CSV with named classes) and arrays (NPZ, NPY) train an MLP; predict reads rows.
    func testTablesAndArraysTrainAnMLP() throws {
        let root = folder("tables")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        var csv = "width,height,colour code,kind\r\n"
        var seed: UInt64 = 3
        func uniform() -> Double {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(seed >> 11) / Double(1 << 53)
        }
        var rows: [[Double]] = [], labels: [Int] = []
        for i in 0..<300 {
            let label = i % 3
            let row = [Double(label) * 40 + uniform() * 30, 500 - Double(label) * 100 + uniform() * 80, uniform()]
            rows.append(row)
            labels.append(label)
            csv += row.map { String(format: "%.3f", $0) }.joined(separator: ",") + "," + ["small", "medium", "large"][label] + "\r\n"
        }
        let table = root.appendingPathComponent("things.csv")
        try csv.write(to: table, atomically: true, encoding: .utf8)
        let run = root.appendingPathComponent("run")
        let output = try assertSucceeds(["train", "--model", "mlp", "--hidden", "32,16", "--data", table.path, "--epochs", "30", "--lr", "0.01",
                                         "--optimizer", "adam", "--out", run.path, "--json"])
        let result = try XCTUnwrap(output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .last { $0["event"] as? String == "result" })
        XCTAssertGreaterThan(try XCTUnwrap(result["test_accuracy"] as? Double), 0.9, output)
        let evaluation = try json(run.appendingPathComponent("evaluation.json"))
        XCTAssertEqual((evaluation["student"] as? [String: Any])?["classNames"] as? [String], ["large", "medium", "small"])
        XCTAssertTrue(try assertSucceeds(["inspect", run.path]).contains("3 features"))
        // predict picks the model's feature columns by name: the label column is ignored.
        let predicted = try assertSucceeds(["predict", run.path, table.path]).split(separator: "\n")
        XCTAssertEqual(predicted.count, 300)
        XCTAssertTrue(predicted[0].hasPrefix(table.path + ":2\t"), String(predicted[0]))

        // NPY pair and NPZ archive.
        let x = root.appendingPathComponent("x.npy"), y = root.appendingPathComponent("y.npy")
        try Self.npy(rows.flatMap { $0 }.map(Float.init), shape: [300, 3]).write(to: x)
        try Self.npy(labels.map(Float.init), shape: [300]).write(to: y)
        let arrays = try assertSucceeds(["train", "--model", "mlp", "--data", x.path, "--labels", y.path, "--epochs", "20", "--lr", "0.01",
                                         "--optimizer", "adam", "--test-fraction", "0.3", "--out", root.appendingPathComponent("npy-run").path])
        XCTAssertTrue(arrays.contains("on 189 examples, 21 held out for validation"), arrays)
        try assertFails(["train", "--model", "mlp", "--data", x.path, "--out", root.appendingPathComponent("r").path], mentioning: "--labels LABELS.npy")
        // A teacher trained on other classes (the table's named ones) is refused before training.
        try assertFails(["distill", "--teacher", run.path, "--student", "mlp", "--data", x.path, "--labels", y.path, "--out", root.appendingPathComponent("d").path],
                        mentioning: "was trained on classes large, medium, small, and the data's are 0, 1, 2")
        try assertFails(["train", "--model", "cnn-student", "--data", table.path, "--out", root.appendingPathComponent("r").path],
                        mentioning: "cnn-student takes images; feature vectors (tables) train an mlp")
    }

    /// Bad data gives one line naming the file (and line, column or class), never a trap.
    func testBadDataIsAClearError() throws {
        let root = folder("bad-data")
        let out = root.appendingPathComponent("run").path
        func write(_ name: String, _ text: String) throws -> String {
            let url = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
            return url.path
        }
        // Tables.
        let missing = try write("missing.csv", "a,b\n1,2\n")
        try assertFails(["train", "--model", "mlp", "--data", missing, "--labels", "kind", "--out", out], mentioning: "no column named 'kind'")
        let text = try write("text.csv", "a,b,kind\n1,2,x\n3,oops,y\n")
        try assertFails(["train", "--model", "mlp", "--data", text, "--out", out], mentioning: "text.csv:3: column 2 ('b'): 'oops' is not a finite number")
        let empty = try write("empty.csv", "a,b,kind\n1,,x\n")
        try assertFails(["train", "--model", "mlp", "--data", empty, "--out", out], mentioning: "empty.csv:2: column 2 ('b'): '' is not a finite number")
        // Arrays.
        let x = root.appendingPathComponent("x.npy"), y = root.appendingPathComponent("y.npy"), bad = root.appendingPathComponent("bad.npy")
        try Self.npy([Float](repeating: 1, count: 12), shape: [4, 3]).write(to: x)
        try Self.npy([0, 1, 0], shape: [3]).write(to: y)
        try Self.npy([0, 1, -2, 1], shape: [4]).write(to: bad)
        try assertFails(["train", "--model", "mlp", "--data", x.path, "--labels", y.path, "--out", out], mentioning: "has 3 labels for 4 inputs")
        try assertFails(["train", "--model", "mlp", "--data", x.path, "--labels", bad.path, "--out", out], mentioning: "bad.npy: label -2 is outside")
        // Image folders.
        let images = root.appendingPathComponent("images")
        try makeColourFolders(images, splits: [("all", 3)])
        let all = images.appendingPathComponent("all")
        try FileManager.default.createDirectory(at: all.appendingPathComponent("zebra"), withIntermediateDirectories: true)
        try assertFails(["train", "--model", "mlp", "--data", all.path, "--out", out], mentioning: "zebra: class folder has no PNG or JPEG images")
        try FileManager.default.removeItem(at: all.appendingPathComponent("zebra"))
        try PNGWriter.write([UInt8](repeating: 9, count: 4_800), width: 40, height: 40, channels: 3, to: all.appendingPathComponent("red/big.png").path)
        try assertFails(["train", "--model", "mlp", "--data", all.path, "--out", out], mentioning: "--image-size")
        try FileManager.default.removeItem(at: all.appendingPathComponent("red/big.png"))
        _ = try write("images/all/red/broken.png", "not a png")
        try assertFails(["train", "--model", "mlp", "--data", all.path, "--out", out], mentioning: "red/broken.png")
        // With --skip-bad-files the run goes on, naming the file and counting it in the epoch's line.
        let skipping = try run(["train", "--model", "mlp", "--data", all.path, "--epochs", "2", "--test-fraction", "0.34", "--skip-bad-files", "--out", out])
        XCTAssertEqual(skipping.status, 0, skipping.errors)
        XCTAssertTrue(skipping.errors.contains("skipped \(all.path)/red/broken.png"), skipping.errors)
        XCTAssertTrue(skipping.output.contains("1 bad file skipped"), skipping.output)
        // Layouts and options that do not fit the data.
        let trainOnly = root.appendingPathComponent("train-only/train/red")
        try FileManager.default.createDirectory(at: trainOnly, withIntermediateDirectories: true)
        try assertFails(["train", "--model", "mlp", "--data", trainOnly.deletingLastPathComponent().deletingLastPathComponent().path, "--out", out],
                        mentioning: "has train/ but no test/ folder")
        try assertFails(["train", "--model", "mlp", "--data", try write("notes.txt", "hello"), "--out", out], mentioning: "is not data Distill reads")
        try assertFails(["train", "--model", "mlp", "--data", all.path, "--image-size", "0x5", "--out", out], mentioning: "--image-size '0x5'")
        try assertFails(["train", "--model", "mlp", "--hidden", "64,0", "--out", out], mentioning: "--hidden '64,0'")
        // Teachers' preprocessing: once for all, or once per teacher; every value checked.
        let teachers = ["distill", "--teacher", "a.onnx", "--teacher", "b.onnx", "--out", out, "--dry-run"]
        _ = try assertSucceeds(teachers + ["--teacher-mean", "0.485,0.456,0.406", "--teacher-std", "0.5", "--teacher-std", "0.25"])
        try assertFails(teachers + ["--teacher-mean", "0.5", "--teacher-mean", "0.5", "--teacher-mean", "0.5"], mentioning: "--teacher-mean is given 3 times for 2 teachers")
        try assertFails(teachers + ["--teacher-std", "0,1,1"], mentioning: "--teacher-std '0,1,1' must be 1 to 3 comma-separated positive numbers")
        try assertFails(teachers + ["--teacher-channel-order", "grb"], mentioning: "--teacher-channel-order 'grb' is not one of rgb, bgr")
        try assertFails(teachers + ["--teacher-input-size", "224x"], mentioning: "--teacher-input-size '224x'")
        try requireData()
        try assertFails(["train", "--model", "mlp", "--test-fraction", "0.3", "--out", out], mentioning: "has a test set of its own")
    }

    /// An NPY file (version 1.0, little-endian float32) of `values`.
    static func npy(_ values: [Float], shape: [Int]) -> Data {
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(shape.map(String.init).joined(separator: ", "))\(shape.count == 1 ? "," : "")), }"
        while (10 + header.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var data = Data([0x93]) + Data("NUMPY".utf8) + Data([1, 0, UInt8(header.count & 0xFF), UInt8(header.count >> 8)]) + Data(header.utf8)
        for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        return data
    }

    /// Standard output reaches a file a line at a time: a long run's epoch lines are in its
    /// log while it runs (C's default for a file is a 4 KiB block, which held them back until
    /// the process ended). The run is killed with SIGKILL, so nothing flushes at exit.
    func testProgressLinesReachALogFileWhileTheRunGoesOn() throws {
        let root = folder("line-log")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        // Epochs of a few hundredths of a second: block-buffered, the first 4 KiB (some 60
        // epoch lines) would reach the file at once, seconds in.
        var csv = "a,b,kind\n"
        for i in 0..<3000 { csv += "\(i % 3),\(Double(i % 97) / 7),\(["x", "y", "z"][i % 3])\n" }
        let table = root.appendingPathComponent("t.csv")
        try csv.write(to: table, atomically: true, encoding: .utf8)
        let log = root.appendingPathComponent("run.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = Self.binary
        process.environment = Self.cliEnvironment
        process.arguments = ["train", "--model", "mlp", "--hidden", "128,128", "--data", table.path, "--epochs", "100000",
                             "--out", root.appendingPathComponent("run").path]
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) }; process.waitUntilExit() }
        let deadline = Date().addingTimeInterval(60)
        var data = Data()
        while Date() < deadline {
            data = (try? Data(contentsOf: log)) ?? Data()
            if String(decoding: data, as: UTF8.self).contains("epoch 2 ") || !process.isRunning { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        let text = String(decoding: data, as: UTF8.self)
        XCTAssertTrue(process.isRunning, "the run must still be going: \(text)")
        XCTAssertTrue(text.contains("epoch 1 ") && text.contains("epoch 2 "), "epoch lines in the log while the run goes on: \(text)")
        XCTAssertLessThan(data.count, 4096, "the lines came a block at a time, not a line at a time")
        XCTAssertTrue(text.hasSuffix("\n"), "whole lines only: \(text)")
    }
}
