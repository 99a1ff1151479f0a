import Foundation
import NeuralNet
import Tensors

/// Quantized models (`QuantizedModel`) as ONNX graphs in QDQ form, the form onnxruntime's
/// `quantize_static` writes: every uint8 activation is a QuantizeLinear → DequantizeLinear
/// pair (per tensor, its scale and zero point), the weights are int8 initializers
/// dequantized per output channel (axis 0, zero point 0), the biases int32 initializers
/// dequantized at input scale × weight scale, and the float operators between them (Conv,
/// Gemm, Add, MaxPool, GlobalAveragePool, Relu, Clip) are the ones a float model has.
/// onnxruntime fuses each DequantizeLinear → operator → QuantizeLinear into its integer
/// kernels; run as written, the graph computes what ours does up to the float rounding of
/// each requantization.
extension ONNXExport {
    /// The QDQ form of `model` (inputs of its example shape, any batch size). Layers that stay
    /// float are written as their float modules (`ONNXExportable`) between a
    /// DequantizeLinear and a QuantizeLinear.
    public static func quantized(_ model: QuantizedModel, options requested: ONNXExportOptions = ONNXExportOptions(),
                                 metadata: [String: String] = [:]) throws -> ONNXModel {
        guard (13...20).contains(requested.opset) else {
            throw ModelFormatError(file: "ONNX export", "opset \(requested.opset) is not supported (13 to 20)")
        }
        guard requested.inputScale == nil, !requested.foldBatchNorm else {
            throw ModelFormatError(file: "ONNX export", "a quantized model has its batch norms folded and takes preprocessed inputs: no built-in preprocessing or folding")
        }
        var shapes: [ObjectIdentifier: (input: Shape, output: Shape)] = [:]
        func trace(_ layers: [QuantizedLayer]) {
            for layer in layers {
                if case let .float(f) = layer { shapes.merge(f.module.traceShapes(inputShape: Shape(f.inputShape))) { a, _ in a } }
                if case let .residual(r) = layer { trace(r.main + r.shortcut) }
            }
        }
        trace(model.layers)
        let writer = QDQWriter(b: ONNXGraphBuilder(options: requested, shapes: shapes))
        let input = writer.roundTrip(requested.inputName, model.input, path: "input")
        let dims = model.exampleShape.count == 3 ? [model.exampleShape[1], model.exampleShape[2], model.exampleShape[0]] : model.exampleShape
        let (result, _) = try writer.emit(model.layers, input, dims: dims, model.input, path: "layers")
        var output = result
        if requested.appendSoftmax { output = writer.b.node("Softmax", [output], [ONNXAttribute("axis", .int(-1))], path: "softmax") }
        return assemble(writer.b, result: output, inputShape: model.exampleShape, outputShape: model.outputShape, irVersion: 8, metadata: metadata)
    }
}

/// Writes quantized layers as QDQ nodes, following the activations' shape (channels-last
/// [H, W, C], as our layers keep them) to put the weights back in ONNX's NCHW order.
struct QDQWriter {
    let b: ONNXGraphBuilder

    /// x quantized and dequantized again with `p` (uint8, per tensor).
    func roundTrip(_ x: String, _ p: QuantizationParameters, path: String) -> String {
        let scale = b.scalar(path + ".scale", p.scale)
        let zero = b.integers(path + ".zero_point", [Int(p.zeroPoint)], dims: [], elementType: ONNXTensor.uint8)
        let q = b.node("QuantizeLinear", [x, scale, zero], path: path)
        return b.node("DequantizeLinear", [q, scale, zero], path: path)
    }

    /// The dequantized weights `values` (int8, row j in `order` of dims `dims`) and bias of a layer.
    func parameters(_ w: QuantizedWeights, _ bias: [Int32], _ values: [Int], dims: [Int], input: QuantizationParameters, path: String) -> [String] {
        let outputs = w.packed.outputs
        let zeros8 = b.integers(path + ".weight_zero_point", [Int](repeating: 0, count: outputs), elementType: ONNXTensor.int8)
        let weight = b.node("DequantizeLinear", [b.integers(path + ".weight_quantized", values, dims: dims, elementType: ONNXTensor.int8),
                                                 b.initializer(path + ".weight_scale", Tensor(w.scales, shape: [outputs])), zeros8],
                            [ONNXAttribute("axis", .int(0))], path: path + ".weight")
        let zeros32 = b.integers(path + ".bias_zero_point", [Int](repeating: 0, count: outputs), elementType: ONNXTensor.int32)
        let biasScale = b.initializer(path + ".bias_scale", Tensor(w.scales.map { input.scale * $0 }, shape: [outputs]))
        let dequantizedBias = b.node("DequantizeLinear", [b.integers(path + ".bias_quantized", bias.map(Int.init), elementType: ONNXTensor.int32),
                                                          biasScale, zeros32],
                                     [ONNXAttribute("axis", .int(0))], path: path + ".bias")
        return [weight, dequantizedBias]
    }

