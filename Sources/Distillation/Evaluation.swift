import Datasets
import Foundation
import NeuralNet
import Tensors

/// How well a classifier does on labelled data.
public struct ClassificationMetrics: Codable, Equatable, Sendable {
    /// Fraction whose top class is the label.
    public var top1: Double
    /// Fraction whose label is among the five highest classes (or all, with fewer classes).
    public var top5: Double
    /// Expected calibration error over 15 equal-width confidence bins (Guo et al. 2017):
    /// Σ_b (n_b / N)·|accuracy_b − confidence_b|.
    public var expectedCalibrationError: Double
    /// Accuracy per true class.
    public var perClassAccuracy: [Double]
    /// confusion[true][predicted] counts.
    public var confusion: [[Int]]
    /// Reliability diagram: per bin, the mean confidence, the accuracy and the count.
    public var reliability: [ReliabilityBin]
    /// Fraction of examples where this model's top class equals a reference model's (a teacher's).
    public var agreement: Double?
    public var classNames: [String]
    /// Per predicted class c, the fraction of the examples predicted as c that are c:
    /// precision_c = TP_c / (TP_c + FP_c) = confusion[c][c] / Σₜ confusion[t][c]; 0 when nothing
    /// is predicted as c (0/0 is 0, as scikit-learn's `zero_division=0`).
    public var precision: [Double]
    /// Per true class c, the fraction found: recall_c = TP_c / (TP_c + FN_c) =
    /// confusion[c][c] / Σₚ confusion[c][p] (the same as `perClassAccuracy`); 0 without examples of c.
    public var recall: [Double]
    /// F1_c = 2·P_c·R_c / (P_c + R_c) = 2·TP_c / (2·TP_c + FP_c + FN_c); 0 when the denominator is 0.
    public var f1: [Double]
    /// Examples of each true class: Σₚ confusion[c][p].
    public var support: [Int]
    /// The unweighted mean of `f1` over all C classes (scikit-learn's
    /// `f1_score(average="macro", labels=range(C), zero_division=0)`): every class counts
    /// alike, however rare, so a model that ignores a minority class loses here, not in accuracy.
    public var macroF1: Double

    public struct ReliabilityBin: Codable, Equatable, Sendable {
        public var confidence: Double, accuracy: Double, count: Int
    }

    /// Metrics of `logits` [N, C] against `labels`; `reference` logits give the agreement.
    public init(logits: Tensor, labels: [Int], classNames: [String], reference: Tensor? = nil, bins: Int = 15) {
        require(logits.rank == 2 && logits.shape[0] == labels.count, "ClassificationMetrics: logits \(logits.shape) do not fit \(labels.count) labels")
        let (n, c) = (logits.shape[0], logits.shape[1])
        let probabilities = withoutGradients { logits.softmax(alongAxis: 1) }.scalars
        var correct = 0, top5 = 0
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: c), count: c)
        var binConfidence = [Double](repeating: 0, count: bins), binCorrect = [Int](repeating: 0, count: bins), binCount = [Int](repeating: 0, count: bins)
        var predictions: [Int] = []
        for i in 0..<n {
            let row = probabilities[(i * c)..<((i + 1) * c)]
            let predicted = row.indices.max { row[$0] < row[$1] }! - i * c
            predictions.append(predicted)
            let label = labels[i]
            confusion[label][predicted] += 1
            if predicted == label { correct += 1 }
            let rank = row.filter { $0 > row[i * c + label] }.count
            if rank < 5 { top5 += 1 }
            let confidence = Double(row[i * c + predicted])
            let bin = min(bins - 1, Int(confidence * Double(bins)))
            binConfidence[bin] += confidence
            binCount[bin] += 1
            if predicted == label { binCorrect[bin] += 1 }
        }
        top1 = Double(correct) / Double(max(n, 1))
        self.top5 = Double(top5) / Double(max(n, 1))
        reliability = (0..<bins).map { b in
            ReliabilityBin(confidence: binCount[b] > 0 ? binConfidence[b] / Double(binCount[b]) : 0,
                           accuracy: binCount[b] > 0 ? Double(binCorrect[b]) / Double(binCount[b]) : 0, count: binCount[b])
        }
        expectedCalibrationError = reliability.reduce(0) { $0 + Double($1.count) / Double(max(n, 1)) * abs($1.accuracy - $1.confidence) }
        perClassAccuracy = (0..<c).map { k in
            let total = confusion[k].reduce(0, +)
            return total > 0 ? Double(confusion[k][k]) / Double(total) : 0
        }
        self.confusion = confusion
        self.classNames = classNames
        (precision, recall, f1, support, macroF1) = Self.scores(confusion: confusion)
        if let reference {
            let referenceTop = withoutGradients { reference.max(alongAxis: 1) }.indices
            agreement = Double(zip(predictions, referenceTop).filter { $0 == $1 }.count) / Double(max(n, 1))
        }
    }
}

