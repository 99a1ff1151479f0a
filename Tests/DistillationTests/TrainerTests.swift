import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import XCTest

final class TrainerTests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("distiller-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    /// 96 random 8×8 images of 4 classes.
    func data(seed: UInt64 = 3) -> Dataset {
        var g = RandomGenerator(seed: seed)
        return Dataset(inputs: Tensor.randomNormal([96, 1, 8, 8], using: &g), labels: (0..<96).map { $0 % 4 }, classNames: ["a", "b", "c", "d"])
    }

    func models(seed: UInt64) throws -> (student: any Module, teacher: any Module) {
        var g = RandomGenerator(seed: seed)
        let options = ModelOptions(classes: 4, inputSize: 8, width: 0.5)
        let teacher = try ModelZoo.make("cnn-teacher", options: ModelOptions(classes: 4, inputSize: 8, width: 0.25), using: &g)
        return (try ModelZoo.make("cnn-student", options: options, using: &g), teacher)
    }

    func allMethods() throws -> [WeightedLoss] {
        let s = TapLayers.defaults(for: "cnn-student")!, t = TapLayers.defaults(for: "cnn-teacher")!
        return try DistillationMethod.allCases.map { WeightedLoss(try $0.makeLoss(student: s, teacher: t), weight: $0.defaultWeight / 10) }
    }

    func configuration(epochs: Int, directory: String? = nil) -> TrainerConfiguration {
        var c = TrainerConfiguration()
        c.epochs = epochs
        c.batchSize = 16
        c.warmupSteps = 3
        c.runDirectory = directory
        return c
    }

    func testEveryMethodTrainsAndTheResumedRunEndsWithTheSameWeights() throws {
        let train = data()
        var (student, teacher) = try models(seed: 1)
        let straight = try Trainer(model: student, teachers: [Teacher(.model(teacher))], losses: try allMethods(),
                                     configuration: configuration(epochs: 2))
        let history = try straight.fit(train: train).history
        XCTAssertEqual(history.count, 2)
        XCTAssertEqual(Set(history[0].terms.keys), Set(["ce"] + DistillationMethod.allCases.map(\.rawValue)))
        XCTAssertTrue(history.allSatisfy { $0.loss.isFinite })
        let expected = student.stateDict().map(\.tensor.scalars)

        // Killed after step 10 of 12: the last checkpoint is the one inside the second epoch at
        // step 9 (every 3 steps), so step 10 is lost and done again.
        let directory = scratch.appendingPathComponent("run").path
        (student, teacher) = try models(seed: 1)
        var c = configuration(epochs: 2, directory: directory)
        c.checkpointEvery = 3
        let first = try Trainer(model: student, teachers: [Teacher(.model(teacher))], losses: try allMethods(), configuration: c)
        try first.fit(train: train, stoppingAfter: 10)
        for file in ["checkpoint.safetensors", "metrics.jsonl"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/" + file), file)
        }
        XCTAssertEqual(try TrainingCheckpoint.load(from: directory + "/checkpoint.safetensors").step, 9)
        student = try models(seed: 2).student  // other weights: everything must come from the checkpoint
        let sameTeacher = try models(seed: 1).teacher
        let resumed = try Trainer(model: student, teachers: [Teacher(.model(sameTeacher))], losses: try allMethods(), configuration: c)
        try resumed.resume(from: directory + "/checkpoint.safetensors", train: train)
        let rest = try resumed.fit(train: train).history
        XCTAssertEqual(rest.map(\.epoch), [0, 1])
        XCTAssertEqual(rest.map(\.loss), history.map(\.loss), "the resumed run's epochs sum the same losses")
        XCTAssertTrue(student.stateDict().map(\.tensor.scalars) == expected, "resumed run ends with the uninterrupted run's weights")

        // A checkpoint of another configuration is refused, naming what differs.
        var other = c
        other.learningRate = 0.1
        let mismatched = try Trainer(model: try models(seed: 1).student, teachers: [Teacher(.model(sameTeacher))], losses: try allMethods(), configuration: other)
        XCTAssertThrowsError(try mismatched.resume(from: directory + "/checkpoint.safetensors", train: train)) {
            XCTAssertTrue("\($0)".contains("learningRate is 0.1 here but 0.05 in the checkpoint"), "\($0)")
        }
    }

    func testTeacherIsCachedOnlyForADeterministicPipeline() throws {
        for augmented in [false, true] {
            let (student, teacher) = try models(seed: 1)
            var c = configuration(epochs: 1)
            if augmented { c.augmentation = Augmentation(cropPadding: 1, horizontalFlip: true) }
            let distiller = try Trainer(model: student, teachers: [Teacher(.model(teacher))],
                                          losses: [WeightedLoss(KnowledgeDistillation(), weight: 0.9)], configuration: c)
            var cached = 0
            try distiller.fit(train: data()) { event in
                if case .cachingTeacher = event { cached += 1 }
            }
            XCTAssertEqual(cached > 0, !augmented, augmented ? "augmented images: the teacher runs online" : "fixed images: computed once")
        }
    }

    func testExportedStudentHoldsNoTeacherOrLossWeights() throws {
        let (student, teacher) = try models(seed: 1)
        let distiller = try Trainer(model: student, teachers: [Teacher(.model(teacher))], losses: try allMethods(),
                                      configuration: configuration(epochs: 1))
        try distiller.fit(train: data())
        let path = scratch.appendingPathComponent("student.safetensors").path
        try ModelWeights.save(distiller.model, to: path)
        XCTAssertEqual(Set(try SafeTensors.read(path).tensors.keys), Set(student.stateDict().map(\.name)))
        XCTAssertGreaterThan(distiller.trainable.parameterCount, student.parameterCount, "regressors and heads trained alongside")
    }

    /// A loss that turns NaN at a given step.
    final class Poison: DistillationLoss {
        let name = "poison"
        var calls = 0
        let at: Int
        var once: Bool
        init(at: Int, once: Bool) { self.at = at; self.once = once }
        func loss(_ batch: DistillationBatch) -> Tensor {
            calls += 1
            if calls == at + 1 {
                return batch.studentLogits.sum() * .nan
            }
            return batch.studentLogits.sum() * 0
        }
    }

    func testNonFiniteLossStopsNamingTheStep() throws {
        let (student, teacher) = try models(seed: 1)
        let distiller = try Trainer(model: student, teachers: [Teacher(.model(teacher))], losses: [WeightedLoss(Poison(at: 7, once: true), weight: 1)],
                                      configuration: configuration(epochs: 2))
        XCTAssertThrowsError(try distiller.fit(train: data())) { error in
            XCTAssertTrue("\(error)".contains("training diverged at epoch 2, step 2 of 6: loss or gradient is not finite"), "\(error)")
            XCTAssertTrue("\(error)".contains("poison nan"), "\(error)")
        }
    }

    func testRollbackRetriesTheEpochWithALowerLearningRate() throws {
        let (student, teacher) = try models(seed: 1)
        var c = configuration(epochs: 2)
        c.nonFinite = .rollback(factor: 0.5, retries: 2)
        let distiller = try Trainer(model: student, teachers: [Teacher(.model(teacher))], losses: [WeightedLoss(Poison(at: 8, once: true), weight: 1)],
                                      configuration: c)
        var rollbacks: [Float] = []
        let history = try distiller.fit(train: data()) { event in
            if case let .rolledBack(_, _, factor) = event { rollbacks.append(factor) }
        }.history
        XCTAssertEqual(rollbacks, [0.5])
        XCTAssertEqual(history.map(\.epoch), [0, 1])
    }

    /// Records what losses see.
    final class Spy: DistillationLoss {
        let name = "spy"
        var labeledSeen: [Int: Bool] = [:]
        var targets: [Int: Int] = [:]
        var teacherLogits: [Int: [Float]] = [:]
        func loss(_ batch: DistillationBatch) -> Tensor {
            for (i, index) in batch.indices.enumerated() {
                labeledSeen[index] = batch.isLabeled[i]
                targets[index] = batch.labels[i]
                teacherLogits[index] = Array(batch.teacherLogits.scalars[(i * 4)..<((i + 1) * 4)])
            }
            return batch.studentLogits.sum() * 0
        }
    }

    func testTransferSetAndBlackBoxEnsemble() throws {
        let train = data()
        var g = RandomGenerator(seed: 5)
        let outputsA = Tensor.randomNormal([96, 4], using: &g), outputsB = Tensor.randomNormal([96, 4], using: &g)
        let spy = Spy()
        let (student, _) = try models(seed: 1)
        let mask = (0..<96).map { $0 < 8 }
        let distiller = try Trainer(model: student, teachers: [Teacher(.outputs(outputsA), weight: 3), Teacher(.outputs(outputsB), weight: 1)],
                                      losses: [WeightedLoss(spy, weight: 1)], configuration: configuration(epochs: 1))
        try distiller.fit(train: train, labeled: mask)
        XCTAssertEqual(spy.labeledSeen.count, 96)
        for index in 0..<96 {
            XCTAssertEqual(spy.labeledSeen[index], index < 8)
            let a = outputsA.scalars[(index * 4)..<((index + 1) * 4)], b = outputsB.scalars[(index * 4)..<((index + 1) * 4)]
            let ensemble = zip(a, b).map { 0.75 * $0 + 0.25 * $1 }
            for (x, y) in zip(spy.teacherLogits[index]!, ensemble) { XCTAssertEqual(x, y, accuracy: 1e-5) }
            if index >= 8 {
                XCTAssertEqual(spy.targets[index], ensemble.indices.max { ensemble[$0] < ensemble[$1] }, "unlabelled: the teacher's top class")
            } else {
                XCTAssertEqual(spy.targets[index], train.labels[index])
            }
        }
    }

    func testBlackBoxOutputsAreValidated() throws {
        XCTAssertThrowsError(try TeacherOutputs.validate(Tensor.zeros([5, 4]), source: "t.npy", examples: 6, classes: 4)) {
            XCTAssertTrue("\($0)".contains("5 rows of teacher outputs for 6 training examples"), "\($0)")
        }
        XCTAssertThrowsError(try TeacherOutputs.validate(Tensor.zeros([6, 3]), source: "t.npy", examples: 6, classes: 4)) {
            XCTAssertTrue("\($0)".contains("3 classes, the student 4"), "\($0)")
        }
        var values = [Float](repeating: 0, count: 24)
        values[13] = .nan
        XCTAssertThrowsError(try TeacherOutputs.validate(Tensor(values, shape: [6, 4]), source: "t.npy", examples: 6, classes: 4)) {
            XCTAssertTrue("\($0)".contains("row 3, class 1 is nan"), "\($0)")
        }
        let probabilities = Tensor.full([6, 4], 0.25)
        let logits = try TeacherOutputs.validate(probabilities, source: "p.npy", examples: 6, classes: 4)
        XCTAssertEqual(logits.scalars[0], Foundation.log(0.25), accuracy: 1e-6, "probabilities become log-probabilities")
        let path = scratch.appendingPathComponent("outputs.npy").path
        try NPY.write(Tensor.zeros([5, 4]), to: path)
        XCTAssertThrowsError(try TeacherOutputs.load(path, examples: 6, classes: 4))
    }

    func testTeacherTestLogitsAreKeptInTheCacheAndReadBack() throws {
        let (student, teacher) = try models(seed: 1)
        let train = data(), validation = data(seed: 5), test = data(seed: 7)
        let cache = scratch.appendingPathComponent("cache").path
        func run(_ folder: String) throws -> RunOutcome {
            var c = configuration(epochs: 1, directory: scratch.appendingPathComponent(folder).path)
            c.cacheDirectory = cache
            let trainer = try Trainer(model: student, teachers: [Teacher(.model(teacher))],
                                      losses: [WeightedLoss(KnowledgeDistillation(), weight: 0.9)], configuration: c)
            return try trainer.run(train: train, validation: validation, test: test, teacher: teacher,
                                   saveModel: { try ModelWeights.save($0, to: $1) },
                                   loadModel: { path in
                                       let model = try self.models(seed: 2).student
                                       try ModelWeights.load(into: model, from: path)
                                       return model
                                   })
        }
        let first = try run("first")
        let key = TeacherCache.key(teachers: [Teacher(.model(teacher))], data: test, taps: [])
        let file = cache + "/teacher-\(key).safetensors"
        let kept = try TeacherCache.load(file)
        XCTAssertEqual(kept.logits.scalars, try teacher.predictions(on: test).scalars, "the teacher's logits on the test set")
        XCTAssertEqual(first.report.teacher?.top1, try Evaluation.accuracy(teacher, on: test))
        // The one epoch was the best: the selected model is the final one, with its scores.
        XCTAssertEqual(first.report.selectedEpoch, 0)
        XCTAssertEqual(first.report.selected, first.report.student)
        // Logits that name every label, kept under the same key: the next report reads them, not the teacher.
        let labels = Tensor(test.labels.flatMap { label in (0..<4).map { $0 == label ? Float(10) : 0 } }, shape: [test.count, 4])
        try TeacherCache(logits: labels, features: [:], key: key).save(file)
        XCTAssertEqual(try run("second").report.teacher?.top1, 1)
    }

    func testTeacherCacheKeyChangesWithWeightsAndData() throws {
        let (_, teacher) = try models(seed: 1)
        let train = data()
        let key = TeacherCache.key(teachers: [Teacher(.model(teacher))], inputs: train.inputs, taps: [])
        XCTAssertEqual(key, TeacherCache.key(teachers: [Teacher(.model(teacher))], inputs: train.inputs, taps: []))
        XCTAssertNotEqual(key, TeacherCache.key(teachers: [Teacher(.model(teacher))], inputs: data(seed: 4).inputs, taps: []))
        teacher.parameters[0].withUnsafeMutableBufferPointer { $0[0] += 1 }
        XCTAssertNotEqual(key, TeacherCache.key(teachers: [Teacher(.model(teacher))], inputs: train.inputs, taps: []))
    }

    func testFeatureLossesWithoutATeacherModelAreRefused() throws {
        let (student, _) = try models(seed: 1)
        XCTAssertThrowsError(try Trainer(model: student, teachers: [Teacher(.outputs(Tensor.zeros([96, 4])))],
                                           losses: [WeightedLoss(FitNets(studentLayer: "features.4", teacherLayer: "features.6"), weight: 1)])) {
            XCTAssertTrue("\($0)".contains("need a teacher model"), "\($0)")
        }
    }
}

