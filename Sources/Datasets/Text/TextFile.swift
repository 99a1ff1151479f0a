import Foundation

/// Text files: read whole as UTF-8 (gzip-compressed or not), and cut into records.
public enum TextFile {
    /// The text of `path`, inflated first when it is gzip-compressed; an error names the file
    /// when it is missing, unreadable or not UTF-8.
    public static func read(_ path: String) throws -> String {
        var data = try readFile(path)
        if Gzip.isCompressed(data) { data = try Gzip.decompress(data, file: path) }
        guard let text = String(data: data, encoding: .utf8) else { throw DatasetError(file: path, "is not UTF-8 text") }
        return text
    }

    /// The records of `text` separated by lines that hold only `separator` (as `fortune`'s
    /// files use `%`): each record is its lines joined by "\n", lines ending at "\n" only (a
    /// "\r" before it stays in the record). Records that are empty or only whitespace are
    /// dropped; the others are kept as they are, untrimmed.
    public static func records(_ text: String, separator: String) -> [String] {
        var records: [String] = []
        var current: [Substring.UnicodeScalarView] = []
        let marker = Array(separator.unicodeScalars)
        func finish() {
            let record = current.map { String($0) }.joined(separator: "\n")
            if !record.unicodeScalars.allSatisfy(\.properties.isWhitespace) { records.append(record) }
            current.removeAll(keepingCapacity: true)
        }
        for line in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.elementsEqual(marker) {
                finish()
            } else {
                current.append(line)
            }
        }
        finish()
        return records
    }
}
