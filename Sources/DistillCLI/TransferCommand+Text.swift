import Datasets
import Distillation
import Foundation
import ModelFormats
import NeuralNet
import Tensors

extension TransferCommand {
    /// The checks of a text transfer's options: text transfer re-heads a sentence encoder's
    /// embedding, or a text classifier's own classifier layer, so there is no head to name.
    func validateText() throws {
        if head != nil {
            throw UserError("--head: a sentence encoder has no classifier to replace; text transfer puts a new linear head on its embedding (or replaces a text classifier's own last layer)")
        }
    }

    /// Transfer from a sentence encoder (`--from` a teacher folder such as all-MiniLM-L6-v2's,
    /// or a `distill distill` text run) to the labelled texts of --data, through the same
    /// `TransferStudy` and `Trainer` as images: a new linear head on the encoder's embedding;
    /// the old task is the embedding itself, scored on the held-out test texts by the
    /// Spearman correlation of pair similarities with the original encoder (`EmbeddingAgreement`).
    func runText(console: Console) throws {
        let old = try TextModel.load(source, role: "--from")
        if let classes = old.classNames { return try runTextFromClassifier(old, oldClasses: classes, console: console) }
        if strategies.contains("joint") {
            throw UserError("--strategy joint trains the old task's labelled data too, and a sentence encoder's old task is its embedding: use lwf, finetune, freeze, gradual or scratch")
        }
        let tokenizer = try text.tokenizer(for: old)
        let seedList = try OptionTable.parseNumbers(seeds, spec: Spec.seeds).map(UInt64.init)
        func load(_ seed: UInt64) throws -> DataOptions.LoadedTexts {
            try dataOptions.loadTexts(text, tokenizer: tokenizer, minClassSize: textClasses.minClassSize, seed: seed, cacheFolder: cache.directory)
        }
        let first = try load(seedList[0])
        let timer = Date()
        let features = EncoderFeatures(old, directory: cache.directory)
        let reference = try features(first.test)
        let sourceName = (source as NSString).lastPathComponent
        console.say(String(format: "old model %@ embedded the %d held-out test texts in %.1f s (%d values each): the old task, scored by how closely the trained encoder's similarities follow these",
                           sourceName, first.test.count, Date().timeIntervalSince(timer), reference.shape[1]))
        let transferSource = try TransferSource.text(old, dimension: reference.shape[1], maxTokens: tokenizer.truncation?.maxLength ?? 128,
                                                       classNames: { first.classNames })
        if let note = transferSource.headNote { console.say(note) }
        let out = runOptions.out
        try Experiment.writeResolved(Self.self, values, to: out)
        var training = sharedTraining
        training.lengthBuckets = true
        training.cacheDirectory = cache.directory  // LwF's teacher outputs on the training texts, kept between runs
        var study = try makeStudy(training: training, seeds: seedList, headPath: transferSource.head)
        study.encoderOutputs = { try features($0) }
        console.say("transfer \(sourceName) to \(first.classNames.count) classes: \(first.labeledTrain.count) training texts\(first.validation.map { ", \($0.count) for validation" } ?? ""), \(first.test.count) for the test")
        let scores = try study.run(
            oldModel: transferSource.load, scratchModel: transferSource.scratch,
            newTask: textNewTasks(first: first, firstSeed: seedList[0], load: load, console: console),
            old: .embedding(texts: first.test, reference: reference), shouldStop: StopRequest.isRequested,
            trained: { name, seed, model in
                // The first seed's new-task model, as a text run folder that evaluate and predict read.
                guard seed == seedList[0] else { return }
                try transferSource.save(model, (out as NSString).appendingPathComponent(name))
                if strategies.count == 1 { try transferSource.save(model, out) }
            }) { name, seed, event in console.training(event, batchSize: batch, label: "\(name), seed \(seed): ") }
        var summaries: [String] = []
        var fields: [String: Any] = ["out": out]
        var results: [String: [[String: Double]]] = [:]
        for name in strategies {
            let list = scores[name]!
            let newScores = list.map(\.new), newF1 = list.map { $0.newMacroF1 ?? .nan }
            let spearman = list.map { $0.oldSimilaritySpearman ?? .nan }, cosine = list.map { $0.oldMeanCosine ?? .nan }
            results[name] = zip(seedList, list).map { seed, score in
                var row = ["seed": Double(seed), "new": score.new]
                if let f1 = score.newMacroF1 { row["new_macro_f1"] = f1 }
                if let value = score.oldSimilaritySpearman { row["old_similarity_spearman"] = value }
                if let value = score.oldMeanCosine { row["old_mean_cosine"] = value }
                return row
            }
            let line = "\(name): new task \(meanAndDeviation(newScores)) (macro-F1 \(meanAndDeviation(newF1, percent: false))), old task: similarity Spearman with the original encoder \(meanAndDeviation(spearman, percent: false)) (mean cosine \(meanAndDeviation(cosine, percent: false)))"
            console.epoch(line, ["strategy": name, "new_task_accuracy": newScores, "new_task_macro_f1": newF1,
                                 "old_similarity_spearman": spearman, "old_mean_cosine": cosine])
            summaries.append(line)
            fields[name] = ["new_task_mean": newScores.reduce(0, +) / Double(newScores.count),
                            "new_task_macro_f1_mean": newF1.reduce(0, +) / Double(newF1.count),
                            "old_similarity_spearman_mean": spearman.reduce(0, +) / Double(spearman.count)]
        }
        try writeJSON(results, to: (out as NSString).appendingPathComponent("results.json"))
        console.result(summaries.joined(separator: "\n") + "\nwrote \(out)/results.json and the new-task models (text run folders)", fields)
    }
}