extension TrainerTests {
    /// Selection on the validation split: the best epoch's model is written, `patience` stops
    /// a run that no longer improves, and scratch training (no teachers) uses the same loop.
    func testValidationSelectsTheBestEpochAndPatienceStops() throws {
        let train = data(), validation = data(seed: 9)
        let student = try models(seed: 1).student
        let directory = scratch.appendingPathComponent("select").path
        var c = configuration(epochs: 30, directory: directory)
        c.learningRate = 0.001
        c.patience = 2
        c.schedule = .constant
        let trainer = try Trainer(model: student, configuration: c)
        let result = try trainer.fit(train: train, validation: validation)
        let accuracies = result.history.map { $0.validationAccuracy! }
        let best = try XCTUnwrap(result.bestEpoch)
        XCTAssertEqual(accuracies[best], accuracies.max())
        XCTAssertEqual(accuracies.firstIndex(of: accuracies.max()!), best, "the first epoch with the best score")
        XCTAssertTrue(result.stoppedEarly, "random labels stop improving within 30 epochs")
        XCTAssertEqual(result.history.count, best + 3, "two epochs without improvement, then stop")
        let saved = try models(seed: 5).student
        try ModelWeights.load(into: saved, from: directory + "/best.safetensors")
        XCTAssertEqual(try Evaluation.accuracy(saved, on: validation), accuracies[best], "best.safetensors is the selected epoch's model")
    }

