import ArgumentParser
import Distillation
import Foundation
import Tensors

/// `distill report`: (re)builds the self-contained HTML report from one or more run folders.
struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Build the HTML report comparing distillation runs.")

    @Argument(help: "Run folders written by distill distill.")
    var runs: [String]

    @Option(help: "The HTML file to write (default: report.html in the first run folder).")
    var out: String?

    func validate() throws {
        guard !runs.isEmpty else { throw UserError("give at least one run folder") }
    }

    func run() throws {
        let loaded: [HTMLReport.Run]
        do { loaded = try runs.map(HTMLReport.Run.load) } catch let error as FileError { throw UserError("\(error)") }
        let path = out ?? (runs[0] as NSString).appendingPathComponent("report.html")
        try HTMLReport.write(loaded, to: path, title: "Distill report: " + loaded.map(\.name).joined(separator: ", "))
        Console().text("wrote \(path)")
    }
}
