import Datasets
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import Training

/// The one training loop: scratch training (cross-entropy alone), distillation (teachers and
/// weighted loss terms) and transfer (learning-rate scales, frozen modules, extra heads and
/// tasks) are configurations of it. It owns the data loader, the optimizer and its parameter
/// groups, warm-up and schedule, gradient clipping, the non-finite policy, validation and
/// checkpoint selection, checkpoints (also inside an epoch) and the run folder, and a run
/// resumed from its checkpoint ends with the same weights, bit for bit, as one never stopped.
///
/// The objective is w_ce·CE(model, labels) + Σ wᵢ·Lᵢ(model, teachers) + Σ auxiliary tasks.
///
/// ```swift
/// let trainer = try Trainer(model: student, teachers: [Teacher(.model(teacher))],
///                           losses: [WeightedLoss(KnowledgeDistillation(temperature: 4), weight: 0.9)])
/// trainer.configuration.crossEntropyWeight = 0.1
/// let result = try trainer.fit(train: data.train, validation: validation)
/// ```
public final class Trainer {
    /// What is trained and exported (the student).
    public let model: any Module
    public let teachers: [Teacher]
    public let losses: [WeightedLoss]
    public var configuration: TrainerConfiguration
    /// Tasks trained together with the main one (joint training).
    public var auxiliaryTasks: [AuxiliaryTask] = []
    /// Called before every optimizer step with the step (from 0) and the run's total:
    /// schedules of freezing, such as gradual unfreezing.
    public var beforeStep: ((_ step: Int, _ totalSteps: Int) throws -> Void)?
    /// Writes the model file (weights and what rebuilds them) to a path: the selected model's
    /// `best.safetensors`. Without it the weights alone are written.
    public var saveModel: ((_ path: String) throws -> Void)?
    /// Asked after every step; when it returns true the trainer writes a checkpoint and throws
    /// `TrainingInterrupted` (what SIGINT and SIGTERM do on the command line).
    public var shouldStop: () -> Bool = { false }
    /// Settings of the caller's that decide the run's numbers, recorded in checkpoints beside
    /// the trainer's own: resuming with other values is refused, naming them.
    public var runSettings: [String: String] = [:]
    /// The processes this run is spread over (`configuration.communicator`).
    public var communicator: any Communicator { configuration.communicator }

    /// The model and every loss's trainable parts, as one module: what the optimizer and
    /// checkpoints cover.
    public internal(set) var trainable: Sequential
    public internal(set) var optimizer: (any Optimizer)?
    var cache: TeacherCache?
    var state = RunState()
    /// When the part of the epoch since its start or the last checkpoint began.
    var segmentStart = Date()
    /// Data-parallel runs: this epoch's `EpochRecord.allReduceWaitSeconds` so far.
    var allReduceWait = 0.0
    /// Data-parallel runs: the loss-term names the processes have agreed to sum each step.
    var agreedTermNames: [String] = []
    /// The run folder's TensorBoard event file, opened at the first epoch's end.
    var tensorBoard: TensorBoardWriter?
    /// What `keepInCheckpoints` added, after the model and the losses' modules in `trainable`.
    var kept: [(name: String, module: any Module)] = []

    public init(model: any Module, teachers: [Teacher] = [], losses: [WeightedLoss] = [],
                configuration: TrainerConfiguration = TrainerConfiguration()) throws {
        guard !teachers.isEmpty || losses.isEmpty else { throw DistillationError("distillation losses need at least one teacher") }
        guard teachers.allSatisfy({ $0.weight > 0 && $0.weight.isFinite }) else { throw DistillationError("teacher weights must be positive") }
        let featureLosses = losses.filter { !$0.loss.teacherTaps.isEmpty }
        if !featureLosses.isEmpty && !teachers.contains(where: { $0.model != nil }) {
            throw DistillationError("feature-based losses (\(featureLosses.map(\.loss.name).joined(separator: ", "))) need a teacher model, not only its outputs")
        }
        self.model = model
        self.teachers = teachers
        self.losses = losses
        self.configuration = configuration
        self.trainable = Sequential(named: [("student", model)])
    }

