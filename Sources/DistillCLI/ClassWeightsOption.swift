import Datasets
import Distillation
import Foundation

/// `--class-weights`: the weights it asks for on `labeled`, the labelled training split (nil
/// without the option). 'balanced' counts that split; a list needs one weight per class, in
/// the order of --classes. Errors name the option and the value.
func resolvedClassWeights(_ text: String?, labeled: Dataset) throws -> [Float]? {
    guard let text else { return nil }
    let flag = "--" + Spec.classWeights.name
    do {
        guard let numbers = try OptionTable.parsePositiveNumbers(text, spec: Spec.classWeights) else {
            return try ClassWeights.balanced(for: labeled)
        }
        guard numbers.count == labeled.classCount else {
            throw UserError("\(flag) '\(text)' gives \(numbers.count) weights for \(labeled.classCount) classes (\(labeled.classNames.joined(separator: ", "))): give one per class, in the order of --classes")
        }
        let weights = numbers.map(Float.init)
        try ClassWeights.validate(weights, classNames: labeled.classNames)
        return weights
    } catch let error as DistillationError {
        throw UserError("\(flag) '\(text)': \(error)")
    }
}

/// The line a run prints at its start: "class weights: T-shirt/top = 1.2, …".
func classWeightsLine(_ weights: [Float], classNames: [String]) -> String {
    "class weights: " + ClassWeights.describe(weights, classNames: classNames)
}
