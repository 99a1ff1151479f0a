import Tensors

/// Dynamic int8 quantization of a float model, the scheme PyTorch's `quantize_dynamic` and
/// onnxruntime's `quantize_dynamic` apply to transformers (docs/quantization.md, "Text
/// models"): every `Linear` gets int8 weights per output channel and computes with each input
/// row quantized on the fly (`Tensor.int8Linear`); every `Embedding` table is kept in int8
/// with a scale per row (lookups return the values it stands for); the rest (layer norms,
/// attention's softmax and products, GELU, pooling) stays float. No calibration: activation
/// ranges are each row's own. Static quantization (`Quantizer`), calibrated, is the scheme
/// for convolutional networks; both share the int8 GEMM and the per-channel weight scheme.
public enum DynamicQuantization {
    /// The safetensors metadata key of a model file holding int8 layers, and its value.
    public static let metadataKey = "distill.int8", metadataValue = "dynamic"
    /// The suffix of the tensor holding an int8 tensor's scales: `X.weight_scale` for `X.weight`.
    public static let scaleSuffix = "_scale"

    /// Quantizes every linear layer and embedding table of `model`; returns their module paths.
    /// A layer with more than `DynamicInt8Weights.maxInputs` inputs (or a table rows that long)
    /// stays float: its int32 sums could overflow.
    @discardableResult
    public static func quantize(_ model: any Module) -> [String] {
        var paths: [String] = []
        for (path, module) in model.namedModules() {
            if let linear = module as? Linear, linear.inFeatures <= DynamicInt8Weights.maxInputs {
                linear.setInt8(DynamicInt8Weights(quantizing: linear.weight.scalars, outputs: linear.outFeatures, inputs: linear.inFeatures))
            } else if let table = module as? Embedding, table.dimension <= DynamicInt8Weights.maxInputs {
                table.setInt8(DynamicInt8Weights(quantizing: table.weight.scalars, outputs: table.count, inputs: table.dimension))
            } else {
                continue
            }
            paths.append(path)
        }
        return paths
    }

    /// The int8 weights of `model`'s quantized layers by parameter name (`encoder.layer.0.
    /// attention.self.query.weight`), for saving: those whose `weight` still holds exactly
    /// the values their int8 stands for (a table or layer changed since, by training or
    /// loading, is float again).
    public static func int8Weights(of model: any Module) -> [String: DynamicInt8Weights] {
        var result: [String: DynamicInt8Weights] = [:]
        for (path, module) in model.namedModules() {
            let found: (DynamicInt8Weights, Tensor)? = (module as? Linear).flatMap { l in l.int8.map { ($0, l.weight) } }
                ?? (module as? Embedding).flatMap { e in e.int8.map { ($0, e.weight) } }
            guard let (int8, weight) = found, weight.scalars == int8.dequantized else { continue }
            result[path.isEmpty ? "weight" : path + ".weight"] = int8
        }
        return result
    }

    /// Whether `model` has a quantized layer.
    public static func isQuantized(_ model: any Module) -> Bool {
        model.namedModules().contains { ($0.module as? Linear)?.int8 != nil || ($0.module as? Embedding)?.int8 != nil }
    }

    /// Gives the layer owning the parameter `name` (`X.weight`) the int8 weights `weights`;
    /// an error when no linear layer or embedding table of that shape owns it.
    public static func setInt8(_ weights: DynamicInt8Weights, parameter name: String, in model: any Module) throws {
        let path = name == "weight" ? "" : String(name.dropLast(".weight".count))
        guard name.hasSuffix("weight"), let module = model.module(named: path) else {
            throw ModuleError.invalidOption("\(name)\(scaleSuffix) names no linear layer or embedding table of the model")
        }
        if let linear = module as? Linear, linear.outFeatures == weights.outputs, linear.inFeatures == weights.inputs {
            linear.setInt8(weights)
        } else if let table = module as? Embedding, table.count == weights.outputs, table.dimension == weights.inputs {
            table.setInt8(weights)
        } else {
            throw ModuleError.invalidOption("\(name)\(scaleSuffix) names no linear layer or embedding table of shape [\(weights.outputs), \(weights.inputs)]")
        }
    }
}
