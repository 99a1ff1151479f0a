import ArgumentParser
import Datasets
import Distillation
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// `distill demo`: the main job of the README, and the case distillation is for. A teacher is
/// trained on Fashion-MNIST; then a student 33× smaller learns from only 100 labelled images
/// per class — once from those labels alone, once with the teacher's soft targets on every
/// training image — and the comparison is printed (accuracy, parameters, size, latency,
/// agreement). About 5 minutes on two cores; `--quick` (10,000 images) under one.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a teacher, then a student from scratch and by distillation, and compare them.")

    @Option(help: "Folder with the four Fashion-MNIST IDX files (gzip or raw).")
    var data: String = FashionMNIST.defaultDirectory

    @Flag(help: "10,000 training images, shorter runs (under a minute).")
    var quick = false

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    @Option(help: "Run folder for the models and reports.")
    var out: String = "runs/demo"

    func run() throws {
        let dataset: FashionMNIST
        do { dataset = try FashionMNIST(directory: data) } catch let error as DatasetError { throw UserError("\(error)") }
        let train = quick ? dataset.train.subset(Array(0..<10_000)) : dataset.train
        let test = dataset.test
        let (teacherEpochs, studentEpochs) = quick ? (2, 6) : (2, 3)
        let mask = try train.labeledMask(perClass: 100, seed: seed)
        let labeled = train.subset(mask.indices.filter { mask[$0] })
        // The scratch student gets as many steps as the distilled one, on its 1,000 images.
        let steps = (train.count + 127) / 128 * studentEpochs
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        print("Fashion-MNIST: \(train.count) training and \(test.count) test images; \(Compute.threadCount) threads")

        var generator = RandomGenerator(seed: seed)
        let teacher = try ModelZoo.make("cnn-teacher", using: &generator)
        try fit(teacher, name: "cnn-teacher", epochs: teacherEpochs, train: train, test: test, using: &generator)
        try SavedModel.save(teacher, name: "cnn-teacher", options: ModelOptions(), to: (out as NSString).appendingPathComponent("teacher.safetensors"))

        let scratch = try ModelZoo.make("cnn-student", using: &generator)
        let scratchEpochs = max(1, steps / ((labeled.count + 127) / 128))
        try fit(scratch, name: "cnn-student on the \(labeled.count) labelled images alone", epochs: scratchEpochs, train: labeled, test: test,
                using: &generator)

        let student = try ModelZoo.make("cnn-student", using: &generator)
        var configuration = DistillerConfiguration()
        configuration.epochs = studentEpochs
        configuration.seed = seed
        configuration.runDirectory = (out as NSString).appendingPathComponent("distillation")
        let distiller = try Distiller(student: student, teachers: [Teacher(.model(teacher))],
                                      losses: [WeightedLoss(KnowledgeDistillation(temperature: 4), weight: 0.9)], configuration: configuration)
        print("cnn-student distilled: \(labeled.count) labels + the teacher's soft targets on all \(train.count) images (KD, T = 4, α = 0.9):")
        try distiller.fit(train: train, labeled: mask, validation: test) { event in
            switch event {
            case let .cachingTeacher(done, total) where done == total: print("  cached teacher outputs for \(total) images")
            case let .epochFinished(record):
                print(String(format: "  epoch %d  loss %.4f  test accuracy %.2f%%  %.1f s", record.epoch + 1, record.loss,
                             (record.validationAccuracy ?? 0) * 100, record.seconds))
            default: break
            }
        }
        try SavedModel.save(student, name: "cnn-student", options: ModelOptions(), to: (out as NSString).appendingPathComponent("student.safetensors"))

        let distilled = DistillationReport(student: student, teacher: teacher, images: test.inputs, labels: test.labels, classNames: test.classNames)
        let baseline = DistillationReport(student: scratch, teacher: teacher, images: test.inputs, labels: test.labels, classNames: test.classNames)
        let runDirectory = (out as NSString).appendingPathComponent("distillation")
        try writeJSON(distilled, to: (runDirectory as NSString).appendingPathComponent("evaluation.json"))
        try HTMLReport.write([try HTMLReport.Run.load(runDirectory)], to: (out as NSString).appendingPathComponent("report.html"))
        let teacherCost = distilled.teacherCost!
        print("")
        func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
            let fill = String(repeating: " ", count: max(0, width - text.count))
            return right ? fill + text : text + fill
        }
        print(pad("model", 34) + pad("accuracy", 10, right: true) + pad("parameters", 12, right: true) + pad("size", 10, right: true)
              + pad("latency, batch 1", 18, right: true) + pad("agreement", 11, right: true))
        func row(_ name: String, _ accuracy: Double, _ cost: ModelCost, _ agreement: Double?) {
            print(pad(name, 34) + pad(String(format: "%.2f%%", accuracy * 100), 10, right: true) + pad(String(cost.parameters), 12, right: true)
                  + pad(String(format: "%.0f KB", Double(cost.bytes) / 1024), 10, right: true)
                  + pad(String(format: "%.3f ms", cost.latencyBatch1Milliseconds), 18, right: true)
                  + pad(agreement.map { String(format: "%.2f%%", $0 * 100) } ?? "—", 11, right: true))
        }
        row("cnn-teacher (all labels)", distilled.teacher!.top1, teacherCost, nil)
        row("cnn-student, \(labeled.count) labels", baseline.student.top1, baseline.studentCost, baseline.student.agreement)
        row("cnn-student, distilled", distilled.student.top1, distilled.studentCost, distilled.student.agreement)
        print(String(format: "\nDistillation: %+.2f points over the same student trained on its labels alone; the student is %.0f× smaller and %.1f× faster at batch 1 than the teacher. Wrote %@.",
                     (distilled.student.top1 - baseline.student.top1) * 100, distilled.parameterRatio ?? 0, distilled.latencyBatch1Ratio ?? 0, out))
    }

    private func fit(_ model: any Module, name: String, epochs: Int, train: Dataset, test: Dataset, using generator: inout RandomGenerator) throws {
        print("\(name) (\(model.parameterCount) parameters):")
        let console = Console()
        try trainFromScratch(model, epochs: epochs, batchSize: 128, learningRate: 0.05, train: train, test: test, console: console,
                             using: &generator) { epoch, result, _, accuracy in
            print(String(format: "  epoch %d  loss %.4f  test accuracy %.2f%%  %.1f s  %.0f images/s", epoch, result.loss, accuracy * 100,
                         result.seconds, result.examplesPerSecond))
        }
    }
}
