import Foundation
import TestSupport
import XCTest

/// Runs the built `distill` binary: user mistakes give a non-zero exit and a one-line reason.
final class CommandLineTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var binary: URL {
        #if DEBUG
        root.appendingPathComponent(".build/debug/distill")
        #else
        root.appendingPathComponent(".build/release/distill")
        #endif
    }

    /// The CLI's cache home in tests (`XDG_CACHE_HOME`): one temporary folder for the test
    /// process, so that runs without `--cache-directory` keep their teacher caches there and
    /// not in the user's ~/.cache/distill (test runs had left some 200 cache files there). Tests find
    /// MiniLM by this process's own environment, not the CLI's.
    static let cacheHome: String = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cli-cache-home-\(getpid())")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.path
    }()

    /// This process's environment with `cacheHome` as the cache home: what every CLI process
    /// (and mpirun, whose ranks inherit it) a test starts gets.
    static var cliEnvironment: [String: String] {
        ProcessInfo.processInfo.environment.merging(["XDG_CACHE_HOME": cacheHome]) { _, added in added }
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(atPath: cacheHome)
        super.tearDown()
    }

    /// Runs the binary (or another built `executable`) with `arguments`, and `environment` added
    /// to this process's (with `cacheHome` as its cache home unless `environment` names one).
    func run(_ arguments: [String], environment: [String: String] = [:], executable: URL = CommandLineTests.binary) throws -> (status: Int32, output: String, errors: String) {
        try requireTool(FileManager.default.fileExists(atPath: executable.path), "\(executable.path) is not built")
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = Self.cliEnvironment.merging(environment) { _, added in added }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output, errors)
    }

    func assertFails(_ arguments: [String], mentioning fragment: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try run(arguments)
        XCTAssertNotEqual(result.status, 0, "\(arguments) must fail", file: file, line: line)
        XCTAssertTrue(result.errors.contains(fragment), "expected '\(fragment)' in: \(result.errors)", file: file, line: line)
        XCTAssertFalse(result.errors.contains("Fatal error") || result.errors.contains("Backtrac"), "no trap for a user mistake", file: file, line: line)
    }

    func testHelpListsTheSubcommands() throws {
        let result = try run(["--help"])
        XCTAssertEqual(result.status, 0)
        for command in ["train", "distill", "transfer", "evaluate", "report", "export", "quantize", "inspect", "demo"] { XCTAssertTrue(result.output.contains(command), command) }
    }

    func testInspectPrintsASummary() throws {
        let result = try run(["inspect", "cnn-student"])
        XCTAssertEqual(result.status, 0)
        XCTAssertTrue(result.output.contains("total parameters: 52,138"), result.output)
    }

    static var hasData: Bool { FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist") }

    /// Skips without the data set, except in CI (CI=true), where a missing data set fails.
    func requireData() throws {
        try requireTool(Self.hasData, "dataset-fashion-mnist is not installed (make test installs it)")
    }

    func folder(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(name)-\(UUID())")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func assertSucceeds(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let result = try run(arguments)
        XCTAssertEqual(result.status, 0, "\(arguments): \(result.errors)", file: file, line: line)
        return result.output
    }

    func testEverySubcommandHasHelp() throws {
        for command in ["train", "distill", "transfer", "run", "evaluate", "report", "export", "quantize", "inspect", "demo"] {
            let result = try run([command, "--help"])
            XCTAssertEqual(result.status, 0, command)
            XCTAssertTrue(result.output.contains("USAGE: distill \(command)"), "\(command): \(result.output)")
        }
        XCTAssertTrue(try run(["distill", "--help"]).output.contains("--teacher-architecture"))
        XCTAssertTrue(try run(["export", "--help"]).output.contains("--fold-batchnorm"))
    }

    /// Every subcommand's success path on a small Fashion-MNIST subset: train a teacher on
    /// classes 0-4, export it (safetensors and ONNX), evaluate and inspect both, distil a
    /// student from the run folder and from the ONNX file, transfer to classes 5-9, rebuild
    /// a report over two runs, and repeat a run from its resolved config.yaml.
    func testEverySubcommandSucceedsOnASubset() throws {
        try requireData()
        let teacher = folder("teacher"), cache = folder("cache")
        // train: a run folder with everything the issue lists.
        var output = try assertSucceeds(["train", "--model", "mlp", "--classes", "0-4", "--labels-per-class", "40", "--epochs", "3",
                                         "--optimizer", "adam", "--lr", "0.003", "--schedule", "step", "--out", teacher.path])
        XCTAssertTrue(output.contains("test accuracy"), output)
        for file in ["config.yaml", "metrics.jsonl", "checkpoint.safetensors", "best.safetensors", "model.safetensors", "evaluation.json", "report.html"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: teacher.appendingPathComponent(file).path), file)
        }
        XCTAssertTrue(output.contains("for the model selected on validation"), output)
        XCTAssertTrue(try FileManager.default.contentsOfDirectory(atPath: teacher.path).contains { $0.hasPrefix("events.out.tfevents.") }, "TensorBoard events")
        // TensorBoard's own reader finds every epoch's scalars.
        let reader = Process()
        reader.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        reader.arguments = ["python3", Self.root.appendingPathComponent("scripts/read_tensorboard.py").path, teacher.path]
        let scalars = Pipe()
        reader.standardOutput = scalars
        try reader.run()
        let read = scalars.fileHandleForReading.readDataToEndOfFile()
        reader.waitUntilExit()
        try requireTool(reader.terminationStatus != 2, "python3 with tensorboard is not installed (make test installs it)")
        do {
            XCTAssertEqual(reader.terminationStatus, 0)
            let tags = try XCTUnwrap(try JSONSerialization.jsonObject(with: read) as? [String: [[Double]]])
            for tag in ["loss/total", "loss/ce", "learning_rate", "accuracy/validation"] { XCTAssertEqual(tags[tag]?.count, 3, tag) }
        }
        let config = try String(contentsOf: teacher.appendingPathComponent("config.yaml"), encoding: .utf8)
        for line in ["command: train", "model: mlp", "optimizer: adam", "schedule: step", "lr: 0.003", "classes: 0-4", "weight-decay: 0.0005"] {
            XCTAssertTrue(config.contains(line), "\(line) in \(config)")
        }
        XCTAssertEqual(try String(contentsOf: teacher.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").count, 3)

        // export: safetensors and ONNX; inspect and evaluate read both.
        let onnx = teacher.appendingPathComponent("teacher.onnx").path
        output = try assertSucceeds(["export", teacher.path, "--out", onnx])
        XCTAssertTrue(output.contains("as ONNX (opset 17"), output)
        output = try assertSucceeds(["export", teacher.path, "--format", "safetensors", "--out", teacher.appendingPathComponent("copy.safetensors").path])
        XCTAssertTrue(output.contains("mlp, "), output)
        output = try assertSucceeds(["inspect", onnx])
        XCTAssertTrue(output.contains("total parameters: 101,125") && output.contains("Gemm ×2"), output)
        output = try assertSucceeds(["inspect", teacher.path])
        XCTAssertTrue(output.contains("total parameters: 101,125"), output)
        let native = try assertSucceeds(["evaluate", teacher.path, "--classes", "0-4"])
        let viaONNX = try assertSucceeds(["evaluate", onnx, "--classes", "0-4"])
        XCTAssertEqual(native.split(separator: "\n").first, viaONNX.split(separator: "\n").first, "same accuracy through ONNX")
        XCTAssertTrue(native.contains("Pullover"), native)

        // distill: from the run folder (KD + DKD, 40 labels a class) and from the ONNX file with no
        // labels at all, as JSON lines.
        let student = folder("student"), fromONNX = folder("onnx-student")
        output = try assertSucceeds(["distill", "--teacher", teacher.path, "--student", "cnn-student", "--method", "kd,dkd", "--classes", "0-4",
                                     "--labels-per-class", "40", "--epochs", "1", "--cache-directory", cache.path, "--quiet", "--out", student.path])
        XCTAssertEqual(output.split(separator: "\n").count, 1, "--quiet prints one line: \(output)")
        XCTAssertTrue(output.contains("test accuracy"), output)
        output = try assertSucceeds(["distill", "--teacher", onnx, "--classes", "0-4", "--unlabeled", "--epochs", "1",
                                     "--cache-directory", cache.path, "--json", "--out", fromONNX.path])
        let events = output.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertTrue(events.allSatisfy { $0 != nil }, "every line is JSON: \(output)")
        XCTAssertTrue(events.contains { $0?["event"] as? String == "epoch" }, output)
        XCTAssertTrue(events.contains { $0?["event"] as? String == "step" }, output)
        XCTAssertEqual(events.last??["event"] as? String, "result")
        XCTAssertGreaterThan(events.last??["test_accuracy"] as? Double ?? 0, 0.5)
        // No labels: no validation split, so no selected model; the final one is used.
        for file in ["config.yaml", "metrics.jsonl", "checkpoint.safetensors", "model.safetensors", "evaluation.json", "report.html"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: fromONNX.appendingPathComponent(file).path), file)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: fromONNX.appendingPathComponent("best.safetensors").path))

        // transfer: the mlp's head is layer "3"; "head" is freeze's other name; each strategy's
        // new-task model is saved.
        let transfer = folder("transfer")
        output = try assertSucceeds(["transfer", "--from", teacher.path, "--head", "3", "--classes", "5-9", "--old-classes", "0-4",
                                     "--labels-per-class", "10", "--strategy", "head,lwf", "--steps", "30", "--out", transfer.path])
        XCTAssertTrue(output.contains("freeze: new task") && output.contains("lwf: new task"), output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: transfer.appendingPathComponent("lwf.safetensors").path))
        output = try assertSucceeds(["evaluate", transfer.appendingPathComponent("freeze.safetensors").path, "--classes", "5-9"])
        XCTAssertTrue(output.contains("Sandal"), output)

        // report over two runs.
        let report = teacher.appendingPathComponent("both.html").path
        _ = try assertSucceeds(["report", student.path, fromONNX.path, "--out", report])
        let html = try String(contentsOfFile: report, encoding: .utf8)
        XCTAssertTrue(html.contains("<svg") && html.contains(student.lastPathComponent) && html.contains(fromONNX.lastPathComponent))

        // run: the student's resolved config repeats it; flags override the file.
        let repeated = folder("repeated")
        output = try assertSucceeds(["run", student.appendingPathComponent("config.yaml").path, "--out", repeated.path, "--quiet"])
        XCTAssertTrue(output.contains("test accuracy"), output)
        let again = try String(contentsOf: repeated.appendingPathComponent("config.yaml"), encoding: .utf8)
        XCTAssertTrue(again.contains("out: \(repeated.path)") && again.contains("method:\n- kd\n- dkd"), again)
        let first = try String(contentsOf: student.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        let second = try String(contentsOf: repeated.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        let loss = { (text: String) in (try? JSONSerialization.jsonObject(with: Data(text.split(separator: "\n")[0].utf8)) as? [String: Any])?["loss"] as? Double }
        XCTAssertEqual(loss(first), loss(second), "the repeated run computes the same loss")
    }

    /// The example experiments in experiments/ are valid: each gets past the schema, the
    /// flags and validation, and stops only at the (overridden, missing) data folder.
    func testExampleExperimentsAreValid() throws {
        let examples = Self.root.appendingPathComponent("experiments")
        let files = try FileManager.default.contentsOfDirectory(atPath: examples.path).filter { $0.hasSuffix(".yaml") }
        XCTAssertGreaterThanOrEqual(files.count, 4)
        for file in files {
            try assertFails(["run", examples.appendingPathComponent(file).path, "--data", "/nonexistent/fmnist", "--out", "/tmp/unused"],
                            mentioning: "/nonexistent/fmnist: data does not exist")
        }
    }

    /// Feature methods from an ONNX teacher, its layers named by node output (the PyTorch
    /// lenet5 fixture, exported by torch.onnx.export), on all 60,000 images for one epoch.
    func testFeatureDistillationFromAnONNXTeacher() throws {
        try requireData()
        let teacher = Self.root.appendingPathComponent("Tests/ModelFormatsTests/Fixtures/onnx/teacher.onnx").path
        let out = folder("onnx-fitnets"), cache = folder("onnx-cache")
        try assertFails(["distill", "--teacher", teacher, "--method", "at", "--out", out.path], mentioning: "name the teacher's layers with --teacher-hint")
        try assertFails(["distill", "--teacher", teacher, "--method", "fitnets", "--teacher-hint", "nope", "--epochs", "1", "--out", out.path],
                        mentioning: "no module or parameter named 'nope' (modules: conv2d, relu, max_pool2d")
        let output = try assertSucceeds(["distill", "--teacher", teacher, "--method", "kd,fitnets", "--teacher-hint", "max_pool2d", "--epochs", "1",
                                         "--cache-directory", cache.path, "--quiet", "--out", out.path])
        XCTAssertTrue(output.contains("test accuracy") && output.contains("teacher 87.86%"), output)
        let config = try String(contentsOf: out.appendingPathComponent("config.yaml"), encoding: .utf8)
        XCTAssertTrue(config.contains("teacher-hint: max_pool2d"), config)
    }

    func testExperimentFileMistakesNameTheKeyAndLine() throws {
        let directory = folder("yaml")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        func experiment(_ text: String) throws -> String {
            let path = directory.appendingPathComponent("\(UUID()).yaml").path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        // (file, what the error must say after "FILE"), the line number included where there is one.
        let cases = [
            ("command: distill\nteacher: runs/t\nepoch: 3\nout: x\n", ":3: unknown key 'epoch' for a distill experiment (did you mean 'epochs'?)"),
            ("command: train\nmodel: mlp\n\nepochs: three\nout: x\n", ":4: key 'epochs': expected an integer, got 'three'"),
            ("command: distill\nalpha: 1.5\nout: x\n", ":2: key 'alpha': must be 0 to 1, got 1.5"),
            ("command: train\nmodel: mlp\nclasses: 9-3\nout: x\n", ":3: key 'classes': '9-3': the range is empty"),
            ("command: distill\nmethod: [kd, magic]\nout: x\n", ":2: key 'method': 'magic' is not one of"),
            ("command: distill\nweight: 3\nout: x\n", ":2: key 'weight': expected a mapping"),
            ("command: train\nmodel: mlp\n", ":1: missing key 'out'"),
            ("command: evaluate\n", ":1: key 'command' must be one of train, distill, transfer"),
            ("command: train\nmodel: [mlp\n", ": not valid YAML"),
        ]
        for (text, message) in cases {
            let path = try experiment(text)
            try assertFails(["run", path], mentioning: path + message)
        }
        try assertFails(["run", directory.appendingPathComponent("missing.yaml").path], mentioning: "missing.yaml: does not exist")
        // A command-line flag overrides the file, and is checked like any flag.
        let path = try experiment("command: train\nmodel: mlp\nepochs: 2\nout: x\n")
        try assertFails(["run", path, "--epochs", "0"], mentioning: "--epochs must be 1 to 100000, got 0")
        try assertFails(["run", path, "--model", "resnet9000"], mentioning: "--model 'resnet9000' is not one of")
    }

    func testUserMistakesAreClearErrors() throws {
        try assertFails(["inspect", "resnet9000"], mentioning: "unknown model 'resnet9000'")
        try assertFails(["train", "--model", "nope", "--out", "/tmp/x"], mentioning: "--model 'nope' is not one of")
        try assertFails(["train", "--model", "mlp", "--data", "/nonexistent/fmnist", "--out", "/tmp/x"], mentioning: "/nonexistent/fmnist")
        try assertFails(["train", "--model", "mlp", "--classes", "7-3", "--out", "/tmp/x"], mentioning: "the range is empty")
        try assertFails(["train", "--model", "mlp", "--epochs", "0", "--out", "/tmp/x"], mentioning: "--epochs must be 1 to 100000, got 0")
        try assertFails(["distill", "--teacher", "/nonexistent/teacher", "--out", "/tmp/x"], mentioning: "/nonexistent/teacher: does not exist")
        try assertFails(["distill", "--teacher", "/nonexistent/teacher", "--method", "magic", "--out", "/tmp/x"], mentioning: "--method 'magic' is not one of")
        try assertFails(["transfer", "--from", "/nonexistent/old", "--classes", "3-7", "--out", "/tmp/x"], mentioning: "overlap on 3, 4")
        try assertFails(["evaluate", "/nonexistent/run"], mentioning: "/nonexistent/run: does not exist")
        try assertFails(["export", "/nonexistent/run", "--format", "tflite", "--out", "/tmp/x"], mentioning: "--format 'tflite' is not one of onnx, safetensors")
        try assertFails(["report", "/nonexistent/run"], mentioning: "/nonexistent/run/metrics.jsonl")
        try assertFails(["transfer", "--from", "/nonexistent/old", "--classes", "5-9", "--strategy", "magic", "--out", "/tmp/x"], mentioning: "--strategy 'magic' is not one of")
        let corrupt = FileManager.default.temporaryDirectory.appendingPathComponent("corrupt-\(UUID()).safetensors")
        try Data("not a model at all".utf8).write(to: corrupt)
        defer { try? FileManager.default.removeItem(at: corrupt) }
        try assertFails(["distill", "--teacher", corrupt.path, "--out", "/tmp/x"], mentioning: "header length")
        try assertFails(["evaluate", corrupt.path], mentioning: corrupt.path)
        let corruptONNX = FileManager.default.temporaryDirectory.appendingPathComponent("corrupt-\(UUID()).onnx")
        try Data([0x08, 0x07, 0x3A, 0xFF, 0x01, 0x00]).write(to: corruptONNX)
        defer { try? FileManager.default.removeItem(at: corruptONNX) }
        try assertFails(["distill", "--teacher", corruptONNX.path, "--out", "/tmp/x"], mentioning: "is not a valid ONNX model")
        try assertFails(["distill", "--teacher", "/nonexistent/teacher.onnx", "--out", "/tmp/x"], mentioning: "/nonexistent/teacher.onnx: does not exist")
    }
}
