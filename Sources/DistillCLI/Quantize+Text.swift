import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// `distill quantize TEXT_RUN --data TEXTS --out DIR`: dynamic int8 quantization of a text
/// run (`DynamicQuantization`: int8 linear layers with each input row quantized on the fly,
/// int8 embedding tables; docs/quantization.md, "Text models"), compared with the float run
/// on the texts of --data.
extension Quantize {
    /// What `distill quantize` found for a text model, written as quantization.json.
    struct TextQuantizationReport: Codable {
        var model: String
        var scheme = "dynamic int8: weights per output channel (tables per row), each input row of a linear layer quantized on the fly"
        var int8Layers: Int
        var texts: Int
        /// A sentence encoder's agreement between its int8 and float embeddings (mean cosine,
        /// similarity Spearman on up to 10,000 pairs of the texts).
        var meanCosine: Double?
        var similaritySpearman: Double?
        /// A text classifier's: the fraction of texts where both give the same class.
        var agreement: Double?
        var maxAbsoluteDifference: Double
        /// With --teacher: each model's agreement with the teacher on the same texts and pairs.
        var teacher: String?
        var floatAgainstTeacher: EmbeddingAgreement?
        var int8AgainstTeacher: EmbeddingAgreement?
        var floatFileBytes: Int
        var int8FileBytes: Int
        /// Median forward time of one batch of the `latencyBatch` longest texts (`latencyTokens` tokens each, padded).
        var latencyBatch: Int
        var latencyTokens: Int
        var floatLatencyMilliseconds: Double
        var int8LatencyMilliseconds: Double
        var kernelPath: String
        var threads: Int
    }

