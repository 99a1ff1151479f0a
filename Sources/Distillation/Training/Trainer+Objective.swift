import Datasets
import Foundation
import NeuralNet
import Tensors
import Training

/// Another task trained together with the main one (joint training): batches of `data`,
/// as many as the main task's and in step with it, scored by cross-entropy on the model's
/// `output` module (a head) with `weight`.
public struct AuxiliaryTask {
    public var name: String
    public var data: Dataset
    public var output: String
    public var weight: Float
    public init(name: String, data: Dataset, output: String, weight: Float = 1) {
        self.name = name
        self.data = data
        self.output = output
        self.weight = weight
    }
}

extension Trainer {
    /// The teacher whose features feature losses see: the first model teacher.
    var featureTeacher: (any Module)? { teachers.lazy.compactMap(\.model).first }
    /// The student modules the losses read: their taps and the outputs logit losses compare.
    var studentTaps: [String] { Array(Set(losses.flatMap(\.loss.studentTaps) + losses.compactMap(\.loss.studentOutput))).sorted() }
    var teacherTaps: [String] { Array(Set(losses.flatMap(\.loss.teacherTaps))).sorted() }

    /// Checks taps and teacher shapes, prepares the losses with the tapped shapes, and builds
    /// the optimizer over the model and every loss's trainable parts.
    func prepare(train: Dataset) throws {
        var generator = RandomGenerator(seed: configuration.seed ^ 0x5EED)
        let probe = try probeInputs(train, examples: 2)
        model.eval()
        let (studentOut, studentFeatures) = try withoutGradients { try model.forward(probe, capturing: studentTaps) }
        if let weights = configuration.classWeights, studentOut.rank == 2, studentOut.shape[1] != weights.count {
            throw DistillationError("\(weights.count) class weights for a model with \(studentOut.shape[1]) outputs: give one per class")
        }
        var teacherFeatures: [String: Tensor] = [:]
        if let teacher = featureTeacher {
            teacher.eval()
            teacherFeatures = try withoutGradients { try teacher.forward(probe, capturing: teacherTaps).features }
        }
        // Logit losses compare teachers with the model's output, or with the module they name (LwF's old head).
        let compared = losses.lazy.compactMap(\.loss.studentOutput).first.flatMap { studentFeatures[$0] } ?? studentOut
        for teacher in teachers {
            if let teacherModel = teacher.model {
                let out = withoutGradients { teacherModel(probe) }
                guard out.shape == compared.shape else {
                    throw DistillationError("a teacher gives outputs \(Array(out.shape.dimensions.dropFirst())) but the student \(Array(compared.shape.dimensions.dropFirst()))")
                }
            }
        }
        let strip = { (d: [String: Tensor]) in d.mapValues { Shape(Array($0.shape.dimensions.dropFirst())) } }
        for weighted in losses {
            try weighted.loss.prepare(studentShapes: strip(studentFeatures), teacherShapes: strip(teacherFeatures), examples: train.count, using: &generator)
        }
        trainable = Sequential(named: [("student", model)] + losses.enumerated().compactMap { i, w in w.loss.module.map { ("\(w.loss.name)\(i)", $0) } } + kept)
        optimizer = configuration.optimizer.make(parameterGroups(), momentum: TrainingDefaults.momentum)
    }

    /// The first `examples` examples of `train` that decode (any that do not are skipped
    /// with `skipBadFiles`, else their error is thrown): what shapes are probed with.
    func probeInputs(_ train: Dataset, examples: Int) throws -> Tensor {
        // Texts of different lengths are padded together by the dataset's own batch.
        if train.isText && train.count > 0 { return try train.batch(Array(0..<min(examples, train.count))) }
        var rows: [Tensor] = []
        for index in 0..<train.count where rows.count < examples {
            do { rows.append(try train.batch([index])) } catch is DatasetError where configuration.skipBadFiles {}
        }
        guard !rows.isEmpty else { throw DistillationError("no training example could be decoded") }
        return withoutGradients { Tensor.concatenating(rows, alongAxis: 0) }
    }

