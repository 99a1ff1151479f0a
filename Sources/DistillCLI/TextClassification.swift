import ArgumentParser
import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// `--min-class-size`: which classes of labelled text data a classifier learns.
struct TextClassesOption: ParsableArguments {
    @Option(name: Spec.minClassSize.long, help: Spec.minClassSize.help) var minClassSize: Int?

    var values: [(String, OptionValue?)] { [("min-class-size", minClassSize.map { .integer($0) })] }
}

/// The class names a text classifier was trained on, kept in its model file's metadata (as a
/// JSON array): `evaluate` holds them against the data's, `predict` names its answers with them.
enum TextClassifierRecord {
    static let metadataKey = "distill.text-classes"

    static func json(_ classNames: [String]) -> String {
        String(decoding: (try? JSONEncoder().encode(classNames)) ?? Data("[]".utf8), as: UTF8.self)
    }

    /// The class names in `metadata`, nil when it records none (a sentence encoder); a record
    /// that is not a list of at least one name is an error naming `file`.
    static func classNames(_ metadata: [String: String], file: String) throws -> [String]? {
        guard let text = metadata[metadataKey] else { return nil }
        guard let names = try? JSONDecoder().decode([String].self, from: Data(text.utf8)), !names.isEmpty else {
            throw UserError("\(file): its class names (\(metadataKey)) are not a list of names: \(text.prefix(200))")
        }
        return names
    }

    /// Saves a text classifier's model file: weights, zoo name and options, and the class names.
    static func saver(name: String, options: ModelOptions, classNames: [String]) -> (any Module, String) throws -> Void {
        { model, path in try SavedModel.save(model, name: name, options: options, to: path, metadata: [metadataKey: json(classNames)]) }
    }
}

/// The tokenizer.json that `--tokenizer` names (the file, or a folder holding one), read, with
/// `maxTokens` (else the file's truncation, else 128) as its truncation.
func readTokenizer(_ path: String, maxTokens: Int?) throws -> (tokenizer: WordPieceTokenizer, file: String) {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw UserError("--tokenizer \(path) does not exist") }
    let file = isDirectory.boolValue ? (path as NSString).appendingPathComponent(TextModel.tokenizerFile) : path
    guard FileManager.default.fileExists(atPath: file) else {
        throw UserError("--tokenizer \(path) holds no tokenizer.json: give a tokenizer.json or a folder holding one (such as a teacher's)")
    }
    var tokenizer: WordPieceTokenizer
    do { tokenizer = try WordPieceTokenizer(contentsOf: file) } catch let error as DatasetError { throw UserError("--tokenizer: \(error)") }
    tokenizer.truncation = .init(maxLength: maxTokens ?? tokenizer.truncation?.maxLength ?? 128)
    return (tokenizer, file)
}

extension DataOptions {
    /// Labelled text data split as every run's data is: the test set carved with the fixed
    /// seed (`UserData.testSplitSeed`, a stratified `--test-fraction`, default 0.2), then
    /// `splitting` (`--classes`, `--labels-per-class`, the validation split).
    struct LoadedTexts {
        var train: Dataset
        var labeled: [Bool]?
        var validation: Dataset?
        var test: Dataset
        var classNames: [String] { test.classNames }
        var labeledTrain: Dataset { labeled.map { mask in train.subset(mask.indices.filter { mask[$0] }) } ?? train }
    }

