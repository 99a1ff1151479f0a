import ArgumentParser
import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// How text data is read and cut into tokens (`distill distill` with a text teacher, `distill embed`).
struct TextDataOptions: ParsableArguments {
    @Option(name: Spec.textSeparator.long, help: Spec.textSeparator.help) var textSeparator: String?
    @Option(name: Spec.textColumn.long, help: Spec.textColumn.help) var textColumn: String?
    @Option(name: Spec.maxTokens.long, help: Spec.maxTokens.help) var maxTokens: Int?

    var values: [(String, OptionValue?)] {
        [("text-separator", textSeparator.map { .text($0) }), ("text-column", textColumn.map { .text($0) }), ("max-tokens", maxTokens.map { .integer($0) })]
    }

    /// The texts of `path` (`TextData.read`: a folder of class files or of class folders, a
    /// .csv/.tsv table, .jsonl, or a text file); errors name `flag` and the file.
    func read(_ path: String, flag: String) throws -> LabeledTexts {
        do { return try TextData.read(path, separator: textSeparator, textField: textColumn ?? "text") } catch let error as DatasetError {
            throw UserError("\(flag): \(error)")
        }
    }

    /// `model`'s tokenizer truncating at --max-tokens (else its file's limit, else 128), within the model's positions.
    func tokenizer(for model: TextModel) throws -> WordPieceTokenizer {
        var tokenizer = model.tokenizer
        if let maxTokens, let positions = model.maxPositions, maxTokens > positions {
            throw UserError("--max-tokens \(maxTokens): \(model.path) takes at most \(positions) tokens a text")
        }
        let limit = maxTokens ?? tokenizer.truncation?.maxLength ?? 128
        tokenizer.truncation = .init(maxLength: min(limit, model.maxPositions ?? limit))
        return tokenizer
    }

    /// `texts` as token ids, tokenised once (and kept in `cacheFolder` when given).
    func dataset(_ texts: LabeledTexts, tokenizer: WordPieceTokenizer, cacheFolder: String?) -> Dataset {
        texts.dataset(tokenizer: tokenizer, cacheFolder: cacheFolder)
    }
}

/// The size of a text-transformer student, and whether it starts from the teacher's layers.
struct TextStudentOptions: ParsableArguments {
    @Option(name: Spec.layers.long, help: Spec.layers.help) var layers: Int?
    @Option(name: Spec.heads.long, help: Spec.heads.help) var heads: Int?
    @Option(name: Spec.feedForward.long, help: Spec.feedForward.help) var feedForward: Int?
    @Option(name: Spec.dropout.long, help: Spec.dropout.help) var dropout: Float?
    @Flag(name: Spec.initFromTeacher.long, help: Spec.initFromTeacher.help) var initFromTeacher = false
    @Option(name: Spec.initLayers.long, help: Spec.initLayers.help) var initLayers: String?
    @Option(name: Spec.hiddenWeight.long, help: Spec.hiddenWeight.help) var hiddenWeight: Float?
    @Option(name: Spec.attentionWeight.long, help: Spec.attentionWeight.help) var attentionWeight: Float?
    @Option(name: Spec.layerMap.long, help: Spec.layerMap.help) var layerMap: String?

    /// (Absent unless given, so that image runs record nothing new.)
    var values: [(String, OptionValue?)] {
        [("layers", layers.map { .integer($0) }), ("heads", heads.map { .integer($0) }), ("feed-forward", feedForward.map { .integer($0) }),
         ("dropout", dropout.map { .number($0) }), ("init-from-teacher", initFromTeacher ? .flag(true) : nil),
         ("init-layers", initLayers.map { .text($0) }),
         ("hidden-weight", hiddenWeight.map { .number($0) }), ("attention-weight", attentionWeight.map { .number($0) }),
         ("layer-map", layerMap.map { .text($0) })]
    }

    /// Whether the run transfers hidden states or attention (a weight above 0).
    var transfersLayers: Bool { (hiddenWeight ?? 0) > 0 || (attentionWeight ?? 0) > 0 }

