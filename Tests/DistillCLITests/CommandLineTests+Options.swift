import Foundation
import TestSupport
import XCTest

/// The option tables against what the binary parses, every numeric option's range, resuming
/// after SIGKILL and SIGTERM, and the demo end to end.
extension CommandLineTests {

    /// Every tabled command's options as the hidden `distill options` prints them.
    func tables() throws -> [String: [[String: String]]] {
        let result = try run(["options"])
        XCTAssertEqual(result.status, 0, result.errors)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: [[String: String]]])
    }

    /// The options ArgumentParser parses for a command, from its own help dump.
    func parsedOptions(_ command: String) throws -> Set<String> {
        let result = try run([command, "--experimental-dump-help"])
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
        let arguments = ((json["command"] as? [String: Any])?["arguments"] as? [[String: Any]]) ?? []
        return Set(arguments.compactMap { argument -> String? in
            guard argument["kind"] as? String != "positional" else { return nil }
            let names = argument["names"] as? [[String: Any]] ?? []
            return names.first { $0["kind"] as? String == "long" }?["name"] as? String
        }).subtracting(["help", "experimental-dump-help", "version"])
    }

    func testTablesAndParsedCommandsAgreeOneToOne() throws {
        for (command, options) in try tables() {
            let table = Set(options.map { $0["name"]! })
            XCTAssertEqual(table.count, options.count, "\(command): an option declared twice")
            XCTAssertEqual(try parsedOptions(command), table, "\(command): the table and the parsed options differ")
        }
    }

    /// docs/configs.md shows the key tables exactly as the option tables print them (with the
    /// user's cache home, which an empty XDG_CACHE_HOME means, as the docs show it).
    func testConfigDocsShowTheOptionTables() throws {
        let result = try run(["options", "--markdown"], environment: ["XDG_CACHE_HOME": ""])
        XCTAssertEqual(result.status, 0, result.errors)
        let docs = try String(contentsOf: Self.root.appendingPathComponent("docs/configs.md"), encoding: .utf8)
        XCTAssertTrue(docs.contains(result.output), "regenerate docs/configs.md's keys with: distill options --markdown")
    }

    /// Arguments that make each command valid apart from the option under test.
    static let requiredArguments: [String: [String]] = [
        "train": ["--model", "mlp", "--out", "/tmp/distill-range", "--dry-run"],
        "distill": ["--teacher", "/nonexistent/t", "--out", "/tmp/distill-range", "--dry-run"],
        "transfer": ["--from", "/nonexistent/t", "--classes", "5-9", "--out", "/tmp/distill-range", "--dry-run"],
        "evaluate": ["/nonexistent/model"],
        "predict": ["/nonexistent/model", "/nonexistent/image.png"],
        "embed": ["/nonexistent/model", "/nonexistent/texts.txt", "--out", "/tmp/distill-range.npy"],
        "export": ["/nonexistent/model", "--out", "/tmp/distill-range.onnx"],
        "quantize": ["/nonexistent/model", "--out", "/tmp/distill-range-int8"],
        "inspect": ["mlp"],
        "demo": ["--dry-run"],
    ]

    /// 0, −1, nan, inf and 1e30 for every numeric option of every command: in range it passes
    /// (or fails later for a reason that is not the option), out of range it fails with one
    /// line naming the option and exit 1; never a signal.
    func testEveryNumericOptionIsRangeChecked() throws {
        var tried = 0
        for (command, options) in try tables() {
            for option in options where ["integer", "number", "numbers", "positive numbers"].contains(option["kind"]!) {
                let name = option["name"]!
                let base = Self.requiredArguments[command]!
                for value in ["0", "-1", "nan", "inf", "1e30"] {
                    var arguments = [command] + base
                    // Options with a value of their own in `base` take the new one instead.
                    if let at = arguments.firstIndex(of: "--" + name) { arguments.removeSubrange(at...(at + 1)) }
                    arguments.append("--\(name)=\(value)")
                    let result = try run(arguments)
                    tried += 1
                    let context = "\(arguments.joined(separator: " ")): exit \(result.status), \(result.errors)"
                    XCTAssertTrue(result.status == 0 || result.status == 1, "no signal, exit 0 or 1: \(context)")
                    XCTAssertFalse(result.errors.contains("Fatal error") || result.errors.contains("Backtrace"), context)
                    if result.status != 0 && result.errors.contains("--" + name) {
                        XCTAssertTrue(result.errors.hasPrefix("Error: "), context)
                    }
                    let parsedFine = !result.errors.contains("--" + name)
                    if value == "nan" || value == "inf" || value == "-1" {
                        XCTAssertFalse(parsedFine, "\(value) is never in range: \(context)")
                    }
                    if parsedFine && result.status != 0 {
                        XCTAssertEqual(result.errors.split(separator: "\n").count, 1, "one line: \(context)")
                    }
                }
            }
        }
        XCTAssertGreaterThan(tried, 150)
    }

    /// Starts the binary and returns it with a reader of its JSON lines.
    func start(_ arguments: [String]) throws -> (Process, FileHandle) {
        let process = Process()
        process.executableURL = CommandLineTests.binary
        process.environment = Self.cliEnvironment
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        return (process, out.fileHandleForReading)
    }

    /// Reads JSON lines until `stop` says so (then kills with `signal`) or the process ends.
    func runUntil(_ arguments: [String], signal: Int32, stop: ([String: Any]) -> Bool) throws -> Int32 {
        let (process, reader) = try start(arguments)
        var buffer = Data()
        reading: while true {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            buffer.append(chunk)
            while let newline = buffer.firstIndex(of: 10) {
                let line = buffer[buffer.startIndex..<newline]
                buffer = Data(buffer[(newline + 1)...])
                if let event = try? JSONSerialization.jsonObject(with: line) as? [String: Any], stop(event) {
                    kill(process.processIdentifier, signal)
                    break reading
                }
            }
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// A run killed with SIGKILL between checkpoints, killed again while a checkpoint is being
    /// written, and stopped with SIGTERM, each resumed with --resume, ends with a model file
    /// byte-identical to an uninterrupted run's.
    func testKilledAndResumedRunEndsByteIdentical() throws {
        try requireData()
        let straight = folder("straight"), killed = folder("killed")
        let arguments = ["train", "--model", "cnn-student", "--classes", "0-4", "--labels-per-class", "300", "--epochs", "3", "--batch", "64",
                         "--checkpoint-every", "5", "--json"]
        XCTAssertEqual(try runUntil(arguments + ["--out", straight.path], signal: SIGKILL) { _ in false }, 0)
        let reference = try Data(contentsOf: straight.appendingPathComponent("model.safetensors"))
        // 5 × 270 images = 1,350 for training (150 held out): 22 steps an epoch, 66 in all.
        var generator = SystemRandomNumberGenerator()
        let seed = UInt64.random(in: 0..<1_000, using: &generator)
        var seeded = seed
        func next(_ range: Range<Int>) -> Int {
            seeded = seeded &* 6364136223846793005 &+ 1442695040888963407
            return range.lowerBound + Int((seeded >> 33) % UInt64(range.count))
        }
        let between = [next(1..<60)].map { $0 % 5 == 0 ? $0 + 2 : $0 }[0]
        let resume = ["train", "--resume", killed.path, "--json"]
        print("seed \(seed): SIGKILL at step \(between), then while a checkpoint is written")
        XCTAssertEqual(try runUntil(arguments + ["--out", killed.path], signal: SIGKILL) { ($0["step"] as? Int) == between && $0["event"] as? String == "step" },
                       SIGKILL)
        var afterWriting = 0
        XCTAssertEqual(try runUntil(resume, signal: SIGKILL) { event in
            guard event["event"] as? String == "checkpoint", event["written"] as? Bool == false else { return false }
            afterWriting = event["step"] as? Int ?? 0
            return afterWriting > between
        }, SIGKILL)
        XCTAssertGreaterThan(afterWriting, between)
        let status = try runUntil(resume, signal: SIGTERM) { ($0["step"] as? Int).map { $0 > afterWriting + 3 } ?? false }
        XCTAssertEqual(status, 128 + SIGTERM, "SIGTERM writes a checkpoint and exits 143")
        XCTAssertEqual(try runUntil(resume, signal: SIGKILL) { _ in false }, 0)
        let resumed = try Data(contentsOf: killed.appendingPathComponent("model.safetensors"))
        XCTAssertTrue(resumed == reference, "seed \(seed): the resumed run's model file is the uninterrupted run's, byte for byte")
        func losses(_ run: URL) throws -> [Double] {
            try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").map {
                try XCTUnwrap((try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["loss"] as? Double)
            }
        }
        XCTAssertEqual(try losses(killed), try losses(straight), "each epoch once, with the same mean loss")

        // Resuming with an option that changes results is refused; so is a folder of another command.
        try assertFails(["train", "--resume", killed.path, "--lr", "0.1"], mentioning: "only --checkpoint-every, --dry-run, --json, --quiet, --threads may be added")
        try assertFails(["distill", "--resume", killed.path], mentioning: "it is a train run")
        try assertFails(["train", "--resume", killed.path, ""], mentioning: "may be added, not ''")
        try assertFails(["train", "--resume", killed.path, "="], mentioning: "may be added, not '='")
    }

    /// `distill demo --quick` end to end: the comparison table and a report with all three runs.
    func testQuickDemo() throws {
        try requireData()
        let out = folder("demo")
        let result = try run(["demo", "--quick", "--out", out.path])
        XCTAssertEqual(result.status, 0, result.errors)
        for row in ["cnn-teacher (all labels)", "cnn-student, 900 labels", "cnn-student, distilled", "Distillation: +"] {
            XCTAssertTrue(result.output.contains(row), "\(row) in \(result.output)")
        }
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        for run in ["teacher", "scratch", "distilled"] { XCTAssertTrue(html.contains(">\(run)<") || html.contains(run), run) }
        for folder in ["teacher", "scratch", "distilled"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(folder + "/model.safetensors").path), folder)
        }
        XCTAssertTrue(html.contains("<table class=\"comparison\">"), "the three runs compared in one table")
        // Headless Chromium renders it: curves with axis ticks, bars, the confusion matrix, and
        // one point per run in the accuracy-against-latency scatter.
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].contains { FileManager.default.fileExists(atPath: $0) }
        try requireTool(chromium, "chromium is not installed (make test installs it)")
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/bin/bash")
        check.arguments = [Self.root.appendingPathComponent("scripts/check_report.sh").path, out.appendingPathComponent("report.html").path]
        let pipe = Pipe()
        check.standardOutput = pipe
        try check.run()
        let said = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        check.waitUntilExit()
        XCTAssertEqual(check.terminationStatus, 0, said)
        XCTAssertTrue(said.contains("3 scatter points, 1 comparison tables"), said)
    }
}