/// A text encoder's outputs for texts, each text (by its token ids) computed once per process
/// and, with a directory, kept there between runs (`TextModel.embeddings(_:keptIn:)`): the
/// features of a linear probe, LwF's teacher outputs and the old task's reference, which
/// share most of their texts across strategies and seeds.
final class EncoderFeatures {
    let model: TextModel
    let directory: String?
    private var rows: [[Int32]: [Float]] = [:]
    private var width = 0

    init(_ model: TextModel, directory: String?) {
        self.model = model
        self.directory = directory
    }

    func callAsFunction(_ data: Dataset) throws -> Tensor {
        guard let sequences = data.tokenSequences, !sequences.isEmpty else { throw UserError("the encoder's features need texts") }
        var seen = Set<[Int32]>()
        let missing = sequences.indices.filter { rows[sequences[$0]] == nil && seen.insert(sequences[$0]).inserted }
        if !missing.isEmpty {
            let computed = try model.embeddings(data.subset(missing), keptIn: directory).embeddings
            width = computed.shape[1]
            let values = computed.scalars
            for (row, index) in missing.enumerated() { rows[sequences[index]] = Array(values[(row * width)..<((row + 1) * width)]) }
        }
        return Tensor(sequences.flatMap { rows[$0]! }, shape: [sequences.count, width])
    }
}

extension TransferCommand {
    /// The study's new task for each seed, from labelled texts: the first seed's already read,
    /// the others loaded; class weights resolved per seed and said when they change.
    func textNewTasks(first: DataOptions.LoadedTexts, firstSeed: UInt64, load: @escaping (UInt64) throws -> DataOptions.LoadedTexts,
                      console: Console) -> (UInt64) throws -> TransferStudy.NewTask {
        var printedWeights: [Float]?
        return { seed in
            let data = seed == firstSeed ? first : try load(seed)
            let weights = try resolvedClassWeights(classWeights, labeled: data.labeledTrain)
            if let weights, weights != printedWeights {
                console.say(classWeightsLine(weights, classNames: data.labeledTrain.classNames))
                printedWeights = weights
            }
            return TransferStudy.NewTask(train: data.labeledTrain, validation: data.validation, test: data.test, classWeights: weights)
        }
    }
}
