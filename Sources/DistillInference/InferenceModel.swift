import Foundation
import NeuralNet
import Tensors

/// A trained student, ready to predict: a float or int8 model file written by Distill, with
/// the preprocessing its run recorded. For apps that embed the model; the library holds no
/// training code, no YAML, no ONNX and no image decoder.
///
/// ```swift
/// let model = try InferenceModel(contentsOf: URL(fileURLWithPath: "runs/student"))
/// let prediction = try model.predict(pixels)   // [C, H, W] RGB values in [0, 1]
/// print(model.classNames?[prediction.classIndex] ?? "\(prediction.classIndex)", prediction.probability)
/// ```
///
/// Inputs are raw examples, as `distill predict` reads them from an `.npy` array: images as
/// planar RGB (or gray) values in [0, 1] at the model's size, `inputShape` [C, H, W]; table
/// rows as the raw feature values in the training table's column order, [F]. `predict`
/// applies what the run recorded (the channel order the model expects, then the
/// normalisation) and gives the softmax of the model's outputs, computed by the same code as
/// `distill predict`. Decoding and resizing images is the app's (Core Graphics, UIImage, or
/// Datasets' decoder on Linux).
///
/// Bad files and inputs of the wrong size or with non-finite values are thrown `FileError`s
/// (one line, naming the file or the input), never traps. A float model runs as a
/// `FusedModel` (batch norm folded into the convolutions, activations fused, weights packed
/// once when the file is read), the way onnxruntime prepares a graph; its outputs equal the
/// trained model's up to float rounding. One prediction at a time per instance.
public final class InferenceModel {
    /// The file read (`model.safetensors` inside a run folder).
    public let file: String
    /// The shape of one example: [channels, height, width] for images, [features] for tables.
    public let inputShape: [Int]
    /// The preprocessing the run recorded, applied by `predict`; nil for a file that records
    /// none (a model saved by a program, not a run), whose inputs are fed as they are.
    public let preprocessing: Preprocessing?
    /// The model zoo architecture, when the file names it.
    public let architecture: String?
    /// Whether the model runs in int8 (a `distill quantize` or `--quantize int8` model file).
    public let isQuantized: Bool
    /// Every metadata entry of the file.
    public let metadata: [String: String]
    /// How many class scores the model gives.
    public let classCount: Int
    /// Logits [N, classes] for prepared inputs [N, inputShape...].
    private let logits: (Tensor) -> Tensor

    /// The class names the run recorded (index i is class i), when it recorded them.
    public var classNames: [String]? { preprocessing?.classNames }

    /// Values in one example: the product of `inputShape`.
    public var inputSize: Int { inputShape.reduce(1, *) }

    /// Reads the model at `url`: a run folder (its `model.safetensors`), a float model file
    /// (`model.safetensors`, `best.safetensors`) or an int8 one (`distill quantize`'s).
    public convenience init(contentsOf url: URL) throws {
        try self.init(path: url.path)
    }

    /// Reads the model at `path` (see `init(contentsOf:)`).
    public init(path: String) throws {
        if path.lowercased().hasSuffix(".onnx") {
            throw FileError(file: path, "is an ONNX model; the inference library reads Distill's .safetensors model files (run folders, `distill quantize` outputs)")
        }
        let file = try SavedModel.modelFile(at: path)
        let data = try SafeTensors.bytes(of: file)
        let metadata = try SafeTensors.metadata(data, file: file)
        let preprocessing = try metadata[Preprocessing.metadataKey].map { try Preprocessing.decode($0, file: file) }
        let shape: [Int], classes: Int
        if QuantizedModelFile.isQuantized(metadata) {
            let (model, _) = try QuantizedModelFile.parse(data, file: file)
            guard model.outputShape.count == 1 else {
                throw FileError(file: file, "gives outputs of shape \(model.outputShape) per example, not one score per class")
            }
            (shape, classes, architecture, isQuantized) = (model.exampleShape, model.outputShape[0], metadata[SavedModel.nameKey], true)
            logits = { model($0) }
        } else {
            let loaded = try SavedModel.load(data, file: file)
            guard loaded.options.vocabularySize == nil else {
                throw FileError(file: file, "holds a text model (\(loaded.name)); the inference library predicts for image and table models")
            }
            (shape, classes, architecture, isQuantized) = (loaded.options.exampleShape, loaded.options.outputCount, loaded.name, false)
            // Batch norm folded, activations fused, weights packed once (FusedModel); builds
            // without oneDNN run the model's own modules.
            let fused = try? FusedModel(loaded.model, exampleShape: shape)
            logits = { fused?($0) ?? loaded.model.predictions($0) }
        }
        if let preprocessing {
            guard preprocessing.exampleShape == shape else {
                throw FileError(file: file, "records preprocessing for examples of shape \(preprocessing.exampleShape), and the model takes \(shape)")
            }
            guard preprocessing.classNames.count == classes else {
                throw FileError(file: file, "records \(preprocessing.classNames.count) class names for a model of \(classes) classes")
            }
        }
        (self.file, self.inputShape, self.classCount, self.preprocessing, self.metadata) = (file, shape, classes, preprocessing, metadata)
    }