    /// The error for an option that needs the teacher's encoder layers when the teacher is the ONNX graph `path`.
    static func needsNativeEncoder(_ option: String, _ path: String) -> UserError {
        UserError("--\(option): \(path) is an ONNX graph, whose encoder layers Distill cannot \(option == "init-from-teacher" ? "copy" : "tap"); "
            + "give a teacher folder with config.json and model.safetensors")
    }

    /// The first option given that needs the teacher's encoder layers (starting from them, or
    /// transferring hidden states or attention), or nil.
    var layerOption: String? {
        if initFromTeacher { return "init-from-teacher" }
        if (hiddenWeight ?? 0) > 0 { return "hidden-weight" }
        if (attentionWeight ?? 0) > 0 { return "attention-weight" }
        return nil
    }

    /// Options that only a text-transformer takes are an error for `student`; a layer map
    /// must be well formed and come with a layer term.
    func check(student: String) throws {
        if student != "text-transformer" {
            for (name, given) in [("hidden-weight", hiddenWeight != nil), ("attention-weight", attentionWeight != nil), ("layer-map", layerMap != nil)] where given {
                throw UserError("--\(name): \(student) has no encoder layers; hidden-state and attention transfer take a text-transformer student")
            }
            for (name, given) in [("layers", layers != nil), ("heads", heads != nil), ("feed-forward", feedForward != nil), ("dropout", dropout != nil), ("init-from-teacher", initFromTeacher),
                                  ("init-layers", initLayers != nil)] where given {
                throw UserError("--\(name) applies to text-transformer, not \(student)")
            }
        }
        if let initLayers {
            guard initFromTeacher else { throw UserError("--init-layers \(initLayers) picks the teacher's layers that --init-from-teacher copies: give --init-from-teacher too") }
            let chosen = try OptionTable.parseNumbers(initLayers, spec: Spec.initLayers)
            if let layers, layers != chosen.count {
                throw UserError("--init-layers \(initLayers) names \(chosen.count) teacher layers for a student of --layers \(layers): give one per student layer")
            }
        }
        if let layerMap {
            guard transfersLayers else { throw UserError("--layer-map pairs layers for --hidden-weight or --attention-weight: give one of them above 0") }
            do { _ = try TextLayerMap.parse(layerMap) } catch let error as DistillationError { throw UserError("--layer-map: \(error)") }
        }
    }

    /// The student's options: `hidden` (--hidden) or the default, the tokenizer's vocabulary,
    /// and the teacher's sizes where it starts from the teacher.
    func options(student: String, hidden: Int?, tokenizer: WordPieceTokenizer, outputs: Int, teacher: TextModel) throws -> ModelOptions {
        let padId = tokenizer.padding?.id ?? tokenizer.vocabulary.firstIndex(of: "[PAD]")
        guard student == "text-transformer" else {
            return ModelOptions.text(vocabularySize: tokenizer.vocabulary.count, paddingId: padId, outputs: outputs, hidden: hidden ?? 256)
        }
        guard initFromTeacher else {
            return ModelOptions.text(vocabularySize: tokenizer.vocabulary.count, paddingId: padId, outputs: outputs, hidden: hidden ?? 256,
                                     layers: layers ?? 3, heads: heads, maxTokens: tokenizer.truncation?.maxLength, feedForward: feedForward, dropout: dropout)
        }
        if teacher.isONNX { throw TextStudentOptions.needsNativeEncoder("init-from-teacher", teacher.path) }
        guard let bert = teacher.bert else {
            throw UserError("--init-from-teacher: \(teacher.path) is not a BERT encoder (a folder with config.json, or a text-transformer run) whose layers a student can start from")
        }
        let c = bert.configuration
        // (Recorded only when it is not 4 × the width, the zoo's default: model files stay as they were.)
        let width = hidden ?? c.hiddenSize, feedForward = feedForward ?? c.intermediateSize
        return ModelOptions.text(vocabularySize: c.vocabularySize, paddingId: c.paddingTokenId, outputs: outputs, hidden: width,
                                 layers: try chosenLayers()?.count ?? layers ?? 3, heads: heads ?? c.heads, maxTokens: c.maxPositions, feedForward: feedForward == 4 * width ? nil : feedForward,
                                 dropout: dropout)
    }

    /// The teacher layers --init-layers names, or nil.
    func chosenLayers() throws -> [Int]? { try initLayers.map { try OptionTable.parseNumbers($0, spec: Spec.initLayers) } }

