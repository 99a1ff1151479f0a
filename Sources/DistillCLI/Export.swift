import ArgumentParser
import Datasets
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// `distill export`: writes a trained model for deployment (ONNX) or for PyTorch (safetensors).
struct Export: TabledCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a trained model: an ONNX graph for deployment, or a safetensors state dict PyTorch loads.")

    @Argument(help: "Run folder, model file (.safetensors) or ONNX file (an imported or transferred model, re-exported with its current weights); a `distill quantize` folder exports its int8 model to ONNX in QDQ form; a text run exports with token inputs input_ids and attention_mask.")
    var model: String

    static let formatSpec = OptionSpec("format", .choice(["onnx", "safetensors"]), "Output format (default: from the --out extension, else safetensors).")
    static let outSpec = OptionSpec("out", .text, "File to write.")
    static let opsetSpec = OptionSpec("opset", .integer(13...20), "ONNX operator set (default 17; a model holding an imported ONNX graph keeps that graph's).")
    static let foldSpec = OptionSpec("fold-batchnorm", .flag, "ONNX: fold each batch norm that follows a convolution into the convolution's weights.")
    static let softmaxSpec = OptionSpec("softmax", .flag, "ONNX: end the graph with a softmax (probabilities instead of logits).")
    static let preprocessingSpec = OptionSpec("include-preprocessing", .flag,
        "ONNX: build the run's normalisation into the graph, so that it takes raw 0-255 pixels (or raw table features); resizing stays outside.")
    static let experimentName = "export"
    static let options = [formatSpec, outSpec, opsetSpec, foldSpec, softmaxSpec, preprocessingSpec]

    @Option(name: formatSpec.long, help: formatSpec.help) var format: String?
    @Option(name: outSpec.long, help: outSpec.help) var out: String
    @Option(name: opsetSpec.long, help: opsetSpec.help) var opset: Int?
    @Flag(name: foldSpec.long, help: foldSpec.help) var foldBatchnorm = false
    @Flag(name: softmaxSpec.long, help: softmaxSpec.help) var softmax = false
    @Flag(name: preprocessingSpec.long, help: preprocessingSpec.help) var includePreprocessing = false

    var values: [(String, OptionValue?)] {
        [("format", .text(resolvedFormat)), ("out", .text(out)), ("opset", opset.map { .integer($0) }), ("fold-batchnorm", .flag(foldBatchnorm)),
         ("softmax", .flag(softmax)), ("include-preprocessing", .flag(includePreprocessing))]
    }

    var resolvedFormat: String { format ?? (out.lowercased().hasSuffix(".onnx") ? "onnx" : "safetensors") }

    func validate() throws {
        try checkOptions()
        if includePreprocessing && resolvedFormat != "onnx" { throw UserError("--include-preprocessing applies to ONNX export") }
    }

    func run() throws {
        do {
            if let file = SavedModel.onnxFile(at: model) { return try exportImported(file) }
            if let file = QuantizedModelFile.file(at: model) { return try exportQuantized(file) }
            let loaded = try SavedModel.load(model)
            if resolvedFormat == "onnx", loaded.options.vocabularySize != nil { return try exportText(loaded) }
            if resolvedFormat == "onnx" {
                let opset = opset ?? 17
                var options = ONNXExportOptions(opset: opset, foldBatchNorm: foldBatchnorm, appendSoftmax: softmax)
                var metadata = ["distill.model": loaded.name]
                let preprocessing = try loaded.metadata[Preprocessing.metadataKey].map { try Preprocessing.decode($0, file: loaded.file) }
                if let preprocessing {
                    var stated = preprocessing
                    if includePreprocessing {
                        // The graph now normalises: what it takes is raw pixels (0-255) or raw features.
                        let n = preprocessing.normalization, pixels: Float = preprocessing.kind == .images ? 255 : 1
                        options.inputScale = n.standardDeviation.map { 1 / (pixels * $0) }
                        options.inputShift = zip(n.mean, n.standardDeviation).map { -$0 / $1 }
                        stated.normalization = Normalization(mean: n.mean.map { _ in 0 }, standardDeviation: n.standardDeviation.map { _ in 1 / pixels })
                    }
                    metadata[Preprocessing.metadataKey] = stated.json
                    metadata.merge(Self.describe(preprocessing, built: includePreprocessing)) { a, _ in a }
                } else if includePreprocessing {
                    throw UserError("\(model) records no preprocessing to build in (it was saved before Distill recorded it)")
                }
                let shape = loaded.options.exampleShape
                let onnx = try ONNXExport.model(loaded.model, inputShape: shape, options: options, metadata: metadata)
                try onnx.write(to: out)
                Console().text("wrote \(out): \(loaded.name) as ONNX (opset \(opset), \(onnx.graph.nodes.count) nodes, input [batch, \(shape.map(String.init).joined(separator: ", "))]\(includePreprocessing ? ", raw \(preprocessing?.kind == .images ? "0-255 pixels" : "features") in" : ""))")
            } else {
                // Only the model's own tensors: a distillation run's teachers and loss parts never travel.
                try SavedModel.save(loaded.model, name: loaded.name, options: loaded.options, to: out,
                                    metadata: loaded.metadata.filter { $0.key == Preprocessing.metadataKey })
                // A text model's ids mean nothing without its tokenizer: it goes beside the file, as for ONNX.
                let note = loaded.options.vocabularySize == nil ? "" : try copyTokenizer(from: (loaded.file as NSString).deletingLastPathComponent)
                Console().text("wrote \(out): \(loaded.name), \(loaded.model.parameterCount) parameters\(note)")
            }
        } catch let error as ModelFormatError { throw UserError("\(error)") }
    }

    /// Human-readable metadata entries saying what input the exported graph expects (with the
    /// training normalisation, also when it is built into the graph).
    static func describe(_ p: Preprocessing, built: Bool) -> [String: String] {
        func list(_ values: [Float]) -> String { values.map { String(format: "%.6g", $0) }.joined(separator: ",") }
        var entries = ["distill.classes": p.classNames.joined(separator: ","), "distill.input.mean": list(p.normalization.mean),
                       "distill.input.std": list(p.normalization.standardDeviation)]
        if p.kind == .images {
            entries["distill.input"] = built
                ? "images [batch, \(p.channels), \(p.height), \(p.width)], \((p.channelOrder ?? .rgb).rawValue.uppercased()), raw pixel values 0-255 (normalisation is inside the graph)"
                : "images [batch, \(p.channels), \(p.height), \(p.width)], \((p.channelOrder ?? .rgb).rawValue.uppercased()), pixels scaled to [0, 1] then (x - mean) / std per channel"
        } else {
            entries["distill.input"] = built ? "features [batch, \(p.exampleShape[0])], raw values (standardisation is inside the graph)"
                : "features [batch, \(p.exampleShape[0])], (x - mean) / std per feature"
            if let names = p.featureNames { entries["distill.features"] = names.joined(separator: ",") }
        }
        return entries
    }

    /// A text model (`text-bag`, `text-transformer`) as an ONNX graph with Hugging Face's
    /// token inputs (int64 input_ids, attention_mask, and token_type_ids for the transformer;
    /// open batch and sequence axes) and the embedding as its output `sentence_embedding`.
    /// The run's tokenizer.json is copied beside the file (unless one is there already), so
    /// that the file is a text model for `distill embed` and `--teacher` as it stands.
    func exportText(_ loaded: SavedModel.Loaded) throws {
        for (flag, given) in [("softmax", softmax), ("fold-batchnorm", foldBatchnorm), ("include-preprocessing", includePreprocessing)] where given {
            throw UserError("--\(flag): \(model) is a text model, whose graph reads token ids and ends in its embedding")
        }
        if DynamicQuantization.isQuantized(loaded.model) {
            throw UserError("model \(model) is an int8 text model (distill quantize): its ONNX export is not written yet; export the float run it came from "
                + "(onnxruntime's quantize_dynamic quantizes that graph the same way), or export to .safetensors (int8 tensors with their scales)")
        }
        let opset = opset ?? 17
        let inputs = loaded.model is TextTransformer ? ONNXTokenInputs.names : ["input_ids", "attention_mask"]
        var metadata = ["distill.model": loaded.name,
                        "distill.input": "token ids of the tokenizer.json beside this file: \(inputs.joined(separator: ", ")), int64 [batch, sequence]"]
        let output: String
        if let classes = try TextClassifierRecord.classNames(loaded.metadata, file: loaded.file) {
            output = "logits [batch, \(classes.count)]"
            metadata["distill.output"] = "logits [batch, \(classes.count)] of the classes in distill.classes"
            metadata["distill.classes"] = classes.joined(separator: ",")
        } else {
            output = "sentence_embedding [batch, \(loaded.options.classes)]"
            metadata["distill.output"] = output + ", L2-normalised"
        }
        let onnx = try ONNXExport.textModel(loaded.model, options: ONNXExportOptions(opset: opset), metadata: metadata)
        try onnx.write(to: out)
        let note = try copyTokenizer(from: (loaded.file as NSString).deletingLastPathComponent)
        Console().text("wrote \(out): \(loaded.name) as ONNX (opset \(opset), \(onnx.graph.nodes.count) nodes, inputs \(inputs.joined(separator: ", ")) [batch, sequence], output \(output))\(note)")
    }

    /// Copies `folder`'s tokenizer.json beside --out unless one is there already; says what it did.
    func copyTokenizer(from folder: String?) throws -> String {
        guard let folder else { return "" }
        let source = (folder as NSString).appendingPathComponent(TextModel.tokenizerFile)
        let target = ((out as NSString).deletingLastPathComponent as NSString).appendingPathComponent(TextModel.tokenizerFile)
        guard let tokenizer = FileManager.default.contents(atPath: source), (source as NSString).standardizingPath != (target as NSString).standardizingPath else {
            return ""
        }
        if let present = FileManager.default.contents(atPath: target) {
            return present == tokenizer ? "" : "; \(target) differs from the model's tokenizer.json and was left as it is"
        }
        try AtomicFile.write(tokenizer, to: target)
        return ", with tokenizer.json beside it"
    }

    /// A quantized model (`distill quantize`'s folder or file) as an ONNX graph in QDQ form.
    func exportQuantized(_ file: String) throws {
        guard resolvedFormat == "onnx" else { throw UserError("\(model) is a quantized model, which exports to ONNX only (QDQ form)") }
        guard !includePreprocessing, !foldBatchnorm else {
            throw UserError("\(model) is a quantized model: its batch norms are folded already, and its graph takes preprocessed inputs (no --include-preprocessing or --fold-batchnorm)")
        }
        let (quantized, fileMetadata) = try QuantizedModelFile.read(file)
        var metadata = fileMetadata.filter { $0.key == "distill.model" || $0.key == Preprocessing.metadataKey }
        if let preprocessing = try fileMetadata[Preprocessing.metadataKey].map({ try Preprocessing.decode($0, file: file) }) {
            metadata.merge(Self.describe(preprocessing, built: false)) { a, _ in a }
        }
        let opset = opset ?? 17
        let onnx = try ONNXExport.quantized(quantized, options: ONNXExportOptions(opset: opset, appendSoftmax: softmax), metadata: metadata)
        try onnx.write(to: out)
        Console().text("wrote \(out): \(fileMetadata["distill.model"] ?? "the model") int8 as ONNX in QDQ form (opset \(opset), \(onnx.graph.nodes.count) nodes, input [batch, \(quantized.exampleShape.map(String.init).joined(separator: ", "))])")
    }

    /// An ONNX model (a file, or a transfer run's `model.onnx`) written again as ONNX, at its own
    /// opset; a text graph with its token inputs as it read them.
    func exportImported(_ file: String) throws {
        let network = try ONNXNetwork(contentsOf: file)
        guard resolvedFormat == "onnx" else {
            throw UserError("\(model) is an ONNX model, which exports to ONNX only (no zoo architecture rebuilds it from safetensors)")
        }
        guard !includePreprocessing else {
            throw UserError("--include-preprocessing: \(model) is an imported ONNX graph, written as it is; its metadata says what input it expects")
        }
        if let opset, opset != network.model.opset {
            throw UserError("--opset \(opset): \(model) holds an ONNX graph of opset \(network.model.opset), which is written as it is (Distill does not convert operators between opsets)")
        }
        if let tokens = network.tokenInputs {
            // A text graph keeps the token inputs it was read with (Hugging Face's layout), and its tokenizer goes beside it.
            for (flag, given) in [("softmax", softmax), ("fold-batchnorm", foldBatchnorm)] where given {
                throw UserError("--\(flag): \(model) is a text model, written with its token inputs as it is")
            }
            let onnx = network.currentModel()
            try onnx.write(to: out)
            let note = try copyTokenizer(from: TextModel.tokenizerFolder(ofONNX: file))
            return Console().text("wrote \(out): \((file as NSString).lastPathComponent) as ONNX (opset \(onnx.opset), \(onnx.graph.nodes.count) nodes, inputs \(tokens.inputs.joined(separator: ", ")) as read\(note))")
        }
        let options = ONNXExportOptions(opset: network.model.opset, foldBatchNorm: foldBatchnorm, appendSoftmax: softmax)
        let onnx = try ONNXExport.model(network, inputShape: network.inputShape, options: options, metadata: network.model.metadata)
        try onnx.write(to: out)
        Console().text("wrote \(out): \((file as NSString).lastPathComponent) as ONNX (opset \(onnx.opset), \(onnx.graph.nodes.count) nodes, input [batch, \(network.inputShape.map(String.init).joined(separator: ", "))])")
    }
}
