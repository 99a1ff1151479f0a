import ArgumentParser
import Foundation

/// What an option holds, with its range: the one description that flags, YAML experiment
/// files, the resolved `config.yaml` and validation all use.
enum OptionKind {
    case integer(ClosedRange<Int>)
    /// A number in [lower, upper], or (lower, upper] when `lowerOpen`.
    case number(lower: Double, upper: Double, lowerOpen: Bool)
    case text
    case choice([String])
    /// One or more choices: a list, or a comma-separated string.
    case choices([String])
    /// One or more strings, each given as its own flag (`--teacher a --teacher b`).
    case repeated
    /// true adds the flag; false leaves it out.
    case flag
    /// Whole numbers as a range "5-9", one number, or a list "0,2,4", at most `maximumCount` of
    /// them, each in `values`: classes and seeds.
    case numbers(values: ClosedRange<Int>, maximumCount: Int)
    /// A mapping METHOD: weight, each given as `--weight METHOD=W`.
    case weights([String])
    /// Comma-separated numbers, each above 0 and at most `upper`, or one of `keywords`
    /// instead: class weights ("2,1,1" or "balanced").
    case positiveNumbers(upTo: Double, or: [String])

    static func positive(upTo upper: Double) -> OptionKind { .number(lower: 0, upper: upper, lowerOpen: true) }
    static func number(_ range: ClosedRange<Double>) -> OptionKind { .number(lower: range.lowerBound, upper: range.upperBound, lowerOpen: false) }

    /// The range in words, for help texts and errors.
    var rangeText: String? {
        switch self {
        case let .integer(range): return "\(range.lowerBound) to \(range.upperBound)"
        case let .number(lower, upper, open): return open ? "above \(Self.format(lower)), at most \(Self.format(upper))" : "\(Self.format(lower)) to \(Self.format(upper))"
        case let .choice(options), let .choices(options): return options.joined(separator: ", ")
        case let .numbers(values, count): return "whole numbers \(values.lowerBound) to \(values.upperBound), at most \(count) of them"
        case let .positiveNumbers(upper, keywords):
            return "numbers above 0, at most \(Self.format(upper)), comma-separated, or " + keywords.joined(separator: ", ")
        default: return nil
        }
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }
}

/// One option of a command: long name, kind and range, help. The `@Option` declarations take
/// their name and help from here (`spec.name`, `spec.help`) and their default from
/// `TrainingDefaults` or `default`; `OptionTable.check` holds every value to the range.
struct OptionSpec {
    let name: String
    let kind: OptionKind
    let summary: String

    init(_ name: String, _ kind: OptionKind, _ summary: String) {
        self.name = name
        self.kind = kind
        self.summary = summary
    }

    var long: NameSpecification { .customLong(name) }
    var help: ArgumentHelp {
        switch kind {
        case .integer, .number, .numbers, .positiveNumbers: return ArgumentHelp(summary + (kind.rangeText.map { " (\($0))" } ?? ""))
        default: return ArgumentHelp(summary)
        }
    }
}

/// A value a command was given or defaulted to, by option name.
enum OptionValue {
    case text(String)
    case integer(Int)
    case number(Double)
    case flag(Bool)
    case list([String])
    case weights([(String, Double)])

    /// A Float option as the short decimal it was given as (0.05, not 0.0500000007).
    static func number(_ value: Float) -> OptionValue { .number(Double(String(value)) ?? Double(value)) }
}

/// A command whose options are described by a table.
protocol TabledCommand: ParsableCommand {
    /// Every option the command declares, once.
    static var options: [OptionSpec] { get }
    /// The command's name in experiment files and config.yaml.
    static var experimentName: String { get }
    /// Every option's value, defaults included, by name (nil: not given, no default).
    var values: [(String, OptionValue?)] { get }
}

extension TabledCommand {
    /// Checks every value against its option's range: one error naming the option.
    func checkOptions() throws {
        try OptionTable.check(Self.options, values)
    }
}

enum OptionTable {
    static func check(_ specs: [OptionSpec], _ values: [(String, OptionValue?)]) throws {
        for (name, value) in values {
            guard let value else { continue }
            guard let spec = specs.first(where: { $0.name == name }) else { continue }
            try check(spec, value)
        }
    }

