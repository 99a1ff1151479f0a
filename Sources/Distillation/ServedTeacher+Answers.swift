import Foundation

/// What a served teacher answers for each example, and how it becomes per-class targets.
///
/// Every kind ends as one row of `classes` floats per example in the answers log: the logits
/// themselves, or a distribution over the classes (the probabilities; the top-k completed by
/// spreading the remaining mass evenly over the other classes; the label as one-hot), which
/// `ServedTeacher.logits(for:)` hands to training as log-probabilities. A softmax of
/// log p / T is p^(1/T) renormalised, which is exactly what the temperature does to the
/// teacher's own logits (they differ from log p by a constant per example), so one training
/// loop and one meaning of `--temperature` serve every kind.
public enum ServedAnswerKind: Sendable, Equatable, CustomStringConvertible {
    /// The model's output, [batch, classes] numbers, used as logits.
    case logits
    /// [batch, classes] probabilities (each in [0, 1], rows summing to 1).
    case probabilities
    /// The k most probable classes and their probabilities, by the classification extension
    /// (request `parameters: {"classification": k}`, answer BYTES "score:index[:label]").
    case topK(Int)
    /// The teacher's class only: an integer index, or a BYTES class name among the data's.
    case label

    /// `logits`, `probabilities`, `top-K` (K ≥ 1) or `label`; nil for anything else.
    public init?(_ text: String) {
        switch text {
        case "logits": self = .logits
        case "probabilities": self = .probabilities
        case "label": self = .label
        default:
            guard text.hasPrefix("top-"), let k = Int(text.dropFirst(4)), k >= 1, k <= 1_000_000 else { return nil }
            self = .topK(k)
        }
    }

    public var description: String {
        switch self {
        case .logits: "logits"
        case .probabilities: "probabilities"
        case let .topK(k): "top-\(k)"
        case .label: "label"
        }
    }

    /// Whether the log holds distributions (turned into log-probabilities for training) rather than logits.
    var isDistribution: Bool { self != .logits }

    /// The kind the model's metadata implies when none is asked for: an integer output of one
    /// value per example is a label index, a BYTES one a class name; else logits.
    static func implied(datatype: String, shape: [Int]) -> ServedAnswerKind {
        let single = shape.count == 1 || (shape.count == 2 && shape[1] == 1)
        if single, datatype == "BYTES" || datatype.hasPrefix("INT") || datatype.hasPrefix("UINT") { return .label }
        return .logits
    }

    /// Tolerance on a row of probabilities summing to 1, and on a probability's range.
    static let sumTolerance: Float = 1e-3, rangeTolerance: Float = 1e-6
}

extension ServedTeacher {
    /// One output tensor of an answer: shape, datatype and its values, numbers or strings.
    struct AnswerTensor {
        var shape: [Int]
        var datatype: String
        var numbers: [Float]?
        var strings: [String]?
    }

