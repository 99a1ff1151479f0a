import Foundation
import NeuralNet
import Tensors

/// A quantized model (`QuantizedModel`) as a safetensors file:
///
/// - tensors `layers.<i>.weight` (I8 [outputs, inputs], channels-last columns for
///   convolutions), `layers.<i>.weight_scale` (F32 [outputs]) and `layers.<i>.bias` (I32
///   [outputs], at input scale × weight scale) for each convolution and linear layer i;
/// - for a residual block i, its branches' layers as `layers.<i>.main.<j>` and
///   `layers.<i>.shortcut.<j>`; for a float stage, the module's state dict as
///   `layers.<i>.float.<name>` (F32);
/// - metadata `distill.quantized.version` (the format version, now 2; version 1 files, chains
///   only, still read),
///   `distill.quantized.example_shape` (JSON [C, H, W] or [F]), `distill.quantized.input`
///   (the input's scale and zero point) and `distill.quantized.layers` (JSON: each layer's
///   kind, window, activation, its input's and output's scale and zero point, a residual
///   block's branches, a float stage's module path and shapes), plus any
///   metadata the caller adds (the float model's name, the preprocessing).
///
/// Reading checks everything a damaged or hand-made file can get wrong (truncation, dtypes,
/// shapes, zero or non-finite scales, layers that do not fit) and says what in one line.
public enum QuantizedModelFile {
    public static let formatVersion = 2
    static let versionKey = "distill.quantized.version", shapeKey = "distill.quantized.example_shape"
    static let inputKey = "distill.quantized.input", layersKey = "distill.quantized.layers"

    /// A layer's description in the metadata.
    struct LayerRecord: Codable {
        var kind: String // conv2d, linear, max_pool2d, flatten, global_average_pool, residual, float
        var kernel: [Int]?, stride: [Int]?, padding: [Int]?
        var inChannels: Int?
        var depthwise: Bool?
        var activation: FusedActivation?
        var input: QuantizationParameters?, output: QuantizationParameters?
        var main: [LayerRecord]?, shortcut: [LayerRecord]?
        var module: String?, inputShape: [Int]?
    }

    /// The file's bytes for `model`, with `metadata` added.
    public static func encode(_ model: QuantizedModel, metadata: [String: String] = [:]) throws -> Data {
        var tensors: [(name: String, tensor: SafeTensors.RawTensor)] = []
        func addWeights(_ prefix: String, _ w: QuantizedWeights, _ bias: [Int32]) {
            let p = w.packed
            tensors.append(("\(prefix).weight", .init(dtype: "I8", shape: [p.outputs, p.inputs], bytes: p.weights.map { UInt8(bitPattern: $0) })))
            tensors.append(("\(prefix).weight_scale", .init(dtype: "F32", shape: [p.outputs], bytes: w.scales.flatMap { bytes(of: $0.bitPattern) })))
            tensors.append(("\(prefix).bias", .init(dtype: "I32", shape: [p.outputs], bytes: bias.flatMap { bytes(of: UInt32(bitPattern: $0)) })))
        }
        func records(_ layers: [QuantizedLayer], _ prefix: String) -> [LayerRecord] {
            layers.enumerated().map { index, layer -> LayerRecord in
                let at = "\(prefix).\(index)"
                switch layer {
                case let .conv2d(c):
                    addWeights(at, c.weights, c.bias)
                    return LayerRecord(kind: "conv2d", kernel: [c.window.kernel.height, c.window.kernel.width],
                                       stride: [c.window.stride.height, c.window.stride.width],
                                       padding: [c.window.padding.height, c.window.padding.width], inChannels: c.inChannels,
                                       depthwise: c.depthwise ? true : nil, activation: c.activation, input: c.input, output: c.output)
                case let .linear(l):
                    addWeights(at, l.weights, l.bias)
                    return LayerRecord(kind: "linear", activation: l.activation, input: l.input, output: l.output)
                case let .maxPool2d(w):
                    return LayerRecord(kind: "max_pool2d", kernel: [w.kernel.height, w.kernel.width], stride: [w.stride.height, w.stride.width],
                                       padding: [w.padding.height, w.padding.width])
                case .flatten:
                    return LayerRecord(kind: "flatten")
                case let .globalAveragePool(p):
                    return LayerRecord(kind: "global_average_pool", input: p.input, output: p.output)
                case let .residual(r):
                    return LayerRecord(kind: "residual", activation: r.activation, input: r.input, output: r.output,
                                       main: records(r.main, at + ".main"), shortcut: records(r.shortcut, at + ".shortcut"))
                case let .float(f):
                    for (name, tensor) in f.module.stateDict() {
                        tensors.append(("\(at).float.\(name)", .init(dtype: "F32", shape: tensor.shape.dimensions,
                                                                      bytes: tensor.scalars.flatMap { bytes(of: $0.bitPattern) })))
                    }
                    return LayerRecord(kind: "float", activation: f.activation, input: f.input, output: f.output, module: f.name,
                                       inputShape: f.inputShape)
                }
            }
        }
        let layers = records(model.layers, "layers")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var all = metadata
        all[versionKey] = String(formatVersion)
        all[shapeKey] = String(decoding: try encoder.encode(model.exampleShape), as: UTF8.self)
        all[inputKey] = String(decoding: try encoder.encode(model.input), as: UTF8.self)
        all[layersKey] = String(decoding: try encoder.encode(layers), as: UTF8.self)
        return try SafeTensors.encode(raw: tensors, metadata: all)
    }

