import Foundation

/// Texts with a class each, as read from files and before tokenisation. Unlabelled texts (a
/// file of texts alone) have one class, named after their file.
public struct LabeledTexts: Equatable, Sendable {
    public var texts: [String]
    public var labels: [Int]
    public var classNames: [String]

    public init(texts: [String], labels: [Int], classNames: [String]) {
        (self.texts, self.labels, self.classNames) = (texts, labels, classNames)
    }

    /// Tokenised once by `tokenizer` into a text dataset, the ids kept in `cacheFolder` when
    /// given (see `Dataset(texts:labels:classNames:tokenizer:cacheFolder:)`).
    public func dataset(tokenizer: WordPieceTokenizer, cacheFolder: String? = nil) -> Dataset {
        Dataset(texts: texts, labels: labels, classNames: classNames, tokenizer: tokenizer, cacheFolder: cacheFolder)
    }

    /// The classes with at least `minimum` texts, relabelled 0..<k in their order.
    public func keepingClasses(withAtLeast minimum: Int) -> LabeledTexts {
        var counts = [Int](repeating: 0, count: classNames.count)
        for label in labels { counts[label] += 1 }
        let kept = classNames.indices.filter { counts[$0] >= minimum }
        let newLabel = Dictionary(uniqueKeysWithValues: kept.enumerated().map { ($1, $0) })
        let members = labels.indices.filter { newLabel[labels[$0]] != nil }
        return LabeledTexts(texts: members.map { texts[$0] }, labels: members.map { newLabel[labels[$0]]! },
                            classNames: kept.map { classNames[$0] })
    }
}