    /// Keeps `module`'s parameters and buffers in the run's checkpoints (and trains its
    /// parameters) beside the model's: state of the run that is not the model, such as the
    /// ranges quantization-aware training observes. Call before training starts.
    public func keepInCheckpoints(_ name: String, _ module: any Module) throws {
        guard optimizer == nil else { throw DistillationError("keepInCheckpoints: call it before training starts") }
        guard !trainable.layers.contains(where: { $0.name == name }) && !kept.contains(where: { $0.name == name }) else {
            throw DistillationError("keepInCheckpoints: '\(name)' is taken")
        }
        kept.append((name, module))
    }

    /// Trains on `train` and returns the history. Examples whose `labeled` entry is false (a
    /// transfer set) get the distillation terms only. After each epoch the model is scored
    /// on `validation` (when given): the best epoch's model is written as `best.safetensors`
    /// and `patience` stops the run. The test set is never seen here. With `stoppingAfter`,
    /// returns once that many steps of the run are done (as if interrupted: the schedule
    /// still spans the whole run).
    @discardableResult
    public func fit(train: Dataset, labeled: [Bool]? = nil, validation: Dataset? = nil, stoppingAfter: Int? = nil,
                    events: (TrainingEvent) -> Void = { _ in }) throws -> TrainingResult {
        try check(train: train, labeled: labeled)
        guard configuration.matmulPrecision.isSupported else {
            throw DistillationError("\(configuration.matmulPrecision) matrix products are not available on this CPU (oneDNN's bfloat16 matmul needs AVX-512); train in float32")
        }
        if let parts = configuration.deterministicParts { try checkDeterministicParts(parts, batchSize: configuration.batchSize) }
        if optimizer == nil { try prepare(train: train) }
        try joinProcesses(train: train, validation: validation)
        if let weights = configuration.classWeights, let directory = outputDirectory {
            try ClassWeights.write(weights, classNames: train.classNames, to: directory)
        }
        let optimizer = self.optimizer!
        let c = configuration
        // Spread over processes (or cut into deterministic parts), each takes its part of every
        // global batch; the short last batch is dropped, so that every step averages equal parts.
        let loader = try DataLoader(train, batchSize: c.batchSize, shuffle: true, dropLast: communicator.isDistributed || c.deterministicParts != nil, seed: c.seed,
                                    augmentation: c.augmentation, skipBadFiles: c.skipBadFiles,
                                    shard: DataLoader.Shard(rank: communicator.rank, count: communicator.size), lengthBuckets: c.lengthBuckets)
        let auxiliary = try auxiliaryTasks.enumerated().map { i, task in
            try DataLoader(task.data, batchSize: c.batchSize, shuffle: true, seed: c.seed &+ UInt64(i + 1) &* 0x51ED)
        }
        let totalSteps = c.steps ?? loader.batchesPerEpoch * c.epochs
        let warmup = c.warmup(totalSteps: totalSteps)
        let schedule: any LearningRateSchedule = warmup > 0
            ? WarmupSchedule(warmupSteps: warmup, startFactor: 0.01, then: c.schedule.make(totalSteps: totalSteps - warmup))
            : c.schedule.make(totalSteps: totalSteps)
        if c.cacheTeacher && !c.augmentation.isActive && !teachers.isEmpty {
            let featureBytes = teacherTaps.isEmpty ? 0 : 4 * train.count * (try teacherFeatureSize(train))
            if featureBytes <= c.featureCacheBytes { cache = try buildCache(train, events: events) }
        }
        let parameters = optimizer.groups.flatMap(\.parameters)
        let limit = min(totalSteps, stoppingAfter ?? .max)
        // The rollback point: the start of the epoch (taken here and at each epoch's end, never
        // at in-epoch checkpoints, so that their frequency cannot change a run). A run resumed
        // inside an epoch rolls back to where it resumed instead: under the rollback policy,
        // bit-identity with an uninterrupted run holds only for resumes at epoch ends.
        var snapshot = c.nonFinite == .stop ? nil : Snapshot(self)
        while state.step < limit && !state.stoppedEarly {
            let epoch = state.epoch
            let start = Date()
            segmentStart = start
            allReduceWait = 0
            var failure: (batch: Int, terms: [String: Float])?
            var stepsHere = 0
            trainable.train()
            let batches = loader.batches(epoch: epoch, from: state.batchInEpoch).makeIterator()
            // A file that does not decode (without skipBadFiles) throws here, naming it; the
            // last checkpoint stays as it was.
            while let batch = try batches.nextBatch() {
                if state.step >= limit { break }
                for skipped in batch.skippedFiles { events(.skippedFile(epoch: epoch, skipped)) }
                state.skippedFiles = (state.skippedFiles ?? 0) + batch.skippedFiles.count
                if batch.indices.isEmpty {
                    // The other processes would wait for this one's gradients forever.
                    if communicator.isDistributed {
                        throw DistillationError("rank \(communicator.rank): every file of its part of batch \(state.batchInEpoch + 1) of epoch \(epoch + 1) failed to decode")
                    }
                    // Every file of the batch was skipped: the step passes without an update,
                    // so that steps and the schedule stay where an intact batch would leave them.
                    state.add(loss: nil, terms: [:])
                    continue
                }
                try beforeStep?(state.step, totalSteps)
                optimizer.setLearningRateFactor(schedule.factor(atStep: state.step) * state.learningRateFactor)
                optimizer.zeroGrad()
                // The step's products in the configured precision; validation and checkpoints
                // after it in the precision outside.
                let outerPrecision = Compute.matmulPrecision
                Compute.matmulPrecision = c.matmulPrecision
                defer { Compute.matmulPrecision = outerPrecision }
                var values: [String: Float], totalLoss: Float, stopRequested = false
                if let parts = c.deterministicParts {
                    (values, totalLoss, stopRequested) = try deterministicStep(batch, parts: parts, parameters: parameters, labeled: labeled,
                                                                               epoch: epoch, step: state.step, auxiliary: auxiliary)
                } else {
                    let terms = try self.terms(batch, labeled: labeled, epoch: epoch, step: state.step, auxiliary: auxiliary)
                    // A fixed order: the order of additions decides the order in which gradients
                    // accumulate, and a resumed run must reproduce an uninterrupted one bit for bit.
                    let total = terms.sorted { $0.key < $1.key }.map(\.value).reduce(Tensor(scalar: 0), +)
                    let averager = communicator.isDistributed
                        ? GradientAverager(communicator, parameters: parameters, bucketBytes: c.allReduceBucketBytes, overlap: c.overlapAllReduce) : nil
                    total.backward(gradientReady: averager?.ready, betweenOps: averager?.progress)
                    values = terms.mapValues(\.item)
                    totalLoss = total.item
                    // Data parallel: the gradients averaged over the processes, and with them the
                    // losses and whether any process was asked to stop, so all decide alike.
                    if let averager {
                        (values, totalLoss, stopRequested) = averageAcrossProcesses(averager, terms: values, total: totalLoss)
                    }
                }
                let norm = clipGradientNorm(parameters, maxNorm: c.clipNorm ?? .greatestFiniteMagnitude)
                if !totalLoss.isFinite || !norm.isFinite {
                    failure = (state.batchInEpoch, values)
                    break
                }
                optimizer.step()
                state.add(loss: totalLoss, terms: values)
                stepsHere += 1
                events(.step(epoch: epoch, step: state.batchInEpoch, of: loader.batchesPerEpoch, globalStep: state.step, loss: totalLoss,
                             examplesPerSecond: Double(stepsHere * c.batchSize) / max(Date().timeIntervalSince(start), 1e-9)))
                let midEpoch = state.batchInEpoch < loader.batchesPerEpoch && state.step < totalSteps
                if let every = c.checkpointEvery, state.step % every == 0, midEpoch { try writeCheckpoint(events: events) }
                // At an epoch's end the epoch is closed (and checkpointed) first, below.
                if midEpoch && (communicator.isDistributed ? stopRequested : shouldStop()) {
                    let path = try writeCheckpoint(events: events)
                    throw TrainingInterrupted(step: state.step, checkpoint: path)
                }
            }
            if let failure {
                let description = failure.terms.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                guard case let .rollback(scale, limit) = c.nonFinite, let saved = snapshot, state.retries < limit else {
                    throw DistillationError("training diverged at epoch \(epoch + 1), step \(failure.batch + 1) of \(loader.batchesPerEpoch): loss or gradient is not finite (\(description)); lower the learning rate or keep gradient clipping on")
                }
                let retries = state.retries + 1, factor = state.learningRateFactor * scale
                try saved.restore(into: self)
                state.retries = retries
                state.learningRateFactor = factor
                events(.rolledBack(epoch: epoch, step: failure.batch, learningRateFactor: factor))
                continue
            }
            guard state.batchInEpoch == loader.batchesPerEpoch || state.step == totalSteps else { break }  // stoppingAfter
            let isBest = try finishEpoch(validation: validation, learningRate: optimizer.groups.first?.learningRate ?? 0)
            let path = try writeCheckpoint(events: events)
            events(.epochFinished(state.history.last!, isBest: isBest))
            if state.stoppedEarly { events(.stoppedEarly(epoch: epoch)) }
            if snapshot != nil { snapshot = Snapshot(self) }
            if anyProcessAskedToStop() && state.step < limit && !state.stoppedEarly { throw TrainingInterrupted(step: state.step, checkpoint: path) }
        }
        return TrainingResult(history: state.history, bestEpoch: state.bestEpoch, bestValidationAccuracy: state.bestAccuracy,
                              stoppedEarly: state.stoppedEarly, steps: state.step)
    }