    /// Each epoch's seconds are its own: with a run folder (a checkpoint at every epoch's end),
    /// an epoch's seconds fit between the end of the one before and its own end.
    func testEachEpochsSecondsAreItsOwn() throws {
        let student = try models(seed: 1).student
        let trainer = try Trainer(model: student, configuration: configuration(epochs: 4, directory: scratch.appendingPathComponent("seconds").path))
        var ends: [Date] = [Date()]
        let result = try trainer.fit(train: data()) { event in
            if case .epochFinished = event { ends.append(Date()) }
        }
        let seconds = result.history.map(\.seconds)
        XCTAssertEqual(seconds.count, 4)
        for (epoch, s) in seconds.enumerated() {
            XCTAssertGreaterThan(s, 0)
            XCTAssertLessThanOrEqual(s, ends[epoch + 1].timeIntervalSince(ends[epoch]), "epoch \(epoch + 1): \(seconds)")
        }
    }

    /// The trainer's options that user input reaches are errors, not traps.
    func testEmptyTrainingSetIsAnError() throws {
        let trainer = try Trainer(model: try models(seed: 1).student, configuration: configuration(epochs: 1))
        let empty = Dataset(inputs: Tensor.zeros([0, 1, 8, 8]), labels: [], classNames: ["a"])
        XCTAssertThrowsError(try trainer.fit(train: empty)) { XCTAssertTrue("\($0)".contains("empty"), "\($0)") }
        XCTAssertThrowsError(try trainer.fit(train: data(), labeled: (0..<96).map { $0 < 8 })) {
            XCTAssertTrue("\($0)".contains("unlabelled examples need a teacher"), "\($0)")
        }
    }
}

