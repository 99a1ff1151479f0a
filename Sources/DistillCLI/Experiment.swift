import ArgumentParser
import Distillation
import Foundation
import NeuralNet
import Tensors
import Yams

/// Experiment files: YAML whose keys are the long flags of `train`, `distill` or `transfer`
/// (without the dashes), plus `command`. `distill run FILE` checks every key against this
/// schema (unknown keys, wrong types and out-of-range values are errors naming the key and
/// the line), turns the file into flags, lets flags given on the command line replace the
/// file's, and runs the command. Every run writes the resolved configuration, defaults
/// included, as `config.yaml` in its run folder: `distill run RUN/config.yaml` repeats it.
/// docs/configs.md documents the schema.
enum Experiment {
    /// What a key holds.
    enum Kind {
        case integer(ClosedRange<Int>)
        case number(ClosedRange<Double>)
        case text
        case choice([String])
        /// One or more choices: a list, or a comma-separated string.
        case choices([String])
        /// One or more strings, each given as its own flag (`--teacher a --teacher b`).
        case repeated
        /// true adds the flag; false leaves it out.
        case flag
        /// A range like "5-9", one class, or a list of classes.
        case classes
        /// A mapping METHOD: weight, each given as `--weight METHOD=W`.
        case weights
    }

    struct Key {
        let name: String
        let kind: Kind
        /// Whether a file for this command must give the key.
        var required = false
    }

    static let commands = ["train", "distill", "transfer"]

    static let dataKeys = [Key(name: "data", kind: .text), Key(name: "classes", kind: .classes),
                           Key(name: "labels-per-class", kind: .integer(1...1_000_000))]
    static let trainingKeys = [
        Key(name: "epochs", kind: .integer(1...100_000)), Key(name: "batch", kind: .integer(1...65_536)),
        Key(name: "lr", kind: .number(1e-8...10)), Key(name: "seed", kind: .integer(0...Int(Int32.max))),
        Key(name: "optimizer", kind: .choice(OptimizerChoice.allCases.map(\.rawValue))),
        Key(name: "schedule", kind: .choice(ScheduleChoice.allCases.map(\.rawValue))),
        Key(name: "weight-decay", kind: .number(0...1)),
        Key(name: "out", kind: .text, required: true),
    ]
    static let outputKeys = [Key(name: "quiet", kind: .flag), Key(name: "json", kind: .flag)]

