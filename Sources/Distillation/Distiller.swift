import Datasets
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// How a distillation run trains: epochs, batches, weights and guards. Defaults are the
/// recipe of `docs/distillation.md`.
public struct DistillerConfiguration {
    public var epochs = 3
    public var batchSize = 128
    public var seed: UInt64 = 0
    /// Weight of the hard-label cross-entropy (1 − α for KD's α = 0.9).
    public var crossEntropyWeight: Float = 0.1
    public var labelSmoothing: Float = 0
    /// Gradient clipping by global norm (nil: off). On by default: see `docs/distillation.md`
    /// for the recipe that collapses without it.
    public var clipNorm: Float? = 2
    /// Linear learning-rate warm-up steps before the schedule (0: none).
    public var warmupSteps = 100
    /// The optimizer built over the student (and any trainable loss parts) when `fit` is
    /// not given one, and its weight decay (weights only).
    public var optimizer: OptimizerChoice = .sgd
    public var weightDecay: Float = 5e-4
    /// The schedule after warm-up when `fit` is not given one.
    public var schedule: ScheduleChoice = .cosine
    public var augmentation = Augmentation()
    /// What to do when a loss or gradient is not finite.
    public var nonFinite: NonFinitePolicy = .stop
    /// Cache teacher outputs when the pipeline is deterministic (no augmentation).
    public var cacheTeacher = true
    /// Largest cache of tapped teacher features kept in memory; above it the teacher runs online.
    public var featureCacheBytes = 1 << 30
    /// Where to write checkpoints and metrics (nil: nothing is written).
    public var runDirectory: String?
    /// Where cached teacher outputs persist between runs, one file per cache key (nil: memory only).
    public var cacheDirectory: String?

    public init() {}
}

/// What to do when a loss or a gradient becomes NaN or infinite.
public enum NonFinitePolicy: Equatable, Sendable {
    /// Stop with an error that names the epoch, the step and the loss terms.
    case stop
    /// Restore the state from the start of the epoch, scale the learning rate by `factor`
    /// and run the epoch again, at most `retries` times.
    case rollback(factor: Float, retries: Int)
}

/// Progress reports while distilling.
public enum DistillationEvent {
    case cachingTeacher(done: Int, total: Int)
    case step(epoch: Int, step: Int, of: Int, loss: Float, examplesPerSecond: Double)
    case rolledBack(epoch: Int, step: Int, learningRateFactor: Float)
    case epochFinished(EpochRecord)
}

/// One epoch's numbers.
public struct EpochRecord: Codable, Equatable, Sendable {
    public var epoch: Int
    public var loss: Float
    /// Mean of each weighted term ("ce", "kd", ...).
    public var terms: [String: Float]
    public var seconds: Double
    public var learningRate: Float
    public var validationAccuracy: Double?

    public init(epoch: Int, loss: Float, terms: [String: Float], seconds: Double, learningRate: Float, validationAccuracy: Double? = nil) {
        self.epoch = epoch
        self.loss = loss
        self.terms = terms
        self.seconds = seconds
        self.learningRate = learningRate
        self.validationAccuracy = validationAccuracy
    }
}

/// Trains a student against frozen teachers with a weighted sum of losses:
/// w_ce·CE(student, labels) + Σ wᵢ·Lᵢ(student, teachers).
///
/// ```swift
/// let distiller = try Distiller(student: student, teachers: [Teacher(.model(teacher))],
///                               losses: [WeightedLoss(KnowledgeDistillation(temperature: 4), weight: 0.9)])
/// let history = try distiller.fit(train: data.train, validation: data.test)
/// ```
public final class Distiller {
    public let student: any Module
    public let teachers: [Teacher]
    public let losses: [WeightedLoss]
    public var configuration: DistillerConfiguration
    /// The student and every loss's trainable parts, as one module (what the optimizer and
    /// checkpoints cover). The exported student is `student` alone.
    public private(set) var trainable: Sequential
    public private(set) var optimizer: (any Optimizer)?
    private var cache: TeacherCache?
    private var startEpoch = 0
    private var step = 0
    private var bestAccuracy = -1.0

