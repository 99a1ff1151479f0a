import ArgumentParser
import Datasets
import Distillation
import DistillInference
import Foundation
import ModelFormats
import NeuralNet
import Tensors

/// What a text distillation run reports (`evaluation.json`): agreement with the teacher on the
/// held-out texts before training and after.
struct TextDistillationReport: Codable {
    var student: String
    var teacher: String
    var trainTexts: Int
    var heldOutTexts: Int
    /// The untrained student's agreement, then the distilled one's.
    var initial: EmbeddingAgreement
    var final: EmbeddingAgreement
    var epochs: Int
    var seconds: Double
}

extension DistillCommand {
    /// Whether this run distils a text model: a text teacher (a folder with tokenizer.json or
    /// a Hugging Face config.json) or a text student.
    var isText: Bool { ModelZoo.textNames.contains(student) || teachers.first.map(TextModel.isTextModel) ?? false }

    /// Whether this text run distils a text classifier's logits (`--method kd`, the default,
    /// or `dkd`; `DistillCommand+TextKD.swift`) rather than a sentence encoder's embeddings.
    var isTextKD: Bool { isText && methods != ["embedding"] }

    /// The methods a text classifier teaches with: they compare logits, and tap no layers.
    static let textLogitMethods = DistillationMethod.allCases.filter { !$0.usesFeatures && $0 != .embedding }.map(\.rawValue)

    /// The text student of `options`, its weights from `seed`, started from the teacher's
    /// layers when `--init-from-teacher` asks (said on the console).
    func makeTextStudent(options: ModelOptions, seed: UInt64, teacher: TextModel, console: Console) throws -> any Module {
        var generator = RandomGenerator(seed: seed)
        let studentModel: any Module
        do { studentModel = try ModelZoo.make(student, options: options, using: &generator) } catch let error as ModuleError {
            throw UserError("--student: \(error)")
        }
        if let mapping = try textStudent.initialize(studentModel, from: teacher) {
            console.say("the student starts from the teacher's embeddings and layers \(mapping.map(String.init).joined(separator: ", "))")
        }
        return studentModel
    }

    /// The checks of a text run's options, before anything is read.
    func validateText() throws {
        guard teachers.count == 1, teacherOutputs == nil else {
            throw UserError("text distillation takes one --teacher: a folder with model.safetensors and tokenizer.json, or an ONNX text graph")
        }
        guard ModelZoo.textNames.contains(student) else {
            throw UserError("--student \(student) takes images or tables; a text teacher teaches \(ModelZoo.textNames.joined(separator: ", "))")
        }
        guard methods == ["embedding"] || (!methods.isEmpty && methods.allSatisfy(Self.textLogitMethods.contains)) else {
            throw UserError("--method \(method): a text teacher teaches a sentence encoder's embeddings (--method embedding) or a text classifier's logits (--method \(Self.textLogitMethods.joined(separator: " or ")))")
        }
        if isTextKD {
            if let option = [("hidden-weight", textStudent.hiddenWeight), ("attention-weight", textStudent.attentionWeight)].first(where: { $0.1 != nil })?.0 {
                throw UserError("--\(option): hidden-state and attention transfer go with --method embedding for now, not --method \(method)")
            }
        } else if textClasses.minClassSize != nil {
            throw UserError("--min-class-size selects the classes of labelled texts for --method kd; --method embedding learns from every text")
        }
        if augment { throw UserError("--augment applies to images, not texts") }
        if let testData = dataOptions.testData, dataOptions.testFraction != nil {
            throw UserError("--test-data \(testData): give --test-data or --test-fraction, not both")
        }
        if quantization.quantize != nil || quantization.studentWeights != nil {
            throw UserError("--quantize and --student-weights take image and table students for now, not \(student)")
        }
        if let sizes = try size.hiddenSizes(), sizes.count != 1 { throw UserError("--hidden: \(student) takes one size, got \(sizes.count)") }
        try textStudent.check(student: student)
        if let option = textStudent.layerOption, TextModel.onnxFile(teachers[0]) != nil {
            throw TextStudentOptions.needsNativeEncoder(option, teachers[0])
        }
    }