    private static func bytes<T: FixedWidthInteger>(of value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    /// Writes `model` to `path` atomically.
    public static func write(_ model: QuantizedModel, metadata: [String: String] = [:], to path: String) throws {
        try AtomicFile.write(encode(model, metadata: metadata), to: path)
    }

    /// Reads the quantized model at `path` and the file's metadata. A model with float stages
    /// needs a float model of the same architecture (its weights need not be trained; each
    /// float stage's module is taken from it by path and loaded from the file): `floatModel`,
    /// else the zoo model the metadata names (`architectureMetadata`).
    public static func read(_ path: String, floatModel: (any Module)? = nil) throws -> (model: QuantizedModel, metadata: [String: String]) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelFormatError(file: path, FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist")
        }
        return try parse(data, file: path, floatModel: floatModel)
    }

    /// Whether safetensors metadata marks a quantized model.
    public static func isQuantized(_ metadata: [String: String]) -> Bool { metadata[versionKey] != nil }

    /// The quantized model file `path` stands for (itself, or a folder's `model.safetensors`),
    /// or nil when it is not a quantized model.
    public static func file(at path: String) -> String? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return nil }
        let file = isDirectory.boolValue ? (path as NSString).appendingPathComponent("model.safetensors") : path
        guard let data = FileManager.default.contents(atPath: file), let parsed = try? SafeTensors.parseRaw(data, file: file) else { return nil }
        return isQuantized(parsed.metadata) ? file : nil
    }

    /// Metadata naming the float model's zoo architecture and options: a file with float
    /// stages rebuilds their modules from it when read.
    public static func architectureMetadata(name: String, options: ModelOptions) throws -> [String: String] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return [SavedModel.nameKey: name, SavedModel.optionsKey: String(decoding: try encoder.encode(options), as: UTF8.self)]
    }

    /// The zoo model `metadata` names (untrained weights), or nil when it names none.
    static func architecture(_ metadata: [String: String], file: String) throws -> (any Module)? {
        guard let name = metadata[SavedModel.nameKey], let text = metadata[SavedModel.optionsKey] else { return nil }
        guard let options = try? JSONDecoder().decode(ModelOptions.self, from: Data(text.utf8)) else {
            throw ModelFormatError(file: file, "model options in the metadata are not valid: \(text)")
        }
        var generator = RandomGenerator(seed: 0)
        do { return try ModelZoo.make(name, options: options, using: &generator) } catch let error as ModuleError {
            throw ModelFormatError(file: file, "\(error)")
        }
    }

    public static func parse(_ data: Data, file: String, floatModel given: (any Module)? = nil) throws -> (model: QuantizedModel, metadata: [String: String]) {
        let (tensors, metadata) = try SafeTensors.parseRaw(data, file: file)
        var floatModel = given
        func fail(_ problem: String) -> ModelFormatError { ModelFormatError(file: file, problem) }
        guard let version = metadata[versionKey] else { throw fail("is not a quantized model (no \(versionKey) in its metadata)") }
        guard let number = Int(version), (1...formatVersion).contains(number) else {
            throw fail("quantized format version \(version); this build reads versions 1...\(formatVersion)")
        }
        func decode<T: Decodable>(_ type: T.Type, _ key: String) throws -> T {
            guard let text = metadata[key] else { throw fail("metadata \(key) is missing") }
            do {
                return try JSONDecoder().decode(type, from: Data(text.utf8))
            } catch {
                throw fail("metadata \(key) is not valid: \(String(text.prefix(80)))")
            }
        }
        // Sizes a file may state: small enough that no product of them overflows.
        let limit = 1 << 16
        let exampleShape = try decode([Int].self, shapeKey)
        guard exampleShape.allSatisfy({ (1...limit).contains($0) }), exampleShape.reduce(1, *) <= 1 << 28 else {
            throw fail("example shape \(exampleShape) is not a list of sizes in 1...\(limit) with at most 2^28 values")
        }
        let input = try decode(QuantizationParameters.self, inputKey)
        let records = try decode([LayerRecord].self, layersKey)
        func tensor(_ name: String, _ dtype: String, count: Int? = nil) throws -> SafeTensors.RawTensor {
            guard let t = tensors[name] else { throw fail("tensor '\(name)' is missing") }
            guard t.dtype == dtype else { throw fail("tensor '\(name)' is \(t.dtype), expected \(dtype)") }
            if let count, t.shape != [count] { throw fail("tensor '\(name)' has shape \(t.shape), expected [\(count)]") }
            return t
        }
        func floats(_ t: SafeTensors.RawTensor, _ count: Int) -> [Float] {
            t.bytes.withUnsafeBytes { raw in (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) } }
        }
        func layers(_ records: [LayerRecord], _ prefix: String) throws -> [QuantizedLayer] {
            try records.enumerated().map { index, record -> QuantizedLayer in
                let at = "\(prefix).\(index)", name = "layer \(at.dropFirst("layers.".count))"
                func pair(_ values: [Int]?, _ what: String) throws -> (Int, Int) {
                    guard let values, values.count == 2, values.allSatisfy({ (0...limit).contains($0) }) else {
                        throw fail("\(name): \(what) must be two integers in 0...\(limit)")
                    }
                    return (values[0], values[1])
                }
                func weights() throws -> (QuantizedWeights, [Int32]) {
                    let w = try tensor("\(at).weight", "I8")
                    guard w.shape.count == 2, w.shape.allSatisfy({ $0 >= 1 }) else { throw fail("tensor '\(at).weight' has shape \(w.shape), expected [outputs, inputs]") }
                    let scales = floats(try tensor("\(at).weight_scale", "F32", count: w.shape[0]), w.shape[0])
                    let bias = try tensor("\(at).bias", "I32", count: w.shape[0]).bytes.withUnsafeBytes { raw in
                        (0..<w.shape[0]).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
                    }
                    guard w.shape[1] <= 65536 else { throw fail("\(name): \(w.shape[1]) inputs a channel, at most 65536") }
                    return (try QuantizedWeights(w.bytes.map { Int8(bitPattern: $0) }, outputs: w.shape[0], inputs: w.shape[1], scales: scales, name: name), bias)
                }
                func parameters(_ p: QuantizationParameters?, _ what: String) throws -> QuantizationParameters {
                    guard let p else { throw fail("\(name): no \(what) scale and zero point") }
                    return p
                }
                switch record.kind {
                case "conv2d":
                    let (w, bias) = try weights()
                    let window = Int8Window(kernel: try pair(record.kernel, "kernel"), stride: try pair(record.stride, "stride"),
                                            padding: try pair(record.padding, "padding"))
                    guard let channels = record.inChannels, (1...limit).contains(channels) else { throw fail("\(name): inChannels must be an integer in 1...\(limit)") }
                    return .conv2d(try QuantizedConv2d(weights: w, quantizedBias: bias, window: window, inChannels: channels, depthwise: record.depthwise ?? false,
                                                       input: try parameters(record.input, "input"), output: try parameters(record.output, "output"),
                                                       activation: record.activation ?? .none, name: name))
                case "linear":
                    let (w, bias) = try weights()
                    return .linear(try QuantizedLinear(weights: w, quantizedBias: bias, input: try parameters(record.input, "input"),
                                                       output: record.output, activation: record.activation ?? .none, name: name))
                case "max_pool2d":
                    return .maxPool2d(Int8Window(kernel: try pair(record.kernel, "kernel"), stride: try pair(record.stride, "stride"),
                                                 padding: try pair(record.padding, "padding")))
                case "flatten":
                    return .flatten
                case "global_average_pool":
                    return .globalAveragePool(try QuantizedGlobalAveragePool(input: try parameters(record.input, "input"),
                                                                             output: try parameters(record.output, "output")))
                case "residual":
                    return .residual(try QuantizedResidual(main: try layers(record.main ?? [], at + ".main"),
                                                           shortcut: try layers(record.shortcut ?? [], at + ".shortcut"),
                                                           input: try parameters(record.input, "input"), output: try parameters(record.output, "output"),
                                                           activation: record.activation ?? .none))
                case "float":
                    guard let path = record.module, let shape = record.inputShape, shape.allSatisfy({ (1...limit).contains($0) }) else {
                        throw fail("\(name): a float stage needs its module path and input shape")
                    }
                    if floatModel == nil { floatModel = try architecture(metadata, file: file) }
                    guard let floatModel else { throw fail("\(name) runs '\(path)' in float: reading it needs the float model") }
                    guard let module = floatModel.module(named: path) else { throw fail("\(name): the float model has no module '\(path)'") }
                    var state: [String: Tensor] = [:]
                    for (key, target) in module.stateDict() {
                        let t = try tensor("\(at).float.\(key)", "F32")
                        guard t.shape == target.shape.dimensions else { throw fail("tensor '\(at).float.\(key)' has shape \(t.shape), expected \(target.shape)") }
                        state[key] = Tensor(floats(t, target.count), shape: target.shape)
                    }
                    _ = try module.loadStateDict(state)
                    return .float(try QuantizedFloatStage(module: module, name: path, activation: record.activation ?? .none, inputShape: shape,
                                                          input: try parameters(record.input, "input"), output: record.output))
                default:
                    throw fail("\(name): unknown kind '\(record.kind)' (conv2d, linear, max_pool2d, flatten, global_average_pool, residual, float)")
                }
            }
        }
        do {
            return (try QuantizedModel(exampleShape: exampleShape, input: input, layers: try layers(records, "layers")), metadata)
        } catch let error as QuantizationError {
            throw fail("\(error)")
        }
    }
}
