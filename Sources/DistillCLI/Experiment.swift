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
    /// The commands an experiment can run, with their option tables.
    static let tables: [(name: String, options: [OptionSpec], required: [String])] = [
        (Train.experimentName, Train.options, ["model", "out"]),
        (DistillCommand.experimentName, DistillCommand.options, ["out"]),
        (TransferCommand.experimentName, TransferCommand.options, ["from", "out"]),
    ]
    static var commands: [String] { tables.map(\.name) }

    /// The keys a command's experiments accept: its options, less those that only make sense
    /// typed (resuming names a run folder of its own).
    static func keys(for command: String) -> [OptionSpec] {
        (tables.first { $0.name == command }?.options ?? []).filter { $0.name != "resume" }
    }

    /// The command and its flags from the YAML text of `file`.
    static func arguments(yaml: String, file: String) throws -> (command: String, arguments: [String]) {
        func fail(_ node: Node?, _ message: String) -> UserError {
            UserError("\(file)\(node?.mark.map { ":\($0.line)" } ?? ""): \(message)")
        }
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch let error as YamlError {
            throw UserError("\(file): not valid YAML: \(String(describing: error).split(separator: "\n").first ?? "")")
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
        let required = tables.first { $0.name == command }?.required ?? []
        for (name, keyNode, value) in entries where name != "command" {
            guard let key = schema.first(where: { $0.name == name }) else {
                let suggestion = schema.map(\.name).min { editDistance($0, name) < editDistance($1, name) }
                let hint = suggestion.map { editDistance($0, name) <= 3 ? " (did you mean '\($0)'?)" : "" } ?? ""
                throw fail(keyNode, "unknown key '\(name)' for a \(command) experiment\(hint); keys: \(schema.map(\.name).joined(separator: ", "))")
            }
            arguments += try flags(for: key, value, fail: { fail(value, "key '\(name)': \($0)") })
        }
        for key in required where !entries.contains(where: { $0.key == key }) {
            throw fail(root, "missing key '\(key)' for a \(command) experiment")
        }
        return (command, arguments)
    }

    /// A scalar's text, refusing mappings and lists.
    private static func scalar(_ node: Node, _ fail: (String) -> UserError) throws -> Node.Scalar {
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

    /// The flags for one key, after checking its value against the option's kind and range.
    private static func flags(for key: OptionSpec, _ value: Node, fail: (String) -> UserError) throws -> [String] {
        let flag = "--" + key.name
        func checked(_ value: OptionValue) throws {
            do { try OptionTable.check(key, value) } catch let error as UserError {
                throw fail(error.description.replacingOccurrences(of: flag + " ", with: ""))
            }
        }
        switch key.kind {
        case .integer:
            let s = try scalar(value, fail)
            guard isPlain(s), let v = Int(s.string) else { throw fail("expected an integer, got '\(s.string)'") }
            try checked(.integer(v))
            return [flag, String(v)]
        case .number:
            let s = try scalar(value, fail)
            guard isPlain(s), let v = Double(s.string) else { throw fail("expected a number, got '\(s.string)'") }
            try checked(.number(v))
            return [flag, s.string]
        case .text:
            let s = try scalar(value, fail)
            guard !s.string.isEmpty else { throw fail("expected text, got an empty value") }
            return [flag, s.string]
        case .choice:
            let s = try scalar(value, fail)
            try checked(.text(s.string))
            return [flag, s.string]
        case .choices:
            let items = try strings(value, fail).flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
            try checked(.list(items))
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
        case .numbers, .positiveNumbers:
            // A list of numbers, or one scalar: "5-9", "0,2,4", "2,1,1", "balanced".
            var whole = false
            if case .numbers = key.kind { whole = true }
            let text: String
            if case let .sequence(list) = value {
                text = try list.map { item -> String in
                    guard case let .scalar(s) = item, whole ? Int(s.string) != nil : Double(s.string) != nil else {
                        throw fail("expected \(whole ? "whole numbers" : "numbers"), got \(describe(item))")
                    }
                    return s.string
                }.joined(separator: ",")
                guard !text.isEmpty else { throw fail("expected at least one number") }
            } else {
                text = try scalar(value, fail).string
            }
            try checked(.text(text))
            return [flag, text]
        case .weights:
            guard case let .mapping(pairs) = value else { throw fail("expected a mapping like {at: 1000, kd: 0.9}, got \(describe(value))") }
            return try pairs.flatMap { k, v -> [String] in
                guard case let .scalar(method) = k, case let .scalar(w) = v, let weight = Double(w.string) else {
                    throw fail("expected METHOD: number pairs, got \(describe(k)): \(describe(v))")
                }
                try checked(.weights([(method.string, weight)]))
                return ["--weight", "\(method.string)=\(weight)"]
            }
        }
    }

    private static func strings(_ node: Node, _ fail: (String) -> UserError) throws -> [String] {
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

    /// Writes a command's values (after `command`) as YAML to `directory/config.yaml`,
    /// atomically: every value the run used, defaults included, output options left out.
    static func writeResolved<C: TabledCommand>(_ command: C.Type, _ values: [(String, OptionValue?)], to directory: String) throws {
        func node(_ value: OptionValue) -> Node {
            switch value {
            case let .text(s): return Node(s, Tag(.str), .plain)
            case let .integer(i): return Node(String(i), Tag(.int))
            case let .number(d): return Node(String(d), Tag(.float))
            case let .flag(b): return Node(b ? "true" : "false", Tag(.bool))
            case let .list(items): return Node(items.map { Node($0) })
            case let .weights(pairs): return Node(pairs.map { (Node($0.0), Node(String($0.1), Tag(.float))) })
            }
        }
        var pairs: [(Node, Node)] = [(Node("command"), Node(C.experimentName))]
        for (key, value) in values where !["quiet", "json", "threads"].contains(key) { if let value { pairs.append((Node(key), node(value))) } }
        let text = "# Resolved configuration of this run; `distill run` on this file repeats it, `--resume` continues it.\n"
            + (try Yams.serialize(node: Node(pairs)))
        guard Processes.isWriter else { return }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try AtomicFile.write(Data(text.utf8), to: (directory as NSString).appendingPathComponent("config.yaml"))
    }
}

extension Experiment {
    /// The command and flags of the experiment file at `path`.
    static func read(_ path: String) throws -> (command: String, arguments: [String]) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw UserError("\(path): \(FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist")")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw UserError("\(path): is not UTF-8 text") }
        return try arguments(yaml: text, file: path)
    }

    /// The options a resumed run may add: they cannot change its numbers.
    static let resumableExtras: Set<String> = ["--quiet", "--json", "--checkpoint-every", "--dry-run", "--threads"]

    /// `distill COMMAND --resume RUN [--quiet …]` (COMMAND: train, distill, transfer or run)
    /// becomes the run's own command with the flags of `RUN/config.yaml`, the extras, and
    /// `--resume RUN --out RUN`; other arguments are returned as they are.
    static func resolvingResume(_ arguments: [String]) throws -> [String] {
        guard let first = arguments.first, ["train", "distill", "transfer", "run"].contains(first),
              let at = arguments.firstIndex(where: { $0 == "--resume" || $0.hasPrefix("--resume=") }) else { return arguments }
        let folder: String
        var rest = Array(arguments.dropFirst())
        if arguments[at].hasPrefix("--resume=") {
            folder = String(arguments[at].dropFirst("--resume=".count))
            rest.remove(at: at - 1)
        } else {
            guard at + 1 < arguments.count else { throw UserError("--resume needs a run folder") }
            folder = arguments[at + 1]
            rest.removeSubrange((at - 1)...at)
        }
        var extras: [String] = []
        var index = 0
        while index < rest.count {
            let flag = String(rest[index].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
            guard resumableExtras.contains(flag) else {
                throw UserError("--resume takes the configuration from \(folder)/config.yaml; only \(resumableExtras.sorted().joined(separator: ", ")) may be added, not '\(rest[index])'")
            }
            extras.append(rest[index])
            if (flag == "--checkpoint-every" || flag == "--threads") && !rest[index].contains("="), index + 1 < rest.count {
                extras.append(rest[index + 1])
                index += 1
            }
            index += 1
        }
        let config = (folder as NSString).appendingPathComponent("config.yaml")
        guard FileManager.default.fileExists(atPath: config) else { throw UserError("--resume \(folder): no config.yaml there (is it a run folder?)") }
        let (command, flags) = try read(config)
        guard first == "run" || first == command else {
            throw UserError("--resume \(folder): it is a \(command) run; use 'distill \(command) --resume \(folder)' or 'distill run --resume \(folder)'")
        }
        return [command] + merge(file: flags, overrides: extras + ["--resume", folder, "--out", folder])
    }
}

/// `distill run EXPERIMENT.yaml`: runs train, distill or transfer from a YAML file.
struct RunExperiment: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a train, distill or transfer experiment from a YAML file (schema: docs/configs.md).",
        discussion: "Keys are the subcommand's long flags without dashes, plus 'command'. Flags after the file override its values, e.g. distill run kd.yaml --epochs 1 --out runs/quick. 'distill run --resume RUN' continues a run from its folder.")

    @Argument(help: "The experiment file.")
    var experiment: String

    @Argument(parsing: .captureForPassthrough, help: "Flags of the subcommand that override the file.")
    var overrides: [String] = []

    func run() throws {
        let parsed = try Experiment.read(experiment)
        let arguments = Experiment.merge(file: parsed.arguments, overrides: overrides)
        let commands: [String: any ParsableCommand.Type] = ["train": Train.self, "distill": DistillCommand.self, "transfer": TransferCommand.self]
        let type = commands[parsed.command]!
        var command: ParsableCommand
        do { command = try type.parse(arguments) } catch { throw UserError("\(experiment): \(type.message(for: error))") }
        try command.run()
    }
}
