import Foundation
import Tensors

/// Labelled examples: inputs of one shape (images [C, H, W], or features [D]) and a class
/// index per example, with the class names. The examples are held in memory as one tensor
/// [N, ...], or streamed: image files decoded batch by batch when they are needed
/// (`ImageFolder.dataset`), so that folders larger than memory train, or are texts held as
/// token ids (`Dataset(texts:...)`, Dataset+Text.swift), whose batches are padded to their
/// longest sequence. All kinds serve batches (`batch(_:)`, `DataLoader`) and split, subset
/// and select classes the same way; nothing is decoded until a batch asks for it.
public struct Dataset {
    /// Where the examples are.
    enum Examples {
        case memory(Tensor)
        case files(ImageFiles)
        case tokens(TokenSequences)
    }

    var examples: Examples
    public var labels: [Int]
    public var classNames: [String]

    /// An in-memory dataset of `inputs` [N, ...] and a label in 0..<classNames.count per example.
    public init(inputs: Tensor, labels: [Int], classNames: [String]) {
        require(inputs.rank >= 1 && inputs.shape[0] == labels.count, "Dataset: \(inputs.shape) inputs do not fit \(labels.count) labels")
        require(labels.allSatisfy { $0 >= 0 && $0 < classNames.count }, "Dataset: labels must lie in 0..<\(classNames.count)")
        self.examples = .memory(inputs)
        self.labels = labels
        self.classNames = classNames
    }

    init(examples: Examples, labels: [Int], classNames: [String]) {
        self.examples = examples
        self.labels = labels
        self.classNames = classNames
    }

    public var count: Int { labels.count }
    public var classCount: Int { classNames.count }

    /// Whether the examples are decoded from files batch by batch rather than held in memory.
    public var isStreamed: Bool {
        if case .files = examples { return true }
        return false
    }

    /// Every example as one tensor [N, ...], for in-memory datasets only: a streamed set has no
    /// such tensor (read it with `batch(_:)`; `isStreamed` tells them apart).
    public var inputs: Tensor {
        switch examples {
        case let .memory(inputs): return inputs
        case let .tokens(sequences): return sequences.packed(Array(sequences.ids.indices), length: sequences.longest)
        case .files: preconditionFailure("Dataset.inputs: a streamed dataset is not held in memory; read it in batches with batch(_:)")
        }
    }

    /// The shape of one example.
    public var exampleShape: Shape {
        switch examples {
        case let .memory(inputs): return Shape(Array(inputs.shape.dimensions.dropFirst()))
        case let .files(files): return files.exampleShape
        case let .tokens(sequences): return [3, sequences.longest]
        }
    }

    /// The shape of a batch of `indices`: [indices.count] + `exampleShape`, except for texts,
    /// whose batches are [indices.count, 3, the longest of these sequences] (see Dataset+Text.swift).
    public func batchShape(_ indices: [Int]) -> Shape {
        if case let .tokens(sequences) = examples { return [indices.count, 3, sequences.longest(of: indices)] }
        return Shape([indices.count] + exampleShape.dimensions)
    }

    /// The examples at `indices` (in that order, repeats allowed) as one tensor of
    /// `batchShape(indices)`, normalised; a streamed set decodes them on all cores. Throws a
    /// `DatasetError` naming the file when an image cannot be read or decoded.
    public func batch(_ indices: [Int]) throws -> Tensor {
        require(indices.allSatisfy { $0 >= 0 && $0 < count }, "Dataset.batch: indices must lie in 0..<\(count)")
        if case let .memory(inputs) = examples { return withoutGradients { inputs.indexSelect(alongAxis: 0, indices: indices) } }
        if case let .tokens(sequences) = examples { return sequences.packed(indices, length: sequences.longest(of: indices)) }
        let result = Tensor.zeros(Shape([indices.count] + exampleShape.dimensions))
        let failures = fill(result.storage.pointer, with: indices, threads: ProcessInfo.processInfo.activeProcessorCount)
        if let failure = failures.first { throw failure.error }
        return result
    }