    /// Reads `data` as labelled texts (`TextData.read`, with `--text-separator` and
    /// `--text-column`; `--labels` names the class column or key of a table or JSON lines),
    /// keeps the classes with at least `minClassSize` texts, tokenises with `tokenizer` (the ids
    /// kept in `cacheFolder`), and splits. With `recordedClasses` (a trained model's), the
    /// data's classes must be those. Options that only images or arrays take are errors.
    func loadTexts(_ text: TextDataOptions, tokenizer: WordPieceTokenizer, minClassSize: Int?, seed: UInt64, recordedClasses: [String]? = nil,
                   holdingOutValidation: Bool = true, cacheFolder: String? = nil) throws -> LoadedTexts {
        for (name, given) in [("image-size", imageSize != nil), ("channels", channels != nil), ("inputs", inputs != nil)] where given {
            throw UserError("--\(name) applies to images and arrays, and \(data) is read as texts")
        }
        if testData != nil {
            throw UserError("--test-data: text data carves its test set (--test-fraction, seeded); a separate test file of texts is not read yet")
        }
        var texts: LabeledTexts
        do { texts = try TextData.read(data, separator: text.textSeparator, textField: text.textColumn ?? "text", labelField: labels ?? "label") }
        catch let error as DatasetError { throw UserError("--data: \(error)") }
        if let minClassSize {
            let before = texts.classNames.count
            texts = texts.keepingClasses(withAtLeast: minClassSize)
            guard texts.classNames.count >= 2 else {
                throw UserError("--min-class-size \(minClassSize) leaves \(texts.classNames.count) of the \(before) classes of \(data): a classifier needs at least 2")
            }
        }
        guard texts.classNames.count >= 2 else {
            throw UserError("--data \(data) holds texts of \(texts.classNames.count) class (\(texts.classNames.joined(separator: ", "))): a classifier needs at least 2 (a folder of class files, or a table or JSON lines with a label)")
        }
        if let recordedClasses, recordedClasses != texts.classNames {
            throw UserError("--data: the model's classes (\(recordedClasses.prefix(12).joined(separator: ", "))) are not \(data)'s (\(texts.classNames.prefix(12).joined(separator: ", "))); select them with --min-class-size as in training")
        }
        let all = texts.dataset(tokenizer: tokenizer, cacheFolder: cacheFolder)
        let split: (kept: Dataset, heldOut: Dataset)
        do { split = try all.stratifiedSplit(fraction: testFraction ?? UserData.defaultTestFraction, seed: UserData.testSplitSeed) }
        catch let error as DatasetError { throw UserError("--data: \(data): cannot carve a test set: \(error.problem)") }
        let parts = try splitting(train: split.kept, validation: nil, test: split.heldOut, seed: seed, holdingOutValidation: holdingOutValidation)
        return LoadedTexts(train: parts.train, labeled: parts.labeled, validation: parts.validation, test: parts.test)
    }
}

extension TextModel {
    /// The encoder as a zoo model (name, options, a fresh copy with its weights), so that the
    /// models a transfer makes of it save, load and evaluate as every zoo model: a Distill
    /// text run as it is; a Hugging Face sentence encoder (mean pooling, L2 normalisation, a
    /// feed-forward 4× its width, as all-MiniLM-L6-v2) as the `text-transformer` of its sizes,
    /// whose parameter names are the encoder's.
    func zooEncoder() throws -> (name: String, options: ModelOptions, make: () throws -> any Module) {
        let state = Dictionary(model.stateDict().map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        if let name, let options {
            guard options.classifies != true, options.headClasses == nil else {
                throw UserError("--from \(path) is a text classifier; text transfer starts from a sentence encoder (a teacher folder, or a `distill distill` text run)")
            }
            return (name, options, {
                var generator = RandomGenerator(seed: 0)
                let copy = try ModelZoo.make(name, options: options, using: &generator)
                try copy.loadStateDict(state, strict: true)
                return copy
            })
        }
        guard let encoder = model as? SentenceEncoder else { throw UserError("--from \(path) is not a text encoder Distill can re-head") }
        let c = encoder.bert.configuration
        var problems: [String] = []
        if encoder.pooling != .mean { problems.append("CLS pooling") }
        if !encoder.normalizes { problems.append("no L2 normalisation") }
        if c.intermediateSize != 4 * c.hiddenSize { problems.append("a feed-forward size of \(c.intermediateSize), not 4 × \(c.hiddenSize)") }
        if c.layerNormEpsilon != 1e-12 || c.tokenTypes != 2 { problems.append("layer-norm epsilon \(c.layerNormEpsilon) and \(c.tokenTypes) token types (not 1e-12 and 2)") }
        guard problems.isEmpty else {
            throw UserError("--from \(path): transfer re-heads encoders built as text-transformer (mean pooling, L2 normalisation, feed-forward 4× the width); this one has \(problems.joined(separator: ", "))")
        }
        let options = ModelOptions.text(vocabularySize: c.vocabularySize, paddingId: c.paddingTokenId, outputs: c.hiddenSize, hidden: c.hiddenSize,
                                        layers: c.layers, heads: c.heads, maxTokens: c.maxPositions)
        return ("text-transformer", options, {
            var generator = RandomGenerator(seed: 0)
            let copy = try ModelZoo.make("text-transformer", options: options, using: &generator)
            do { try copy.loadStateDict(state, strict: true) } catch let error as StateDictError { throw UserError("--from \(path): \(error)") }
            return copy
        })
    }
}