/// Readers of text data, each format one way; `read(_:)` picks by the path.
///
/// - A folder: with text files at its top (no extension, or `.txt`), one class per file named
///   by it (without `.txt`), its texts cut by `separator` lines (Debian's fortunes: `%`) or,
///   without one, one text a line; other files (fortune's `.dat` indexes) and subfolders are
///   ignored. Without such files, one class per subfolder, each file in it one text.
/// - `.csv` / `.tsv`: a table with a header, the text in column `textField` and the class in
///   `labelField` when the table has that column (unlabelled otherwise). A quoted field may
///   not span lines.
/// - `.jsonl`: one JSON object a line, the text under `textField` and the class (text or
///   integer) under `labelField` when the lines have it.
/// - Any other file: unlabelled texts, cut by `separator` lines or one a line.
///
/// Classes given by labels follow `CSV.classes(of:)`: integers 0...k are classes "0"..."k",
/// other labels are sorted. Texts that are empty or only whitespace are dropped from
/// separated files and lines; every error names the file (and line) and what is wrong.
public enum TextData {
    public static func read(_ path: String, separator: String? = nil, textField: String = "text",
                            labelField: String? = "label") throws -> LabeledTexts {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw DatasetError(file: path, "does not exist") }
        if isDirectory.boolValue { return try readFolder(path, separator: separator) }
        switch (path as NSString).pathExtension.lowercased() {
        case "csv", "tsv": return try readTable(path, textColumn: textField, labelColumn: labelField)
        case "jsonl": return try readJSONLines(path, textKey: textField, labelKey: labelField)
        default: return try readTexts(path, separator: separator)
        }
    }

    /// A folder of class files or class folders (see `TextData`).
    public static func readFolder(_ path: String, separator: String? = nil) throws -> LabeledTexts {
        let manager = FileManager.default
        let entries: [String]
        do { entries = try manager.contentsOfDirectory(atPath: path).filter { !$0.hasPrefix(".") }.sorted() } catch {
            throw DatasetError(file: path, "cannot be listed (\(error.localizedDescription))")
        }
        func isFolder(_ name: String) -> Bool {
            var isDirectory: ObjCBool = false
            return manager.fileExists(atPath: path + "/" + name, isDirectory: &isDirectory) && isDirectory.boolValue
        }
        let textFiles = entries.filter { !isFolder($0) && isTextFileName($0) }
        var result = LabeledTexts(texts: [], labels: [], classNames: [])
        if !textFiles.isEmpty {
            for name in textFiles {
                let texts = try readTexts(path + "/" + name, separator: separator).texts
                result.texts += texts
                result.labels += Array(repeating: result.classNames.count, count: texts.count)
                result.classNames.append(name.hasSuffix(".txt") ? String(name.dropLast(4)) : name)
            }
            return result
        }
        let folders = entries.filter(isFolder)
        guard !folders.isEmpty else {
            throw DatasetError(file: path, "holds neither text files (no extension or .txt) nor class folders")
        }
        for folder in folders {
            let files = ((try? manager.contentsOfDirectory(atPath: path + "/" + folder)) ?? []).filter { !$0.hasPrefix(".") && !isFolder(folder + "/" + $0) }.sorted()
            guard !files.isEmpty else { throw DatasetError(file: path + "/" + folder, "is a class folder without files") }
            for file in files {
                result.texts.append(try TextFile.read(path + "/" + folder + "/" + file))
                result.labels.append(result.classNames.count)
            }
            result.classNames.append(folder)
        }
        return result
    }

    /// Unlabelled texts of one file, cut by `separator` lines or one a line; one class named
    /// after the file. A file without any text is an error.
    public static func readTexts(_ path: String, separator: String? = nil) throws -> LabeledTexts {
        try parseTexts(try TextFile.read(path), file: path, separator: separator)
    }

    /// `readTexts` of text already read; `file` names the source (and the class).
    public static func parseTexts(_ text: String, file path: String, separator: String? = nil) throws -> LabeledTexts {
        let texts = separator.map { TextFile.records(text, separator: $0) }
            ?? text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.unicodeScalars.allSatisfy(\.properties.isWhitespace) }
        guard !texts.isEmpty else { throw DatasetError(file: path, "holds no text") }
        return LabeledTexts(texts: texts, labels: Array(repeating: 0, count: texts.count), classNames: [className(path)])
    }

    /// A CSV or TSV table (tabs for `.tsv`) with a header naming `textColumn` and, when
    /// present, `labelColumn`.
    public static func readTable(_ path: String, textColumn: String = "text", labelColumn: String? = "label") throws -> LabeledTexts {
        try parseTable(try TextFile.read(path), file: path, textColumn: textColumn, labelColumn: labelColumn)
    }

    /// `readTable` of text already read; `file` names the source (and its extension the delimiter).
    public static func parseTable(_ text: String, file path: String, textColumn: String = "text",
                                  labelColumn: String? = "label") throws -> LabeledTexts {
        let delimiter = CSV.delimiter(for: path)
        var rows: [(line: Int, fields: [String])] = []
        for (number, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            if line.allSatisfy(\.isWhitespace) { continue }
            rows.append((number + 1, try CSV.fields(of: line, delimiter: delimiter, file: path, line: number + 1)))
        }
        guard let header = rows.first?.fields.map({ $0.trimmingCharacters(in: .whitespaces) }) else { throw DatasetError(file: path, "has no rows") }
        guard let textIndex = header.firstIndex(of: textColumn) else {
            throw DatasetError(file: path, "has no column named '\(textColumn)' for the texts (columns: \(header.joined(separator: ", ")))")
        }
        let labelIndex = labelColumn.flatMap { header.firstIndex(of: $0) }
        let body = rows.dropFirst()
        guard !body.isEmpty else { throw DatasetError(file: path, "has a header but no data rows") }
        var texts: [String] = [], labelTexts: [String] = []
        for row in body {
            guard row.fields.count == header.count else {
                throw DatasetError(file: "\(path):\(row.line)", "has \(row.fields.count) fields, expected \(header.count)")
            }
            texts.append(row.fields[textIndex])
            if let labelIndex { labelTexts.append(row.fields[labelIndex].trimmingCharacters(in: .whitespaces)) }
        }
        let lines = body.map(\.line)
        return try labeled(texts, labelTexts: labelIndex == nil ? nil : labelTexts, file: path) { "\(path):\(lines[$0])" }
    }

    /// JSON lines: one object a line with the text under `textKey` and, when the lines have
    /// it, the class under `labelKey` (text, or an integer).
    public static func readJSONLines(_ path: String, textKey: String = "text", labelKey: String? = "label") throws -> LabeledTexts {
        try parseJSONLines(try TextFile.read(path), file: path, textKey: textKey, labelKey: labelKey)
    }

    /// `readJSONLines` of text already read; `file` names the source.
    public static func parseJSONLines(_ text: String, file path: String, textKey: String = "text",
                                      labelKey: String? = "label") throws -> LabeledTexts {
        var texts: [String] = [], labelTexts: [String] = [], lines: [Int] = []
        var labelled: Bool?
        for (number, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            if line.allSatisfy(\.isWhitespace) { continue }
            let place = "\(path):\(number + 1)"
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
                throw DatasetError(file: place, "is not a JSON object")
            }
            guard let body = object[textKey] as? String else { throw DatasetError(file: place, "has no text under \"\(textKey)\"") }
            texts.append(body)
            lines.append(number + 1)
            let label = labelKey.flatMap { object[$0] }
            if labelled == nil { labelled = label != nil }
            guard labelled == (label != nil) else {
                throw DatasetError(file: place, labelled == true ? "has no label under \"\(labelKey ?? "")\", as the lines before it do"
                                                                 : "has a label under \"\(labelKey ?? "")\", the lines before it none")
            }
            if let label {
                if let name = label as? String {
                    labelTexts.append(name)
                } else if !TokenizerJSON.isBoolean(label), let number = label as? Int {
                    labelTexts.append(String(number))
                } else {
                    throw DatasetError(file: place, "label \(label) is neither text nor an integer")
                }
            }
        }
        guard !texts.isEmpty else { throw DatasetError(file: path, "holds no lines") }
        return try labeled(texts, labelTexts: labelled == true ? labelTexts : nil, file: path) { "\(path):\(lines[$0])" }
    }

    static func labeled(_ texts: [String], labelTexts: [String]?, file: String, place: (Int) -> String) throws -> LabeledTexts {
        guard let labelTexts else {
            return LabeledTexts(texts: texts, labels: Array(repeating: 0, count: texts.count), classNames: [className(file)])
        }
        if let empty = labelTexts.firstIndex(where: \.isEmpty) { throw DatasetError(file: place(empty), "has an empty label") }
        let (classNames, labels) = try CSV.classes(of: labelTexts, place: place)
        return LabeledTexts(texts: texts, labels: labels, classNames: classNames)
    }

    static func isTextFileName(_ name: String) -> Bool {
        let pathExtension = (name as NSString).pathExtension
        return pathExtension.isEmpty || pathExtension.lowercased() == "txt"
    }

    /// A file's name without its folder and extension.
    static func className(_ path: String) -> String {
        ((path as NSString).lastPathComponent as NSString).deletingPathExtension
    }
}