    static func check(_ spec: OptionSpec, _ value: OptionValue) throws {
        let flag = "--" + spec.name
        switch (spec.kind, value) {
        case let (.integer(range), .integer(v)):
            guard range.contains(v) else { throw UserError("\(flag) must be \(spec.kind.rangeText!), got \(v)") }
        case let (.number(lower, upper, open), .number(v)):
            let ok = v.isFinite && (open ? v > lower : v >= lower) && v <= upper
            guard ok else { throw UserError("\(flag) must be \(spec.kind.rangeText!), got \(v)") }
        case let (.choice(options), .text(v)):
            guard options.contains(v) else { throw UserError("\(flag) '\(v)' is not one of \(options.joined(separator: ", "))") }
        case let (.choices(options), .list(items)):
            guard !items.isEmpty else { throw UserError("\(flag) needs at least one of \(options.joined(separator: ", "))") }
            for item in items where !options.contains(item) { throw UserError("\(flag) '\(item)' is not one of \(options.joined(separator: ", "))") }
        case let (.numbers, .text(v)):
            _ = try parseNumbers(v, spec: spec)
        case let (.positiveNumbers, .text(v)):
            _ = try parsePositiveNumbers(v, spec: spec)
        case let (.weights(methods), .weights(pairs)):
            for (method, weight) in pairs {
                guard methods.contains(method) else { throw UserError("\(flag) '\(method)' is not one of \(methods.joined(separator: ", "))") }
                guard weight.isFinite && weight >= 0 && weight <= 1e9 else { throw UserError("\(flag) \(method) must be a number from 0 to 1e9, got \(weight)") }
            }
        case (.text, .text(let v)):
            guard !v.isEmpty else { throw UserError("\(flag) must not be empty") }
        default: break
        }
    }

    /// Parses "5-9", "3" or "0,2,4" within the option's bounds, without ever building more
    /// than its maximum count.
    static func parseNumbers(_ text: String, spec: OptionSpec) throws -> [Int] {
        guard case let .numbers(bounds, maximum) = spec.kind else { return [] }
        let flag = "--" + spec.name
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        var result: [Int]
        if parts.count == 2, let low = Int(parts[0]), let high = Int(parts[1]) {
            guard low <= high else { throw UserError("\(flag) '\(text)': the range is empty") }
            guard bounds.contains(low), bounds.contains(high) else { throw UserError("\(flag) '\(text)': numbers must lie in \(bounds.lowerBound)-\(bounds.upperBound)") }
            guard high - low < maximum else { throw UserError("\(flag) '\(text)' has \(high - low + 1) numbers, at most \(maximum) are allowed") }
            result = Array(low...high)
        } else {
            let items = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !items.isEmpty, items.allSatisfy({ $0 != nil }) else {
                throw UserError("\(flag) '\(text)' is not a range like 5-9 or a list like 0,2,4")
            }
            result = items.map { $0! }
            if let bad = result.first(where: { !bounds.contains($0) }) {
                throw UserError("\(flag) '\(text)': \(bad) is outside \(bounds.lowerBound)-\(bounds.upperBound)")
            }
            guard result.count <= maximum else { throw UserError("\(flag) '\(text)' has \(result.count) numbers, at most \(maximum) are allowed") }
            guard Set(result).count == result.count else { throw UserError("\(flag) '\(text)' repeats a number") }
        }
        return result
    }

    /// Parses "2,1,0.5" into numbers within the option's bounds, or nil for one of its keywords.
    static func parsePositiveNumbers(_ text: String, spec: OptionSpec) throws -> [Double]? {
        guard case let .positiveNumbers(upper, keywords) = spec.kind else { return nil }
        let flag = "--" + spec.name
        if keywords.contains(text) { return nil }
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        var result: [Double] = []
        for item in items {
            guard let value = Double(item), value.isFinite else {
                throw UserError("\(flag) '\(text)': '\(item)' is not a number; give numbers like 2,1,0.5 or \(keywords.joined(separator: ", "))")
            }
            guard value > 0 && value <= upper else {
                throw UserError("\(flag) '\(text)': \(item) is outside the range: each must be above 0 and at most \(OptionKind.format(upper))")
            }
            result.append(value)
        }
        return result
    }
}