extension ClassificationMetrics {
    /// Precision, recall, F1 and support per class, and macro-F1, from `confusion[true][predicted]`
    /// (the formulas are the properties' own; every 0/0 is 0).
    static func scores(confusion: [[Int]]) -> (precision: [Double], recall: [Double], f1: [Double], support: [Int], macroF1: Double) {
        let classes = confusion.indices
        let support = confusion.map { $0.reduce(0, +) }
        let predicted = classes.map { c in confusion.reduce(0) { $0 + $1[c] } }
        func ratio(_ a: Int, _ b: Int) -> Double { b > 0 ? Double(a) / Double(b) : 0 }
        let truePositives = classes.map { confusion[$0][$0] }
        let precision = classes.map { ratio(truePositives[$0], predicted[$0]) }
        let recall = classes.map { ratio(truePositives[$0], support[$0]) }
        // 2·TP + FP + FN = predicted + support.
        let f1 = classes.map { ratio(2 * truePositives[$0], predicted[$0] + support[$0]) }
        return (precision, recall, f1, support, f1.isEmpty ? 0 : f1.reduce(0, +) / Double(f1.count))
    }

    /// Decodes `evaluation.json` files, also those written before precision, recall, F1 and
    /// macro-F1 existed: those are recomputed from the confusion matrix.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        top1 = try container.decode(Double.self, forKey: .top1)
        top5 = try container.decode(Double.self, forKey: .top5)
        expectedCalibrationError = try container.decode(Double.self, forKey: .expectedCalibrationError)
        perClassAccuracy = try container.decode([Double].self, forKey: .perClassAccuracy)
        let confusion = try container.decode([[Int]].self, forKey: .confusion)
        self.confusion = confusion
        reliability = try container.decode([ReliabilityBin].self, forKey: .reliability)
        agreement = try container.decodeIfPresent(Double.self, forKey: .agreement)
        classNames = try container.decode([String].self, forKey: .classNames)
        guard confusion.allSatisfy({ $0.count == confusion.count }) else {
            throw DecodingError.dataCorruptedError(forKey: .confusion, in: container, debugDescription: "the confusion matrix is not square")
        }
        (precision, recall, f1, support, macroF1) = Self.scores(confusion: confusion)
    }
}

/// What running a model costs: size, work and measured latency.
public struct ModelCost: Codable, Equatable, Sendable {
    public var parameters: Int
    public var multiplyAdds: Int
    public var bytes: Int
    /// Median forward time of one example, evaluation mode, in milliseconds.
    public var latencyBatch1Milliseconds: Double
    /// Median forward time of 256 examples, in milliseconds.
    public var latencyBatch256Milliseconds: Double