    public init(student: any Module, teachers: [Teacher], losses: [WeightedLoss], configuration: DistillerConfiguration = DistillerConfiguration()) throws {
        guard !teachers.isEmpty || losses.isEmpty else { throw DistillationError("distillation losses need at least one teacher") }
        guard teachers.allSatisfy({ $0.weight > 0 }) else { throw DistillationError("teacher weights must be positive") }
        let needsFeatures = losses.contains { !$0.loss.teacherTaps.isEmpty }
        if needsFeatures && !teachers.contains(where: { $0.model != nil }) {
            throw DistillationError("feature-based losses (\(losses.filter { !$0.loss.teacherTaps.isEmpty }.map(\.loss.name).joined(separator: ", "))) need a teacher model, not only its outputs")
        }
        self.student = student
        self.teachers = teachers
        self.losses = losses
        self.configuration = configuration
        self.trainable = Sequential(named: [("student", student)])
    }

    /// The teacher whose features feature losses see: the first model teacher.
    private var featureTeacher: (any Module)? { teachers.lazy.compactMap(\.model).first }
    private var studentTaps: [String] { Array(Set(losses.flatMap(\.loss.studentTaps))).sorted() }
    private var teacherTaps: [String] { Array(Set(losses.flatMap(\.loss.teacherTaps))).sorted() }

    /// Checks taps, prepares the losses with the tapped shapes, and builds the optimizer
    /// (by default SGD with Nesterov momentum 0.9, weight decay 5e-4 on weights) unless one is given.
    private func prepare(train: Dataset, optimizer given: (any Optimizer)?, learningRate: Float) throws {
        var generator = RandomGenerator(seed: configuration.seed ^ 0x5EED)
        let probe = withoutGradients { train.inputs.sliced(alongAxis: 0, 0..<min(2, train.count)) }
        student.eval()
        let (studentOut, studentFeatures) = try withoutGradients { try student.forward(probe, capturing: studentTaps) }
        var teacherFeatures: [String: Tensor] = [:]
        if let teacher = featureTeacher {
            teacher.eval()
            teacherFeatures = try withoutGradients { try teacher.forward(probe, capturing: teacherTaps).features }
        }
        for teacher in teachers {
            if let model = teacher.model {
                let out = withoutGradients { model(probe) }
                guard out.shape == studentOut.shape else {
                    throw DistillationError("a teacher gives outputs \(Array(out.shape.dimensions.dropFirst())) but the student \(Array(studentOut.shape.dimensions.dropFirst()))")
                }
            }
        }
        let strip = { (d: [String: Tensor]) in d.mapValues { Shape(Array($0.shape.dimensions.dropFirst())) } }
        for weighted in losses {
            try weighted.loss.prepare(studentShapes: strip(studentFeatures), teacherShapes: strip(teacherFeatures), examples: train.count, using: &generator)
        }
        trainable = Sequential(named: [("student", student)] + losses.enumerated().compactMap { i, w in w.loss.module.map { ("\(w.loss.name)\(i)", $0) } })
        optimizer = given ?? configuration.optimizer.make(trainable, learningRate: learningRate, weightDecay: configuration.weightDecay)
    }