    /// Distils the text teacher into a text student: the teacher embeds every text once, the
    /// student learns those embeddings through the Trainer (no labels: cross-entropy weight 0),
    /// and both are compared on held-out texts before and after. The run folder keeps
    /// model.safetensors and the teacher's tokenizer.json, so it is a text model itself.
    func trainText(seed: UInt64, folder: String, checkpoint: String?, console: Console) throws -> TextDistillationReport {
        let start = Date()
        let texts = try text.read(dataOptions.data, flag: "--data")
        let teacher = try TextModel.load(teachers[0], role: "--teacher")
        if let classes = teacher.classNames {
            throw UserError("--method embedding: --teacher \(teachers[0]) is a text classifier of \(classes.count) classes, not a sentence encoder: distil its logits with --method kd (on labelled texts)")
        }
        let tokenizer = try text.tokenizer(for: teacher)
        let all = text.dataset(texts, tokenizer: tokenizer, cacheFolder: cache.directory)
        let train: Dataset, heldOut: Dataset
        if let testPath = dataOptions.testData {
            // Every text of --test-data is held out (the texts a study scores on, such as the quotes
            // of fortunes when --data adds other unlabelled text); all of --data trains.
            let test = text.dataset(try text.read(testPath, flag: "--test-data"), tokenizer: tokenizer, cacheFolder: cache.directory)
            guard test.count >= 2 else {
                throw UserError("--test-data \(testPath) holds \(test.count) text\(test.count == 1 ? "" : "s"): at least 2 are needed to compare student and teacher")
            }
            guard all.count >= 1 else { throw UserError("--data \(dataOptions.data) holds no text") }
            (train, heldOut) = (all, test)
        } else {
            guard all.count >= 3 else {
                throw UserError("--data \(dataOptions.data) holds \(all.count) text\(all.count == 1 ? "" : "s"): text distillation needs at least 3 (2 held out to compare student and teacher)")
            }
            // A seeded random part of the texts (any class) is held out to compare student and teacher.
            var generator = RandomGenerator(seed: seed ^ 0x7E47)
            var order = Array(0..<all.count)
            order.shuffle(using: &generator)
            let heldCount = min(max(2, Int((Double(all.count) * (dataOptions.testFraction ?? 0.1)).rounded())), all.count - 1)
            (train, heldOut) = (all.subset(order.dropFirst(heldCount).sorted()), all.subset(order.prefix(heldCount).sorted()))
        }
        // The student first (its size mistakes show before the teacher's long pass), its output as long as the teacher's.
        let outputs = try teacher.model.embeddings(ofTexts: heldOut.subset([0])).shape[1]
        let options = try textStudent.options(student: student, hidden: try size.hiddenSizes()?.first, tokenizer: tokenizer,
                                              outputs: outputs, teacher: teacher)
        let studentModel = try makeTextStudent(options: options, seed: seed, teacher: teacher, console: console)
        let weight = try parsedWeights().last { $0.0 == "embedding" }.map { Float($0.1) } ?? DistillationMethod.embedding.defaultWeight
        var losses = [WeightedLoss(EmbeddingDistillation(), weight: weight)]
        let online = textStudent.transfersLayers
        if online { losses += try layerTransferLosses(studentModel, teacher, console: console) }
        let timer = Date()
        // Online, the teacher's training embeddings come with each batch; only the held-out ones are needed up front.
        let trainPass = online ? nil : try teacher.embeddings(train, keptIn: cache.directory)
        let heldOutPass = try teacher.embeddings(heldOut, keptIn: cache.directory)
        let (teacherTrain, teacherHeldOut) = (trainPass?.embeddings, heldOutPass.embeddings)
        let computed = (trainPass?.computed ?? 0) + heldOutPass.computed, embedded = (online ? 0 : train.count) + heldOut.count
        console.say(String(format: "the teacher embedded %d texts in %.1f s", computed, Date().timeIntervalSince(timer))
            + (computed < embedded ? ", \(embedded - computed) more read from \(cache.directory)" : ""))
        let pairs = min(10_000, heldOut.count * (heldOut.count - 1) / 2)
        let initial = try agreement(studentModel, heldOut, teacherHeldOut, pairs: pairs, seed: seed)

        var configuration = training.configuration(seed: seed, folder: folder)
        configuration.crossEntropyWeight = 0
        configuration.lengthBuckets = true
        configuration.cacheTeacher = false  // the teacher's outputs are at hand already, or it runs online
        if plain {
            configuration.clipNorm = nil
            configuration.warmupSteps = 0
        }
        let trainer = try Trainer(model: studentModel, teachers: [teacherTrain.map { Teacher(.outputs($0)) } ?? Teacher(.model(teacher.model))],
                                  losses: losses, configuration: configuration)
        trainer.shouldStop = StopRequest.isRequested
        trainer.runSettings.merge(recordedSettings) { _, command in command }
        console.say("distill \((teacher.path as NSString).lastPathComponent) → \(student) with \(losses.map(\.loss.name).joined(separator: ", ")); \(train.count) texts, \(heldOut.count) held out")
        if let checkpoint { try trainer.resume(from: checkpoint, train: train) }
        let result = try trainer.fit(train: train) { console.training($0, batchSize: training.batch) }
        let final = try agreement(studentModel, heldOut, teacherHeldOut, pairs: pairs, seed: seed)
        let report = TextDistillationReport(student: student, teacher: teacher.path, trainTexts: train.count, heldOutTexts: heldOut.count,
                                            initial: initial, final: final, epochs: result.history.count, seconds: Date().timeIntervalSince(start))
        if Processes.isWriter {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try SavedModel.save(studentModel, name: student, options: options, to: (folder as NSString).appendingPathComponent("model.safetensors"))
            try teacher.saveTokenizer(into: folder, maxTokens: tokenizer.truncation?.maxLength ?? 128)
            try writeJSON(report, to: (folder as NSString).appendingPathComponent("evaluation.json"))
        }
        return report
    }