    /// Measures `model` on inputs of `inputShape` (one example's shape): after one warm-up
    /// call, the median of up to `repeats` × 4 calls at batch 1 and `repeats` calls at batch
    /// 256, each batch size stopping early once its calls took `budgetSeconds` (and at least
    /// three ran). The budget bounds what a large model costs: a cnn-teacher call at batch
    /// 256 takes about 0.1 s and its 15 calls were 5 s of CPU time in every report; calls
    /// that long vary by a few percent, so three to five give the same median, while a
    /// small model's calls (fractions of a millisecond, the noisy ones) still all run.
    ///
    /// A float model's latency is its `FusedModel`'s (batch norm folded, activations fused,
    /// weights packed: what `InferenceModel` and `distill predict` run), where the build has
    /// oneDNN. An int8 model (`QuantizedModel`) runs on the int8 kernels; its parameters are the values
    /// it stores (`storedParameterCount`), its bytes the int8 weights with their scales and
    /// int32 biases plus any float stages as Float32.
    public init(_ model: any Module, inputShape: Shape, repeats: Int = 15, budgetSeconds: Double = 0.5) {
        if let quantized = model as? QuantizedModel {
            parameters = quantized.storedParameterCount
            multiplyAdds = quantized.multiplyAddsPerExample
            bytes = quantized.weightBytes + quantized.floatStageBytes
        } else {
            let summary = ModelSummary(model, inputShape: inputShape)
            parameters = summary.totalParameters
            multiplyAdds = summary.totalMultiplyAdds
            bytes = summary.bytes
        }
        model.eval()
        // A float model is timed as it is deployed: fused (InferenceModel, `distill predict`).
        let runner: any Module = model is QuantizedModel ? model : (try? FusedModel(model, exampleShape: inputShape.dimensions)) ?? model
        func median(batch: Int, times: Int) -> Double {
            let x = Tensor.zeros(Shape([batch] + inputShape.dimensions))
            _ = withoutGradients { runner(x) }
            return Self.medianMilliseconds(calls: times, budgetSeconds: budgetSeconds) {
                let start = DispatchTime.now().uptimeNanoseconds
                _ = withoutGradients { runner(x) }
                return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
            }
        }
        latencyBatch1Milliseconds = median(batch: 1, times: repeats * 4)
        latencyBatch256Milliseconds = median(batch: 256, times: repeats)
    }

    /// The median of the durations `measure` returns (milliseconds), over at most `calls`
    /// calls, stopping once they add up to `budgetSeconds` after at least three (or `calls`,
    /// when fewer).
    public static func medianMilliseconds(calls: Int, budgetSeconds: Double, measure: () -> Double) -> Double {
        var samples: [Double] = []
        var total = 0.0
        while samples.count < max(calls, 1) && (samples.count < 3 || total < budgetSeconds * 1000) {
            let milliseconds = measure()
            samples.append(milliseconds)
            total += milliseconds
        }
        return samples.sorted()[samples.count / 2]
    }
}

/// Teacher against student after distillation: accuracy, calibration, agreement, and the
/// cost ratios (teacher ÷ student: how much smaller and faster the student is).
public struct DistillationReport: Codable, Equatable, Sendable {
    public var student: ClassificationMetrics
    public var teacher: ClassificationMetrics?
    public var studentCost: ModelCost
    public var teacherCost: ModelCost?
    public var parameterRatio: Double?
    public var multiplyAddRatio: Double?
    public var byteRatio: Double?
    public var latencyBatch1Ratio: Double?
    public var latencyBatch256Ratio: Double?
    /// The model selected on the validation split (the best epoch's), scored on the same test
    /// set, when the run had a validation split; `student` is the final model.
    public var selected: ClassificationMetrics?
    /// The selected model's epoch, from 0.
    public var selectedEpoch: Int?
    /// A quantization-aware run's int8 model: when present, `student`, `studentCost` and the
    /// ratios describe that int8 model (what the run ships), and this holds the fake-quantized
    /// float model's scores, the file sizes and the kernels (`describeInt8`).
    public var int8: Int8StudentReport?

    public init(student: any Module, teacher: (any Module)?, images: Tensor, labels: [Int], classNames: [String]) {
        self.init(student: student, teacher: teacher, studentLogits: student.predictions(images), teacherLogits: teacher.map { $0.predictions(images) },
                  exampleShape: Shape(Array(images.shape.dimensions.dropFirst())), labels: labels, classNames: classNames)
    }

