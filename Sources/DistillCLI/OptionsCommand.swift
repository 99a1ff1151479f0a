import ArgumentParser
import Foundation

/// `distill options` (hidden): every tabled command's options as JSON, so that tests can hold
/// the tables against what ArgumentParser parses, and try every numeric option's range.
struct OptionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "options", abstract: "Print the option tables as JSON.", shouldDisplay: false)

    static let tabled: [(name: String, type: any TabledCommand.Type)] = [
        ("train", Train.self), ("distill", DistillCommand.self), ("transfer", TransferCommand.self), ("evaluate", Evaluate.self),
        ("export", Export.self), ("inspect", Inspect.self), ("demo", Demo.self),
    ]

    func run() throws {
        var tables: [String: [[String: String]]] = [:]
        for (name, type) in Self.tabled {
            tables[name] = type.options.map { spec in
                let kind: String
                switch spec.kind {
                case .integer: kind = "integer"
                case .number: kind = "number"
                case .numbers: kind = "numbers"
                case .flag: kind = "flag"
                default: kind = "text"
                }
                return ["name": spec.name, "kind": kind]
            }
        }
        let data = try JSONSerialization.data(withJSONObject: tables, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
