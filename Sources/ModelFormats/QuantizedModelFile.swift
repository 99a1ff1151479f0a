import Foundation
import NeuralNet
import Tensors

/// A quantized model (`QuantizedModel`) as a safetensors file:
///
/// - tensors `layers.<i>.weight` (I8 [outputs, inputs], channels-last columns for
///   convolutions), `layers.<i>.weight_scale` (F32 [outputs]) and `layers.<i>.bias` (I32
///   [outputs], at input scale × weight scale) for each convolution and linear layer i;
/// - metadata `distill.quantized.version` (the format version, now 1),
///   `distill.quantized.example_shape` (JSON [C, H, W] or [F]), `distill.quantized.input`
///   (the input's scale and zero point) and `distill.quantized.layers` (JSON: each layer's
///   kind, window, activation and its input's and output's scale and zero point), plus any
///   metadata the caller adds (the float model's name, the preprocessing).
///
/// Reading checks everything a damaged or hand-made file can get wrong (truncation, dtypes,
/// shapes, zero or non-finite scales, layers that do not fit) and says what in one line.
public enum QuantizedModelFile {
    public static let formatVersion = 1
    static let versionKey = "distill.quantized.version", shapeKey = "distill.quantized.example_shape"
    static let inputKey = "distill.quantized.input", layersKey = "distill.quantized.layers"

    /// A layer's description in the metadata.
    struct LayerRecord: Codable {
        var kind: String // conv2d, linear, max_pool2d, flatten
        var kernel: [Int]?, stride: [Int]?, padding: [Int]?
        var inChannels: Int?
        var activation: FusedActivation?
        var input: QuantizationParameters?, output: QuantizationParameters?
    }