    /// With --hidden-weight or --attention-weight: those terms for `student` and `teacher`'s
    /// encoder layers paired by --layer-map (or the default map), after printing the pairs.
    /// The teacher's per-layer states ([texts, tokens, hidden] a layer, and [heads, tokens,
    /// tokens] for attention) are far too big to keep: it runs on every batch instead.
    private func layerTransferLosses(_ student: any Module, _ teacher: TextModel, console: Console) throws -> [WeightedLoss] {
        var pairs: [(student: Int, teacher: Int)]?
        if let map = textStudent.layerMap, let s = EncoderLayerTaps(student), let t = EncoderLayerTaps(teacher.model) {
            do { pairs = try TextLayerMap.parse(map, student: s.layers, teacher: t.layers) } catch let error as DistillationError {
                throw UserError("--layer-map: \(error)")
            }
        }
        let layered: (losses: [WeightedLoss], pairs: [(student: Int, teacher: Int)])
        do {
            layered = try TextLayerTransfer.losses(student: student, teacher: teacher.model, pairs: pairs,
                                                   hiddenWeight: textStudent.hiddenWeight ?? 0, attentionWeight: textStudent.attentionWeight ?? 0)
        } catch let error as DistillationError {
            throw UserError("\(error)")
        }
        let terms = layered.losses.map { "\($0.loss.name == "hidden" ? "hidden states" : "attention") (weight \(String(format: "%g", Double($0.weight))))" }
        console.say("layer transfer of \(terms.joined(separator: " and ")): student layer ← teacher layer "
            + layered.pairs.map { "\($0.student) ← \($0.teacher)" }.joined(separator: ", ") + "; the teacher runs online on every batch (its per-layer states are too big to cache)")
        return layered.losses
    }

    private func agreement(_ model: any Module, _ texts: Dataset, _ teacher: Tensor, pairs: Int, seed: UInt64) throws -> EmbeddingAgreement {
        do { return try EmbeddingAgreement(student: try model.embeddings(ofTexts: texts), teacher: teacher, pairs: max(pairs, 1), seed: seed) }
        catch let error as DistillationError { throw UserError("\(error)") }
    }

    /// One text run per seed of --seeds, each in OUT/seed-N (as image runs): the held-out
    /// agreement of each and its mean ± standard deviation, in results.json. When resuming, a
    /// seed that had finished keeps its report and an unfinished one continues from its checkpoint.
    func runTextSeeds(console: Console) throws {
        let out = training.run.out
        var reports: [TextDistillationReport] = []
        for seed in try OptionTable.parseNumbers(training.seeds ?? "", spec: Spec.seeds).map(UInt64.init) {
            let folder = (out as NSString).appendingPathComponent("seed-\(seed)")
            let evaluation = (folder as NSString).appendingPathComponent("evaluation.json")
            if training.run.resume != nil, let data = FileManager.default.contents(atPath: evaluation),
               let finished = try? JSONDecoder().decode(TextDistillationReport.self, from: data) {
                reports.append(finished)
                continue
            }
            let checkpoint = Trainer.checkpointPath(in: folder)
            let report = try trainText(seed: seed, folder: folder,
                                       checkpoint: training.run.resume != nil && FileManager.default.fileExists(atPath: checkpoint) ? checkpoint : nil,
                                       console: console)
            console.say(String(format: "seed %llu: held-out cosine %.4f, similarity Spearman %.4f", seed, report.final.meanCosine, report.final.similaritySpearman))
            reports.append(report)
        }
        let cosines = reports.map(\.final.meanCosine), spearmans = reports.map(\.final.similaritySpearman)
        try writeJSON(["held_out_cosine": cosines, "similarity_spearman": spearmans], to: (out as NSString).appendingPathComponent("results.json"))
        console.result("over \(reports.count) seeds: held-out cosine with the teacher \(meanAndDeviation(cosines, percent: false)), "
                       + "similarity Spearman \(meanAndDeviation(spearmans, percent: false)); wrote \(out)/results.json",
                       ["held_out_cosine": cosines, "similarity_spearman": spearmans, "out": out])
    }

    /// The text run as the command's result: one line, or its JSON fields.
    func reportText(_ report: TextDistillationReport, out: String, console: Console) {
        let line = String(format: "held-out cosine with the teacher %.4f (untrained %.4f); similarity Spearman %.4f (untrained %.4f) over %d pairs; wrote %@",
                          report.final.meanCosine, report.initial.meanCosine, report.final.similaritySpearman,
                          report.initial.similaritySpearman, report.final.pairs, out)
        console.result(line, ["held_out_cosine": report.final.meanCosine, "initial_held_out_cosine": report.initial.meanCosine,
                              "similarity_spearman": report.final.similaritySpearman, "initial_similarity_spearman": report.initial.similaritySpearman,
                              "pairs": report.final.pairs, "out": out])
    }
}