    /// With --init-from-teacher, copies the teacher's embeddings and the layers --init-layers
    /// names (else every k-th) into `model`.
    func initialize(_ model: any Module, from teacher: TextModel) throws -> [Int]? {
        guard initFromTeacher, let student = model as? TextTransformer, let bert = teacher.bert else { return nil }
        let mapping = try chosenLayers() ?? TextTransformer.everyKthLayer(student: student.bert.configuration.layers, teacher: bert.configuration.layers)
        do { try student.initialize(from: bert, layers: mapping) } catch let error as TextModelError {
            throw UserError("--\(initLayers == nil ? "init-from-teacher" : "init-layers"): \(error)")
        }
        return mapping
    }
}

/// A text model a command reads: a sentence encoder's folder (Hugging Face: config.json and
/// model.safetensors, such as all-MiniLM-L6-v2), a Distill text run, or an ONNX text graph
/// (a `.onnx` file, or a folder holding `model.onnx` and no model.safetensors: the layout of
/// Hugging Face optimum's exports), each with the tokenizer.json that cuts its texts into ids.
struct TextModel {
    var model: any Module
    var tokenizer: WordPieceTokenizer
    var path: String
    /// The tokenizer.json it was read from.
    var tokenizerPath: String
    /// The zoo name and options of a Distill text model; nil for a Hugging Face encoder or an ONNX graph.
    var name: String?
    var options: ModelOptions?
    /// The longest text it takes, when it has learned positions.
    var maxPositions: Int?
    /// A text classifier's classes (`TextClassifierRecord`); nil for a sentence encoder.
    var classNames: [String]?

    static let tokenizerFile = "tokenizer.json"

