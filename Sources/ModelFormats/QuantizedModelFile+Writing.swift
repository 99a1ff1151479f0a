import DistillInference
import Foundation
import NeuralNet
import Tensors

/// Writing quantized model files (the reader is DistillInference's `QuantizedModelFile`).
extension QuantizedModelFile {
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

    /// Metadata naming the float model's zoo architecture and options: a file with float
    /// stages rebuilds their modules from it when read.
    public static func architectureMetadata(name: String, options: ModelOptions) throws -> [String: String] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return [SavedModel.nameKey: name, SavedModel.optionsKey: String(decoding: try encoder.encode(options), as: UTF8.self)]
    }
}
