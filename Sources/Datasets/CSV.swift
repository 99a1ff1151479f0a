import Foundation
import Tensors

/// Tabular data from a CSV file: one example a row, a label column (class names or integers)
/// and numeric feature columns. Fields may be quoted ("a, b"); empty lines are skipped.
public enum CSV {
    /// Which column holds the label.
    public enum LabelColumn: Equatable, Sendable {
        case name(String)
        case index(Int)
        /// The last column.
        case last
    }

    /// A table read: its examples and, when it had a header, the feature columns' names.
    public struct Table {
        public var dataset: Dataset
        public var featureNames: [String]?
    }

    /// Reads `path` into a dataset with features [N, D] (Float) and labels. Labels that are all
    /// integers 0...k become classes "0"..."k"; any other labels become classes named by their
    /// text, in sorted order. With `classNames` (a test table read after its training table)
    /// labels must be among them and keep their indices.
    public static func read(_ path: String, label: LabelColumn = .last, hasHeader: Bool = true, delimiter: Character = ",") throws -> Dataset {
        try readTable(path, label: label, hasHeader: hasHeader, delimiter: delimiter).dataset
    }

    /// Parses CSV text; `file` names the source in errors.
    public static func parse(_ text: String, file: String, label: LabelColumn = .last, hasHeader: Bool = true,
                             delimiter: Character = ",") throws -> Dataset {
        try parseTable(text, file: file, label: label, hasHeader: hasHeader, delimiter: delimiter).dataset
    }

    /// `read`, with the feature names and fixed class names.
    public static func readTable(_ path: String, label: LabelColumn = .last, hasHeader: Bool? = true, delimiter: Character = ",",
                                 classNames given: [String]? = nil) throws -> Table {
        let data = try readFile(path)
        guard let text = String(data: data, encoding: .utf8) else { throw DatasetError(file: path, "is not UTF-8 text") }
        return try parseTable(text, file: path, label: label, hasHeader: hasHeader, delimiter: delimiter, classNames: given)
    }

    /// `parse`, with the feature names and fixed class names. `hasHeader` nil: the first row is
    /// a header when a field of it other than the label is not a number.
    public static func parseTable(_ text: String, file: String, label: LabelColumn = .last, hasHeader: Bool? = true,
                                  delimiter: Character = ",", classNames given: [String]? = nil) throws -> Table {
        var rows: [(line: Int, fields: [String])] = []
        for (number, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let trimmed = line.hasSuffix("\r") ? line.dropLast() : line[...]
            if trimmed.allSatisfy(\.isWhitespace) { continue }
            rows.append((number + 1, try fields(of: trimmed, delimiter: delimiter, file: file, line: number + 1)))
        }
        guard !rows.isEmpty else { throw DatasetError(file: file, "has no rows") }
        let header = (hasHeader ?? looksLikeHeader(rows[0].fields, label: label)) ? rows.removeFirst() : nil
        guard !rows.isEmpty else { throw DatasetError(file: file, "has a header but no data rows") }
        let width = header?.fields.count ?? rows[0].fields.count
        guard width >= 2 else { throw DatasetError(file: file, "needs a label column and at least one feature column, found \(width) column") }
        let labelIndex: Int
        switch label {
        case .last: labelIndex = width - 1
        case let .index(i):
            guard i >= 0 && i < width else { throw DatasetError(file: file, "label column \(i) is outside 0...\(width - 1)") }
            labelIndex = i
        case let .name(name):
            guard let header else { throw DatasetError(file: file, "label column '\(name)' is named but the file has no header") }
            guard let i = header.fields.firstIndex(of: name) else {
                throw DatasetError(file: file, "no column named '\(name)' (columns: \(header.fields.joined(separator: ", ")))")
            }
            labelIndex = i
        }
        var features: [Float] = []
        features.reserveCapacity(rows.count * (width - 1))
        var labelTexts: [String] = []
        for row in rows {
            guard row.fields.count == width else {
                throw DatasetError(file: "\(file):\(row.line)", "has \(row.fields.count) fields, expected \(width)")
            }
            for (column, field) in row.fields.enumerated() {
                if column == labelIndex {
                    let text = field.trimmingCharacters(in: .whitespaces)
                    guard !text.isEmpty else { throw DatasetError(file: "\(file):\(row.line)", "column \(column + 1) (the label) is empty") }
                    labelTexts.append(text)
                    continue
                }
                guard let value = Float(field.trimmingCharacters(in: .whitespaces)), value.isFinite else {
                    let name = header.map { " ('\($0.fields[column])')" } ?? ""
                    throw DatasetError(file: "\(file):\(row.line)", "column \(column + 1)\(name): '\(field)' is not a finite number")
                }
                features.append(value)
            }
        }
        let (classNames, labels) = try classes(of: labelTexts, given: given) { "\(file):\(rows[$0].line)" }
        let names = header.map { h in h.fields.enumerated().filter { $0.offset != labelIndex }.map { $0.element.trimmingCharacters(in: .whitespaces) } }
        return Table(dataset: Dataset(inputs: Tensor(features, shape: [rows.count, width - 1]), labels: labels, classNames: classNames),
                     featureNames: names)
    }

