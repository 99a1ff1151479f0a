import Datasets
import Distillation
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import TestSupport
import XCTest

/// The Trainer on image folders streamed from disk: the same run as in memory, and files that
/// break mid-run stop it with their name or are skipped and counted.
final class StreamedTrainingTests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("distill-streamed-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    /// 64 random 8×8 RGB PNGs of 4 classes (class k brighter in channel k mod 3), streamed, and
    /// the same values in memory.
    func folder(_ name: String = "train", count: Int = 64) throws -> (streamed: Dataset, inMemory: Dataset) {
        var g = RandomGenerator(seed: 11)
        var values: [Float] = [], labels: [Int] = []
        for n in 0..<count {
            let label = n % 4
            let dir = scratch.appendingPathComponent("\(name)/class\(label)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let pixels = (0..<192).map { i in UInt8(min(255, Int(g.next() % 160) + (i % 3 == label % 3 ? 90 : 0))) }
            try PNGWriter.write(pixels, width: 8, height: 8, channels: 3, to: dir.appendingPathComponent(String(format: "%03d.png", n)).path)
        }
        let streamed = try ImageFolder.dataset(try ImageFolder.scan(scratch.appendingPathComponent(name).path), channels: 3, size: nil)
        for (path, label) in zip(streamed.files!, streamed.labels) {
            let image = try ImageDecoder.decode(try Data(contentsOf: URL(fileURLWithPath: path)), file: path, channels: 3)
            for c in 0..<3 { for p in 0..<64 { values.append(Float(image.pixels[p * 3 + c]) / 255) } }
            labels.append(label)
        }
        let inMemory = Dataset(inputs: Tensor(values, shape: [count, 3, 8, 8]), labels: labels, classNames: streamed.classNames)
        let statistics = try streamed.channelStatistics()
        return (try streamed.normalized(statistics), try inMemory.normalized(statistics))
    }

    func trainer(seed: UInt64 = 1, directory: String? = nil) throws -> Trainer {
        var g = RandomGenerator(seed: seed)
        let teacher = try ModelZoo.make("cnn-teacher", options: ModelOptions(classes: 4, inputChannels: 3, inputSize: 8, width: 0.25), using: &g)
        let student = try ModelZoo.make("cnn-student", options: ModelOptions(classes: 4, inputChannels: 3, inputSize: 8, width: 0.5), using: &g)
        var c = TrainerConfiguration()
        c.epochs = 2
        c.batchSize = 16
        c.warmupSteps = 2
        c.runDirectory = directory
        return try Trainer(model: student, teachers: [Teacher(.model(teacher))],
                           losses: [WeightedLoss(KnowledgeDistillation(temperature: 4), weight: 0.9)], configuration: c)
    }

    func testAStreamedFitEqualsTheInMemoryFit() throws {
        let (streamed, inMemory) = try folder()
        let (train, validation) = try streamed.stratifiedSplit(fraction: 0.25, seed: 0)
        let (memoryTrain, memoryValidation) = try inMemory.stratifiedSplit(fraction: 0.25, seed: 0)
        let fromFiles = try trainer(), fromMemory = try trainer()
        let a = try fromFiles.fit(train: train, validation: validation)
        let b = try fromMemory.fit(train: memoryTrain, validation: memoryValidation)
        XCTAssertEqual(a.history.map(\.loss), b.history.map(\.loss))
        XCTAssertEqual(a.history.map(\.validationAccuracy), b.history.map(\.validationAccuracy))
        XCTAssertEqual(fromFiles.model.stateDict().map(\.tensor.scalars), fromMemory.model.stateDict().map(\.tensor.scalars), "bit for bit")
        XCTAssertEqual(try Evaluation.accuracy(fromFiles.model, on: validation), try Evaluation.accuracy(fromMemory.model, on: memoryValidation))
        let report = try DistillationReport(student: fromFiles.model, teacher: nil, test: validation)
        XCTAssertEqual(report.student.confusion, try DistillationReport(student: fromMemory.model, teacher: nil, test: memoryValidation).student.confusion)
        XCTAssertEqual(TeacherCache.key(teachers: fromFiles.teachers, data: train, taps: []),
                       TeacherCache.key(teachers: fromFiles.teachers, data: train, taps: []))
        XCTAssertNotEqual(TeacherCache.key(teachers: fromFiles.teachers, data: train, taps: []),
                          TeacherCache.key(teachers: fromFiles.teachers, data: validation, taps: []))
    }

    func testAFileBrokenMidRunStopsItNamingTheFileAndKeepsTheCheckpoint() throws {
        let (streamed, _) = try folder()
        let directory = scratch.appendingPathComponent("run").path
        let victim = streamed.files![37]
        let run = try trainer(directory: directory)
        XCTAssertThrowsError(try run.fit(train: streamed) { event in
            if case .epochFinished = event { try? Data("broken".utf8).write(to: URL(fileURLWithPath: victim)) }
        }) { error in
            XCTAssertTrue(error is DatasetError, "\(error)")
            XCTAssertTrue("\(error)".contains(victim), "\(error)")
        }
        let checkpoint = try TrainingCheckpoint.load(from: Trainer.checkpointPath(in: directory))
        XCTAssertEqual(checkpoint.step, 4, "the first epoch's checkpoint, untouched")
    }

    func testSkippedFilesAreDroppedAndCountedPerEpoch() throws {
        let (streamed, _) = try folder()
        try Data("broken".utf8).write(to: URL(fileURLWithPath: streamed.files![5]))
        let strict = try trainer()
        XCTAssertThrowsError(try strict.fit(train: streamed)) { XCTAssertTrue("\($0)".contains(streamed.files![5]), "\($0)") }
        let skipping = try trainer()
        skipping.configuration.skipBadFiles = true
        var skipped: [String] = []
        let result = try skipping.fit(train: streamed) { event in
            if case let .skippedFile(_, error) = event { skipped.append(error.file) }
        }
        XCTAssertEqual(result.history.map(\.skippedFiles), [1, 1])
        XCTAssertEqual(skipped, [streamed.files![5], streamed.files![5]])
        XCTAssertEqual(result.steps, 8, "every batch still makes a step")
        XCTAssertTrue(result.history.allSatisfy { $0.loss.isFinite })
    }
}