    /// Teacher logits and tapped features for the whole set, once (with progress events).
    private func buildCache(_ train: Dataset, events: (DistillationEvent) -> Void) throws -> TeacherCache {
        let taps = teacherTaps
        let key = TeacherCache.key(teachers: teachers, inputs: train.inputs, taps: taps)
        if let cache, cache.key == key { return cache }
        let file = configuration.cacheDirectory.map { ($0 as NSString).appendingPathComponent("teacher-\(key).safetensors") }
        if let file, FileManager.default.fileExists(atPath: file), let stored = try? TeacherCache.load(file), stored.key == key,
           stored.logits.shape[0] == train.count, Set(stored.features.keys) == Set(taps) {
            events(.cachingTeacher(done: train.count, total: train.count))
            return stored
        }
        let total = train.count, chunk = 512
        var logitParts: [Tensor] = [], featureParts: [String: [Tensor]] = [:]
        for first in stride(from: 0, to: total, by: chunk) {
            let range = first..<min(first + chunk, total)
            let inputs = withoutGradients { train.inputs.sliced(alongAxis: 0, range) }
            let (logits, features) = try teacherOutputs(inputs, indices: Array(range), cached: nil)
            logitParts.append(logits)
            for (name, value) in features { featureParts[name, default: []].append(value) }
            events(.cachingTeacher(done: range.upperBound, total: total))
        }
        let built = TeacherCache(logits: Tensor.concatenating(logitParts, alongAxis: 0),
                                 features: featureParts.mapValues { Tensor.concatenating($0, alongAxis: 0) }, key: key)
        if let file, let directory = configuration.cacheDirectory {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try built.save(file)
        }
        return built
    }

    /// Ensemble logits (weighted mean) and the feature teacher's taps for a batch.
    private func teacherOutputs(_ inputs: Tensor, indices: [Int], cached: TeacherCache?) throws -> (Tensor, [String: Tensor]) {
        if let cached {
            return withoutGradients {
                (cached.logits.indexSelect(alongAxis: 0, indices: indices), cached.features.mapValues { $0.indexSelect(alongAxis: 0, indices: indices) })
            }
        }
        var features: [String: Tensor] = [:]
        var sum: Tensor?
        let totalWeight = teachers.reduce(0) { $0 + $1.weight }
        for teacher in teachers {
            let logits: Tensor
            switch teacher.source {
            case let .model(model):
                model.eval()
                if features.isEmpty && !teacherTaps.isEmpty && model === featureTeacher {
                    let out = try withoutGradients { try model.forward(inputs, capturing: teacherTaps) }
                    logits = out.output
                    features = out.features
                } else {
                    logits = withoutGradients { model(inputs) }
                }
            case let .outputs(outputs):
                logits = withoutGradients { outputs.indexSelect(alongAxis: 0, indices: indices) }
            }
            let weighted = withoutGradients { logits * (teacher.weight / totalWeight) }
            sum = sum.map { a in withoutGradients { a + weighted } } ?? weighted
        }
        return (sum ?? Tensor.zeros([inputs.shape[0], 0]), features)
    }

