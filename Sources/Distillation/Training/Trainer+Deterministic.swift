import Datasets
import Foundation
import NeuralNet
import Tensors

/// Deterministic data parallelism (`TrainerConfiguration.deterministicParts`): the global
/// batch is cut into a fixed number of parts; each part's gradient is computed alone (the
/// process's parts one after another), every part's gradient reaches every process, and
/// they are added in part order. The step's arithmetic is then the same whichever process
/// computed a part, so any number of processes that divides the parts — one included —
/// ends with the same weights bit for bit, given the same compute threads per process
/// (kernels split their sums by thread). Batch norm normalises each part by its own
/// statistics (as "ghost batch norm"), and its running statistics take every part's update
/// in part order. Dropout draws differ between processes, so models with dropout are
/// deterministic run to run but not across process counts.
extension Trainer {
    /// Checks that the parts fit the batch and the processes.
    func checkDeterministicParts(_ parts: Int, batchSize: Int) throws {
        guard parts >= 1, batchSize % parts == 0 else {
            throw DistillationError("--deterministic \(parts): the batch of \(batchSize) must divide into \(parts) equal parts")
        }
        guard parts % communicator.size == 0 else {
            throw DistillationError("--deterministic \(parts): the parts must divide among the \(communicator.size) processes (a multiple of \(communicator.size))")
        }
    }

    /// One step's gradients (left in the parameters' `grad`), loss terms and total, and
    /// whether any process was asked to stop, computed part by part.
    func deterministicStep(_ batch: Batch, parts: Int, parameters: [Tensor], labeled: [Bool]?, epoch: Int, step: Int,
                           auxiliary: [DataLoader]) throws -> ([String: Float], Float, Bool) {
        let mine = parts / communicator.size
        let rows = batch.inputs.shape[0]
        guard rows % mine == 0 else {
            throw DistillationError("--deterministic \(parts): this process's part of the batch has \(rows) examples, not a multiple of its \(mine) parts (were files skipped?)")
        }
        let norms = trainable.namedModules().compactMap { $0.module as? BatchNorm }
        for norm in norms { norm.deferredStatistics = [] }
        defer { for norm in norms { norm.deferredStatistics = nil } }
        // Per part: every parameter's gradient (zeros when it has none), then 1 for each
        // parameter that has one.
        let width = parameters.reduce(0) { $0 + $1.count } + parameters.count
        var gradients = [Float](repeating: 0, count: mine * width)
        var partTerms: [[String: Float]] = []
        let size = rows / mine
        for part in 0..<mine {
            let range = (part * size)..<((part + 1) * size)
            let slice = Batch(inputs: batch.inputs.sliced(alongAxis: 0, range), labels: Array(batch.labels[range]),
                              indices: Array(batch.indices[range]), skippedFiles: [])
            optimizer?.zeroGrad()
            let terms = try self.terms(slice, labeled: labeled, epoch: epoch, step: step, auxiliary: auxiliary)
            let total = terms.sorted { $0.key < $1.key }.map(\.value).reduce(Tensor(scalar: 0), +)
            total.backward()
            partTerms.append(terms.mapValues(\.item).merging(["": total.item]) { a, _ in a })
            gradients.withUnsafeMutableBufferPointer { g in
                var offset = part * width
                let flags = offset + width - parameters.count
                for (i, parameter) in parameters.enumerated() {
                    if let grad = parameter.grad {
                        grad.withUnsafeBufferPointer { (g.baseAddress! + offset).update(from: $0.baseAddress!, count: $0.count) }
                        g[flags + i] = 1
                    }
                    offset += parameter.count
                }
            }
        }
        // Every part of every process, in part order (rank r holds parts r·mine ..< (r+1)·mine).
        let everyone = gatherFloats(gradients)
        var sum = [Float](repeating: 0, count: width)
        for part in 0..<parts {
            let base = part * width
            for i in 0..<width { sum[i] = part == 0 ? everyone[i] : sum[i] + everyone[base + i] }
        }
        let scale = 1 / Float(parts)
        var offset = 0
        for (i, parameter) in parameters.enumerated() {
            if sum[width - parameters.count + i] > 0 {
                parameter.grad = Tensor(sum[offset..<(offset + parameter.count)].map { $0 * scale }, shape: parameter.shape)
            } else {
                parameter.grad = nil
            }
            offset += parameter.count
        }
        // Batch norm's running statistics: every part's update, in part order.
        let updates = norms.flatMap { $0.deferredStatistics!.flatMap { $0 } }
        let allUpdates = gatherFloats(updates)
        let perProcess = updates.count
        allUpdates.withUnsafeBufferPointer { all in
            var at = 0
            for norm in norms {
                let mineCount = norm.deferredStatistics!.reduce(0) { $0 + $1.count }
                for rank in 0..<communicator.size {
                    norm.replay(UnsafeBufferPointer(rebasing: all[(rank * perProcess + at)..<(rank * perProcess + at + mineCount)]), count: mineCount)
                }
                at += mineCount
            }
        }
        // Loss terms: each part's, added in part order, over the parts.
        let texts = communicator.allGather(partTerms.map { terms in
            terms.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.bitPattern)" }.joined(separator: ",")
        }.joined(separator: ";"))
        var sums: [String: Float] = [:]
        for text in texts {
            for part in text.split(separator: ";", omittingEmptySubsequences: false) {
                for pair in part.split(separator: ",") {
                    let kv = pair.split(separator: "=", maxSplits: 1)
                    guard kv.count == 2, let bits = UInt32(kv[1]) else { continue }
                    sums[String(kv[0]), default: 0] += Float(bitPattern: bits)
                }
            }
        }
        let total = (sums.removeValue(forKey: "") ?? 0) * scale
        let stop = communicator.isDistributed ? communicator.sum([shouldStop() ? 1 : 0])[0] > 0 : shouldStop()
        return (sums.mapValues { $0 * scale }, total, stop)
    }

    /// Every process's `values` (the same count on each), in rank order.
    private func gatherFloats(_ values: [Float]) -> [Float] {
        guard communicator.isDistributed else { return values }
        let bytes = values.withUnsafeBytes { Array($0) }
        return communicator.allGather(bytes).flatMap { part in
            part.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
    }
}
