import DistillInference
import Foundation
import Tensors

extension Preprocessing {
    /// One example to run a model on, named for the user: an image file, or a row of an
    /// array or table ("features.npy[3]", "table.csv:12").
    public struct Input: Sendable {
        public var name: String
        enum Source: Sendable {
            case imageFile(String)
            /// Raw values, not yet normalised.
            case values([Float])
        }
        var source: Source
    }

    /// The examples in `paths`: image files; folders (every PNG or JPEG inside, recursively,
    /// in sorted order); `.npy` arrays (one example, or [N, ...] examples); `.csv` tables (a
    /// row each; with a header, the model's feature columns are found by name and other
    /// columns, such as a label, are ignored). Images are only listed here: `batch` decodes them.
    public func inputs(_ paths: [String]) throws -> [Input] {
        var result: [Input] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw DatasetError(file: path, "does not exist") }
            let ext = (path as NSString).pathExtension.lowercased()
            if isDirectory.boolValue {
                guard kind == .images else { throw DatasetError(file: path, "is a folder; the model takes feature vectors (give .csv or .npy files)") }
                guard let walker = FileManager.default.enumerator(atPath: path) else { throw DatasetError(file: path, "cannot be read") }
                // Hidden files (macOS's ._name.png) are not images, as ImageFolder.scan skips them.
                let files = walker.compactMap { $0 as? String }
                    .filter { !($0 as NSString).lastPathComponent.hasPrefix(".") && ImageFolder.extensions.contains(($0 as NSString).pathExtension.lowercased()) }
                    .sorted()
                guard !files.isEmpty else { throw DatasetError(file: path, "holds no PNG or JPEG images") }
                result += files.map { let file = (path as NSString).appendingPathComponent($0); return Input(name: file, source: .imageFile(file)) }
            } else if ImageFolder.extensions.contains(ext) {
                guard kind == .images else { throw DatasetError(file: path, "is an image; the model takes feature vectors") }
                result.append(Input(name: path, source: .imageFile(path)))
            } else if ext == "npy" {
                result += try arrayInputs(path)
            } else if ext == "csv" || ext == "tsv" {
                result += try tableInputs(path, delimiter: CSV.delimiter(for: path))
            } else {
                throw DatasetError(file: path, "is not an input Distill reads: give PNG or JPEG images, folders of them, .npy arrays or .csv tables")
            }
        }
        return result
    }

    /// One image file as the model's input [channels, height, width].
    public func image(contentsOf path: String) throws -> [Float] {
        guard kind == .images else { throw DatasetError(file: path, "the model takes feature vectors, not images") }
        var values = [Float](repeating: 0, count: channels * height * width)
        let files = ImageFiles(paths: [path], channels: channels, height: height, width: width, resizes: true)
        try values.withUnsafeMutableBufferPointer { try files.decode(0, into: $0.baseAddress!, buffers: ImageBuffers()) }
        prepare(&values)
        return values
    }

    /// The model's input batch [inputs.count, ...] for `inputs`, preprocessed.
    public func batch(_ inputs: ArraySlice<Input>) throws -> Tensor {
        let size = exampleShape.reduce(1, *)
        var values = [Float]()
        values.reserveCapacity(inputs.count * size)
        for input in inputs {
            switch input.source {
            case let .imageFile(path): values += try image(contentsOf: path)
            case var .values(raw):
                prepare(&raw)
                values += raw
            }
        }
        return Tensor(values, shape: Shape([inputs.count] + exampleShape))
    }

    private func arrayInputs(_ path: String) throws -> [Input] {
        let array = try NPY.read(path)
        let size = exampleShape.reduce(1, *)
        let shape = exampleShape
        let count: Int
        if array.shape == shape || (kind == .images && channels == 1 && array.shape == [height, width]) {
            count = 1
        } else if array.shape.count >= 2, Array(array.shape.dropFirst()) == shape
                    || (kind == .images && channels == 1 && Array(array.shape.dropFirst()) == [height, width]) {
            count = array.shape[0]
        } else {
            throw DatasetError(file: path, "has shape \(array.shape); the model takes examples of shape \(shape) (one, or [N, \(shape.map(String.init).joined(separator: ", "))])")
        }
        if let bad = array.values.firstIndex(where: { !$0.isFinite }) { throw DatasetError(file: path, "value \(bad) is not finite") }
        guard count > 0 else { throw DatasetError(file: path, "has no examples") }
        return (0..<count).map { i in
            Input(name: count == 1 ? path : "\(path)[\(i)]", source: .values(Array(array.values[(i * size)..<((i + 1) * size)])))
        }
    }

    private func tableInputs(_ path: String, delimiter: Character) throws -> [Input] {
        guard kind == .features else { throw DatasetError(file: path, "is a table; the model takes images") }
        let data = try readFile(path)
        guard let text = String(data: data, encoding: .utf8) else { throw DatasetError(file: path, "is not UTF-8 text") }
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated()
            .filter { !$0.element.allSatisfy(\.isWhitespace) }
        guard let first = lines.first else { throw DatasetError(file: path, "has no rows") }
        let firstFields = try CSV.fields(of: first.element, delimiter: delimiter, file: path, line: first.offset + 1)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        let count = features ?? channels
        var columns = Array(0..<count)
        var rows = lines[...]
        var hasHeader = false
        // A header is a first row that is not all numbers; the model's feature names pick its columns.
        if firstFields.contains(where: { Float($0) == nil }) {
            hasHeader = true
            rows = rows.dropFirst()
            if let names = featureNames {
                columns = try names.map { name in
                    guard let index = firstFields.firstIndex(of: name) else {
                        throw DatasetError(file: path, "has no column '\(name)', a feature the model was trained on (columns: \(firstFields.joined(separator: ", ")))")
                    }
                    return index
                }
            }
        }
        guard !rows.isEmpty else { throw DatasetError(file: path, "has no rows") }
        return try rows.map { line in
            let fields = try CSV.fields(of: line.element, delimiter: delimiter, file: path, line: line.offset + 1)
            // Without a header the columns are the features alone, in training order: an extra
            // column (a label, somewhere) would be a guess.
            guard hasHeader ? columns.allSatisfy({ $0 < fields.count }) : fields.count == count else {
                throw DatasetError(file: "\(path):\(line.offset + 1)", "has \(fields.count) fields; the model takes \(count) features (without a header row naming the columns, give exactly those)")
            }
            let values = try columns.map { column -> Float in
                guard let value = Float(fields[column].trimmingCharacters(in: .whitespaces)), value.isFinite else {
                    throw DatasetError(file: "\(path):\(line.offset + 1)", "column \(column + 1): '\(fields[column])' is not a finite number")
                }
                return value
            }
            return Input(name: "\(path):\(line.offset + 1)", source: .values(values))
        }
    }
}