    /// Every parameter of the model and the losses (frozen ones too: gradual unfreezing thaws
    /// them later), grouped by learning-rate scale and by whether weight decay applies.
    func parameterGroups() -> [ParameterGroup] {
        var groups: [String: ParameterGroup] = [:]
        var order: [String] = []
        let decayed = ParameterGroup.decayedParameters(of: trainable)
        for (name, parameter) in trainable.namedParameters() {
            let path = name.hasPrefix("student.") ? String(name.dropFirst("student.".count)) : name
            let match = configuration.learningRateScales.keys.filter { path == $0 || path.hasPrefix($0 + ".") || $0.isEmpty }.max { $0.count < $1.count }
            let scale = match.map { configuration.learningRateScales[$0]! } ?? 1
            let decays = decayed.contains(ObjectIdentifier(parameter))
            let key = "\(match ?? "")|\(decays)"
            if groups[key] == nil {
                order.append(key)
                groups[key] = ParameterGroup(name: "\(match ?? "all") \(decays ? "weights" : "biases, norms and embedding tables")", parameters: [],
                                             learningRate: configuration.learningRate * scale, weightDecay: decays ? configuration.weightDecay : 0)
            }
            groups[key]!.parameters.append(parameter)
        }
        return order.map { groups[$0]! }
    }

    /// Teacher logits and tapped features for the whole set, once (with progress events),
    /// over its batches in order (a streamed set is decoded batch by batch). Rows of files
    /// skipped as undecodable stay zero: training skips those examples too.
    func buildCache(_ train: Dataset, events: (TrainingEvent) -> Void) throws -> TeacherCache {
        let taps = teacherTaps
        let key = TeacherCache.key(teachers: teachers, data: train, taps: taps)
        if let cache, cache.key == key { return cache }
        let file = configuration.cacheDirectory.map { ($0 as NSString).appendingPathComponent("teacher-\(key).safetensors") }
        if let file, FileManager.default.fileExists(atPath: file), let stored = try? TeacherCache.load(file), stored.key == key,
           stored.logits.shape[0] == train.count, Set(stored.features.keys) == Set(taps) {
            events(.cachingTeacher(done: train.count, total: train.count))
            return stored
        }
        if train.isText, taps.isEmpty, !communicator.isDistributed, let lengths = train.sequenceLengths, !lengths.isEmpty {
            let built = TeacherCache(logits: try textTeacherLogits(train, lengths: lengths, events: events), features: [:], key: key)
            if let file, let directory = configuration.cacheDirectory {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                try built.save(file)
            }
            return built
        }
        let total = train.count, chunk = Evaluation.inferenceBatch(exampleCount: train.exampleShape.count)
        typealias Part = (rows: [Int], logits: Tensor, features: [String: Tensor])
        var parts: [Part?] = []
        let loader = try DataLoader(train, batchSize: chunk, shuffle: false, skipBadFiles: configuration.skipBadFiles)
        let distributed = communicator.isDistributed
        var first = 0
        func add(_ batch: Batch) throws {
            let range = first..<min(first + chunk, total)
            first = range.upperBound
            events(.cachingTeacher(done: range.upperBound, total: total))
            guard !batch.indices.isEmpty else {
                parts.append(nil)
                return
            }
            let (logits, features) = try teacherOutputs(batch.inputs, indices: batch.indices, cached: nil)
            parts.append((batch.indices.map { $0 - range.lowerBound }, logits, features))
        }
        if distributed {
            // Data parallel: each rank runs the teacher on every size-th chunk from its rank;
            // the others' rows stay zero here, and the sum over the ranks fills every row
            // exactly once (x + 0 = x: the same bits as one process).
            let chunks = (total + chunk - 1) / chunk
            for index in 0..<chunks {
                let range = (index * chunk)..<min((index + 1) * chunk, total)
                if index % communicator.size == communicator.rank {
                    try add(try loader.makeBatch(Array(range), epoch: 0))
                } else {
                    first = range.upperBound
                    parts.append(nil)
                }
            }
        } else {
            let batches = loader.batches(epoch: 0).makeIterator()
            while let batch = try batches.nextBatch() { try add(batch) }
        }
        var sampled = parts.lazy.compactMap({ $0 }).first
        if sampled == nil && distributed {
            // This rank had no chunk (or every file of its chunks was skipped): the shapes
            // come from the teacher on one example.
            let probe = try probeInputs(train, examples: 1)
            let (logits, features) = try teacherOutputs(probe, indices: [0], cached: nil)
            sampled = ([], logits, features)
        }
        guard let sample = sampled else { throw DistillationError("no training example could be decoded") }
        // Rows of skipped files are zeros, so that row i is example i.
        func filled(_ values: Tensor?, _ count: Int, _ rows: [Int], like sample: Tensor) -> Tensor {
            let result = Tensor.zeros(Shape([count] + sample.shape.dimensions.dropFirst()))
            guard let values else { return result }
            if rows.count == count { return values }
            let size = values.count / rows.count
            for (i, row) in rows.enumerated() { (result.storage.pointer + row * size).update(from: values.storage.pointer + i * size, count: size) }
            return result
        }
        let counts = (0..<parts.count).map { min(chunk, total - $0 * chunk) }
        func gathered(_ pick: (Part) -> Tensor, like sample: Tensor) -> Tensor {
            Tensor.concatenating(parts.indices.map { filled(parts[$0].map(pick), counts[$0], parts[$0]?.rows ?? [], like: sample) }, alongAxis: 0)
        }
        let built = TeacherCache(logits: gathered({ $0.logits }, like: sample.logits),
                                 features: Dictionary(uniqueKeysWithValues: sample.features.map { name, value in (name, gathered({ $0.features[name]! }, like: value)) }),
                                 key: key)
        if distributed {
            for tensor in [built.logits] + built.features.keys.sorted().map({ built.features[$0]! }) {
                tensor.withUnsafeMutableBufferPointer { communicator.allReduceSum($0) }
            }
        }
        if let file, let directory = configuration.cacheDirectory, communicator.isWriter {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try built.save(file)
        }
        return built
    }