    /// Whether `path` is a text model: a folder holding tokenizer.json or a Hugging Face
    /// config.json, or an ONNX file with a tokenizer.json beside it (or in the folder above,
    /// as sentence-transformers keeps `onnx/model.onnx`).
    static func isTextModel(_ path: String) -> Bool {
        if path.lowercased().hasSuffix(".onnx") { return tokenizerFolder(ofONNX: path) != nil }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { return false }
        return ["tokenizer.json", "config.json"].contains { FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent($0)) }
    }

    /// The folder holding the tokenizer.json of the ONNX file `file`: its own, else the one above it.
    static func tokenizerFolder(ofONNX file: String) -> String? {
        let own = (file as NSString).deletingLastPathComponent
        return [own, (own as NSString).deletingLastPathComponent].first {
            FileManager.default.fileExists(atPath: ($0 as NSString).appendingPathComponent(tokenizerFile))
        }
    }

    /// The ONNX graph `path` names when it is one (see `SavedModel.onnxFile(at:)`), else nil.
    static func onnxFile(_ path: String) -> String? { SavedModel.onnxFile(at: path) }

    /// Whether this model is an imported ONNX graph (no encoder layers to tap or copy).
    var isONNX: Bool { model is ONNXSentenceEncoder }

    /// Its BERT encoder, whose layers a text-transformer student can start from: a Hugging
    /// Face encoder's, or a text-transformer run's (an encoder, or a classifier); nil for others.
    var bert: BertModel? { (model as? SentenceEncoder)?.bert ?? (model as? TextTransformer)?.bert }

    /// Reads the text model at `path`; every problem is one line naming `role`, the path and the file.
    static func load(_ path: String, role: String) throws -> TextModel {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw UserError("\(role) \(path) does not exist") }
        if let onnx = onnxFile(path) { return try loadONNX(onnx, given: path, role: role) }
        guard isDirectory.boolValue else {
            throw UserError("\(role) \(path): a text model is a folder holding model.safetensors and tokenizer.json, or an ONNX file with tokenizer.json beside it")
        }
        func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
        guard FileManager.default.fileExists(atPath: file(tokenizerFile)) else {
            throw UserError("\(role) \(path) has no tokenizer.json: a text model folder holds model.safetensors and the tokenizer.json that cuts its texts")
        }
        let tokenizerPath = file(tokenizerFile)
        let tokenizer = try readTokenizer(tokenizerPath, role: role)
        let loaded: TextModel
        do {
            if FileManager.default.fileExists(atPath: file("config.json")) {
                let encoder = try HuggingFaceBERT.sentenceEncoder(folder: path)
                loaded = TextModel(model: encoder, tokenizer: tokenizer, path: path, tokenizerPath: tokenizerPath, maxPositions: encoder.bert.configuration.maxPositions)
            } else {
                let saved = try SavedModel.load(path)
                guard saved.options.vocabularySize != nil else {
                    throw UserError("\(role) \(path) holds \(saved.name), not a text model (\(ModelZoo.textNames.joined(separator: ", ")))")
                }
                loaded = TextModel(model: saved.model, tokenizer: tokenizer, path: path, tokenizerPath: tokenizerPath, name: saved.name, options: saved.options,
                                   maxPositions: saved.options.maxTokens,
                                   classNames: try TextClassifierRecord.classNames(saved.metadata, file: saved.file))
            }
        } catch let error as FileError {
            throw UserError("\(role): \(error)")
        }
        return try loaded.checked(role: role)
    }

    /// An ONNX text graph (`file`, which `path` named) with the tokenizer.json beside it (or
    /// above it), pooled as `ONNXSentenceEncoder` says. Its vocabulary and positions are read
    /// from the tables BERT exports name `word_embeddings` and `position_embeddings` when
    /// the graph has them, or from the sequence length its inputs fix.
    static func loadONNX(_ file: String, given path: String, role: String) throws -> TextModel {
        guard let folder = tokenizerFolder(ofONNX: file) else {
            throw UserError("\(role) \(path): no tokenizer.json beside \((file as NSString).lastPathComponent) (or in the folder above it): "
                + "an ONNX text model needs the tokenizer.json that cuts its texts")
        }
        let tokenizerPath = (folder as NSString).appendingPathComponent(tokenizerFile)
        let tokenizer = try readTokenizer(tokenizerPath, role: role)
        let encoder: ONNXSentenceEncoder
        do { encoder = try ONNXSentenceEncoder(contentsOf: file, pipeline: folder) } catch let error as FileError {
            throw UserError("\(role): \(error)")
        }
        let positions = encoder.network.tokenInputs?.length ?? encoder.tableRows(endingIn: "position_embeddings.weight")
        return try TextModel(model: encoder, tokenizer: tokenizer, path: path, tokenizerPath: tokenizerPath, maxPositions: positions).checked(role: role)
    }

    static func readTokenizer(_ file: String, role: String) throws -> WordPieceTokenizer {
        do { return try WordPieceTokenizer(contentsOf: file) } catch let error as DatasetError { throw UserError("\(role): \(error)") }
    }

    /// The model in evaluation mode, after checking that it embeds every id of its tokenizer.
    func checked(role: String) throws -> TextModel {
        if let vocabulary = vocabularySize, tokenizer.vocabulary.count > vocabulary {
            throw UserError("\(role) \(path): tokenizer.json has \(tokenizer.vocabulary.count) ids, and the model embeds only \(vocabulary)")
        }
        model.eval()
        return self
    }

    /// The ids the model embeds.
    var vocabularySize: Int? {
        if let encoder = model as? SentenceEncoder { return encoder.bert.configuration.vocabularySize }
        if let encoder = model as? ONNXSentenceEncoder { return encoder.tableRows(endingIn: "word_embeddings.weight") }
        return options?.vocabularySize
    }

    /// Its embeddings of `data`: read from `directory` where earlier runs kept them, else
    /// computed and, with a directory, kept (a folder that cannot be written only means
    /// computing again next time).
    ///
    /// The texts are kept in chunks (`teacher-embeddings-HASH.npy`, the hash over the model's
    /// kind, pooling and weights and the chunk's token ids) whose ends depend only on the texts
    /// (`Dataset.contentDefinedChunks`), so a transfer set that grows by a file, or loses one,
    /// reuses what its other texts already cost: only the chunks the change touches are
    /// computed again. Also says how many texts it computed (the others were read).
    func embeddings(_ data: Dataset, keptIn directory: String?) throws -> (embeddings: Tensor, computed: Int) {
        guard let directory, let sequences = data.tokenSequences, !sequences.isEmpty else { return (try model.embeddings(ofTexts: data), data.count) }
        var modelHasher = FNV1a()
        modelHasher.combine("distill text embeddings 2 \(type(of: model))")
        if let encoder = model as? SentenceEncoder { modelHasher.combine("\(encoder.pooling) \(encoder.normalizes)") }
        if let encoder = model as? ONNXSentenceEncoder {
            // The graph's nodes as well as its weights: two graphs may share initializers.
            modelHasher.combine("\(encoder.pooling.map(\.rawValue) ?? "none") \(encoder.normalizes)")
            for node in encoder.network.model.graph.nodes {
                modelHasher.combine("\(node.opType) \(node.inputs) \(node.outputs) \(node.attributes.map { "\($0.name)=\($0.value)" })")
            }
        }
        for (name, tensor) in model.stateDict() {
            modelHasher.combine(name)
            tensor.withUnsafeBufferPointer { modelHasher.combine(UnsafeRawBufferPointer($0)) }
        }
        let chunks = Dataset.contentDefinedChunks(sequences)
        var kept = [Tensor?](repeating: nil, count: chunks.count), files: [String] = []
        for (c, chunk) in chunks.enumerated() {
            var hasher = modelHasher
            for ids in sequences[chunk] {
                hasher.combine(ids.count)
                ids.withUnsafeBytes { hasher.combine($0) }
            }
            let file = (directory as NSString).appendingPathComponent("teacher-embeddings-\(String(hasher.value, radix: 16)).npy")
            files.append(file)
            if let tensor = try? NPY.read(file).tensor, tensor.rank == 2, tensor.shape[0] == chunk.count { kept[c] = tensor }
        }
        let missing = kept.indices.filter { kept[$0] == nil }
        // In groups of about 32,768 texts, each group's chunks kept as soon as they are computed:
        // a pass that is stopped loses one group at most.
        var groups: [[Int]] = [], size = 32_768
        for c in missing {
            if size >= 32_768 { (groups, size) = (groups + [[]], 0) }
            groups[groups.count - 1].append(c)
            size += chunks[c].count
        }
        if !groups.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        for group in groups {
            let computed = try model.embeddings(ofTexts: data.subset(group.flatMap { Array(chunks[$0]) }))
            var row = 0
            for c in group {
                let part = computed.sliced(alongAxis: 0, row..<(row + chunks[c].count))
                row += chunks[c].count
                kept[c] = part
                try? NPY.write(part, to: files[c])
            }
        }
        let parts = kept.map { $0! }
        // A kept file of another width could only come from a colliding hash: compute everything.
        if Set(parts.map { $0.shape[1] }).count > 1 { return (try model.embeddings(ofTexts: data), data.count) }
        return (Tensor.concatenating(parts, alongAxis: 0), missing.reduce(0) { $0 + chunks[$1].count })
    }

    /// Writes tokenizer.json beside a model saved in `folder`, so the folder is a text model,
    /// cutting texts at `maxTokens` (see `writeTokenizer`).
    func saveTokenizer(into folder: String, maxTokens: Int) throws {
        try Self.writeTokenizer(from: tokenizerPath, maxTokens: maxTokens, into: folder)
    }

    /// Writes the tokenizer.json `file` into `folder` with `maxTokens` as its truncation
    /// (`truncation.max_length`): a text run's record of how it cut its texts, as an image
    /// run's model file records its preprocessing, so that evaluate, predict, embed, export
    /// and a next run cut texts as the run did without being told `--max-tokens` again. The
    /// file's bytes are kept as they are when its truncation is that already.
    static func writeTokenizer(from file: String, maxTokens: Int, into folder: String) throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw UserError("cannot read \(file)") }
        let target = (folder as NSString).appendingPathComponent(tokenizerFile)
        guard var root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { throw UserError("\(file) is not a JSON object") }
        var truncation = root["truncation"] as? [String: Any] ?? ["strategy": "LongestFirst", "stride": 0, "direction": "Right"]
        if truncation["max_length"] as? Int == maxTokens { return try AtomicFile.write(data, to: target) }
        truncation["max_length"] = maxTokens
        root["truncation"] = truncation
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: root, options: [.sortedKeys]), to: target)
    }
}