    /// The file's bytes for `model`, with `metadata` added.
    public static func encode(_ model: QuantizedModel, metadata: [String: String] = [:]) throws -> Data {
        var tensors: [(name: String, tensor: SafeTensors.RawTensor)] = []
        var records: [LayerRecord] = []
        func addWeights(_ index: Int, _ w: QuantizedWeights, _ bias: [Int32]) {
            let p = w.packed
            tensors.append(("layers.\(index).weight", .init(dtype: "I8", shape: [p.outputs, p.inputs], bytes: p.weights.map { UInt8(bitPattern: $0) })))
            tensors.append(("layers.\(index).weight_scale", .init(dtype: "F32", shape: [p.outputs], bytes: w.scales.flatMap { bytes(of: $0.bitPattern) })))
            tensors.append(("layers.\(index).bias", .init(dtype: "I32", shape: [p.outputs], bytes: bias.flatMap { bytes(of: UInt32(bitPattern: $0)) })))
        }
        for (index, layer) in model.layers.enumerated() {
            switch layer {
            case let .conv2d(c):
                addWeights(index, c.weights, c.bias)
                records.append(LayerRecord(kind: "conv2d", kernel: [c.window.kernel.height, c.window.kernel.width],
                                           stride: [c.window.stride.height, c.window.stride.width],
                                           padding: [c.window.padding.height, c.window.padding.width], inChannels: c.inChannels,
                                           activation: c.activation, input: c.input, output: c.output))
            case let .linear(l):
                addWeights(index, l.weights, l.bias)
                records.append(LayerRecord(kind: "linear", activation: l.activation, input: l.input, output: l.output))
            case let .maxPool2d(w):
                records.append(LayerRecord(kind: "max_pool2d", kernel: [w.kernel.height, w.kernel.width], stride: [w.stride.height, w.stride.width],
                                           padding: [w.padding.height, w.padding.width]))
            case .flatten:
                records.append(LayerRecord(kind: "flatten"))
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var all = metadata
        all[versionKey] = String(formatVersion)
        all[shapeKey] = String(decoding: try encoder.encode(model.exampleShape), as: UTF8.self)
        all[inputKey] = String(decoding: try encoder.encode(model.input), as: UTF8.self)
        all[layersKey] = String(decoding: try encoder.encode(records), as: UTF8.self)
        return try SafeTensors.encode(raw: tensors, metadata: all)
    }

    private static func bytes<T: FixedWidthInteger>(of value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    /// Writes `model` to `path` atomically.
    public static func write(_ model: QuantizedModel, metadata: [String: String] = [:], to path: String) throws {
        try AtomicFile.write(encode(model, metadata: metadata), to: path)
    }

    /// Reads the quantized model at `path` and the file's metadata.
    public static func read(_ path: String) throws -> (model: QuantizedModel, metadata: [String: String]) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelFormatError(file: path, FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist")
        }
        return try parse(data, file: path)
    }

    /// Whether safetensors metadata marks a quantized model.
    public static func isQuantized(_ metadata: [String: String]) -> Bool { metadata[versionKey] != nil }

    public static func parse(_ data: Data, file: String) throws -> (model: QuantizedModel, metadata: [String: String]) {
        let (tensors, metadata) = try SafeTensors.parseRaw(data, file: file)
        func fail(_ problem: String) -> ModelFormatError { ModelFormatError(file: file, problem) }
        guard let version = metadata[versionKey] else { throw fail("is not a quantized model (no \(versionKey) in its metadata)") }
        guard version == String(formatVersion) else { throw fail("quantized format version \(version); this build reads version \(formatVersion)") }
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
        func pair(_ values: [Int]?, _ what: String, _ index: Int) throws -> (Int, Int) {
            guard let values, values.count == 2, values.allSatisfy({ (0...limit).contains($0) }) else {
                throw fail("layer \(index): \(what) must be two integers in 0...\(limit)")
            }
            return (values[0], values[1])
        }
        var layers: [QuantizedLayer] = []
        do {
            for (index, record) in records.enumerated() {
                let name = "layer \(index)"
                func weights() throws -> (QuantizedWeights, [Int32]) {
                    let w = try tensor("layers.\(index).weight", "I8")
                    guard w.shape.count == 2, w.shape.allSatisfy({ $0 >= 1 }) else { throw fail("tensor 'layers.\(index).weight' has shape \(w.shape), expected [outputs, inputs]") }
                    let scales = try tensor("layers.\(index).weight_scale", "F32", count: w.shape[0]).bytes.withUnsafeBytes { raw in
                        (0..<w.shape[0]).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
                    }
                    let bias = try tensor("layers.\(index).bias", "I32", count: w.shape[0]).bytes.withUnsafeBytes { raw in
                        (0..<w.shape[0]).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
                    }
                    guard w.shape[1] <= 65536 else { throw fail("layer \(index): \(w.shape[1]) inputs a channel, at most 65536") }
                    return (try QuantizedWeights(w.bytes.map { Int8(bitPattern: $0) }, outputs: w.shape[0], inputs: w.shape[1], scales: scales, name: name), bias)
                }
                func activationParameters(_ p: QuantizationParameters?, _ what: String) throws -> QuantizationParameters {
                    guard let p else { throw fail("layer \(index): no \(what) scale and zero point") }
                    return p
                }
                switch record.kind {
                case "conv2d":
                    let (w, bias) = try weights()
                    let window = Int8Window(kernel: try pair(record.kernel, "kernel", index), stride: try pair(record.stride, "stride", index),
                                            padding: try pair(record.padding, "padding", index))
                    guard let channels = record.inChannels, (1...limit).contains(channels) else { throw fail("layer \(index): inChannels must be an integer in 1...\(limit)") }
                    layers.append(.conv2d(try QuantizedConv2d(weights: w, quantizedBias: bias, window: window, inChannels: channels,
                                                              input: try activationParameters(record.input, "input"),
                                                              output: try activationParameters(record.output, "output"),
                                                              activation: record.activation ?? .none, name: name)))
                case "linear":
                    let (w, bias) = try weights()
                    layers.append(.linear(try QuantizedLinear(weights: w, quantizedBias: bias, input: try activationParameters(record.input, "input"),
                                                              output: record.output, activation: record.activation ?? .none, name: name)))
                case "max_pool2d":
                    layers.append(.maxPool2d(Int8Window(kernel: try pair(record.kernel, "kernel", index), stride: try pair(record.stride, "stride", index),
                                                        padding: try pair(record.padding, "padding", index))))
                case "flatten":
                    layers.append(.flatten)
                default:
                    throw fail("layer \(index): unknown kind '\(record.kind)' (conv2d, linear, max_pool2d, flatten)")
                }
            }
            return (try QuantizedModel(exampleShape: exampleShape, input: input, layers: layers), metadata)
        } catch let error as QuantizationError {
            throw fail("\(error)")
        }
    }
}
