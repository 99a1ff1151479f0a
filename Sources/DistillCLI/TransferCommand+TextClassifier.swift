import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// A Distill text classifier cut into the part that gives its classifier layer's inputs and
/// that layer, so that transfer re-heads it as `MultiHeadModel(backbone:oldHead:newClasses:using:)`:
/// - a sentence encoder with a head (a `distill transfer` text run, `ModelOptions.headClasses`):
///   the encoder (its unit-length embedding) and `head`;
/// - a classifier whose last map gives the logits (`distill train`, `distill distill --method
///   kd`; `ModelOptions.classifies`): the model with `projection` the identity of its inputs
///   (the pooled token vectors), and `projection`. The identity may train with the rest of the
///   backbone; a new-task model folds it into its new classifier layer (both are linear), so it
///   saves as the same architecture.
struct TextClassifierParts {
    let name: String
    let options: ModelOptions
    /// The classifier layer: `head` or `projection`.
    let layer: String

    init(_ old: TextModel) throws {
        guard let name = old.name, let options = old.options, options.headClasses != nil || options.classifies == true else {
            throw UserError("--from \(old.path) is not a Distill text classifier (a `distill train`, `distill transfer` or `distill distill --method kd` text run)")
        }
        self.name = name
        self.options = options
        layer = options.headClasses != nil ? "head" : "projection"
    }

