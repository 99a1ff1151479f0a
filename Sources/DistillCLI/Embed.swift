import ArgumentParser
import Datasets
import Distillation
import Foundation
import Tensors

/// `distill embed MODEL TEXTS --out FILE`: one embedding per text with a text model (a
/// teacher folder such as all-MiniLM-L6-v2's, an ONNX text graph, or a text run of `distill distill`).
struct Embed: TabledCommand, ComputingCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write one embedding per text (per non-blank line of a text file) with a text model: a teacher folder, an ONNX text graph or a text run.")
    static let experimentName = "embed"
    static let outSpec = OptionSpec("out", .text, "The file to write: .npy (float32 [texts, dimension]) or .jsonl (one JSON array of numbers a line).")
    static let batchSpec = OptionSpec("batch", .integer(1...65_536), "Texts run together (texts of similar lengths are batched together).")
    static let options = [outSpec, batchSpec, Spec.textSeparator, Spec.textColumn, Spec.maxTokens, Spec.threads]

    @Argument(help: "A text model: a folder with tokenizer.json and model.safetensors (a Hugging Face sentence encoder, or a Distill text run) or model.onnx, or an .onnx file with tokenizer.json beside it.")
    var model: String
    @Argument(help: "The texts: a text file (one a line, or cut by --text-separator), a .csv/.tsv table, .jsonl, or a folder of text files.")
    var texts: String
    @Option(name: outSpec.long, help: outSpec.help) var out: String
    @Option(name: batchSpec.long, help: batchSpec.help) var batch: Int = 32
    @OptionGroup var text: TextDataOptions
    @OptionGroup var compute: ComputeOptions

    var values: [(String, OptionValue?)] { [("out", .text(out)), ("batch", .integer(batch))] + text.values + compute.values }

    func validate() throws {
        try checkOptions()
        guard ["npy", "jsonl"].contains((out as NSString).pathExtension.lowercased()) else {
            throw UserError("--out \(out): give a .npy or .jsonl file")
        }
    }

    func run() throws {
        let read = try text.read(texts, flag: "texts")
        let loaded = try TextModel.load(model, role: "model")
        let data = text.dataset(read, tokenizer: try text.tokenizer(for: loaded), cacheFolder: nil)
        let embeddings: Tensor
        do { embeddings = try loaded.model.embeddings(ofTexts: data, batchSize: batch) } catch let error as DistillationError {
            throw UserError("\(texts): \(error)")
        }
        if (out as NSString).pathExtension.lowercased() == "npy" {
            try NPY.write(embeddings, to: out)
        } else {
            try AtomicFile.write(Data(Self.jsonLines(embeddings).utf8), to: out)
        }
        Console().result("wrote \(embeddings.shape[0]) embeddings of \(embeddings.shape[1]) values to \(out)",
                         ["texts": embeddings.shape[0], "dimension": embeddings.shape[1], "out": out])
    }

    /// One JSON array a row, each number the shortest decimal that reads back as the same Float.
    static func jsonLines(_ rows: Tensor) -> String {
        let width = rows.shape[1], values = rows.scalars
        var text = ""
        for row in 0..<rows.shape[0] {
            text += "[" + values[(row * width)..<((row + 1) * width)].map { "\($0)" }.joined(separator: ",") + "]\n"
        }
        return text
    }
}