    /// Class names and labels from label texts: integers 0...k become classes "0"..."k", any
    /// other labels classes named by their text, in sorted order. With `given` (a test set read
    /// after its training set) labels must be among them and keep their indices; `place(i)`
    /// names where label `i` came from in that error.
    public static func classes(of labelTexts: [String], given: [String]? = nil,
                               place: (Int) -> String) throws -> (classNames: [String], labels: [Int]) {
        if let given {
            let index = Dictionary(given.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
            let labels = try labelTexts.enumerated().map { position, text in
                guard let label = index[text] else {
                    throw DatasetError(file: place(position), "label '\(text)' is not a class of the training data (\(given.prefix(20).joined(separator: ", ")))")
                }
                return label
            }
            return (given, labels)
        }
        let integers = labelTexts.compactMap(Int.init)
        if integers.count == labelTexts.count, let top = integers.max(), integers.allSatisfy({ $0 >= 0 }), top < 100_000 {
            return ((0...top).map(String.init), integers)
        }
        let classNames = Array(Set(labelTexts)).sorted()
        let index = Dictionary(uniqueKeysWithValues: classNames.enumerated().map { ($1, $0) })
        return (classNames, labelTexts.map { index[$0]! })
    }

    /// Whether `fields`, a table's first row, names its columns: some field other than the
    /// label's (which may be text in any row) is not a number. A named label column needs a header.
    public static func looksLikeHeader(_ fields: [String], label: LabelColumn) -> Bool {
        let labelIndex: Int
        switch label {
        case .name: return true
        case .last: labelIndex = fields.count - 1
        case let .index(i): labelIndex = i
        }
        return fields.enumerated().contains { $0.offset != labelIndex && Float($0.element.trimmingCharacters(in: .whitespaces)) == nil }
    }

    /// The field delimiter of a table file: tabs for `.tsv`, commas otherwise.
    public static func delimiter(for path: String) -> Character { path.lowercased().hasSuffix(".tsv") ? "\t" : "," }

    /// Splits one line into fields, honouring double quotes ("" inside quotes is a quote).
    static func fields(of line: Substring, delimiter: Character, file: String, line number: Int) throws -> [String] {
        var result: [String] = [], current = "", quoted = false
        var iterator = line.makeIterator()
        var pending: Character? = nil
        while let c = pending ?? iterator.next() {
            pending = nil
            if quoted {
                if c == "\"" {
                    if let next = iterator.next() {
                        if next == "\"" { current.append("\"") } else { quoted = false; pending = next }
                    } else {
                        quoted = false
                    }
                } else {
                    current.append(c)
                }
            } else if c == "\"" && current.isEmpty {
                quoted = true
            } else if c == delimiter {
                result.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        guard !quoted else { throw DatasetError(file: "\(file):\(number)", "has an unterminated quoted field") }
        result.append(current)
        return result
    }
}