    func check(train: Dataset, labeled: [Bool]?) throws {
        guard train.count >= 1 else { throw DistillationError("the training set is empty") }
        if let labeled, labeled.count != train.count {
            throw DistillationError("the labelled mask has \(labeled.count) entries for \(train.count) examples")
        }
        if let labeled, teachers.isEmpty, labeled.contains(false) {
            throw DistillationError("unlabelled examples need a teacher: without one they would teach nothing")
        }
        for teacher in teachers {
            if case let .outputs(outputs) = teacher.source {
                _ = try TeacherOutputs.validate(outputs, source: "teacher outputs", examples: train.count, classes: outputs.shape[1])
            }
        }
        for task in auxiliaryTasks where task.data.count == 0 { throw DistillationError("auxiliary task '\(task.name)' has no examples") }
        if let weights = configuration.classWeights { try ClassWeights.validate(weights, classNames: train.classNames) }
    }

    private func teacherFeatureSize(_ train: Dataset) throws -> Int {
        guard let teacher = featureTeacher else { return 0 }
        let probe = try probeInputs(train, examples: 1)
        teacher.eval()
        return try withoutGradients { try teacher.forward(probe, capturing: teacherTaps).features.values.reduce(0) { $0 + $1.count } }
    }

    /// Closes the epoch: its record, validation, the best model and patience. Returns whether
    /// this epoch's model is the best so far.
    private func finishEpoch(validation: Dataset?, learningRate: Float) throws -> Bool {
        let batches = Float(max(state.batches, 1))
        var record = EpochRecord(epoch: state.epoch, loss: state.lossSum / batches, terms: state.termSums.mapValues { $0 / batches },
                                 seconds: state.seconds + Date().timeIntervalSince(segmentStart), learningRate: learningRate)
        record.skippedFiles = state.skippedFiles
        if communicator.isDistributed { record.allReduceWaitSeconds = allReduceWait }
        var isBest = false
        if let validation {
            let accuracy = try shardedAccuracy(on: validation)
            record.validationAccuracy = accuracy
            if accuracy > (state.bestAccuracy ?? -1) {
                isBest = true
                state.bestAccuracy = accuracy
                state.bestEpoch = state.epoch
                state.epochsSinceBest = 0
                if let directory = outputDirectory {
                    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                    let path = (directory as NSString).appendingPathComponent("best.safetensors")
                    if let saveModel { try saveModel(path) } else { try ModelWeights.save(model, to: path) }
                }
            } else {
                state.epochsSinceBest += 1
                if let patience = configuration.patience, state.epochsSinceBest >= patience { state.stoppedEarly = true }
            }
        }
        state.history.append(record)
        state.nextEpoch()
        try writeMetrics(record)
        return isBest
    }
}
