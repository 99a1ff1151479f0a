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
    /// kept in `cacheFolder`), and splits: the test texts are `--test-data`'s when given (read
    /// the same way, as images' are: the training texts' classes, those `minClassSize` dropped
    /// left out), else carved from `data`. With `recordedClasses` (a trained model's, `role`
    /// naming it), the data's classes must be those; with `selecting` (an old classifier's
    /// classes, by name), the sets keep those classes, in that order, as `--classes` keeps
    /// classes by number after the carve. Options that only images or arrays take are errors.
    func loadTexts(_ text: TextDataOptions, tokenizer: WordPieceTokenizer, minClassSize: Int?, seed: UInt64, unlabeled: Bool = false,
                   recordedClasses: [String]? = nil, role: String = "model", selecting names: [String]? = nil, holdingOutValidation: Bool = true,
                   cacheFolder: String? = nil) throws -> LoadedTexts {
        for (name, given) in [("image-size", imageSize != nil), ("channels", channels != nil), ("inputs", inputs != nil)] where given {
            throw UserError("--\(name) applies to images and arrays, and \(data) is read as texts")
        }
        if let testData, testFraction != nil { throw UserError("--test-data \(testData): give --test-data or --test-fraction, not both") }
        func read(_ path: String, flag: String) throws -> LabeledTexts {
            do { return try TextData.read(path, separator: text.textSeparator, textField: text.textColumn ?? "text", labelField: labels ?? "label") }
            catch let error as DatasetError { throw UserError("\(flag): \(error)") }
        }
        let original = try read(data, flag: "--data")
        var texts = original
        if let minClassSize {
            texts = texts.keepingClasses(withAtLeast: minClassSize)
            guard texts.classNames.count >= 2 else {
                throw UserError("--min-class-size \(minClassSize) leaves \(texts.classNames.count) of the \(original.classNames.count) classes of \(data): a classifier needs at least 2")
            }
        }
        guard texts.classNames.count >= 2 else {
            throw UserError("--data \(data) holds texts of \(texts.classNames.count) class (\(texts.classNames.joined(separator: ", "))): a classifier needs at least 2 (a folder of class files, or a table or JSON lines with a label)")
        }
        let all = texts.dataset(tokenizer: tokenizer, cacheFolder: cacheFolder)
        let split: (kept: Dataset, heldOut: Dataset)
        if let testData {
            let test = try read(testData, flag: "--test-data").matching(classes: texts.classNames, training: original.classNames, file: testData)
            split = (all, test.dataset(tokenizer: tokenizer, cacheFolder: cacheFolder))
        } else {
            do { split = try all.stratifiedSplit(fraction: testFraction ?? UserData.defaultTestFraction, seed: UserData.testSplitSeed) }
            catch let error as DatasetError { throw UserError("--data: \(data): cannot carve a test set: \(error.problem)") }
        }
        var options = self
        if let names {
            let index = Dictionary(uniqueKeysWithValues: texts.classNames.enumerated().map { ($1, $0) })
            if let missing = names.first(where: { index[$0] == nil }) {
                throw UserError("--data: \(data) has no texts of the \(role)'s class '\(missing)' (its classes: \(texts.classNames.prefix(12).joined(separator: ", ")))")
            }
            options.classes = names.map { String(index[$0]!) }.joined(separator: ",")
        }
        let parts = try options.splitting(train: split.kept, validation: nil, test: split.heldOut, seed: seed, unlabeled: unlabeled,
                                          holdingOutValidation: holdingOutValidation)
        // After --classes: a model trained on some of the data's classes is held against those.
        if let recordedClasses, recordedClasses != parts.test.classNames {
            throw UserError("--data: the \(role)'s classes (\(recordedClasses.prefix(12).joined(separator: ", "))) are not \(data)'s (\(parts.test.classNames.prefix(12).joined(separator: ", "))); select them with --min-class-size and --classes as in training")
        }
        return LoadedTexts(train: parts.train, labeled: parts.labeled, validation: parts.validation, test: parts.test)
    }
}

extension LabeledTexts {
    /// These texts (a separate test set) labelled by `classes`, the classes a model learns:
    /// texts of the other classes of `training` (the training data's before --min-class-size)
    /// are left out; any other class, or one of `classes` without texts here, is an error naming `file`.
    func matching(classes: [String], training: [String], file: String) throws -> LabeledTexts {
        let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
        if let unknown = classNames.first(where: { index[$0] == nil && !training.contains($0) }) {
            throw UserError("--test-data: \(file) has texts of class '\(unknown)', which the training texts do not have (\(classes.prefix(12).joined(separator: ", ")))")
        }
        let kept = labels.indices.filter { index[classNames[labels[$0]]] != nil }
        let result = LabeledTexts(texts: kept.map { texts[$0] }, labels: kept.map { index[classNames[labels[$0]]]! }, classNames: classes)
        let present = Set(result.labels)
        if let missing = classes.indices.first(where: { !present.contains($0) }) {
            throw UserError("--test-data: \(file) has no texts of class '\(classes[missing])' (a test set holds every training class: \(classes.prefix(12).joined(separator: ", ")))")
        }
        return result
    }
}

extension TextModel {
    /// The encoder as a zoo model (name, options, a fresh copy with its weights), so that the
    /// models a transfer makes of it save, load and evaluate as every zoo model: a Distill
    /// text run as it is; a Hugging Face sentence encoder (mean pooling, L2 normalisation, as
    /// all-MiniLM-L6-v2) as the `text-transformer` of its sizes, whose parameter names are the encoder's.
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
        if c.layerNormEpsilon != 1e-12 || c.tokenTypes != 2 { problems.append("layer-norm epsilon \(c.layerNormEpsilon) and \(c.tokenTypes) token types (not 1e-12 and 2)") }
        guard problems.isEmpty else {
            throw UserError("--from \(path): transfer re-heads encoders built as text-transformer (mean pooling, L2 normalisation); this one has \(problems.joined(separator: ", "))")
        }
        let options = ModelOptions.text(vocabularySize: c.vocabularySize, paddingId: c.paddingTokenId, outputs: c.hiddenSize, hidden: c.hiddenSize,
                                        layers: c.layers, heads: c.heads, maxTokens: c.maxPositions,
                                        feedForward: c.intermediateSize == 4 * c.hiddenSize ? nil : c.intermediateSize)
        return ("text-transformer", options, {
            var generator = RandomGenerator(seed: 0)
            let copy = try ModelZoo.make("text-transformer", options: options, using: &generator)
            do { try copy.loadStateDict(state, strict: true) } catch let error as StateDictError { throw UserError("--from \(path): \(error)") }
            return copy
        })
    }
}
