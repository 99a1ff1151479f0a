import ArgumentParser
import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// `distill demo`: the main job of the README, and the case distillation is for. A teacher is
/// trained on Fashion-MNIST; then a student 33× smaller learns from only 100 labelled images
/// per class — once from those labels alone, once with the teacher's soft targets on every
/// training image — and the comparison is printed (accuracy, parameters, size, latency,
/// agreement). Three run folders (`teacher`, `scratch`, `distilled`) and one report with all
/// three. About 5 minutes on two cores; `--quick` (10,000 images) under one and a half.
struct Demo: TabledCommand, ComputingCommand {
    static let configuration = CommandConfiguration(abstract: "Train a teacher, then a student from scratch and by distillation, and compare them.")
    static let experimentName = "demo"
    static let quickSpec = OptionSpec("quick", .flag, "10,000 training images, shorter runs.")
    static let demoOut = OptionSpec("out", .text, "Folder for the three run folders and the report.")
    static let options = [Spec.data, quickSpec, Spec.seed, demoOut, Spec.dryRun, Spec.quiet, Spec.json, Spec.threads]

    @Option(name: Spec.data.long, help: Spec.data.help) var data: String = FashionMNIST.defaultDirectory
    @Flag(name: quickSpec.long, help: quickSpec.help) var quick = false
    @Option(name: Spec.seed.long, help: Spec.seed.help) var seed: UInt64 = 0
    @Option(name: demoOut.long, help: demoOut.help) var out: String = "runs/demo"
    @Flag(name: Spec.dryRun.long, help: Spec.dryRun.help) var dryRun = false
    @OptionGroup var output: OutputOptions
    @OptionGroup var compute: ComputeOptions

    var values: [(String, OptionValue?)] {
        [("data", .text(data)), ("quick", .flag(quick)), ("seed", .integer(Int(clamping: seed))), ("out", .text(out))] + output.values + compute.values
    }

    func validate() throws { try checkOptions() }