    /// The prediction for one raw example of `inputSize` values (see the type's documentation).
    public func predict(_ example: [Float]) throws -> Prediction {
        guard example.count == inputSize else {
            throw FileError(file: "input", "has \(example.count) values; the model takes examples of shape \(inputShape) (\(inputSize) values)")
        }
        return try predict(batch: example)[0]
    }

    /// The predictions for raw examples laid one after another: `examples.count` must be a
    /// positive multiple of `inputSize`. All run as one batch.
    public func predict(batch examples: [Float]) throws -> [Prediction] {
        let probabilities = try self.probabilities(batch: examples)
        return stride(from: 0, to: probabilities.count, by: classCount).map { start in
            Prediction(probabilities: Array(probabilities[start..<(start + classCount)]), classNames: classNames)
        }
    }

    /// The class probabilities [N × classes] for raw examples laid one after another (see
    /// `predict(batch:)`), row by row.
    public func probabilities(batch examples: [Float]) throws -> [Float] {
        let size = inputSize
        guard !examples.isEmpty, examples.count % size == 0 else {
            throw FileError(file: "input", "has \(examples.count) values, not a positive multiple of the \(size) values of one example of shape \(inputShape)")
        }
        if let bad = examples.firstIndex(where: { !$0.isFinite }) {
            throw FileError(file: "input", "value \(bad) (example \(bad / size)) is not finite")
        }
        var prepared = examples
        if let preprocessing {
            prepared = []
            prepared.reserveCapacity(examples.count)
            for start in stride(from: 0, to: examples.count, by: size) {
                var example = Array(examples[start..<(start + size)])
                preprocessing.prepare(&example)
                prepared += example
            }
        }
        let count = examples.count / size
        let outputs = logits(Tensor(prepared, shape: Shape([count] + inputShape)))
        guard outputs.shape.dimensions == [count, classCount] else {
            throw FileError(file: file, "gives outputs \(outputs.shape.dimensions) for \(count) examples of \(classCount) classes")
        }
        return outputs.softmax(alongAxis: 1).scalars
    }
}

/// One example's prediction: every class's probability, the most probable class first among
/// equals by index (as `distill predict` ranks them).
public struct Prediction: Equatable, Sendable {
    /// Probabilities of classes 0..<classes, summing to 1.
    public let probabilities: [Float]
    /// The most probable class (the lowest index among equal probabilities).
    public let classIndex: Int
    /// Its name, when the model recorded class names.
    public let className: String?

    public init(probabilities: [Float], classNames: [String]?) {
        let best = probabilities.indices.max { a, b in probabilities[a] < probabilities[b] || (probabilities[a] == probabilities[b] && a > b) } ?? 0
        self.probabilities = probabilities
        classIndex = best
        className = classNames.flatMap { best < $0.count ? $0[best] : nil }
    }

    /// The probability of `classIndex`.
    public var probability: Float { probabilities[classIndex] }

    /// The `k` most probable classes, most probable first (ties by index).
    public func top(_ k: Int) -> [Int] {
        Array(probabilities.indices.sorted { probabilities[$0] > probabilities[$1] || (probabilities[$0] == probabilities[$1] && $0 < $1) }.prefix(max(k, 0)))
    }
}