extension CommandLineTests {
    /// `--seeds` runs one training per seed in OUT/seed-N and reports mean ± std; resuming a
    /// finished set of seeds keeps their results.
    func testSeedsGiveMeanAndDeviation() throws {
        try requireData()
        let out = folder("seeds")
        let output = try assertSucceeds(["train", "--model", "mlp", "--classes", "0-1", "--labels-per-class", "50", "--epochs", "2",
                                         "--seeds", "0-2", "--quiet", "--out", out.path])
        XCTAssertTrue(output.contains("test accuracy over 3 seeds: ") && output.contains(" ± "), output)
        for seed in 0...2 {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("seed-\(seed)/model.safetensors").path), "seed \(seed)")
        }
        let results = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("results.json"))) as? [String: [Double]])
        XCTAssertEqual(results["final_test_accuracy"]?.count, 3)
        XCTAssertNotEqual(Set(results["final_test_accuracy"]!).count, 1, "seeds change the run")
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("mean ± std"), "the report's comparison ends with mean ± std")
        XCTAssertEqual(try assertSucceeds(["train", "--resume", out.path, "--quiet"]), output, "finished seeds keep their results")
    }
}

extension CommandLineTests {
    /// `transfer` stopped with SIGTERM in its third strategy-and-seed run and resumed gives the
    /// results of an uninterrupted run: finished runs are kept, the stopped one continues
    /// from its checkpoint.
    func testTransferResumesStrategyBySeed() throws {
        try requireData()
        let old = folder("transfer-old"), straight = folder("transfer-straight"), stopped = folder("transfer-stopped")
        _ = try assertSucceeds(["train", "--model", "mlp", "--classes", "0-4", "--labels-per-class", "40", "--epochs", "2", "--quiet", "--out", old.path])
        let arguments = ["transfer", "--from", old.path, "--head", "3", "--classes", "5-9", "--labels-per-class", "10", "--strategy", "head,lwf",
                         "--seeds", "0-1", "--steps", "20", "--checkpoint-every", "4", "--json"]
        XCTAssertEqual(try runUntil(arguments + ["--out", straight.path], signal: SIGKILL) { _ in false }, 0)
        var steps = 0
        let status = try runUntil(arguments + ["--out", stopped.path], signal: SIGTERM) { event in
            if event["event"] as? String == "step" { steps += 1 }
            return steps == 51  // the third run (lwf, seed 0), step 11
        }
        XCTAssertEqual(status, 128 + SIGTERM)
        XCTAssertTrue(FileManager.default.fileExists(atPath: stopped.appendingPathComponent("freeze/seed-1/result.json").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: stopped.appendingPathComponent("lwf/seed-0/result.json").path))
        XCTAssertEqual(try runUntil(["transfer", "--resume", stopped.path, "--json"], signal: SIGKILL) { _ in false }, 0)
        let results = { (run: URL) in try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("results.json"))) as? NSDictionary }
        XCTAssertEqual(try results(stopped), try results(straight), "the same accuracies for every strategy and seed")
    }
}