    func run() throws {
        let console = Console(output)
        if dryRun { return console.result("options are valid", ["valid": true]) }
        let dataset = try FashionMNIST(directory: data)
        let train = quick ? dataset.train.subset(Array(0..<10_000)) : dataset.train
        let test = dataset.test
        let (teacherEpochs, studentEpochs) = quick ? (2, 6) : (2, 3)
        // 100 labels per class, 10 of them held out to select the checkpoint.
        let mask = try train.labeledMask(perClass: 100, seed: seed)
        // One validation split for all three runs: the teacher never trains on the images the
        // students are selected on.
        let split = try train.holdingOutValidation(fraction: TrainingDefaults.validationFraction, labeled: mask, seed: seed)
        let labeled = split.train.subset(split.labeled!.indices.filter { split.labeled![$0] })
        console.say("Fashion-MNIST: \(train.count) training and \(test.count) test images; \(Compute.threadCount) threads")
        func folder(_ name: String) -> String { (out as NSString).appendingPathComponent(name) }
        func configuration(_ name: String, epochs: Int, steps: Int? = nil) -> TrainerConfiguration {
            var c = TrainerConfiguration()
            c.epochs = epochs
            c.steps = steps
            c.seed = seed
            c.runDirectory = folder(name)
            return c
        }
        func fit(_ trainer: Trainer, name: String, label: String, train: Dataset, labeled: [Bool]? = nil, validation: Dataset,
                 teacher: (any Module)? = nil) throws -> RunOutcome {
            console.say("\(label) (\(trainer.model.parameterCount) parameters):")
            trainer.shouldStop = StopRequest.isRequested
            return try trainer.run(train: train, labeled: labeled, validation: validation, test: test, teacher: teacher,
                                   saveModel: { try SavedModel.save($0, name: name, options: ModelOptions(), to: $1) },
                                   loadModel: { try SavedModel.load($0).model }) { console.training($0, batchSize: 128, label: "  ") }
        }

        var generator = RandomGenerator(seed: seed)
        let teacher = try ModelZoo.make("cnn-teacher", using: &generator)
        let teacherRun = try fit(try Trainer(model: teacher, configuration: configuration("teacher", epochs: teacherEpochs)), name: "cnn-teacher",
                                 label: "cnn-teacher on all labels", train: split.train, validation: split.validation)

        // The scratch student gets as many steps as the distilled one, on its labelled images.
        let steps = (split.train.count + 127) / 128 * studentEpochs
        let scratch = try ModelZoo.make("cnn-student", using: &generator)
        let scratchRun = try fit(try Trainer(model: scratch, configuration: configuration("scratch", epochs: 1, steps: steps)), name: "cnn-student",
                                 label: "cnn-student on the \(labeled.count) labelled images alone", train: labeled,
                                 validation: split.validation, teacher: teacher)

        let student = try ModelZoo.make("cnn-student", using: &generator)
        var distillation = configuration("distilled", epochs: studentEpochs)
        distillation.crossEntropyWeight = 1 - TrainingDefaults.alpha
        let distiller = try Trainer(model: student, teachers: [Teacher(.model(teacher))],
                                    losses: [WeightedLoss(KnowledgeDistillation(), weight: TrainingDefaults.alpha)], configuration: distillation)
        let distilledRun = try fit(distiller, name: "cnn-student",
                                   label: "cnn-student distilled: \(labeled.count) labels + the teacher's soft targets on all \(split.train.count) images (KD, T = \(TrainingDefaults.temperature), α = \(TrainingDefaults.alpha))",
                                   train: split.train, labeled: split.labeled, validation: split.validation, teacher: teacher)

        let runs = try ["teacher", "scratch", "distilled"].map { try HTMLReport.Run.load(folder($0)) }
        try HTMLReport.write(runs, to: folder("report.html"), title: "Distill demo: teacher, student from labels, distilled student")
        let distilled = distilledRun.report, baseline = scratchRun.report
        let rows: [(String, Double, ModelCost, Double?)] = [
            ("cnn-teacher (all labels)", teacherRun.report.student.top1, teacherRun.report.studentCost, nil),
            ("cnn-student, \(labeled.count) labels", baseline.student.top1, baseline.studentCost, baseline.student.agreement),
            ("cnn-student, distilled", distilled.student.top1, distilled.studentCost, distilled.student.agreement),
        ]
        func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
            let fill = String(repeating: " ", count: max(0, width - text.count))
            return right ? fill + text : text + fill
        }
        var table = pad("model", 34) + pad("accuracy", 10, right: true) + pad("parameters", 12, right: true) + pad("size", 10, right: true)
            + pad("latency, batch 1", 18, right: true) + pad("agreement", 11, right: true)
        for (name, accuracy, cost, agreement) in rows {
            table += "\n" + pad(name, 34) + pad(String(format: "%.2f%%", accuracy * 100), 10, right: true) + pad(String(cost.parameters), 12, right: true)
                + pad(String(format: "%.0f KB", Double(cost.bytes) / 1024), 10, right: true)
                + pad(String(format: "%.3f ms", cost.latencyBatch1Milliseconds), 18, right: true)
                + pad(agreement.map { String(format: "%.2f%%", $0 * 100) } ?? "—", 11, right: true)
        }
        let gain = (distilled.student.top1 - baseline.student.top1) * 100
        table += String(format: "\n\nDistillation: %+.2f points over the same student trained on its labels alone; the student is %.0f× smaller and %.1f× faster at batch 1 than the teacher. Test accuracy of the final models; wrote %@ (report.html holds all three runs).",
                        gain, distilled.parameterRatio ?? 0, distilled.latencyBatch1Ratio ?? 0, out)
        console.result("\n" + table, ["teacher_test_accuracy": teacherRun.report.student.top1, "scratch_test_accuracy": baseline.student.top1,
                                      "distilled_test_accuracy": distilled.student.top1, "gain_points": gain, "out": out])
    }
}