    /// The keys each command accepts.
    static func keys(for command: String) -> [Key] {
        switch command {
        case "train":
            return [Key(name: "model", kind: .choice(ModelZoo.names), required: true)] + dataKeys + trainingKeys + outputKeys
        case "distill":
            return [
                Key(name: "teacher", kind: .repeated), Key(name: "teacher-architecture", kind: .choice(ModelZoo.names)),
                Key(name: "teacher-hint", kind: .text), Key(name: "teacher-attention", kind: .repeated),
                Key(name: "teacher-embedding", kind: .text),
                Key(name: "teacher-outputs", kind: .text), Key(name: "student", kind: .choice(ModelZoo.names)),
                Key(name: "method", kind: .choices(DistillationMethod.allCases.map(\.rawValue))),
                Key(name: "temperature", kind: .number(0.01...100)), Key(name: "alpha", kind: .number(0...1)),
                Key(name: "weight", kind: .weights), Key(name: "unlabeled", kind: .flag), Key(name: "plain", kind: .flag), Key(name: "augment", kind: .flag),
                Key(name: "cache-directory", kind: .text),
            ] + dataKeys + trainingKeys + outputKeys
        case "transfer":
            return [
                Key(name: "from", kind: .text, required: true),
                Key(name: "strategy", kind: .choices(TransferStrategy.allCases.map(\.rawValue) + ["head", "finetune-equal", "all"])),
                Key(name: "head", kind: .text), Key(name: "old-classes", kind: .classes),
                Key(name: "backbone-lr-scale", kind: .number(0...100)), Key(name: "steps", kind: .integer(1...10_000_000)),
                Key(name: "seeds", kind: .classes), Key(name: "lr", kind: .number(1e-8...10)), Key(name: "batch", kind: .integer(1...65_536)),
                Key(name: "out", kind: .text, required: true),
            ] + dataKeys + outputKeys
        default: return []
        }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The command and its flags from the YAML text of `file`.
    static func arguments(yaml: String, file: String) throws -> (command: String, arguments: [String]) {
        func fail(_ node: Node?, _ message: String) -> Failure {
            Failure(description: "\(file)\(node?.mark.map { ":\($0.line)" } ?? ""): \(message)")
        }
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch let error as YamlError {
            throw Failure(description: "\(file): not valid YAML: \(String(describing: error).split(separator: "\n").first ?? "")")
        }
        guard let root, case let .mapping(mapping) = root else {
            throw fail(root, "an experiment is a mapping of keys to values, like 'command: distill'")
        }
        var entries: [(key: String, keyNode: Node, value: Node)] = []
        for (keyNode, value) in mapping {
            guard case let .scalar(scalar) = keyNode else { throw fail(keyNode, "keys must be plain names") }
            guard !entries.contains(where: { $0.key == scalar.string }) else { throw fail(keyNode, "key '\(scalar.string)' appears twice") }
            entries.append((scalar.string, keyNode, value))
        }
        guard let commandEntry = entries.first(where: { $0.key == "command" }) else {
            throw fail(root, "missing key 'command' (one of \(commands.joined(separator: ", ")))")
        }
        guard case let .scalar(commandScalar) = commandEntry.value, commands.contains(commandScalar.string) else {
            throw fail(commandEntry.value, "key 'command' must be one of \(commands.joined(separator: ", "))")
        }
        let command = commandScalar.string
        let schema = keys(for: command)
        var arguments: [String] = []
        for (name, keyNode, value) in entries where name != "command" {
            guard let key = schema.first(where: { $0.name == name }) else {
                let suggestion = schema.map(\.name).min { editDistance($0, name) < editDistance($1, name) }
                let hint = suggestion.map { editDistance($0, name) <= 3 ? " (did you mean '\($0)'?)" : "" } ?? ""
                throw fail(keyNode, "unknown key '\(name)' for a \(command) experiment\(hint); keys: \(schema.map(\.name).joined(separator: ", "))")
            }
            arguments += try flags(for: key, value, fail: { fail(value, "key '\(name)': \($0)") })
        }
        for key in schema where key.required && !entries.contains(where: { $0.key == key.name }) {
            throw fail(root, "missing key '\(key.name)' for a \(command) experiment")
        }
        return (command, arguments)
    }

    /// A scalar's text, refusing mappings and lists.
    private static func scalar(_ node: Node, _ fail: (String) -> Failure) throws -> Node.Scalar {
        guard case let .scalar(s) = node else { throw fail("expected a single value, got \(describe(node))") }
        return s
    }

    private static func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case let .scalar(s): return "'\(s.string)'"
        }
    }

    /// Whether YAML would read the scalar as a number (unquoted).
    private static func isPlain(_ s: Node.Scalar) -> Bool { s.style == .plain || s.style == .any }

    private static func flags(for key: Key, _ value: Node, fail: (String) -> Failure) throws -> [String] {
        let flag = "--" + key.name
        switch key.kind {
        case let .integer(range):
            let s = try scalar(value, fail)
            guard isPlain(s), let v = Int(s.string) else { throw fail("expected an integer, got '\(s.string)'") }
            guard range.contains(v) else { throw fail("\(v) is out of range \(range.lowerBound)...\(range.upperBound)") }
            return [flag, String(v)]
        case let .number(range):
            let s = try scalar(value, fail)
            guard isPlain(s), let v = Double(s.string), v.isFinite else { throw fail("expected a number, got '\(s.string)'") }
            guard range.contains(v) else { throw fail("\(s.string) is out of range \(range.lowerBound)...\(range.upperBound)") }
            return [flag, s.string]
        case .text:
            let s = try scalar(value, fail)
            guard !s.string.isEmpty else { throw fail("expected text, got an empty value") }
            return [flag, s.string]
        case let .choice(options):
            let s = try scalar(value, fail)
            guard options.contains(s.string) else { throw fail("'\(s.string)' is not one of \(options.joined(separator: ", "))") }
            return [flag, s.string]
        case let .choices(options):
            let items = try strings(value, fail).flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
            guard !items.isEmpty else { throw fail("expected at least one of \(options.joined(separator: ", "))") }
            for item in items where !options.contains(item) { throw fail("'\(item)' is not one of \(options.joined(separator: ", "))") }
            return [flag, items.joined(separator: ",")]
        case .repeated:
            let items = try strings(value, fail)
            guard !items.isEmpty, items.allSatisfy({ !$0.isEmpty }) else { throw fail("expected a path or a list of paths") }
            return items.flatMap { [flag, $0] }
        case .flag:
            let s = try scalar(value, fail)
            switch s.string.lowercased() {
            case "true", "yes", "on": return [flag]
            case "false", "no", "off": return []
            default: throw fail("expected true or false, got '\(s.string)'")
            }
        case .classes:
            if case let .sequence(list) = value {
                let numbers = try list.map { item -> Int in
                    guard case let .scalar(s) = item, let v = Int(s.string), v >= 0 else { throw fail("expected class numbers, got \(describe(item))") }
                    return v
                }
                guard !numbers.isEmpty else { throw fail("expected at least one class") }
                return [flag, numbers.map(String.init).joined(separator: ",")]
            }
            let s = try scalar(value, fail)
            do { _ = try DataOptions.parseClasses(s.string) } catch { throw fail("'\(s.string)' is not a range like 5-9 or a list like [0, 2, 4]") }
            return [flag, s.string]
        case .weights:
            guard case let .mapping(pairs) = value else { throw fail("expected a mapping like {at: 1000, kd: 0.9}, got \(describe(value))") }
            return try pairs.flatMap { k, v -> [String] in
                guard case let .scalar(method) = k, DistillationMethod(rawValue: method.string) != nil else {
                    throw fail("\(describe(k)) is not a method (\(DistillationMethod.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                guard case let .scalar(w) = v, let weight = Double(w.string), weight.isFinite, weight >= 0 else {
                    throw fail("the weight of \(method.string) must be a non-negative number, got \(describe(v))")
                }
                return ["--weight", "\(method.string)=\(weight)"]
            }
        }
    }

    private static func strings(_ node: Node, _ fail: (String) -> Failure) throws -> [String] {
        switch node {
        case let .scalar(s): return [s.string]
        case let .sequence(list):
            return try list.map { item in
                guard case let .scalar(s) = item else { throw fail("expected a list of values, got \(describe(item)) in it") }
                return s.string
            }
        default: throw fail("expected a value or a list, got \(describe(node))")
        }
    }

    /// Levenshtein distance, for "did you mean".
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var current = [i] + [Int](repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return a.isEmpty ? b.count : previous[b.count]
    }

    /// Flags given on the command line replace the file's: drops every file flag (with its
    /// value) whose name the overrides use, then appends the overrides.
    static func merge(file: [String], overrides: [String]) -> [String] {
        let overridden = Set(overrides.filter { $0.hasPrefix("--") }.map { String($0.split(separator: "=", maxSplits: 1)[0]) })
        var kept: [String] = []
        var index = 0
        while index < file.count {
            let item = file[index]
            let takesValue = index + 1 < file.count && !file[index + 1].hasPrefix("--")
            if overridden.contains(item) {
                index += takesValue ? 2 : 1
                continue
            }
            kept.append(item)
            if takesValue { kept.append(file[index + 1]) }
            index += takesValue ? 2 : 1
        }
        return kept + overrides
    }

    /// A resolved configuration entry: every value a run used, defaults included.
    enum Value {
        case text(String)
        case integer(Int)
        case number(Double)
        case flag(Bool)
        case list([String])
        case weights([(String, Double)])

        /// A Float option as the short decimal it was given as (0.05, not 0.0500000007).
        static func number(_ value: Float) -> Value { .number(Double(String(value)) ?? Double(value)) }
    }

    /// Writes `entries` (after `command`) as YAML to `directory/config.yaml`, atomically.
    static func writeResolved(command: String, _ entries: [(String, Value?)], to directory: String) throws {
        func node(_ value: Value) -> Node {
            switch value {
            case let .text(s): return Node(s, Tag(.str), .plain)
            case let .integer(i): return Node(String(i), Tag(.int))
            case let .number(d): return Node(String(d), Tag(.float))
            case let .flag(b): return Node(b ? "true" : "false", Tag(.bool))
            case let .list(items): return Node(items.map { Node($0) })
            case let .weights(pairs): return Node(pairs.map { (Node($0.0), Node(String($0.1), Tag(.float))) })
            }
        }
        var pairs: [(Node, Node)] = [(Node("command"), Node(command))]
        for (key, value) in entries { if let value { pairs.append((Node(key), node(value))) } }
        let text = "# Resolved configuration of this run; `distill run` on this file repeats it.\n"
            + (try Yams.serialize(node: Node(pairs)))
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try AtomicFile.write(Data(text.utf8), to: (directory as NSString).appendingPathComponent("config.yaml"))
    }
}

