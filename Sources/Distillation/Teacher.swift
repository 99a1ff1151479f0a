import Datasets
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// A teacher: a model Distill runs (in evaluation mode, recording nothing), or only its
/// outputs (a black box you can query but not run here).
public enum TeacherSource {
    case model(any Module)
    /// Logits, or probabilities (rows in [0, 1] summing to 1, turned into log-probabilities),
    /// [N, C] in the training set's order.
    case outputs(Tensor)
}

/// One of the teachers and its weight in the ensemble (teacher logits are averaged with
/// these weights).
public struct Teacher {
    public var source: TeacherSource
    public var weight: Float
    public init(_ source: TeacherSource, weight: Float = 1) {
        self.source = source
        self.weight = weight
    }

    public var model: (any Module)? {
        if case let .model(m) = source { return m }
        return nil
    }
}

/// Black-box teacher outputs read from an NPY file aligned with the dataset order.
public enum TeacherOutputs {
    /// Reads and validates `path`: [examples, classes], finite. Probabilities (every row in
    /// [0, 1] summing to 1 within 1e-3) become log-probabilities (`logProbabilities`), which a softmax treats as logits.
    public static func load(_ path: String, examples: Int, classes: Int) throws -> Tensor {
        let array: NPY.Array
        do { array = try NPY.read(path) } catch let error as DatasetError { throw DistillationError("\(error)") }
        return try validate(array.tensor, source: path, examples: examples, classes: classes)
    }

    /// Checks count, class count and finiteness; converts probabilities to log-probabilities.
    public static func validate(_ outputs: Tensor, source: String, examples: Int, classes: Int) throws -> Tensor {
        guard outputs.rank == 2 else { throw DistillationError("\(source): teacher outputs must be [examples, classes], got \(outputs.shape)") }
        guard outputs.shape[0] == examples else {
            throw DistillationError("\(source): \(outputs.shape[0]) rows of teacher outputs for \(examples) training examples (they must be aligned)")
        }
        guard outputs.shape[1] == classes else {
            throw DistillationError("\(source): teacher outputs have \(outputs.shape[1]) classes, the student \(classes)")
        }
        let values = outputs.scalars
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw DistillationError("\(source): teacher output at row \(bad / classes), class \(bad % classes) is \(values[bad])")
        }
        let isProbability = values.allSatisfy { $0 >= 0 && $0 <= 1 } && (0..<examples).allSatisfy { row in
            abs(values[(row * classes)..<((row + 1) * classes)].reduce(0, +) - 1) < 1e-3
        }
        return isProbability ? Tensor(logProbabilities(values), shape: outputs.shape) : outputs
    }

    /// The logit a zero probability becomes: a softmax at any temperature up to 100 gives it
    /// e^-100 of the mass, nothing, so a one-hot row stays one-hot at every temperature (a
    /// floor such as log 1e-12 would leak 1e-12^(1/T) to each class: 0.1% at T = 4, 76% at T = 100).
    public static let zeroProbabilityLogit: Float = -1e4

    /// Log-probabilities of probabilities, which a softmax treats as logits: softmax(log p / T)
    /// is p^(1/T) renormalised, what the temperature does to the logits behind p.
    public static func logProbabilities(_ values: [Float]) -> [Float] {
        values.map { $0 > 0 ? Foundation.log($0) : zeroProbabilityLogit }
    }
}

/// Teacher logits (and tapped features) for a whole training set, computed once.
///
/// Valid only for a deterministic pipeline (no augmentation). The key hashes the teachers'
/// weights and ensemble weights, the data (every input value of an in-memory set; a streamed
/// set's file paths, sizes, modification times and preprocessing) and the tap names, so a
/// cache written for other data or other weights is never used: `load` refuses it.
public struct TeacherCache {
    public var logits: Tensor
    public var features: [String: Tensor]
    public var key: String

    public init(logits: Tensor, features: [String: Tensor], key: String) {
        self.logits = logits
        self.features = features
        self.key = key
    }

    /// Writes the cache (logits, features, key) to `path` atomically.
    public func save(_ path: String) throws {
        try SafeTensors.write([("logits", logits)] + features.sorted { $0.key < $1.key }.map { ("feature." + $0.key, $0.value) },
                              metadata: ["distill.teacher-cache": key], to: path)
    }

    /// Reads a cache written by `save`; its key says what it was computed from.
    public static func load(_ path: String) throws -> TeacherCache {
        let contents = try SafeTensors.read(path)
        guard let key = contents.metadata["distill.teacher-cache"], let logits = contents.tensors["logits"] else {
            throw DistillationError("\(path): not a teacher cache")
        }
        var features: [String: Tensor] = [:]
        for (name, tensor) in contents.tensors where name.hasPrefix("feature.") { features[String(name.dropFirst(8))] = tensor }
        return TeacherCache(logits: logits, features: features, key: key)
    }

    /// FNV-1a (over 8-byte words) of the bytes that decide the teacher's outputs on `inputs`.
    public static func key(teachers: [Teacher], inputs: Tensor, taps: [String]) -> String {
        key(teachers: teachers, taps: taps) { mix in
            inputs.withUnsafeBufferPointer { mix(UnsafeRawBufferPointer($0)) }
            withUnsafeBytes(of: inputs.shape.dimensions.count) { mix($0) }
        }
    }

    /// The key for `data`: its input values when in memory (as `key(teachers:inputs:taps:)`),
    /// its files' paths, sizes and modification times and its preprocessing when streamed.
    public static func key(teachers: [Teacher], data: Dataset, taps: [String]) -> String {
        guard let fingerprint = data.fileFingerprint else { return key(teachers: teachers, inputs: data.inputs, taps: taps) }
        return key(teachers: teachers, taps: taps) { mix in fingerprint.withUnsafeBytes { mix($0) } }
    }

    private static func key(teachers: [Teacher], taps: [String], data: ((UnsafeRawBufferPointer) -> Void) -> Void) -> String {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        // FNV-1a over 8-byte words, then the tail's bytes: a byte at a time cost 0.3 s of
        // CPU per run for Fashion-MNIST's 170 MB of inputs, a word at a time an eighth of it.
        func mix(_ buffer: UnsafeRawBufferPointer) {
            let words = buffer.count / 8
            for i in 0..<words { hash = (hash ^ buffer.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) &* 0x100_0000_01B3 }
            for byte in buffer[(words * 8)...] { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        }
        func mix(_ tensor: Tensor) {
            tensor.withUnsafeBufferPointer { mix(UnsafeRawBufferPointer($0)) }
            withUnsafeBytes(of: tensor.shape.dimensions.count) { mix($0) }
        }
        for teacher in teachers {
            withUnsafeBytes(of: teacher.weight) { mix($0) }
            switch teacher.source {
            case let .model(model):
                for (name, t) in model.stateDict() {
                    Array(name.utf8).withUnsafeBytes { mix($0) }
                    mix(t)
                }
            case let .outputs(outputs): mix(outputs)
            }
        }
        data { mix($0) }
        for tap in taps { Array(tap.utf8).withUnsafeBytes { mix($0) } }
        return String(hash, radix: 16)
    }
}
