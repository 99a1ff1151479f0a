import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// The old model of `distill transfer` and what the command does with it by kind: a zoo model
/// (a run folder or safetensors file, re-headed at a module path, new-task models saved as zoo
/// safetensors) or an imported ONNX classifier (re-headed at its Gemm or MatMul node, new-task
/// models written as ONNX: the graph with its trained initializers, then the new head).
struct TransferSource {
    /// A zoo model's default `--head`: its last `Linear` (the classifier, in every zoo model:
    /// `classifier.3` in cnn-student, `fc` in the ResNets, `classifier` in MobileNetV2).
    static func defaultHead(of model: any Module) throws -> String {
        guard let last = model.namedModules().last(where: { $0.module is Linear }) else {
            throw UserError("the old model has no Linear layer to replace: name its classifier with --head")
        }
        return last.name
    }

    /// The zoo name, or the ONNX file's name.
    let name: String
    /// The old model as loaded, for the old task's accuracy.
    let model: any Module
    /// The head to replace, resolved (an ONNX model's default is its last Gemm or MatMul).
    let head: String
    /// What re-heading an ONNX model does, for the console.
    let headNote: String?
    /// A fresh copy giving the old task's logits: the source of each re-headed model and LwF's teacher.
    let load: () throws -> any Module
    /// An untrained model of the same architecture.
    let scratch: (inout RandomGenerator) throws -> any Module
    /// Writes the new-task model at a path without extension (the format adds its own).
    let save: (MultiHeadModel, String) throws -> Void

    /// Reads `source` (`--from`); `head` is `--head`; an ONNX model must take examples of `exampleShape`.
    /// `preprocessing` gives the new task's preprocessing, which the saved models record.
    static func load(_ source: String, head: String?, exampleShape: [Int], preprocessing: @escaping () -> Preprocessing?) throws -> TransferSource {
        do {
            if let file = SavedModel.onnxFile(at: source) { return try onnx(file, head: head, exampleShape: exampleShape, preprocessing: preprocessing) }
            return try zoo(source, head: head, exampleShape: exampleShape, preprocessing: preprocessing)
        } catch let error as ModelFormatError {
            throw UserError("--from: \(error)")
        }
    }

    private static func zoo(_ source: String, head: String?, exampleShape: [Int], preprocessing: @escaping () -> Preprocessing?) throws -> TransferSource {
        let old = try SavedModel.load(source)
        let head = try head ?? defaultHead(of: old.model)
        guard old.options.exampleShape == exampleShape else {
            throw UserError("--from \(source) takes examples of shape \(old.options.exampleShape), the data has \(exampleShape)")
        }
        return TransferSource(
            name: old.name, model: old.model, head: head, headNote: nil, load: { try SavedModel.load(source).model },
            scratch: { try ModelZoo.make(old.name, options: old.options, using: &$0) },
            save: { model, base in
                let (plain, options) = try newTaskModel(model, name: old.name, options: old.options, head: head)
                try SavedModel.save(plain, name: old.name, options: options, to: base + ".safetensors",
                                    metadata: preprocessing().map { [Preprocessing.metadataKey: $0.json] } ?? [:])
            })
    }

    private static func onnx(_ file: String, head: String?, exampleShape: [Int], preprocessing: @escaping () -> Preprocessing?) throws -> TransferSource {
        let network = try ONNXNetwork(contentsOf: file, inputShape: exampleShape)
        guard network.inputShape == exampleShape else {
            throw UserError("--from \(file) takes examples of shape \(network.inputShape), the data has \(exampleShape)")
        }
        let classifier = try network.classifierHead(named: head)
        let logits = classifier.logits, inputShape = network.inputShape
        var note = "head: \(classifier.opType) node '\(classifier.node)', \(classifier.weight.shape[1]) features → \(classifier.weight.shape[0]) classes"
        if !classifier.droppedAfter.isEmpty { note += "; the \(classifier.droppedAfter.joined(separator: " and ")) after it is dropped (both heads give logits)" }
        return TransferSource(
            name: (file as NSString).lastPathComponent, model: network, head: classifier.node, headNote: note,
            load: { try ONNXNetwork(contentsOf: file, inputShape: exampleShape).truncated(at: logits) },
            scratch: { generator in
                let fresh = try ONNXNetwork(contentsOf: file, inputShape: exampleShape).truncated(at: logits)
                fresh.reinitializeParameters(using: &generator)
                return fresh
            },
            save: { model, base in
                var metadata = ["distill.transferred-from": file, "distill.old-head": classifier.node]
                if let preprocessing = preprocessing() { metadata[Preprocessing.metadataKey] = preprocessing.json }
                try ONNXExport.model(model, inputShape: inputShape, metadata: metadata).write(to: base + ".onnx")
            })
    }

    /// A sentence encoder (`TextModel`: a Hugging Face encoder folder or a Distill text run),
    /// as the zoo model `TextModel.zooEncoder()` makes of it: re-headed with a new linear head
    /// on its embedding (`MultiHeadModel(encoder:dimension:newClasses:using:)`); each new-task
    /// model is written as a text run folder at the path (model.safetensors with the zoo
    /// options and `headClasses`, the class names `classNames` gives, and the encoder's
    /// tokenizer.json cutting texts at `maxTokens`, the transfer's limit).
    static func text(_ old: TextModel, dimension: Int, maxTokens: Int, classNames: @escaping () -> [String]) throws -> TransferSource {
        let encoder = try old.zooEncoder()
        return TransferSource(
            name: old.name ?? (old.path as NSString).lastPathComponent, model: old.model, head: "head",
            headNote: "a new linear head on the encoder's \(dimension)-value embedding; the old task is the embedding itself (its old head the identity, kept frozen)",
            load: encoder.make, scratch: { try ModelZoo.make(encoder.name, options: encoder.options, using: &$0) },
            save: { model, folder in
                var options = encoder.options
                options.headClasses = model.head("new").outFeatures
                var generator = RandomGenerator(seed: 0)
                let plain = try ModelZoo.make(encoder.name, options: options, using: &generator)
                var state = Dictionary(model.backbone.stateDict().map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
                state["head.weight"] = model.head("new").weight
                if let bias = model.head("new").bias { state["head.bias"] = bias }
                try plain.loadStateDict(state, strict: true)
                guard Processes.isWriter else { return }
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                try TextClassifierRecord.saver(name: encoder.name, options: options, classNames: classNames())(plain, (folder as NSString).appendingPathComponent("model.safetensors"))
                try old.saveTokenizer(into: folder, maxTokens: maxTokens)
            })
    }

    /// The re-headed model as a plain zoo model for the new classes, so that evaluate, export
    /// and distill read it like any other.
    static func newTaskModel(_ model: MultiHeadModel, name: String, options: ModelOptions, head: String) throws -> (any Module, ModelOptions) {
        var newOptions = options
        newOptions.classes = model.head("new").outFeatures
        var generator = RandomGenerator(seed: 0)
        let plain = try ModelZoo.make(name, options: newOptions, using: &generator)
        var state = Dictionary(model.backbone.stateDict().map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        state[head + ".weight"] = model.head("new").weight
        if let bias = model.head("new").bias { state[head + ".bias"] = bias }
        _ = try plain.loadStateDict(state, strict: true)
        return (plain, newOptions)
    }
}