/// `distill run EXPERIMENT.yaml`: runs train, distill or transfer from a YAML file.
struct RunExperiment: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a train, distill or transfer experiment from a YAML file (schema: docs/configs.md).",
        discussion: "Keys are the subcommand's long flags without dashes, plus 'command'. Flags after the file override its values, e.g. distill run kd.yaml --epochs 1 --out runs/quick.")

    @Argument(help: "The experiment file.")
    var experiment: String

    @Argument(parsing: .captureForPassthrough, help: "Flags of the subcommand that override the file.")
    var overrides: [String] = []

    func run() throws {
        guard let data = FileManager.default.contents(atPath: experiment) else {
            throw UserError("\(experiment): \(FileManager.default.fileExists(atPath: experiment) ? "cannot be read" : "does not exist")")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw UserError("\(experiment): is not UTF-8 text") }
        let parsed: (command: String, arguments: [String])
        do { parsed = try Experiment.arguments(yaml: text, file: experiment) } catch let error as Experiment.Failure {
            throw UserError(error.description)
        }
        let arguments = Experiment.merge(file: parsed.arguments, overrides: overrides)
        var command: ParsableCommand
        do {
            switch parsed.command {
            case "train": command = try Train.parse(arguments)
            case "distill": command = try DistillCommand.parse(arguments)
            default: command = try TransferCommand.parse(arguments)
            }
        } catch {
            let message: String
            switch parsed.command {
            case "train": message = Train.message(for: error)
            case "distill": message = DistillCommand.message(for: error)
            default: message = TransferCommand.message(for: error)
            }
            throw UserError("\(experiment): \(message)")
        }
        try command.run()
    }
}