extension TrainerTests {
    /// A stop request writes a checkpoint and throws; resumed, the run ends as an
    /// uninterrupted one. A request at an epoch's end closes the epoch first, and one at the
    /// very last step lets the run finish.
    func testStopRequestsCheckpointAndResumeExactly() throws {
        let train = data()
        let reference = try models(seed: 1).student
        try Trainer(model: reference, configuration: configuration(epochs: 2)).fit(train: train)
        for stopAt in [4, 6, 12] {  // mid-epoch, an epoch's end, the last step (6 steps an epoch)
            let directory = scratch.appendingPathComponent("stop-\(stopAt)").path
            let student = try models(seed: 1).student
            let trainer = try Trainer(model: student, configuration: configuration(epochs: 2, directory: directory))
            var steps = 0
            trainer.shouldStop = { steps >= stopAt }
            do {
                let result = try trainer.fit(train: train) { if case .step = $0 { steps += 1 } }
                XCTAssertEqual(stopAt, 12, "only a stop at the last step lets fit return")
                XCTAssertEqual(result.history.count, 2)
            } catch let stop as TrainingInterrupted {
                XCTAssertEqual(stop.step, stopAt)
                let resumed = try Trainer(model: try models(seed: 3).student, configuration: configuration(epochs: 2, directory: directory))
                try resumed.resume(from: directory + "/checkpoint.safetensors", train: train)
                XCTAssertEqual(try resumed.fit(train: train).history.count, 2, "stop at \(stopAt): every epoch recorded once")
                XCTAssertTrue(resumed.model.stateDict().map(\.tensor.scalars) == reference.stateDict().map(\.tensor.scalars), "stop at \(stopAt)")
            }
        }
    }

