import Tensors

/// What a non-strict `loadStateDict` skipped.
public struct StateDictLoadReport: Equatable, Sendable {
    /// Model entries the source did not have (left as they were).
    public var missing: [String]
    /// Source entries the model does not have (ignored).
    public var unexpected: [String]
}

/// Why a state dict could not be loaded.
public enum StateDictError: Error, CustomStringConvertible, Equatable {
    case shapeMismatch(name: String, model: Shape, source: Shape)
    case keysDiffer(missing: [String], unexpected: [String])

    public var description: String {
        switch self {
        case let .shapeMismatch(name, model, source):
            return "'\(name)' has shape \(source) in the source but \(model) in the model"
        case let .keysDiffer(missing, unexpected):
            func list(_ names: [String]) -> String { names.prefix(10).joined(separator: ", ") + (names.count > 10 ? ", ... (\(names.count) in all)" : "") }
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing from the source: \(list(missing))") }
            if !unexpected.isEmpty { parts.append("not in the model: \(list(unexpected))") }
            return "state dict does not match the model; " + parts.joined(separator: "; ")
        }
    }
}

extension Module {
    /// Copies `source` values into this model's parameters and buffers, by dotted name, in
    /// place (optimizers keep their references). Strict loading requires the same names on
    /// both sides; non-strict loading skips what does not match and reports it. A shape
    /// mismatch is always an error, naming both shapes. Nothing is changed when it throws.
    @discardableResult
    public func loadStateDict(_ source: [String: Tensor], strict: Bool = true) throws -> StateDictLoadReport {
        let target = stateDict()
        let targetNames = Set(target.map(\.name))
        let missing = target.map(\.name).filter { source[$0] == nil }
        let unexpected = source.keys.filter { !targetNames.contains($0) }.sorted()
        if strict && (!missing.isEmpty || !unexpected.isEmpty) {
            throw StateDictError.keysDiffer(missing: missing, unexpected: unexpected)
        }
        for (name, tensor) in target {
            if let value = source[name], value.count != tensor.count || (value.shape != tensor.shape && !(value.count == 1 && tensor.count == 1)) {
                throw StateDictError.shapeMismatch(name: name, model: tensor.shape, source: value.shape)
            }
        }
        for (name, tensor) in target {
            guard let value = source[name] else { continue }
            tensor.withUnsafeMutableBufferPointer { dst in
                value.withUnsafeBufferPointer { src in dst.baseAddress!.update(from: src.baseAddress!, count: src.count) }
            }
        }
        return StateDictLoadReport(missing: missing, unexpected: unexpected)
    }
}