    /// Distils on `train`. Examples whose `labeled` entry is false (a transfer set) get the
    /// distillation terms only; their label slot holds the teacher's top class for losses that
    /// need a target (DKD). Evaluates on `validation` after each epoch when given. With
    /// `stoppingAfter`, returns once that many epochs of the run are done (as if interrupted:
    /// the schedule still spans `configuration.epochs`).
    @discardableResult
    public func fit(train: Dataset, labeled: [Bool]? = nil, validation: Dataset? = nil, stoppingAfter: Int? = nil,
                    optimizer given: (any Optimizer)? = nil,
                    learningRate: Float = 0.05, schedule givenSchedule: (any LearningRateSchedule)? = nil,
                    events: (DistillationEvent) -> Void = { _ in }) throws -> [EpochRecord] {
        if let labeled, labeled.count != train.count {
            throw DistillationError("the labelled mask has \(labeled.count) entries for \(train.count) examples")
        }
        for teacher in teachers {
            if case let .outputs(outputs) = teacher.source {
                _ = try TeacherOutputs.validate(outputs, source: "teacher outputs", examples: train.count, classes: train.classCount)
            }
        }
        if optimizer == nil { try prepare(train: train, optimizer: given, learningRate: learningRate) }
        let optimizer = self.optimizer!
        let loader = try DataLoader(train, batchSize: configuration.batchSize, shuffle: true, seed: configuration.seed,
                                    augmentation: configuration.augmentation)
        let totalSteps = loader.batchesPerEpoch * configuration.epochs
        let schedule: any LearningRateSchedule
        if let givenSchedule {
            schedule = givenSchedule
        } else if configuration.warmupSteps > 0 {
            schedule = WarmupSchedule(warmupSteps: configuration.warmupSteps, startFactor: 0.01,
                                      then: configuration.schedule.make(totalSteps: totalSteps - configuration.warmupSteps))
        } else {
            schedule = configuration.schedule.make(totalSteps: totalSteps)
        }
        let deterministic = !configuration.augmentation.isActive
        let useCache = configuration.cacheTeacher && deterministic && !teachers.isEmpty
        if useCache {
            let featureBytes = teacherTaps.isEmpty ? 0 : 4 * train.count * (try teacherFeatureSize(train))
            if featureBytes <= configuration.featureCacheBytes { cache = try buildCache(train, events: events) }
        }
        let parameters = optimizer.groups.flatMap(\.parameters)
        var history: [EpochRecord] = []
        var epoch = startEpoch
        var factor: Float = 1
        var retries = 0
        while epoch < min(configuration.epochs, stoppingAfter ?? .max) {
            let snapshot = configuration.nonFinite == .stop ? nil : TrainingCheckpoint(model: trainable, optimizer: optimizer, epoch: epoch, step: step)
            let start = Date()
            var totals: [String: Float] = [:], lossTotal: Float = 0, batches = 0
            var failure: (batch: Int, terms: [String: Float])?
            trainable.train()
            for batch in loader.batches(epoch: epoch) {
                optimizer.setLearningRateFactor(schedule.factor(atStep: step) * factor)
                optimizer.zeroGrad()
                let (logits, studentFeatures) = try student.forward(batch.inputs, capturing: studentTaps)
                let (teacherLogits, teacherFeatures) = teachers.isEmpty
                    ? (Tensor.zeros(logits.shape), [:]) : try teacherOutputs(batch.inputs, indices: batch.indices, cached: cache)
                let mask = batch.indices.map { labeled?[$0] ?? true }
                let teacherTop = teachers.isEmpty ? [] : teacherLogits.max(alongAxis: 1).indices
                let targets = zip(batch.labels, mask).enumerated().map { i, pair in pair.1 ? pair.0 : teacherTop[i] }
                var terms: [String: Tensor] = [:]
                let labeledRows = mask.indices.filter { mask[$0] }
                if configuration.crossEntropyWeight > 0 && !labeledRows.isEmpty {
                    let rows = labeledRows.count == mask.count ? logits : logits.indexSelect(alongAxis: 0, indices: labeledRows)
                    terms["ce"] = Tensor.crossEntropy(logits: rows, labels: labeledRows.map { targets[$0] }, labelSmoothing: configuration.labelSmoothing)
                        * configuration.crossEntropyWeight
                }
                let context = DistillationBatch(studentLogits: logits, teacherLogits: teacherLogits, labels: targets, isLabeled: mask,
                                                studentFeatures: studentFeatures, teacherFeatures: teacherFeatures,
                                                indices: batch.indices, epoch: epoch)
                for (i, weighted) in losses.enumerated() {
                    let key = terms[weighted.loss.name] == nil ? weighted.loss.name : "\(weighted.loss.name)\(i)"
                    terms[key] = weighted.loss.loss(context) * weighted.weight
                }
                // A fixed order: the order of additions decides the order in which gradients
                // accumulate, and a resumed run must reproduce an uninterrupted one bit for bit.
                let total = terms.sorted { $0.key < $1.key }.map(\.value).reduce(Tensor(scalar: 0), +)
                total.backward()
                let values = terms.mapValues(\.item)
                let norm = clipGradientNorm(parameters, maxNorm: configuration.clipNorm ?? .greatestFiniteMagnitude)
                if !total.item.isFinite || !norm.isFinite {
                    failure = (batches, values)
                    break
                }
                optimizer.step()
                for (k, v) in values { totals[k, default: 0] += v }
                lossTotal += total.item
                batches += 1
                step += 1
                events(.step(epoch: epoch, step: batches, of: loader.batchesPerEpoch, loss: total.item,
                             examplesPerSecond: Double(batches * configuration.batchSize) / max(Date().timeIntervalSince(start), 1e-9)))
            }
            if let failure {
                let description = failure.terms.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                guard case let .rollback(scale, limit) = configuration.nonFinite, let snapshot, retries < limit else {
                    throw DistillationError("training diverged at epoch \(epoch + 1), step \(failure.batch + 1) of \(loader.batchesPerEpoch): loss or gradient is not finite (\(description)); lower the learning rate or enable gradient clipping")
                }
                try snapshot.restore(model: trainable, optimizer: optimizer)
                step = snapshot.step
                factor *= scale
                retries += 1
                events(.rolledBack(epoch: epoch, step: failure.batch, learningRateFactor: factor))
                continue
            }
            var record = EpochRecord(epoch: epoch, loss: lossTotal / Float(max(batches, 1)), terms: totals.mapValues { $0 / Float(max(batches, 1)) },
                                     seconds: Date().timeIntervalSince(start), learningRate: optimizer.groups.first?.learningRate ?? 0)
            if let validation {
                record.validationAccuracy = ClassifierTraining.accuracy(student, images: validation.inputs, labels: validation.labels)
            }
            history.append(record)
            epoch += 1
            try writeCheckpoints(record, epoch: epoch)
            events(.epochFinished(record))
        }
        startEpoch = epoch
        return history
    }