    /// The first output of an `infer` answer: JSON, or Triton's binary tensor extension (a JSON
    /// header followed by raw tensors, each output's `parameters.binary_data_size` bytes in order).
    func firstOutput(_ answer: Data, metadata: Metadata) throws -> AnswerTensor {
        let headerLength = Self.jsonLength(answer)
        guard let object = (try? JSONSerialization.jsonObject(with: answer.prefix(headerLength))) as? [String: Any] else {
            throw DistillationError("\(url)/infer: the answer is not JSON")
        }
        if let version = object["model_version"].map({ "\($0)" }), !metadata.version.isEmpty, version != metadata.version {
            throw DistillationError("\(url)/infer: the model's version changed from \(metadata.version) to \(version) mid-run")
        }
        guard let outputs = object["outputs"] as? [[String: Any]], let output = outputs.first,
              let shape = (output["shape"] as? [Any]).flatMap(Self.integers), shape.allSatisfy({ $0 >= 0 }) else {
            throw DistillationError("\(url)/infer: the answer has no outputs with shape and data")
        }
        let datatype = output["datatype"] as? String ?? "FP32"
        let count = shape.reduce(1, *)
        if let size = ((output["parameters"] as? [String: Any])?["binary_data_size"] as? NSNumber)?.intValue {
            // Binary: the first output's bytes come first after the header.
            guard datatype == "FP32" else { throw DistillationError("\(url)/infer: a binary \(datatype) output (Distill reads binary FP32 only)") }
            guard size == count * 4, headerLength + size <= answer.count else {
                throw DistillationError("\(url)/infer: the binary output is \(size) bytes (\(answer.count - headerLength) after the header) for shape \(shape) of FP32")
            }
            let bytes = answer.subdata(in: (answer.startIndex + headerLength)..<(answer.startIndex + headerLength + size))
            let numbers = bytes.withUnsafeBytes { raw in
                (0..<count).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self).littleEndian) }
            }
            return AnswerTensor(shape: shape, datatype: datatype, numbers: numbers)
        }
        // A JSON answer is its object alone (trailing whitespace aside).
        guard answer.dropFirst(headerLength).allSatisfy({ [0x20, 0x0A, 0x0D, 0x09].contains($0) }) else {
            throw DistillationError("\(url)/infer: the answer is not JSON")
        }
        guard let data = output["data"] as? [Any] else {
            throw DistillationError("\(url)/infer: the answer has no outputs with shape and data")
        }
        if datatype == "BYTES" {
            guard let strings = Self.strings(data), strings.count == count else {
                throw DistillationError("\(url)/infer: the answer's BYTES data is not \(count) strings")
            }
            return AnswerTensor(shape: shape, datatype: datatype, strings: strings)
        }
        var numbers = [Float]()
        numbers.reserveCapacity(count)
        guard Self.flatten(data, into: &numbers), numbers.count == count else {
            throw DistillationError("\(url)/infer: the answer's data is not \(count) numbers")
        }
        return AnswerTensor(shape: shape, datatype: datatype, numbers: numbers)
    }

    /// The answer for `count` examples as `count × classes` floats: logits, or the distribution
    /// each kind gives (see `ServedAnswerKind`). Anything malformed is a one-line error.
    func interpret(_ output: AnswerTensor, count: Int, classes: Int, kind: ServedAnswerKind, classNames: [String]) throws -> [Float] {
        let where_ = "\(url)/infer"
        switch kind {
        case .logits, .probabilities:
            guard output.shape == [count, classes], let values = output.numbers else {
                throw DistillationError("\(where_): the answer has shape \(output.shape) for [\(count), \(classes)]")
            }
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw DistillationError("\(where_): the answer holds \(values[bad]) (example \(bad / classes) of the batch, class \(bad % classes))")
            }
            guard kind == .probabilities else { return values }
            if let bad = values.firstIndex(where: { $0 < -ServedAnswerKind.rangeTolerance || $0 > 1 + ServedAnswerKind.rangeTolerance }) {
                throw DistillationError("\(where_): the answer holds \(values[bad]) (example \(bad / classes) of the batch, class \(bad % classes)), not a probability")
            }
            for row in 0..<count {
                let sum = values[(row * classes)..<((row + 1) * classes)].reduce(0, +)
                guard abs(sum - 1) <= ServedAnswerKind.sumTolerance else {
                    throw DistillationError("\(where_): the probabilities of example \(row) of the batch sum to \(sum), not 1")
                }
            }
            return values.map { min(max($0, 0), 1) }
        case let .topK(k):
            guard let strings = output.strings, output.shape == [count, k] else {
                throw DistillationError("\(where_): asked for the top \(k) classes (classification extension), the answer is \(output.datatype) of shape \(output.shape), not BYTES [\(count), \(k)]")
            }
            var result = [Float](repeating: 0, count: count * classes)
            for row in 0..<count {
                var seen = Set<Int>(), sum: Float = 0
                for entry in strings[(row * k)..<((row + 1) * k)] {
                    let parts = entry.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                    guard parts.count >= 2, let score = Float(parts[0]), let index = Int(parts[1]) else {
                        throw DistillationError("\(where_): '\(entry.prefix(80))' (example \(row) of the batch) is not score:index[:label]")
                    }
                    guard (0..<classes).contains(index) else {
                        throw DistillationError("\(where_): class index \(index) (example \(row) of the batch) is outside 0..<\(classes)")
                    }
                    guard seen.insert(index).inserted else {
                        throw DistillationError("\(where_): class \(index) comes twice in the top \(k) of example \(row) of the batch")
                    }
                    guard score.isFinite, score >= -ServedAnswerKind.rangeTolerance, score <= 1 + ServedAnswerKind.rangeTolerance else {
                        throw DistillationError("\(where_): score \(score) of class \(index) (example \(row) of the batch) is not a probability (top-k answers must be probabilities: a model ending in softmax)")
                    }
                    result[row * classes + index] = min(max(score, 0), 1)
                    sum += min(max(score, 0), 1)
                }
                guard sum <= 1 + ServedAnswerKind.sumTolerance else {
                    throw DistillationError("\(where_): the top \(k) probabilities of example \(row) of the batch sum to \(sum), above 1")
                }
                // The mass the answer does not place goes evenly to the classes it does not name.
                if k < classes {
                    let rest = max(1 - sum, 0) / Float(classes - k)
                    for c in 0..<classes where !seen.contains(c) { result[row * classes + c] = rest }
                }
            }
            return result
        case .label:
            guard output.shape == [count] || output.shape == [count, 1] else {
                throw DistillationError("\(where_): asked for labels, the answer has shape \(output.shape) for [\(count)] or [\(count), 1]")
            }
            var result = [Float](repeating: 0, count: count * classes)
            for row in 0..<count {
                let index: Int
                if let strings = output.strings {
                    guard let found = classNames.firstIndex(of: strings[row]) else {
                        throw DistillationError("\(where_): label '\(strings[row].prefix(80))' (example \(row) of the batch) is none of the data's classes (\(classNames.prefix(10).joined(separator: ", "))\(classNames.count > 10 ? ", …" : ""))")
                    }
                    index = found
                } else if let numbers = output.numbers, numbers[row].isFinite, numbers[row] == numbers[row].rounded(), (0..<classes).contains(Int(numbers[row])) {
                    index = Int(numbers[row])
                } else {
                    throw DistillationError("\(where_): label \(output.numbers.map { "\($0[row])" } ?? "?") (example \(row) of the batch) is not a class index in 0..<\(classes)")
                }
                result[row * classes + index] = 1
            }
            return result
        }
    }

    /// The length of the JSON object at the start of `data` (all of it when it holds no
    /// complete object): the header of a binary answer, which the raw tensors follow.
    static func jsonLength(_ data: Data) -> Int {
        var depth = 0, inString = false, escaped = false, started = false
        for (offset, byte) in data.enumerated() {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1; started = true
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                if started, depth == 0 { return offset + 1 }
            default: break
            }
        }
        return data.count
    }

    /// The strings of a (possibly nested) JSON array, or nil when it holds anything else.
    static func strings(_ values: [Any]) -> [String]? {
        var result = [String]()
        for value in values {
            if let nested = value as? [Any] {
                guard let inner = strings(nested) else { return nil }
                result += inner
            } else if let text = value as? String {
                result.append(text)
            } else {
                return nil
            }
        }
        return result
    }

    /// An `infer` request body for `count` examples: JSON tensors, or with `binary` Triton's
    /// binary tensor extension (the JSON header, then the inputs' raw little-endian FP32 bytes;
    /// its length goes in the `Inference-Header-Content-Length` header). A top-k kind asks
    /// for the classification extension on the model's output.
    func requestBody(_ values: [Float], count: Int, exampleShape: [Int], metadata: Metadata, kind: ServedAnswerKind, binary: Bool) -> (body: Data, headerLength: Int?) {
        let shape = ([count] + exampleShape).map(String.init).joined(separator: ",")
        var body = "{\"inputs\":[{\"name\":\(Self.quoted(metadata.inputName)),\"shape\":[\(shape)],\"datatype\":\"FP32\","
        if binary {
            body += "\"parameters\":{\"binary_data_size\":\(values.count * 4)}}]"
            if case let .topK(k) = kind {
                body += ",\"outputs\":[{\"name\":\(Self.quoted(metadata.outputName)),\"parameters\":{\"classification\":\(k)}}]"
            } else if kind != .label {
                body += ",\"parameters\":{\"binary_data_output\":true}"
            }
            body += "}"
            var data = Data(body.utf8)
            let headerLength = data.count
            data.reserveCapacity(headerLength + values.count * 4)
            for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            return (data, headerLength)
        }
        body.reserveCapacity(body.utf8.count + values.count * 12 + 200)
        body += "\"data\":["
        for (i, value) in values.enumerated() {
            if i > 0 { body += "," }
            body += value.description
        }
        body += "]}]"
        if case let .topK(k) = kind {
            body += ",\"outputs\":[{\"name\":\(Self.quoted(metadata.outputName)),\"parameters\":{\"classification\":\(k)}}]"
        }
        body += "}"
        return (Data(body.utf8), nil)
    }
}
