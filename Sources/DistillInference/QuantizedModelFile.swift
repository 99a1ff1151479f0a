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
/// Reading is here, in the inference library; writing is ModelFormats' (`encode`, `write`).
public enum QuantizedModelFile {
    public static let formatVersion = 2
    package static let versionKey = "distill.quantized.version", shapeKey = "distill.quantized.example_shape"
    package static let inputKey = "distill.quantized.input", layersKey = "distill.quantized.layers"

    /// A layer's description in the metadata.
    package struct LayerRecord: Codable {
        package var kind: String // conv2d, linear, max_pool2d, flatten, global_average_pool, residual, float
        package var kernel: [Int]?, stride: [Int]?, padding: [Int]?
        package var inChannels: Int?
        package var depthwise: Bool?
        package var activation: FusedActivation?
        package var input: QuantizationParameters?, output: QuantizationParameters?
        package var main: [LayerRecord]?, shortcut: [LayerRecord]?
        package var module: String?, inputShape: [Int]?

        package init(kind: String, kernel: [Int]? = nil, stride: [Int]? = nil, padding: [Int]? = nil, inChannels: Int? = nil,
                     depthwise: Bool? = nil, activation: FusedActivation? = nil, input: QuantizationParameters? = nil,
                     output: QuantizationParameters? = nil, main: [LayerRecord]? = nil, shortcut: [LayerRecord]? = nil,
                     module: String? = nil, inputShape: [Int]? = nil) {
            (self.kind, self.kernel, self.stride, self.padding, self.inChannels, self.depthwise) = (kind, kernel, stride, padding, inChannels, depthwise)
            (self.activation, self.input, self.output, self.main, self.shortcut) = (activation, input, output, main, shortcut)
            (self.module, self.inputShape) = (module, inputShape)
        }
    }

    /// Reads the quantized model at `path` and the file's metadata. A model with float stages
    /// needs a float model of the same architecture (its weights need not be trained; each
    /// float stage's module is taken from it by path and loaded from the file): `floatModel`,
    /// else the zoo model the metadata names (`architectureMetadata`).
    public static func read(_ path: String, floatModel: (any Module)? = nil) throws -> (model: QuantizedModel, metadata: [String: String]) {
        try parse(SafeTensors.bytes(of: path), file: path, floatModel: floatModel)
    }

    /// Whether safetensors metadata marks a quantized model.
    public static func isQuantized(_ metadata: [String: String]) -> Bool { metadata[versionKey] != nil }

    /// The quantized model file `path` stands for (itself, or a folder's `model.safetensors`),
    /// or nil when it is not a quantized model.
    public static func file(at path: String) -> String? {
        guard let file = try? SavedModel.modelFile(at: path), let data = FileManager.default.contents(atPath: file),
              let metadata = try? SafeTensors.metadata(data, file: file) else { return nil }
        return isQuantized(metadata) ? file : nil
    }

    /// The zoo model `metadata` names (untrained weights), or nil when it names none.
    static func architecture(_ metadata: [String: String], file: String) throws -> (any Module)? {
        guard let name = metadata[SavedModel.nameKey], let text = metadata[SavedModel.optionsKey] else { return nil }
        guard let options = try? JSONDecoder().decode(ModelOptions.self, from: Data(text.utf8)) else {
            throw FileError(file: file, "model options in the metadata are not valid: \(text)")
        }
        var generator = RandomGenerator(seed: 0)
        do { return try ModelZoo.make(name, options: options, using: &generator) } catch let error as ModuleError {
            throw FileError(file: file, "\(error)")
        }
    }

    public static func parse(_ data: Data, file: String, floatModel given: (any Module)? = nil) throws -> (model: QuantizedModel, metadata: [String: String]) {
        let (tensors, metadata) = try SafeTensors.parseRaw(data, file: file)
        var floatModel = given
        func fail(_ problem: String) -> FileError { FileError(file: file, problem) }
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
