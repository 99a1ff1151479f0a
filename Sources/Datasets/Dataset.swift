import Foundation
import Tensors

/// Labelled examples in memory: inputs [N, ...] (images [N, C, H, W], or features [N, D])
/// and a class index per example, with the class names.
public struct Dataset {
    public var inputs: Tensor
    public var labels: [Int]
    public var classNames: [String]

    public init(inputs: Tensor, labels: [Int], classNames: [String]) {
        require(inputs.rank >= 1 && inputs.shape[0] == labels.count, "Dataset: \(inputs.shape) inputs do not fit \(labels.count) labels")
        require(labels.allSatisfy { $0 >= 0 && $0 < classNames.count }, "Dataset: labels must lie in 0..<\(classNames.count)")
        self.inputs = inputs
        self.labels = labels
        self.classNames = classNames
    }

    public var count: Int { labels.count }
    public var classCount: Int { classNames.count }
    /// The shape of one example.
    public var exampleShape: Shape { Shape(Array(inputs.shape.dimensions.dropFirst())) }

    /// The examples at `indices`, in that order (repeats allowed).
    public func subset(_ indices: [Int]) -> Dataset {
        Dataset(inputs: withoutGradients { inputs.indexSelect(alongAxis: 0, indices: indices) },
                labels: indices.map { labels[$0] }, classNames: classNames)
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
        var byClass = [[Int]](repeating: [], count: classCount)
        for (index, label) in labels.enumerated() { byClass[label].append(index) }
        var mask = [Bool](repeating: false, count: count)
        for (label, members) in byClass.enumerated() {
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

    /// Holds out `fraction` of each class's labelled examples (all examples when `labeled` is
    /// nil) as a validation split: stratified, seeded, at least one per class, and at least one
    /// labelled example of each class left to train on. The held-out examples leave the
    /// training set entirely. Returns the rest, its labelled mask, the validation split, and
    /// the positions in this dataset of the examples kept for training.
    public func holdingOutValidation(fraction: Double, labeled: [Bool]? = nil, seed: UInt64) throws
        -> (train: Dataset, labeled: [Bool]?, validation: Dataset, kept: [Int]) {
        guard fraction > 0 && fraction < 1 else { throw DatasetError(file: "validation split", "fraction must be in (0, 1), got \(fraction)") }
        var generator = RandomGenerator(seed: seed ^ 0x7A11_DA7E)
        var byClass = [[Int]](repeating: [], count: classCount)
        for (index, label) in labels.enumerated() where labeled?[index] ?? true { byClass[label].append(index) }
        var heldOut: [Int] = []
        for (label, members) in byClass.enumerated() {
            guard members.count >= 2 else {
                throw DatasetError(file: "validation split", "class \(label) (\(classNames[label])) has \(members.count) labelled example(s): a validation split needs at least 2 (give --validation-fraction 0 for none)")
            }
            let count = min(max(1, Int((Double(members.count) * fraction).rounded())), members.count - 1)
            var shuffled = members
            shuffled.shuffle(using: &generator)
            heldOut += shuffled.prefix(count)
        }
        let isHeldOut = Set(heldOut)
        let kept = indices(where: { !isHeldOut.contains($0) })
        return (subset(kept), labeled.map { mask in kept.map { mask[$0] } }, subset(heldOut.sorted()), kept)
    }

    private func indices(where keep: (Int) -> Bool) -> [Int] { (0..<count).filter(keep) }

    /// The examples of several datasets in order; they must share example shape and classes.
    public static func concatenating(_ parts: [Dataset]) throws -> Dataset {
        guard let first = parts.first else { throw DatasetError(file: "concatenation", "no datasets to concatenate") }
        for part in parts.dropFirst() {
            guard part.exampleShape == first.exampleShape else {
                throw DatasetError(file: "concatenation", "example shapes \(first.exampleShape) and \(part.exampleShape) differ")
            }
            guard part.classNames == first.classNames else { throw DatasetError(file: "concatenation", "class lists differ") }
        }
        return Dataset(inputs: withoutGradients { Tensor.concatenating(parts.map(\.inputs), alongAxis: 0) },
                       labels: parts.flatMap(\.labels), classNames: first.classNames)
    }

    /// Examples per class.
    public var classCounts: [Int] {
        var counts = [Int](repeating: 0, count: classCount)
        for label in labels { counts[label] += 1 }
        return counts
    }
}