extension CommandLineTests {
    /// Resuming a folder whose config.yaml no longer matches its checkpoint is a one-line
    /// error naming what differs.
    func testResumeRefusesAChangedConfiguration() throws {
        try requireData()
        let out = folder("changed")
        _ = try assertSucceeds(["train", "--model", "mlp", "--classes", "0-1", "--labels-per-class", "50", "--epochs", "1", "--quiet", "--out", out.path])
        let config = out.appendingPathComponent("config.yaml")
        let text = try String(contentsOf: config, encoding: .utf8)
        try text.replacingOccurrences(of: "lr: 0.05", with: "lr: 0.1").write(to: config, atomically: true, encoding: .utf8)
        try assertFails(["train", "--resume", out.path], mentioning: "--lr is 0.1 here but 0.05 in the checkpoint")
        XCTAssertEqual(try run(["train", "--resume", out.path]).errors.split(separator: "\n").count, 1)
    }
}

extension CommandLineTests {
    /// A ResNet's classifier is its `fc` property, not a Sequential's child: transfer finds it
    /// by default (the last Linear layer) and replaces it; the new-task model is a resnet8 with
    /// five classes.
    func testTransferFromAResNetReplacesItsClassifier() throws {
        try requireData()
        let old = folder("transfer-resnet-old"), new = folder("transfer-resnet-new")
        _ = try assertSucceeds(["train", "--model", "resnet8", "--width", "0.25", "--classes", "0-4", "--labels-per-class", "20",
                                "--epochs", "1", "--quiet", "--out", old.path])
        let output = try assertSucceeds(["transfer", "--from", old.path, "--old-classes", "0-4", "--classes", "5-9", "--labels-per-class", "10",
                                         "--strategy", "head,lwf", "--steps", "4", "--out", new.path])
        XCTAssertTrue(output.contains("lwf"), output)
        for strategy in ["freeze", "lwf"] {
            let inspected = try assertSucceeds(["inspect", new.appendingPathComponent(strategy + ".safetensors").path])
            XCTAssertTrue(inspected.contains("layer3.0.downsample") && inspected.contains("[1, 5]") && inspected.contains("5 classes: Sandal"), inspected)
        }
        try assertFails(["transfer", "--from", old.path, "--head", "layer1", "--classes", "5-9", "--steps", "1", "--out", folder("transfer-resnet-bad").path],
                        mentioning: "not a Linear")
    }
}

extension CommandLineTests {
    /// `--matmul-precision bfloat16` trains (recorded in config.yaml, the run ends with a
    /// model) where the CPU has bfloat16 products, and fails with one line and exit 1 where it
    /// has not; a value outside the choices is refused.
    func testMatmulPrecisionIsAnOptionOfTheRun() throws {
        try requireData()
        let out = folder("bfloat16")
        let result = try run(["train", "--model", "mlp", "--classes", "0-1", "--labels-per-class", "50", "--epochs", "1",
                              "--matmul-precision", "bfloat16", "--quiet", "--out", out.path])
        if result.status == 0 {
            let config = try String(contentsOf: out.appendingPathComponent("config.yaml"), encoding: .utf8)
            XCTAssertTrue(config.contains("matmul-precision: bfloat16"), config)
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path))
        } else {
            XCTAssertEqual(result.status, 1, result.errors)
            XCTAssertTrue(result.errors.contains("no bfloat16 matrix products"), result.errors)
        }
        let bad = try run(["train", "--model", "mlp", "--matmul-precision", "half", "--out", out.path, "--dry-run"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.errors.contains("matmul-precision"), bad.errors)
    }
}
