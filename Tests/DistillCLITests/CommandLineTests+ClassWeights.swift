import Foundation
import TestSupport
import XCTest

/// Imbalanced data on the command line: `--class-weights` and the per-class scores.
extension CommandLineTests {
    /// The weights a run uses are printed and written to its folder, recorded in config.yaml
    /// and the checkpoint (a changed value is refused on resume), and mistakes name the
    /// option; results carry macro-F1, and evaluate prints precision, recall, F1 and support.
    func testClassWeightsAndPerClassScores() throws {
        try requireData()
        let out = folder("weighted"), balanced = folder("balanced"), transfer = folder("weighted-transfer")
        var output = try assertSucceeds(["train", "--model", "mlp", "--classes", "0,6", "--labels-per-class", "60", "--epochs", "1",
                                         "--class-weights", "1,3", "--out", out.path])
        XCTAssertTrue(output.contains("class weights: T-shirt/top = 1, Shirt = 3\n"), output)
        XCTAssertTrue(output.contains("%, macro-F1 0."), output)
        let written = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("class-weights.json"))) as? [[String: Any]])
        XCTAssertEqual(written.map { $0["class"] as? String }, ["T-shirt/top", "Shirt"])
        XCTAssertEqual(written.map { $0["weight"] as? Double }, [1, 3])
        let config = out.appendingPathComponent("config.yaml")
        let text = try String(contentsOf: config, encoding: .utf8)
        XCTAssertTrue(text.contains("class-weights: 1,3\n"), text)
        try text.replacingOccurrences(of: "class-weights: 1,3", with: "class-weights: 2,3").write(to: config, atomically: true, encoding: .utf8)
        try assertFails(["train", "--resume", out.path], mentioning: "--class-weights is 2,3 here but 1,3 in the checkpoint")

        // Balanced weights with equal labels per class are all 1; the JSON result has macro-F1.
        output = try assertSucceeds(["train", "--model", "mlp", "--classes", "0,6", "--labels-per-class", "60", "--epochs", "1",
                                     "--class-weights", "balanced", "--json", "--out", balanced.path])
        let result = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(output.split(separator: "\n").last!.utf8)) as? [String: Any])
        XCTAssertTrue((0...1).contains(result["macro_f1"] as? Double ?? -1), "\(result)")
        XCTAssertNotNil(result["selected_macro_f1"] as? Double, "\(result)")

        // evaluate: the headline with macro-F1, then a line per class.
        output = try assertSucceeds(["evaluate", out.path, "--classes", "0,6"])
        XCTAssertTrue(output.hasPrefix("accuracy ") && output.contains("  macro-F1 0."), output)
        let shirt = try XCTUnwrap(output.split(separator: "\n").first { $0.hasPrefix("  Shirt ") }, output).split(separator: " ")
        XCTAssertEqual(shirt.count, 5, "name, precision, recall, F1, support: \(shirt)")
        XCTAssertEqual(shirt.last, "1000", "1,000 test images of each class")
        XCTAssertTrue(shirt[1...3].allSatisfy { Double($0).map { (0...1).contains($0) } ?? false }, "\(shirt)")

        // transfer: the new task's cross-entropy is weighted; its macro-F1 is reported.
        output = try assertSucceeds(["transfer", "--from", out.path, "--head", "3", "--old-classes", "0,6", "--classes", "1,2", "--labels-per-class", "10",
                                     "--strategy", "head", "--steps", "10", "--class-weights", "1,2", "--out", transfer.path])
        XCTAssertTrue(output.contains("class weights: Trouser = 1, Pullover = 2\n") && output.contains("freeze: new task") && output.contains("(macro-F1 0."), output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: transfer.appendingPathComponent("freeze/seed-0/class-weights.json").path))

        // Mistakes name the option and the value.
        let base = ["--model", "mlp", "--epochs", "1", "--out", folder("unused").path]
        try assertFails(["train", "--classes", "0-2", "--class-weights", "1,2"] + base, mentioning: "--class-weights '1,2' gives 2 weights for 3 classes (T-shirt/top, Trouser, Pullover)")
        try assertFails(["train", "--class-weights", "1,0"] + base, mentioning: "--class-weights '1,0': 0 is outside the range")
        try assertFails(["train", "--class-weights", "balance"] + base, mentioning: "--class-weights 'balance': 'balance' is not a number")
        try assertFails(["distill", "--teacher", out.path, "--classes", "0,6", "--unlabeled", "--class-weights", "balanced", "--out", folder("unused").path],
                        mentioning: "--class-weights 'balanced': balanced class weights: class 0 (T-shirt/top) has no labelled training examples")
        let yaml = folder("yaml")
        try FileManager.default.createDirectory(at: yaml, withIntermediateDirectories: true)
        let experiment = yaml.appendingPathComponent("weights.yaml").path
        try "command: train\nmodel: mlp\nclass-weights: [1, -2]\nout: x\n".write(toFile: experiment, atomically: true, encoding: .utf8)
        try assertFails(["run", experiment], mentioning: experiment + ":3: key 'class-weights': '1,-2': -2 is outside the range")
    }
}