    func activation(_ x: String, _ kind: FusedActivation, path: String) -> String {
        switch kind {
        case .none: return x
        case .relu: return b.node("Relu", [x], path: path)
        case .relu6: return b.node("Clip", [x, b.scalar(path + ".min", 0), b.scalar(path + ".max", 6)], path: path)
        }
    }

    /// The nodes of `layers` reading the dequantized value `x` of channels-last shape `dims`
    /// in `current`'s quantization; returns the last value (dequantized, or the float output)
    /// and its dims.
    func emit(_ layers: [QuantizedLayer], _ x: String, dims: [Int], _ current: QuantizationParameters, path: String) throws -> (String, [Int]) {
        var (x, dims, current) = (x, dims, current)
        var flattenedFrom: [Int]?
        for (index, layer) in layers.enumerated() {
            let at = "\(path).\(index)"
            switch layer {
            case let .conv2d(c):
                let p = c.weights.packed
                let (o, kh, kw) = (p.outputs, c.window.kernel.height, c.window.kernel.width)
                let inner = c.depthwise ? 1 : c.inChannels
                // Ours [O, kh, kw, C] (depthwise [C, kh, kw]) → ONNX's [O, C, kh, kw].
                var values = [Int](repeating: 0, count: p.weights.count)
                for j in 0..<o { for ch in 0..<inner { for y in 0..<kh { for xx in 0..<kw {
                    values[((j * inner + ch) * kh + y) * kw + xx] = Int(p.weights[((j * kh + y) * kw + xx) * inner + ch])
                } } } }
                let (s, pad) = (c.window.stride, c.window.padding)
                let conv = b.node("Conv", [x] + parameters(c.weights, c.bias, values, dims: [o, inner, kh, kw], input: c.input, path: at), [
                    ONNXAttribute("kernel_shape", .ints([kh, kw])), ONNXAttribute("strides", .ints([s.height, s.width])),
                    ONNXAttribute("pads", .ints([pad.height, pad.width, pad.height, pad.width])),
                    ONNXAttribute("group", .int(c.depthwise ? c.inChannels : 1)),
                ], path: at)
                x = roundTrip(activation(conv, c.activation, path: at), c.output, path: at + ".output")
                current = c.output
                let out = c.window.outputSize(height: dims[0], width: dims[1])!
                dims = [out.height, out.width, o]
            case let .linear(l):
                let p = l.weights.packed
                var values = p.weights.map(Int.init)
                if let image = flattenedFrom {
                    // Our columns (h, w, c) → ONNX's flatten order (c, h, w).
                    let (h, w, ch) = (image[0], image[1], image[2])
                    for j in 0..<p.outputs { for c in 0..<ch { for y in 0..<h { for xx in 0..<w {
                        values[j * p.inputs + (c * h + y) * w + xx] = Int(p.weights[j * p.inputs + (y * w + xx) * ch + c])
                    } } } }
                    flattenedFrom = nil
                }
                let gemm = b.node("Gemm", [x] + parameters(l.weights, l.bias, values, dims: [p.outputs, p.inputs], input: l.input, path: at),
                                  [ONNXAttribute("transB", .int(1))], path: at)
                let activated = activation(gemm, l.activation, path: at)
                x = l.output.map { roundTrip(activated, $0, path: at + ".output") } ?? activated
                dims = [p.outputs]
                current = l.output ?? current
            case let .maxPool2d(w):
                // Max pooling keeps its input's quantization; the pair after it says so to onnxruntime.
                let pooled = b.node("MaxPool", [x], [
                    ONNXAttribute("kernel_shape", .ints([w.kernel.height, w.kernel.width])), ONNXAttribute("strides", .ints([w.stride.height, w.stride.width])),
                    ONNXAttribute("pads", .ints([w.padding.height, w.padding.width, w.padding.height, w.padding.width])),
                ], path: at)
                x = roundTrip(pooled, current, path: at + ".output")
                let out = w.outputSize(height: dims[0], width: dims[1])!
                dims = [out.height, out.width, dims[2]]
            case .flatten:
                flattenedFrom = dims
                x = b.node("Flatten", [x], [ONNXAttribute("axis", .int(1))], path: at)
                dims = [dims.reduce(1, *)]
            case let .globalAveragePool(p):
                x = roundTrip(b.node("GlobalAveragePool", [x], path: at), p.output, path: at + ".output")
                current = p.output
                dims = [1, 1, dims[2]]
            case let .residual(r):
                let (main, mainDims) = try emit(r.main, x, dims: dims, current, path: at + ".main")
                let (shortcut, _) = try emit(r.shortcut, x, dims: dims, current, path: at + ".shortcut")
                let sum = b.node("Add", [main, shortcut], path: at)
                x = roundTrip(activation(sum, r.activation, path: at), r.output, path: at + ".output")
                dims = mainDims
                current = r.output
            case let .float(f):
                let y = activation(try b.emit(f.module, x, path: f.name), f.activation, path: at)
                x = f.output.map { roundTrip(y, $0, path: at + ".output") } ?? y
                current = f.output ?? current
                dims = f.outputShape.count == 3 ? [f.outputShape[1], f.outputShape[2], f.outputShape[0]] : f.outputShape
            }
        }
        return (x, dims)
    }
}
