import Datasets
import Foundation
import Tensors

/// Class weights for the hard-label cross-entropy on imbalanced data
/// (`TrainerConfiguration.classWeights`): the loss becomes Σᵢ w[yᵢ]·ceᵢ / Σᵢ w[yᵢ], as with
/// PyTorch's `CrossEntropyLoss(weight: w)`, so that mistakes on a rare class cost more.
public enum ClassWeights {
    /// scikit-learn's `compute_class_weight("balanced")`: w_c = n / (C · n_c), with n the
    /// examples counted, C the classes and n_c the examples of class c, so that every class
    /// carries the same total weight, n / C. Counts the examples of `data` whose `labeled`
    /// entry is true (all of them without a mask): the labelled training split. A class with
    /// no labelled example is an error naming it.
    public static func balanced(for data: Dataset, labeled: [Bool]? = nil) throws -> [Float] {
        if let labeled, labeled.count != data.count {
            throw DistillationError("the labelled mask has \(labeled.count) entries for \(data.count) examples")
        }
        var counts = [Int](repeating: 0, count: data.classCount)
        for (index, label) in data.labels.enumerated() where labeled?[index] ?? true { counts[label] += 1 }
        if let empty = counts.firstIndex(of: 0) {
            throw DistillationError("balanced class weights: class \(empty) (\(data.classNames[empty])) has no labelled training examples")
        }
        let total = Double(counts.reduce(0, +)), classes = Double(counts.count)
        return counts.map { Float(total / (classes * Double($0))) }
    }

    /// Checks `weights` for a dataset whose classes are `classNames`: one weight per class,
    /// each positive and finite. The error names the first problem.
    public static func validate(_ weights: [Float], classNames: [String]) throws {
        guard weights.count == classNames.count else {
            throw DistillationError("\(weights.count) class weights for \(classNames.count) classes: give one per class")
        }
        if let bad = weights.firstIndex(where: { !($0 > 0 && $0.isFinite) }) {
            throw DistillationError("the class weight of class \(bad) (\(classNames[bad])) is \(weights[bad]); weights must be positive and finite")
        }
    }

    /// "name = weight" for each class, for the line a run prints at its start.
    public static func describe(_ weights: [Float], classNames: [String]) -> String {
        zip(classNames, weights).map { "\($0) = \(String(format: "%.4g", Double($1)))" }.joined(separator: ", ")
    }

    /// Writes the weights a run uses to `directory/class-weights.json`, atomically:
    /// `[{"class": name, "weight": w}, ...]` in class order.
    static func write(_ weights: [Float], classNames: [String], to directory: String) throws {
        struct Entry: Encodable { let `class`: String, weight: Float }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try AtomicFile.write(try encoder.encode(zip(classNames, weights).map(Entry.init)),
                             to: (directory as NSString).appendingPathComponent("class-weights.json"))
    }
}