    /// Texts: the teachers' logits over batches of texts of similar lengths, each padded to its
    /// own longest (as `embeddings(ofTexts:)` runs them), the rows put back in the data's order.
    /// Chunks in the data's order would each be padded to their longest text: on the fortunes
    /// topics at 64 tokens, about twice the positions.
    func textTeacherLogits(_ train: Dataset, lengths: [Int], batchSize: Int = 32, events: (TrainingEvent) -> Void) throws -> Tensor {
        let order = lengths.indices.sorted { (lengths[$0], $0) < (lengths[$1], $1) }
        var result: Tensor?
        var size = 0
        for start in stride(from: 0, to: order.count, by: batchSize) {
            let indices = Array(order[start..<min(start + batchSize, order.count)])
            let (logits, _) = try teacherOutputs(try train.batch(indices), indices: indices, cached: nil)
            if result == nil {
                size = logits.count / indices.count
                result = Tensor.zeros(Shape([order.count] + logits.shape.dimensions.dropFirst()))
            }
            let values = logits.scalars
            for (row, index) in indices.enumerated() {
                values.withUnsafeBufferPointer { (result!.storage.pointer + index * size).update(from: $0.baseAddress! + row * size, count: size) }
            }
            events(.cachingTeacher(done: indices.count + start, total: order.count))
        }
        return result!
    }

    /// The teacher's logits on the test set, for the report: kept in the cache directory
    /// beside its training outputs, under a key of the same kind (its weights and the test
    /// data), so that a second run with this teacher and data reads them instead of running
    /// the teacher over the test set again (cnn-teacher over Fashion-MNIST's: 9 s of CPU).
    func teacherTestLogits(_ teacher: any Module, test: Dataset) throws -> Tensor {
        guard configuration.cacheTeacher, let directory = configuration.cacheDirectory else { return try teacher.predictions(on: test) }
        let key = TeacherCache.key(teachers: [Teacher(.model(teacher))], data: test, taps: [])
        let file = (directory as NSString).appendingPathComponent("teacher-\(key).safetensors")
        if FileManager.default.fileExists(atPath: file), let stored = try? TeacherCache.load(file), stored.key == key,
           stored.logits.shape[0] == test.count, stored.features.isEmpty {
            return stored.logits
        }
        let logits = try teacher.predictions(on: test)
        guard communicator.isWriter else { return logits }  // data parallel: rank 0 writes
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try TeacherCache(logits: logits, features: [:], key: key).save(file)
        return logits
    }