    /// `model` (this architecture, trained or not) as a backbone and its classifier layer as the
    /// old head, with a fresh new head of `newClasses`.
    func reheaded(_ model: any Module, newClasses: Int, using generator: inout RandomGenerator) throws -> MultiHeadModel {
        var state = Dictionary(model.stateDict().map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        guard let weight = state[layer + ".weight"] else { throw UserError("--from: the model has no \(layer) layer to re-head") }
        let oldHead = Linear(weight: weight, bias: state[layer + ".bias"])
        var backboneOptions = options
        if layer == "head" {
            backboneOptions.headClasses = nil
            state = state.filter { !$0.key.hasPrefix("head.") }
        } else {
            let width = weight.shape[1]
            backboneOptions.classes = width
            var identity = [Float](repeating: 0, count: width * width)
            for i in 0..<width { identity[i * width + i] = 1 }
            state["projection.weight"] = Tensor(identity, shape: [width, width])
            state["projection.bias"] = Tensor.zeros([width])
        }
        var unused = RandomGenerator(seed: 0)
        let backbone = try ModelZoo.make(name, options: backboneOptions, using: &unused)
        try backbone.loadStateDict(state, strict: true)
        return try MultiHeadModel(backbone: backbone, oldHead: oldHead, newClasses: newClasses, using: &generator)
    }

    /// The new-task model of a re-headed `model` as this architecture for its new classes (the
    /// zoo name and options, and the weights).
    func newTaskModel(_ model: MultiHeadModel) throws -> (model: any Module, options: ModelOptions) {
        let head = model.head("new")
        var state = Dictionary(model.backbone.stateDict().map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        var newOptions = options
        if layer == "head" {
            newOptions.headClasses = head.outFeatures
            state["head.weight"] = head.weight
            if let bias = head.bias { state["head.bias"] = bias }
        } else {
            // new(P x + b) + c = (N P) x + (N b + c): the backbone's projection folded into the new head.
            newOptions.classes = head.outFeatures
            let n = head.weight.scalars, p = state["projection.weight"]!.scalars, b = state["projection.bias"]!.scalars
            let (rows, width) = (head.outFeatures, head.inFeatures)
            let inputs = p.count / width
            var folded = [Float](repeating: 0, count: rows * inputs), bias = head.bias?.scalars ?? [Float](repeating: 0, count: rows)
            for r in 0..<rows {
                for k in 0..<width {
                    let w = n[r * width + k]
                    bias[r] += w * b[k]
                    for c in 0..<inputs { folded[r * inputs + c] += w * p[k * inputs + c] }
                }
            }
            state["projection.weight"] = Tensor(folded, shape: [rows, inputs])
            state["projection.bias"] = Tensor(bias, shape: [rows])
        }
        var unused = RandomGenerator(seed: 0)
        let plain = try ModelZoo.make(name, options: newOptions, using: &unused)
        try plain.loadStateDict(state, strict: true)
        return (plain, newOptions)
    }
}

extension TransferCommand {
    /// Transfer from a Distill text classifier (`--from` a text classifier run) to the texts
    /// of --data's `--classes`, as images transfer: the old task is the classifier's own classes
    /// (the texts of --data with those names, read and carved as its run read them: give its
    /// --min-class-size and --test-fraction), scored by old-task accuracy through the old head;
    /// LwF holds the old head's logits to the original classifier's on the new training texts
    /// by KD (T = 2, `--lwf-weight`); joint training trains on the old classes' texts too.
    func runTextFromClassifier(_ old: TextModel, oldClasses: [String], console: Console) throws {
        guard dataOptions.classes != nil else {
            throw UserError("give the new task's --classes (numbers of --data's classes, such as 15-29): --from \(source) is a text classifier, and its own \(oldClasses.count) classes are the old task")
        }
        let parts = try TextClassifierParts(old)
        let tokenizer = try text.tokenizer(for: old)
        let maxTokens = tokenizer.truncation?.maxLength ?? 128
        var oldOptions = dataOptions
        (oldOptions.classes, oldOptions.labelsPerClass) = (nil, nil)
        let oldData = try oldOptions.loadTexts(text, tokenizer: tokenizer, minClassSize: textClasses.minClassSize, seed: 0, role: "--from model",
                                               selecting: oldClasses, holdingOutValidation: false, cacheFolder: cache.directory)
        let seedList = try OptionTable.parseNumbers(seeds, spec: Spec.seeds).map(UInt64.init)
        func load(_ seed: UInt64) throws -> DataOptions.LoadedTexts {
            try dataOptions.loadTexts(text, tokenizer: tokenizer, minClassSize: textClasses.minClassSize, seed: seed, cacheFolder: cache.directory)
        }
        let first = try load(seedList[0])
        let shared = Set(first.classNames).intersection(oldClasses).sorted()
        guard shared.isEmpty else {
            throw UserError("--classes: \(shared.prefix(12).joined(separator: ", ")) \(shared.count == 1 ? "is a class" : "are classes") of --from \(source): the new task must be new classes")
        }
        let oldAccuracy = try Evaluation.accuracy(old.model, on: oldData.test)
        let out = runOptions.out
        try Experiment.writeResolved(Self.self, values, to: out)
        console.say(String(format: "old model %@ on its %d classes: old-task test accuracy %.2f%% (%d test texts)", (source as NSString).lastPathComponent,
                           oldClasses.count, oldAccuracy * 100, oldData.test.count))
        var training = sharedTraining
        training.lengthBuckets = true
        training.cacheDirectory = cache.directory  // LwF's teacher logits on the training texts, kept between runs
        var study = try makeStudy(training: training, seeds: seedList, headPath: parts.layer)
        study.reheader = { try parts.reheaded($0, newClasses: $1, using: &$2) }
        console.say("transfer to \(first.classNames.count) classes: \(first.labeledTrain.count) training texts\(first.validation.map { ", \($0.count) for validation" } ?? ""), \(first.test.count) for the test; the new head replaces \(parts.layer)")
        let scores = try study.run(
            oldModel: { try SavedModel.load(source).model }, scratchModel: { try ModelZoo.make(parts.name, options: parts.options, using: &$0) },
            newTask: textNewTasks(first: first, firstSeed: seedList[0], load: load, console: console),
            old: .classes(train: oldData.train, test: oldData.test), shouldStop: StopRequest.isRequested,
            trained: { name, seed, model in
                // The first seed's new-task model, as a text run folder that evaluate, predict and distill read.
                guard seed == seedList[0], Processes.isWriter else { return }
                let plain = try parts.newTaskModel(model)
                for folder in [(out as NSString).appendingPathComponent(name)] + (strategies.count == 1 ? [out] : []) {
                    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                    try TextClassifierRecord.saver(name: parts.name, options: plain.options, classNames: first.classNames)(
                        plain.model, (folder as NSString).appendingPathComponent("model.safetensors"))
                    try old.saveTokenizer(into: folder, maxTokens: maxTokens)
                }
            }) { name, seed, event in console.training(event, batchSize: batch, label: "\(name), seed \(seed): ") }
        var summaries: [String] = []
        var fields: [String: Any] = ["old_model_accuracy": oldAccuracy, "out": out]
        var results: [String: [[String: Double]]] = ["old model": [["old": oldAccuracy]]]
        for name in strategies {
            let list = scores[name]!
            let newScores = list.map(\.new), oldScores = list.map { $0.old ?? .nan }, newF1 = list.map { $0.newMacroF1 ?? .nan }
            results[name] = zip(seedList, list).map { seed, score in
                var row = ["seed": Double(seed), "new": score.new]
                if let value = score.old { row["old"] = value }
                if let value = score.newMacroF1 { row["new_macro_f1"] = value }
                return row
            }
            let line = "\(name): new task \(meanAndDeviation(newScores)) (macro-F1 \(meanAndDeviation(newF1, percent: false))), old task \(meanAndDeviation(oldScores)) (old model \(String(format: "%.2f", oldAccuracy * 100)))"
            console.epoch(line, ["strategy": name, "new_task_accuracy": newScores, "new_task_macro_f1": newF1, "old_task_accuracy": oldScores])
            summaries.append(line)
            fields[name] = ["new_task_mean": newScores.reduce(0, +) / Double(newScores.count),
                            "old_task_mean": oldScores.reduce(0, +) / Double(oldScores.count)]
        }
        try writeJSON(results, to: (out as NSString).appendingPathComponent("results.json"))
        console.result(summaries.joined(separator: "\n") + "\nwrote \(out)/results.json and the new-task models (text run folders)", fields)
    }
}
