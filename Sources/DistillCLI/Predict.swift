import ArgumentParser
import Datasets
import Distillation
import DistillInference
import Foundation
import NeuralNet
import Tensors

/// `distill predict MODEL INPUTS...`: class, probability and top-k for images, folders, NPY
/// arrays or CSV rows, with the preprocessing the model's run recorded.
struct Predict: TabledCommand, ComputingCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict classes for images, folders of images, .npy arrays or .csv rows with a trained model.")
    static let experimentName = "predict"
    static let topSpec = OptionSpec("top-k", .integer(1...1_000), "How many classes to list per input, most probable first.")
    static let formatSpec = OptionSpec("format", .choice(["text", "jsonl", "csv"]), "Output: aligned text, JSON lines, or CSV.")
    static let batchSpec = OptionSpec("batch", .integer(1...65_536), "Inputs run together (images are decoded a batch at a time).")
    static let options = [topSpec, formatSpec, batchSpec] + Spec.textDataOptions + [Spec.threads]

    @Argument(help: "Run folder, .safetensors or .onnx model file written by Distill (it records its preprocessing); an int8 model (a `distill quantize` folder, or a quantization-aware run's model-int8.safetensors) runs on the int8 kernels.")
    var model: String
    @Argument(help: "PNG or JPEG images, folders of them, .npy arrays ([N, ...] or one example) or .csv tables; for a text model, text files (one text a line, or cut by --text-separator), .csv/.tsv tables or .jsonl.")
    var inputs: [String]
    @Option(name: topSpec.long, help: topSpec.help) var topK: Int = 1
    @Option(name: formatSpec.long, help: formatSpec.help) var format: String = "text"
    @Option(name: batchSpec.long, help: batchSpec.help) var batch: Int = 64
    @OptionGroup var text: TextDataOptions
    @OptionGroup var compute: ComputeOptions

    var values: [(String, OptionValue?)] { [("top-k", .integer(topK)), ("format", .text(format)), ("batch", .integer(batch))] + text.values + compute.values }

    func validate() throws {
        try checkOptions()
        guard !inputs.isEmpty else { throw UserError("give at least one input: an image, a folder, an .npy or a .csv file") }
    }

    func run() throws {
        if TextModel.isTextModel(model) { return try predictTexts() }
        let loaded = try loadModel(model, role: "model")
        guard let preprocessing = loaded.preprocessing else {
            throw UserError("model \(model) records no preprocessing (it was not trained by this Distill, or came from another project): train or export it with Distill first")
        }
        if loaded.model is QuantizedModel {
            // Its example shape and classes are checked before its kernels run (a hand-made file's record may not fit them).
            try checkFits(loaded, shape: preprocessing.exampleShape, classNames: preprocessing.classNames, role: "model \(model)")
        }
        let examples: [Preprocessing.Input]
        do { examples = try preprocessing.inputs(inputs) } catch let error as DatasetError { throw UserError("\(error)") }
        let classes = preprocessing.classNames
        let k = min(topK, classes.count)
        let console = Console()
        try printHeader(classes: classes, k: k)
        // A float image or table model runs fused (batch norm folded, activations fused, weights
        // packed once), as the inference library runs it; builds without oneDNN run it as it is.
        let runner: any Module = loaded.model is QuantizedModel ? loaded.model
            : (try? FusedModel(loaded.model, exampleShape: preprocessing.exampleShape)) ?? loaded.model
        // Large images in large batches: keep a batch within the data loader's bound.
        let perBatch = max(1, min(batch, DataLoader.maximumBatchValues / max(preprocessing.exampleShape.reduce(1, *), 1)))
        for start in stride(from: 0, to: examples.count, by: perBatch) {
            let slice = examples[start..<min(start + perBatch, examples.count)]
            let inputs: Tensor
            do { inputs = try preprocessing.batch(slice) } catch let error as DatasetError { throw UserError("\(error)") }
            let logits = runner.predictions(inputs)
            guard logits.rank == 2, logits.shape[1] == classes.count else {
                throw UserError("model \(model) gives outputs \(logits.shape) for \(classes.count) classes")
            }
            printLines(logits, names: slice.map(\.name), classes: classes, k: k, console: console)
        }
    }

    /// The CSV header, for --format csv.
    func printHeader(classes: [String], k: Int) throws {
        if format == "csv" {
            Console().text((["input", "class", "probability"] + (k > 1 ? (2...k).flatMap { ["class_\($0)", "probability_\($0)"] } : [])).joined(separator: ","))
        }
    }

    /// One line per row of `logits` [inputs, classes]: the top `k` classes and their probabilities.
    func printLines(_ logits: Tensor, names: [String], classes: [String], k: Int, console: Console) {
        let probabilities = logits.softmax(alongAxis: 1).scalars
        for (row, name) in names.enumerated() {
            let p = Array(probabilities[(row * classes.count)..<((row + 1) * classes.count)])
            let top = p.indices.sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }.prefix(k)
            console.text(line(name, top.map { (classes[$0], p[$0]) }))
        }
    }

    /// A text classifier (a folder with model.safetensors and tokenizer.json) on the texts of
    /// each input file, read as --data is (a text file gives one text a line); each text is
    /// named FILE:N, N its place in the file from 1.
    func predictTexts() throws {
        let loaded = try TextModel.load(model, role: "model")
        guard let classes = loaded.classNames else {
            throw UserError("model \(model) is a sentence encoder (it gives embeddings, not classes): use `distill embed`, or predict with a text classifier")
        }
        let tokenizer = try text.tokenizer(for: loaded)
        let k = min(topK, classes.count)
        try printHeader(classes: classes, k: k)
        let console = Console()
        for input in inputs {
            let texts = try text.read(input, flag: "input")
            let data = text.dataset(texts, tokenizer: tokenizer, cacheFolder: nil)
            let logits: Tensor
            do { logits = try loaded.model.embeddings(ofTexts: data, batchSize: batch) } catch let error as DistillationError { throw UserError("\(input): \(error)") }
            guard logits.rank == 2, logits.shape[1] == classes.count else {
                throw UserError("model \(model) gives outputs \(logits.shape) for \(classes.count) classes")
            }
            printLines(logits, names: texts.texts.indices.map { "\(input):\($0 + 1)" }, classes: classes, k: k, console: console)
        }
    }

    /// One input's output line in the chosen format.
    func line(_ name: String, _ top: [(String, Float)]) -> String {
        switch format {
        case "jsonl":
            let object: [String: Any] = ["input": name, "class": top[0].0, "probability": Double(top[0].1),
                                         "top": top.map { ["class": $0.0, "probability": Double($0.1)] }]
            return String(decoding: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data(), as: UTF8.self)
        case "csv":
            func quoted(_ text: String) -> String {
                text.contains(where: { $0 == "," || $0 == "\"" || $0.isNewline }) ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
            }
            return ([quoted(name)] + top.flatMap { [quoted($0.0), String(format: "%.6f", $0.1)] }).joined(separator: ",")
        default:
            return "\(name)\t" + top.map { String(format: "%@ %.2f%%", $0.0, $0.1 * 100) }.joined(separator: "\t")
        }
    }
}
