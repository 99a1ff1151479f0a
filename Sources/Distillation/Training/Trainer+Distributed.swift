import Datasets
import Foundation
import NeuralNet
import Tensors

/// Data parallelism: the same run in every process of `communicator`, each on its part of
/// every global batch (see `DataLoader.Shard`), as PyTorch's DistributedDataParallel does.
/// The processes agree on the configuration and the data before the first step, start from
/// rank 0's weights, and after each backward average their gradients (and the losses they
/// report), so every process takes the same optimizer step. Only rank 0 writes files.
extension Trainer {
    /// The run folder where this process writes: nil on every rank but 0.
    var outputDirectory: String? { communicator.isWriter ? configuration.runDirectory : nil }

    /// Before training: checks that every process runs the same configuration on the same
    /// data (an error naming the first difference otherwise, on every rank), switches batch
    /// norm to the global batch's statistics, copies rank 0's weights and buffers to every
    /// process and checks them equal by a checksum.
    func joinProcesses(train: Dataset, validation: Dataset?) throws {
        guard communicator.isDistributed else { return }
        var facts = settings
        facts["trainingExamples"] = String(train.count)
        facts["exampleShape"] = "\(train.exampleShape.dimensions)"
        facts["trainingLabels"] = String(Self.fingerprint(train.labels), radix: 16)
        facts["validationExamples"] = String(validation?.count ?? 0)
        facts["parameters"] = String(trainable.parameterCount)
        let lines = facts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let everyone = communicator.allGather(lines.joined(separator: "\n"))
        let first = everyone[0].split(separator: "\n", omittingEmptySubsequences: false)
        for (rank, text) in everyone.enumerated().dropFirst() where text != everyone[0] {
            let other = text.split(separator: "\n", omittingEmptySubsequences: false)
            let difference = zip(first, other).first { $0 != $1 }.map { "\($0.1) on rank \(rank) but \($0.0) on rank 0" }
                ?? "\(other.count) settings on rank \(rank) but \(first.count) on rank 0"
            throw DistillationError("the processes of this run disagree: \(difference)")
        }
        for (_, module) in model.namedModules() {
            // (Deterministic runs normalise each part by its own statistics.)
            let synchronize = configuration.synchronizeBatchNorm && configuration.deterministicParts == nil
            if let norm = module as? BatchNorm { norm.synchronization = synchronize ? communicator : nil }
        }
        let state = trainable.stateDict().map(\.tensor)
        communicator.broadcast(state)
        let checksums = communicator.allGather(String(Self.checksum(state), radix: 16))
        if let rank = checksums.firstIndex(where: { $0 != checksums[0] }) {
            throw DistillationError("rank \(rank)'s weights differ from rank 0's after copying them (checksum \(checksums[rank]) against \(checksums[0]))")
        }
    }

    /// Finishes averaging the gradients over the processes (replacing each `grad` with a
    /// fresh tensor; `averager` started the buckets backward completed), averages the loss
    /// terms and total, and tells whether any process was asked to stop.
    func averageAcrossProcesses(_ averager: GradientAverager, terms: [String: Float], total: Float) -> ([String: Float], Float, Bool) {
        averager.finish()
        allReduceWait += averager.waitSeconds
        // Every process must sum the same terms, and a part of a batch without labels has no
        // "ce": the names summed so far are kept, and each process sends, beside the values,
        // which of them it has and how many of its terms are new; only when some are do the
        // processes gather every name and sum again (a missing term counts as 0; a term no
        // process has is left out). One exchange per step otherwise.
        func sums(_ keys: [String]) -> [Double] {
            let fresh = terms.keys.filter { !keys.contains($0) }.count
            return communicator.sum(keys.map { Double(terms[$0] ?? 0) } + keys.map { terms[$0] == nil ? 0 : 1 }
                                    + [Double(total), shouldStop() ? 1 : 0, Double(fresh)])
        }
        var keys = agreedTermNames
        var summed = sums(keys)
        if summed[2 * keys.count + 2] > 0 {
            keys = Set(keys + communicator.allGather(terms.keys.sorted().joined(separator: "\n"))
                .flatMap { $0.split(separator: "\n").map(String.init) }).sorted()
            agreedTermNames = keys
            summed = sums(keys)
        }
        let n = Double(communicator.size)
        var result: [String: Float] = [:]
        for (i, key) in keys.enumerated() where summed[keys.count + i] > 0 { result[key] = Float(summed[i] / n) }  // some process has it
        return (result, Float(summed[2 * keys.count] / n), summed[2 * keys.count + 1] > 0)
    }

    /// `shouldStop()`, asked of every process: true when any of them was asked.
    func anyProcessAskedToStop() -> Bool {
        guard communicator.isDistributed else { return shouldStop() }
        return communicator.sum([shouldStop() ? 1 : 0])[0] > 0
    }

    /// The model's accuracy on `data`, each process scoring every size-th example from its
    /// rank and the counts summed.
    func shardedAccuracy(on data: Dataset) throws -> Double {
        guard communicator.isDistributed else { return try Evaluation.accuracy(model, on: data) }
        let mine = Array(stride(from: communicator.rank, to: data.count, by: communicator.size))
        var correct = 0.0
        if !mine.isEmpty {
            let part = data.subset(mine)
            let predicted = try model.predictions(on: part).max(alongAxis: 1).indices
            correct = Double(zip(predicted, part.labels).filter { $0 == $1 }.count)
        }
        let sums = communicator.sum([correct, Double(mine.count)])
        return sums[1] > 0 ? sums[0] / sums[1] : 0
    }

    /// FNV-1a over the labels: the same data on every process.
    static func fingerprint(_ labels: [Int]) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for label in labels {
            hash ^= UInt64(bitPattern: Int64(label))
            hash = hash &* 0x100_0000_01B3
        }
        return hash
    }

    /// FNV-1a over the tensors' bytes.
    static func checksum(_ tensors: [Tensor]) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for tensor in tensors {
            tensor.withUnsafeBufferPointer { values in
                for byte in UnsafeRawBufferPointer(values) {
                    hash ^= UInt64(byte)
                    hash = hash &* 0x100_0000_01B3
                }
            }
        }
        return hash
    }
}
