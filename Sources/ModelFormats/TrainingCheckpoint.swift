import DistillInference
import Foundation
import NeuralNet
import Tensors
import Training

/// Everything a run needs to continue exactly where it stopped: model parameters and
/// buffers, optimizer state, position (epoch and step), and random generators (the data
/// order's, and every dropout layer's). Saved as one safetensors file: tensors under
/// `model.` and `optimizer.`, the rest in the metadata.
public struct TrainingCheckpoint {
    public var modelState: [(name: String, tensor: Tensor)]
    public var optimizerState: [(name: String, tensor: Tensor)]
    public var epoch: Int
    public var step: Int
    /// Named generators; dropout layers' are stored as "dropout.<module path>".
    public var generators: [String: RandomGenerator]
    /// Free-form strings kept with the checkpoint (the configuration that made it, say).
    public var metadata: [String: String]

    static let formatKey = "distill.checkpoint"

    /// Captures a copy of the current state (training may go on and change the originals).
    public init(model: any Module, optimizer: any Optimizer, epoch: Int, step: Int,
                generators: [String: RandomGenerator] = [:], metadata: [String: String] = [:]) {
        modelState = model.stateDict().map { ($0.name, $0.tensor.copy()) }
        optimizerState = optimizer.stateTensors().map { ($0.name, $0.tensor.copy()) }
        self.epoch = epoch
        self.step = step
        var all = generators
        for (name, module) in model.namedModules() {
            if let dropout = module as? Dropout { all["dropout." + name] = dropout.generator }
        }
        self.generators = all
        self.metadata = metadata
    }

    private init(modelState: [(name: String, tensor: Tensor)], optimizerState: [(name: String, tensor: Tensor)], epoch: Int, step: Int,
                 generators: [String: RandomGenerator], metadata: [String: String]) {
        self.modelState = modelState
        self.optimizerState = optimizerState
        self.epoch = epoch
        self.step = step
        self.generators = generators
        self.metadata = metadata
    }

    /// Puts the captured state back into `model` and `optimizer` (strictly: the model must have
    /// exactly the checkpoint's parameters and buffers, with the same shapes).
    public func restore(model: any Module, optimizer: any Optimizer) throws {
        try model.loadStateDict(Dictionary(uniqueKeysWithValues: modelState.map { ($0.name, $0.tensor) }), strict: true)
        try optimizer.loadStateTensors(Dictionary(uniqueKeysWithValues: optimizerState.map { ($0.name, $0.tensor) }))
        for (name, module) in model.namedModules() {
            if let dropout = module as? Dropout, let generator = generators["dropout." + name] { dropout.generator = generator }
        }
    }

    /// Writes the checkpoint atomically: a run killed while saving keeps the previous file.
    public func save(to path: String) throws {
        var meta = metadata
        meta[Self.formatKey] = "1"
        meta["epoch"] = String(epoch)
        meta["step"] = String(step)
        for (name, generator) in generators {
            meta["generator." + name] = generator.state.map { String($0, radix: 16) }.joined(separator: ",")
        }
        let tensors = modelState.map { ("model." + $0.name, $0.tensor) } + optimizerState.map { ("optimizer." + $0.name, $0.tensor) }
        try SafeTensors.write(tensors, metadata: meta, to: path)
    }

    /// Reads a checkpoint written by `save`.
    public static func load(from path: String) throws -> TrainingCheckpoint {
        let contents = try SafeTensors.read(path)
        var meta = contents.metadata
        guard meta.removeValue(forKey: formatKey) == "1" else {
            throw ModelFormatError(file: path, "not a Distill training checkpoint (no '\(formatKey)' metadata); a plain model file loads as weights instead")
        }
        guard let epoch = meta.removeValue(forKey: "epoch").flatMap(Int.init), let step = meta.removeValue(forKey: "step").flatMap(Int.init),
              epoch >= 0, step >= 0 else {
            throw ModelFormatError(file: path, "checkpoint metadata lacks a valid epoch and step")
        }
        var generators: [String: RandomGenerator] = [:]
        for key in meta.keys where key.hasPrefix("generator.") {
            let words = meta.removeValue(forKey: key)!.split(separator: ",").compactMap { UInt64($0, radix: 16) }
            guard words.count == 4, words.contains(where: { $0 != 0 }) else {
                throw ModelFormatError(file: path, "checkpoint metadata '\(key)' is not a generator state")
            }
            generators[String(key.dropFirst("generator.".count))] = RandomGenerator(state: words)
        }
        var model: [(name: String, tensor: Tensor)] = [], optimizer: [(name: String, tensor: Tensor)] = []
        for (name, tensor) in contents.tensors.sorted(by: { $0.key < $1.key }) {
            if name.hasPrefix("model.") {
                model.append((String(name.dropFirst(6)), tensor))
            } else if name.hasPrefix("optimizer.") {
                optimizer.append((String(name.dropFirst(10)), tensor))
            } else {
                throw ModelFormatError(file: path, "checkpoint tensor '\(name)' is neither model. nor optimizer. state")
            }
        }
        return TrainingCheckpoint(modelState: model, optimizerState: optimizer, epoch: epoch, step: step, generators: generators, metadata: meta)
    }
}

/// Model weights as a plain safetensors state dict (what PyTorch's `save_file(model.state_dict())` writes).
public enum ModelWeights {
    /// Writes `model`'s parameters and buffers (and `metadata`) to `path` atomically.
    /// The layers of a dynamically quantized model (`DynamicQuantization`) are kept in int8:
    /// `X.weight` as I8 [out, in] and `X.weight_scale` as F32 [out] (a scale per output
    /// channel, or per row of a table), with `distill.int8: dynamic` in the metadata.
    public static func save(_ model: any Module, to path: String, metadata: [String: String] = [:]) throws {
        let int8 = DynamicQuantization.int8Weights(of: model)
        guard !int8.isEmpty else { return try SafeTensors.write(model.stateDict(), metadata: metadata, to: path) }
        var meta = metadata
        meta[DynamicQuantization.metadataKey] = DynamicQuantization.metadataValue
        var tensors: [(name: String, tensor: SafeTensors.RawTensor)] = []
        for (name, tensor) in model.stateDict() {
            guard let w = int8[name] else {
                tensors.append((name, SafeTensors.float32(tensor)))
                continue
            }
            tensors.append((name, .init(dtype: "I8", shape: [w.outputs, w.inputs], bytes: w.packed.weights.map { UInt8(bitPattern: $0) })))
            tensors.append((name + DynamicQuantization.scaleSuffix, SafeTensors.float32(Tensor(w.scales))))
        }
        try AtomicFile.write(SafeTensors.encode(raw: tensors, metadata: meta), to: path)
    }

    /// Loads weights from `path` into `model`; non-strict loading reports what it skipped.
    /// Errors name the file.
    @discardableResult
    public static func load(into model: any Module, from path: String, strict: Bool = true) throws -> StateDictLoadReport {
        let contents = try SafeTensors.read(path)
        do {
            return try model.loadStateDict(contents.tensors, strict: strict)
        } catch let error as StateDictError {
            throw ModelFormatError(file: path, error.description)
        }
    }
}