    /// Ensemble logits (weighted mean) and the feature teacher's taps for a batch.
    func teacherOutputs(_ inputs: Tensor, indices: [Int], cached: TeacherCache?) throws -> (Tensor, [String: Tensor]) {
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
            case let .model(teacherModel):
                teacherModel.eval()
                if features.isEmpty && !teacherTaps.isEmpty && teacherModel === featureTeacher {
                    let out = try withoutGradients { try teacherModel.forward(inputs, capturing: teacherTaps) }
                    logits = out.output
                    features = out.features
                } else {
                    logits = withoutGradients { teacherModel(inputs) }
                }
            case let .outputs(outputs):
                logits = withoutGradients { outputs.indexSelect(alongAxis: 0, indices: indices) }
            }
            let weighted = withoutGradients { logits * (teacher.weight / totalWeight) }
            sum = sum.map { a in withoutGradients { a + weighted } } ?? weighted
        }
        return (sum ?? Tensor.zeros([inputs.shape[0], 0]), features)
    }

    /// The weighted loss terms of one batch ("ce", each distillation loss, each auxiliary
    /// task), recorded for backward. Unlabelled examples (`labeled` false) get the
    /// distillation terms only; their label slot holds the teacher's top class.
    func terms(_ batch: Batch, labeled: [Bool]?, epoch: Int, step: Int, auxiliary: [DataLoader]) throws -> [String: Tensor] {
        let (logits, studentFeatures) = try model.forward(batch.inputs, capturing: studentTaps)
        let (teacherLogits, teacherFeatures) = teachers.isEmpty
            ? (Tensor.zeros(logits.shape), [:]) : try teacherOutputs(batch.inputs, indices: batch.indices, cached: cache)
        let mask = batch.indices.map { labeled?[$0] ?? true }
        let teacherTop = mask.allSatisfy { $0 } || teachers.isEmpty ? [] : teacherLogits.max(alongAxis: 1).indices
        let targets = zip(batch.labels, mask).enumerated().map { i, pair in pair.1 ? pair.0 : teacherTop[i] }
        var terms: [String: Tensor] = [:]
        let labeledRows = mask.indices.filter { mask[$0] }
        if configuration.crossEntropyWeight > 0 && !labeledRows.isEmpty {
            let rows = labeledRows.count == mask.count ? logits : logits.indexSelect(alongAxis: 0, indices: labeledRows)
            terms["ce"] = Tensor.crossEntropy(logits: rows, labels: labeledRows.map { targets[$0] }, labelSmoothing: configuration.labelSmoothing,
                                         classWeights: configuration.classWeights) * configuration.crossEntropyWeight
        }
        for (i, weighted) in losses.enumerated() {
            var context = DistillationBatch(studentLogits: logits, teacherLogits: teacherLogits, labels: targets, isLabeled: mask,
                                            studentFeatures: studentFeatures, teacherFeatures: teacherFeatures,
                                            indices: batch.indices, epoch: epoch, inputs: batch.inputs)
            if let output = weighted.loss.studentOutput { context.studentLogits = studentFeatures[output]! }
            let key = terms[weighted.loss.name] == nil ? weighted.loss.name : "\(weighted.loss.name)\(i)"
            terms[key] = weighted.loss.loss(context) * weighted.weight
        }
        for (task, loader) in zip(auxiliaryTasks, auxiliary) {
            // The auxiliary data cycles through its own seeded epochs, in step with the main run.
            let perEpoch = loader.batchesPerEpoch
            let auxEpoch = step / perEpoch, b = step % perEpoch
            let order = loader.order(epoch: auxEpoch)
            let auxBatch = try loader.makeBatch(Array(order[(b * loader.batchSize)..<min((b + 1) * loader.batchSize, order.count)]), epoch: auxEpoch)
            let outputs = try model.forward(auxBatch.inputs, capturing: [task.output]).features
            terms[task.name] = Tensor.crossEntropy(logits: outputs[task.output]!, labels: auxBatch.labels) * task.weight
        }
        return terms
    }
}