    /// The report on `test`, read in batches (a streamed set is decoded batch by batch, never
    /// held whole); throws a `DatasetError` naming a file that does not decode. With
    /// `teacherLogits` (the teacher's on `test`, kept from an earlier run), the teacher is
    /// not run on `test` again.
    public init(student: any Module, teacher: (any Module)?, test: Dataset, teacherLogits: Tensor? = nil) throws {
        guard test.count > 0 else { throw DistillationError("the test set is empty") }
        self.init(student: student, teacher: teacher, studentLogits: try student.predictions(on: test),
                  teacherLogits: try teacherLogits ?? teacher.map { try $0.predictions(on: test) }, exampleShape: test.exampleShape,
                  labels: test.labels, classNames: test.classNames)
    }

    /// The report on `test` against a teacher known only by its logits on it (a served
    /// teacher's answers, [test.count, classes]): accuracy and agreement, no cost ratios.
    public init(student: any Module, teacherLogits: Tensor, test: Dataset) throws {
        guard test.count > 0 else { throw DistillationError("the test set is empty") }
        guard teacherLogits.shape.dimensions == [test.count, test.classCount] else {
            throw DistillationError("the teacher's logits are \(teacherLogits.shape.dimensions) for \(test.count) test examples of \(test.classCount) classes")
        }
        self.init(student: student, teacher: nil, studentLogits: try student.predictions(on: test), teacherLogits: teacherLogits,
                  exampleShape: test.exampleShape, labels: test.labels, classNames: test.classNames)
    }

    private init(student: any Module, teacher: (any Module)?, studentLogits: Tensor, teacherLogits: Tensor?, exampleShape shape: Shape,
                 labels: [Int], classNames: [String]) {
        self.student = ClassificationMetrics(logits: studentLogits, labels: labels,
                                             classNames: classNames, reference: teacherLogits)
        self.teacher = teacherLogits.map { ClassificationMetrics(logits: $0, labels: labels, classNames: classNames) }
        studentCost = ModelCost(student, inputShape: shape)
        teacherCost = teacher.map { ModelCost($0, inputShape: shape) }
        computeRatios()
    }

    /// The teacher ÷ student cost ratios, from `teacherCost` and `studentCost`.
    mutating func computeRatios() {
        if let t = teacherCost {
            parameterRatio = Double(t.parameters) / Double(max(studentCost.parameters, 1))
            multiplyAddRatio = Double(t.multiplyAdds) / Double(max(studentCost.multiplyAdds, 1))
            byteRatio = Double(t.bytes) / Double(max(studentCost.bytes, 1))
            latencyBatch1Ratio = t.latencyBatch1Milliseconds / max(studentCost.latencyBatch1Milliseconds, 1e-9)
            latencyBatch256Ratio = t.latencyBatch256Milliseconds / max(studentCost.latencyBatch256Milliseconds, 1e-9)
        }
    }
}

/// Scores of a model on labelled data.
public enum Evaluation {
    /// The batch for inference passes over a data set (evaluation, the teacher's cache): 256
    /// examples, fewer for large ones (2^22 values a batch). Not larger: a batch of 1,000
    /// through cnn-teacher makes 200 MB activations, past what the tensor buffer cache keeps,
    /// and each was then faulted in afresh (a third of the CPU time of a teacher's pass in the
    /// profile); at 256 the buffers are reused and a pass is no slower per example.
    public static func inferenceBatch(exampleCount: Int) -> Int { max(1, min(256, (1 << 22) / max(exampleCount, 1))) }

    /// The fraction of `data` whose label `model` ranks first (with `output`, scored on that
    /// submodule's outputs: one head of a multi-head model).
    public static func accuracy(_ model: any Module, on data: Dataset, output: String? = nil) throws -> Double {
        guard data.count > 0 else { return 0 }
        let outputs = try model.predictions(on: data, output: output)
        let predicted = outputs.max(alongAxis: 1).indices
        return Double(zip(predicted, data.labels).filter { $0 == $1 }.count) / Double(data.count)
    }
}
