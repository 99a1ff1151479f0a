import ArgumentParser
import Foundation

/// `distill options` (hidden): every tabled command's options as JSON, so that tests can hold
/// the tables against what ArgumentParser parses, and try every numeric option's range.
struct OptionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "options", abstract: "Print the option tables as JSON.", shouldDisplay: false)

    static let tabled: [(name: String, type: any TabledCommand.Type)] = [
        ("train", Train.self), ("distill", DistillCommand.self), ("transfer", TransferCommand.self), ("evaluate", Evaluate.self), ("predict", Predict.self),
        ("embed", Embed.self),
        ("export", Export.self), ("quantize", Quantize.self), ("inspect", Inspect.self), ("demo", Demo.self),
    ]

    @Flag(help: "Print the experiment keys as the Markdown tables of docs/configs.md instead.")
    var markdown = false

    /// Arguments that satisfy each experiment command's required options, so that parsing
    /// them gives every default.
    static let minimal: [String: [String]] = [
        "train": ["--model", "mlp", "--out", "RUN"], "distill": ["--teacher", "TEACHER", "--out", "RUN"],
        "transfer": ["--from", "OLD", "--classes", "5-9", "--out", "RUN"],
    ]

    /// One Markdown table per experiment command: key, kind and range, default, help.
    static func markdownTables() throws -> String {
        var text = ""
        for (name, type) in tabled where minimal[name] != nil {
            let parsed = try type.parse(minimal[name]!) as! any TabledCommand
            let defaults = Dictionary(parsed.values.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
            text += "### `\(name)`\n\n| key | kind | default | meaning |\n| --- | --- | --- | --- |\n"
            for spec in Experiment.keys(for: name) {
                let given = minimal[name]!.contains("--" + spec.name)
                let value = given ? "**required**" : defaults[spec.name].flatMap { $0 }.map(describe) ?? "—"
                text += "| `\(spec.name)` | \(kindText(spec.kind)) | \(value) | \(spec.summary.replacingOccurrences(of: "|", with: "\\|")) |\n"
            }
            text += "\n"
        }
        return text
    }

    static func kindText(_ kind: OptionKind) -> String {
        switch kind {
        case .integer, .number: return "number, " + (kind.rangeText ?? "")
        case let .choice(options): return "one of " + options.map { "`\($0)`" }.joined(separator: ", ")
        case let .choices(options): return "list of " + options.map { "`\($0)`" }.joined(separator: ", ")
        case .numbers: return "range `5-9` or list, " + (kind.rangeText ?? "")
        case .repeated: return "path or list of paths"
        case .flag: return "true/false"
        case .weights: return "mapping method → number 0 to 1e9"
        case let .positiveNumbers(upper, keywords):
            return "numbers above 0, at most \(OptionKind.format(upper)), as a list or comma-separated; or " + keywords.map { "`\($0)`" }.joined(separator: ", ")
        case .text: return "text"
        }
    }

    static func describe(_ value: OptionValue) -> String {
        switch value {
        case let .text(text): return "`\(text)`"
        case let .integer(number): return String(number)
        case let .number(number): return OptionKind.format(number)
        case let .flag(flag): return String(flag)
        case let .list(items): return "`[\(items.joined(separator: ", "))]`"
        case let .weights(pairs): return pairs.map { "\($0.0): \($0.1)" }.joined(separator: ", ")
        }
    }

    func run() throws {
        if markdown { return Console().text(try Self.markdownTables(), terminator: "") }
        var tables: [String: [[String: String]]] = [:]
        for (name, type) in Self.tabled {
            tables[name] = type.options.map { spec in
                let kind: String
                switch spec.kind {
                case .integer: kind = "integer"
                case .number: kind = "number"
                case .numbers: kind = "numbers"
                case .positiveNumbers: kind = "positive numbers"
                case .flag: kind = "flag"
                default: kind = "text"
                }
                return ["name": spec.name, "kind": kind]
            }
        }
        let data = try JSONSerialization.data(withJSONObject: tables, options: [.sortedKeys])
        Console().text(String(decoding: data, as: UTF8.self))
    }
}