    private func teacherFeatureSize(_ train: Dataset) throws -> Int {
        guard let teacher = featureTeacher else { return 0 }
        let probe = withoutGradients { train.inputs.sliced(alongAxis: 0, 0..<1) }
        teacher.eval()
        return try withoutGradients { try teacher.forward(probe, capturing: teacherTaps).features.values.reduce(0) { $0 + $1.count } }
    }

    private func writeCheckpoints(_ record: EpochRecord, epoch: Int) throws {
        guard let directory = configuration.runDirectory, let optimizer else { return }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let line = String(decoding: try encoder.encode(record), as: UTF8.self) + "\n"
        let metrics = (directory as NSString).appendingPathComponent("metrics.jsonl")
        let previous = (try? String(contentsOfFile: metrics, encoding: .utf8)) ?? ""
        try AtomicFile.write(Data((previous + line).utf8), to: metrics)
        try TrainingCheckpoint(model: trainable, optimizer: optimizer, epoch: epoch, step: step,
                               metadata: ["seed": String(configuration.seed)]).save(to: (directory as NSString).appendingPathComponent("last.safetensors"))
        if let accuracy = record.validationAccuracy, accuracy > bestAccuracy {
            bestAccuracy = accuracy
            try ModelWeights.save(student, to: (directory as NSString).appendingPathComponent("best.safetensors"),
                                  metadata: ["epoch": String(epoch), "validation_accuracy": String(accuracy)])
        }
    }

    /// Continues a run from a checkpoint written by `fit` (the run directory's
    /// `last.safetensors`): the next `fit` call starts at the epoch after it, with the same data
    /// order, learning-rate schedule and optimizer state, and ends with the same weights as an
    /// uninterrupted run. Call with the same training set, teachers and losses.
    public func resume(from path: String, train: Dataset, optimizer given: (any Optimizer)? = nil, learningRate: Float = 0.05) throws {
        try prepare(train: train, optimizer: given, learningRate: learningRate)
        let checkpoint = try TrainingCheckpoint.load(from: path)
        try checkpoint.restore(model: trainable, optimizer: optimizer!)
        startEpoch = checkpoint.epoch
        step = checkpoint.step
    }

    /// Writes the student alone (no teacher or loss parts) as safetensors.
    public func exportStudent(to path: String) throws {
        try ModelWeights.save(student, to: path)
    }
}