    func quantizeText() throws {
        for (name, given) in [("calibration", calibration != 512), ("calibration-method", calibrationMethod != CalibrationMethod.minMax.rawValue),
                              ("percentile", percentile != 99.99)] where given {
            throw UserError("--\(name): a text model is quantized dynamically (each row's own range at run time), with no calibration")
        }
        guard dataOptions.data != FashionMNIST.defaultDirectory else {
            throw UserError("--data: give texts to compare the int8 text model with the float one on (a text file, a folder of text files, .csv/.tsv or .jsonl)")
        }
        let loaded = try TextModel.load(model, role: "model")
        guard let name = loaded.name, let options = loaded.options else {
            throw UserError("model \(model) is \(loaded.isONNX ? "an ONNX graph" : "a Hugging Face encoder"): quantize a Distill text run "
                + "(distill distill, train or transfer writes one; a student of the encoder, or the encoder itself through distill transfer)")
        }
        guard !DynamicQuantization.isQuantized(loaded.model) else { throw UserError("model \(model) is an int8 model already: quantize the float model it came from") }
        let saved: SavedModel.Loaded
        do { saved = try SavedModel.load(model) } catch let error as FileError { throw UserError("model: \(error)") }
        let float = loaded.model, int8 = saved.model
        int8.eval()
        let layers = DynamicQuantization.quantize(int8)
        guard !layers.isEmpty else { throw UserError("model \(model) has no linear layer or embedding table to quantize") }

        let texts = try text.read(dataOptions.data, flag: "--data")
        let tokenizer = try text.tokenizer(for: loaded)
        let data = text.dataset(texts, tokenizer: tokenizer, cacheFolder: nil)
        let (f, q): (Tensor, Tensor)
        do { (f, q) = (try float.embeddings(ofTexts: data), try int8.embeddings(ofTexts: data)) } catch let error as DistillationError {
            throw UserError("--data \(dataOptions.data): \(error)")
        }
        let difference = zip(f.scalars, q.scalars).reduce(0) { max($0, Double(abs($1.0 - $1.1))) }
        var meanCosine: Double?, spearman: Double?, agreement: Double?
        var againstTeacher: (float: EmbeddingAgreement, int8: EmbeddingAgreement)?
        if let teacher {
            guard loaded.classNames == nil else { throw UserError("--teacher: \(model) is a text classifier; a teacher's embeddings score sentence encoders") }
            let teacherModel = try TextModel.load(teacher, role: "--teacher")
            let teacherData = text.dataset(texts, tokenizer: try text.tokenizer(for: teacherModel), cacheFolder: nil)
            do {
                let t = try teacherModel.model.embeddings(ofTexts: teacherData)
                guard t.shape == f.shape else { throw UserError("--teacher \(teacher) gives embeddings of \(t.shape[1]) values, the model \(f.shape[1])") }
                againstTeacher = (try EmbeddingAgreement(student: f, teacher: t), try EmbeddingAgreement(student: q, teacher: t))
            } catch let error as DistillationError {
                throw UserError("--teacher \(teacher): \(error)")
            }
        }
        if loaded.classNames != nil {
            let a = f.argmaxRows(), b = q.argmaxRows()
            agreement = Double(zip(a, b).filter { $0 == $1 }.count) / Double(max(a.count, 1))
        } else {
            do {
                let agreed = try EmbeddingAgreement(student: q, teacher: f)
                (meanCosine, spearman) = (agreed.meanCosine, agreed.similaritySpearman)
            } catch let error as DistillationError {
                throw UserError("--data \(dataOptions.data): \(error)")
            }
        }

        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let path = (out as NSString).appendingPathComponent("model.safetensors")
        do { try SavedModel.save(int8, name: name, options: options, to: path, metadata: saved.metadata) } catch let error as FileError {
            throw UserError("\(error)")
        }
        try loaded.saveTokenizer(into: out, maxTokens: tokenizer.truncation?.maxLength ?? 128)

        // Latency: one batch of the longest texts, float and int8 in turn, same threads.
        let lengths = data.sequenceLengths ?? []
        let longest = Array(lengths.indices.sorted { (lengths[$0], $0) > (lengths[$1], $1) }.prefix(32))
        let batch = try data.batch(longest)
        func latency(_ m: any Module) -> Double {
            _ = withoutGradients { m(batch) }
            return ModelCost.medianMilliseconds(calls: 15, budgetSeconds: 2) {
                let start = DispatchTime.now().uptimeNanoseconds
                _ = withoutGradients { m(batch) }
                return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
            }
        }
        let floatFile = (try? SavedModel.modelFile(at: model)) ?? model
        let report = TextQuantizationReport(
            model: model, int8Layers: layers.count, texts: data.count, meanCosine: meanCosine, similaritySpearman: spearman, agreement: agreement,
            maxAbsoluteDifference: difference, teacher: teacher, floatAgainstTeacher: againstTeacher?.float, int8AgainstTeacher: againstTeacher?.int8,
            floatFileBytes: fileSize(floatFile), int8FileBytes: fileSize(path),
            latencyBatch: longest.count, latencyTokens: longest.first.map { lengths[$0] } ?? 0,
            floatLatencyMilliseconds: latency(float), int8LatencyMilliseconds: latency(int8),
            kernelPath: Compute.kernelPath.description, threads: Compute.threadCount)
        try writeJSON(report, to: (out as NSString).appendingPathComponent("quantization.json"))
        let r = report
        Console().text("wrote \(path): \(name), \(layers.count) linear layers and embedding tables in int8 (dynamic: no calibration)")
        if let meanCosine = r.meanCosine, let spearman = r.similaritySpearman {
            Console().text(String(format: "int8 against float on %d texts: mean cosine %.5f, similarity Spearman %.5f, largest difference %.4f",
                                  r.texts, meanCosine, spearman, r.maxAbsoluteDifference))
        }
        if let f = r.floatAgainstTeacher, let q = r.int8AgainstTeacher {
            Console().text(String(format: "against the teacher on the same texts: float mean cosine %.4f, similarity Spearman %.4f; int8 %.4f, %.4f (%d pairs)",
                                  f.meanCosine, f.similaritySpearman, q.meanCosine, q.similaritySpearman, q.pairs))
        }
        if let agreement = r.agreement {
            Console().text(String(format: "int8 against float on %d texts: the same class for %.2f%%, largest logit difference %.4f", r.texts, agreement * 100,
                                  r.maxAbsoluteDifference))
        }
        Console().text(String(format: "file %d bytes float, %d bytes int8 (%.1f%%)", r.floatFileBytes, r.int8FileBytes,
                              100 * Double(r.int8FileBytes) / Double(max(r.floatFileBytes, 1))))
        Console().text(String(format: "latency on the %d longest texts (%d tokens): float %.2f ms, int8 %.2f ms", r.latencyBatch, r.latencyTokens,
                              r.floatLatencyMilliseconds, r.int8LatencyMilliseconds) + " (\(r.kernelPath) kernels, \(r.threads) threads)")
    }
}