    /// Writes examples `indices` as consecutive rows from `target` on, on up to `threads`
    /// threads (one decodes with `buffers` when given), and returns what failed (by row, in
    /// row order) instead of stopping there. Texts are padded to `length` (the longest of the
    /// whole dataset when nil): rows of [3, length].
    func fill(_ target: UnsafeMutablePointer<Float>, with indices: [Int], threads: Int,
              buffers: ImageBuffers? = nil, length: Int? = nil) -> [(row: Int, error: Error)] {
        let size = exampleShape.count
        switch examples {
        case let .tokens(sequences):
            sequences.write(indices, length: length ?? sequences.longest, into: target)
            return []
        case let .memory(inputs):
            inputs.withUnsafeBufferPointer { source in
                for (row, index) in indices.enumerated() { (target + row * size).update(from: source.baseAddress! + index * size, count: size) }
            }
            return []
        case let .files(files):
            let chunks = Swift.min(Swift.max(threads, 1), indices.count)
            guard chunks > 1 else { return Self.decode(files, indices, rows: 0..<indices.count, into: target, buffers: buffers ?? ImageBuffers()) }
            let output = UnsafeSendable(target)
            let results = UnsafeSendable(UnsafeMutablePointer<[(row: Int, error: Error)]>.allocate(capacity: chunks))
            results.value.initialize(repeating: [], count: chunks)
            defer { results.value.deinitialize(count: chunks); results.value.deallocate() }
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                let rows = (chunk * indices.count / chunks)..<((chunk + 1) * indices.count / chunks)
                results.value[chunk] = Self.decode(files, indices, rows: rows, into: output.value, buffers: ImageBuffers())
            }
            return (0..<chunks).flatMap { results.value[$0] }
        }
    }

    /// Decodes `rows` of `indices` into their rows of `target`.
    static func decode(_ files: ImageFiles, _ indices: [Int], rows: Range<Int>, into target: UnsafeMutablePointer<Float>,
                       buffers: ImageBuffers) -> [(row: Int, error: Error)] {
        let size = files.exampleShape.count
        var failures: [(row: Int, error: Error)] = []
        for row in rows {
            do { try files.decode(indices[row], into: target + row * size, buffers: buffers) } catch { failures.append((row, error)) }
        }
        return failures
    }

    /// The examples at `indices`, in that order (repeats allowed); nothing is decoded.
    public func subset(_ indices: [Int]) -> Dataset {
        switch examples {
        case let .memory(inputs):
            return Dataset(inputs: withoutGradients { inputs.indexSelect(alongAxis: 0, indices: indices) },
                           labels: indices.map { labels[$0] }, classNames: classNames)
        case var .files(files):
            files.paths = indices.map { files.paths[$0] }
            return Dataset(examples: .files(files), labels: indices.map { labels[$0] }, classNames: classNames)
        case let .tokens(sequences):
            return Dataset(examples: .tokens(sequences.subset(indices)), labels: indices.map { labels[$0] }, classNames: classNames)
        }
    }

    /// The image files of a streamed set, in example order (nil for an in-memory set).
    public var files: [String]? {
        if case let .files(files) = examples { return files.paths }
        return nil
    }

    /// For a streamed set, bytes that change when its examples would: every file's path, size
    /// and modification time, and how the files are decoded and normalised (nil for an
    /// in-memory set, whose values say it all). Reads each file's metadata, not its contents.
    public var fileFingerprint: [UInt8]? {
        if case let .files(files) = examples { return files.fingerprint() }
        return nil
    }

    /// The examples of `classes`, relabelled 0..<classes.count in the order given
    /// (classes 5...9 become 0...4: an old task and a new one).
    public func selectingClasses(_ classes: [Int]) throws -> Dataset {
        guard !classes.isEmpty else { throw DatasetError(file: "class selection", "the class list is empty") }
        guard Set(classes).count == classes.count else { throw DatasetError(file: "class selection", "classes \(classes) repeat") }
        if let bad = classes.first(where: { $0 < 0 || $0 >= classCount }) {
            throw DatasetError(file: "class selection", "class \(bad) is outside 0...\(classCount - 1)")
        }
        let newIndex = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
        let kept = labels.indices.filter { newIndex[labels[$0]] != nil }
        var result = subset(kept)
        result.labels = kept.map { newIndex[labels[$0]]! }
        result.classNames = classes.map { classNames[$0] }
        return result
    }

    /// Which examples keep their labels when only `perClass` of every class do, chosen at
    /// random with `seed` (stratified).
    public func labeledMask(perClass: Int, seed: UInt64) throws -> [Bool] {
        guard perClass >= 1 else { throw DatasetError(file: "labels per class", "must be at least 1, got \(perClass)") }
        var generator = RandomGenerator(seed: seed)
        var mask = [Bool](repeating: false, count: count)
        for (label, members) in membersByClass(where: { _ in true }).enumerated() {
            guard members.count >= perClass else {
                throw DatasetError(file: "labels per class", "class \(label) (\(classNames[label])) has \(members.count) examples, fewer than \(perClass)")
            }
            var shuffled = members
            shuffled.shuffle(using: &generator)
            for index in shuffled.prefix(perClass) { mask[index] = true }
        }
        return mask
    }

    /// `perClass` labelled examples of every class (see `labeledMask`), and every other example
    /// as the unlabelled rest (a distillation transfer set).
    public func splittingLabeled(perClass: Int, seed: UInt64) throws -> (labeled: Dataset, rest: Dataset) {
        let mask = try labeledMask(perClass: perClass, seed: seed)
        return (subset(mask.indices.filter { mask[$0] }), subset(mask.indices.filter { !mask[$0] }))
    }

    /// Holds out `fraction` of each class (rounded, at least one, never all: every class needs
    /// two examples), chosen at random with `seed`: a held-out split such as a validation or
    /// test set. `kept` keeps the dataset's order; `heldOut` is in the dataset's order too.
    /// The same as `holdingOutValidation` without a labelled mask.
    public func stratifiedSplit(fraction: Double, seed: UInt64) throws -> (kept: Dataset, heldOut: Dataset) {
        let heldOut = try heldOutIndices(fraction: fraction, eligible: nil, seed: seed, purpose: "split")
        return (subset(indices(notIn: heldOut)), subset(heldOut))
    }

    /// Holds out `fraction` of each class's labelled examples (all examples when `labeled` is
    /// nil) as a validation split: stratified, seeded, at least one per class, and at least one
    /// labelled example of each class left to train on. The held-out examples leave the
    /// training set entirely. Returns the rest, its labelled mask, the validation split, and
    /// the positions in this dataset of the examples kept for training.
    public func holdingOutValidation(fraction: Double, labeled: [Bool]? = nil, seed: UInt64) throws
        -> (train: Dataset, labeled: [Bool]?, validation: Dataset, kept: [Int]) {
        let heldOut = try heldOutIndices(fraction: fraction, eligible: labeled, seed: seed, purpose: "validation split")
        let kept = indices(notIn: heldOut)
        return (subset(kept), labeled.map { mask in kept.map { mask[$0] } }, subset(heldOut), kept)
    }

    /// The stratified, seeded choice behind both splits, sorted: round(fraction × members) of
    /// each class's eligible examples, at least one and at most all but one.
    private func heldOutIndices(fraction: Double, eligible: [Bool]?, seed: UInt64, purpose: String) throws -> [Int] {
        guard fraction > 0 && fraction < 1 else { throw DatasetError(file: purpose, "fraction must be in (0, 1), got \(fraction)") }
        var generator = RandomGenerator(seed: seed ^ 0x7A11_DA7E)
        var heldOut: [Int] = []
        for (label, members) in membersByClass(where: { eligible?[$0] ?? true }).enumerated() {
            guard members.count >= 2 else {
                let hint = purpose == "validation split" ? " (give --validation-fraction 0 for none)" : ""
                throw DatasetError(file: purpose, "class \(label) (\(classNames[label])) has \(members.count) \(eligible == nil ? "" : "labelled ")example(s): a \(purpose) needs at least 2\(hint)")
            }
            let count = min(max(1, Int((Double(members.count) * fraction).rounded())), members.count - 1)
            var shuffled = members
            shuffled.shuffle(using: &generator)
            heldOut += shuffled.prefix(count)
        }
        return heldOut.sorted()
    }

    /// The positions of each class's examples that pass `include`, in order.
    private func membersByClass(where include: (Int) -> Bool) -> [[Int]] {
        var byClass = [[Int]](repeating: [], count: classCount)
        for (index, label) in labels.enumerated() where include(index) { byClass[label].append(index) }
        return byClass
    }

    /// Every position not in `excluded` (sorted), in order.
    private func indices(notIn excluded: [Int]) -> [Int] {
        let isExcluded = Set(excluded)
        return (0..<count).filter { !isExcluded.contains($0) }
    }

    /// The examples of several datasets in order; they must share example shape and classes,
    /// and be all in memory or all streamed with the same preprocessing.
    public static func concatenating(_ parts: [Dataset]) throws -> Dataset {
        guard let first = parts.first else { throw DatasetError(file: "concatenation", "no datasets to concatenate") }
        if case .tokens = first.examples { return try concatenatingTexts(parts) }
        for part in parts.dropFirst() {
            guard part.exampleShape == first.exampleShape else {
                throw DatasetError(file: "concatenation", "example shapes \(first.exampleShape) and \(part.exampleShape) differ")
            }
            guard part.classNames == first.classNames else { throw DatasetError(file: "concatenation", "class lists differ") }
        }
        let labels = parts.flatMap(\.labels)
        if case var .files(files) = first.examples {
            var paths: [String] = []
            for part in parts {
                guard case var .files(other) = part.examples else {
                    throw DatasetError(file: "concatenation", "cannot join a streamed dataset with an in-memory one")
                }
                paths += other.paths
                other.paths = files.paths
                guard other == files else { throw DatasetError(file: "concatenation", "streamed datasets decode their images differently (channels, size or normalization)") }
            }
            files.paths = paths
            return Dataset(examples: .files(files), labels: labels, classNames: first.classNames)
        }
        guard !parts.contains(where: \.isStreamed) else { throw DatasetError(file: "concatenation", "cannot join an in-memory dataset with a streamed one") }
        guard !parts.contains(where: \.isText) else { throw DatasetError(file: "concatenation", "cannot join texts with other examples") }
        return Dataset(inputs: withoutGradients { Tensor.concatenating(parts.map(\.inputs), alongAxis: 0) },
                       labels: labels, classNames: first.classNames)
    }

    /// Examples per class.
    public var classCounts: [Int] {
        var counts = [Int](repeating: 0, count: classCount)
        for label in labels { counts[label] += 1 }
        return counts
    }
}

/// A value handed to other threads that the caller keeps safe (disjoint writes, joined threads).
struct UnsafeSendable<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}
