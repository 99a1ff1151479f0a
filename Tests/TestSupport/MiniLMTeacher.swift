import Foundation

/// The all-MiniLM-L6-v2 teacher's files, where scripts/fetch-minilm.sh puts them
/// (`${XDG_CACHE_HOME:-~/.cache}/distill/all-minilm-l6-v2-0.1.2`: config.json,
/// model.safetensors, tokenizer.json, ...). Tests that need it pass `isPresent` to `requireTool`.
public enum MiniLMTeacher {
    /// The package version the folder is named by.
    public static let version = "0.1.2"

    public static var folder: String {
        let cache = ProcessInfo.processInfo.environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache")
        return cache + "/distill/all-minilm-l6-v2-\(version)"
    }

    /// True when the folder has the files the encoder loads.
    public static var isPresent: Bool {
        ["config.json", "model.safetensors"].allSatisfy { FileManager.default.fileExists(atPath: folder + "/" + $0) }
    }

    /// What to run when it is missing.
    public static let missingMessage = "the all-MiniLM-L6-v2 teacher is not in the cache; run scripts/fetch-minilm.sh"
}