    /// Class weights reach the cross-entropy (not the distillation terms), are written to the
    /// run folder, are checked before training, and a checkpoint records them.
    func testClassWeightsWeighTheCrossEntropyAndAreRecorded() throws {
        let train = data(), directory = scratch.appendingPathComponent("weighted").path
        /// The epoch's mean terms, the model held still (learning rate 0) so that only the weights differ.
        func losses(_ weights: [Float]?, directory: String? = nil) throws -> [String: Float] {
            let (student, teacher) = try models(seed: 1)
            var c = configuration(epochs: 1, directory: directory)
            c.classWeights = weights
            c.learningRate = 0
            c.crossEntropyWeight = 0.5
            let trainer = try Trainer(model: student, teachers: [Teacher(.model(teacher))],
                                      losses: [WeightedLoss(KnowledgeDistillation(temperature: 4), weight: 0.5)], configuration: c)
            return try trainer.fit(train: train).history[0].terms
        }
        let plain = try losses(nil), ones = try losses([1, 1, 1, 1]), weighted = try losses([4, 1, 1, 1], directory: directory)
        XCTAssertEqual(plain, ones, "weights of 1 change nothing")
        XCTAssertNotEqual(weighted["ce"], plain["ce"])
        XCTAssertEqual(weighted["kd"], plain["kd"], "distillation terms are not weighted")
        let written = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/class-weights.json"))) as! [[String: Any]]
        XCTAssertEqual(written.map { $0["class"] as! String }, ["a", "b", "c", "d"])
        XCTAssertEqual(written.map { ($0["weight"] as! NSNumber).floatValue }, [4, 1, 1, 1])

        for (weights, message) in [([1, 1] as [Float], "2 class weights for 4 classes"), ([1, 1, 0, 1], "class 2 (c) is 0.0")] {
            var c = configuration(epochs: 1)
            c.classWeights = weights
            XCTAssertThrowsError(try Trainer(model: try models(seed: 1).student, configuration: c).fit(train: train)) { error in
                XCTAssertTrue("\(error)".contains(message), "\(error)")
            }
        }
        // A checkpoint written with other weights is refused on resume, naming them.
        var c = configuration(epochs: 1, directory: directory)
        c.classWeights = [1, 1, 1, 1]
        XCTAssertThrowsError(try Trainer(model: try models(seed: 1).student, configuration: c)
            .resume(from: Trainer.checkpointPath(in: directory), train: train)) { error in
            XCTAssertTrue("\(error)".contains("classWeights is 1.0,1.0,1.0,1.0 here but 4.0,1.0,1.0,1.0 in the checkpoint"), "\(error)")
        }
    }
}
