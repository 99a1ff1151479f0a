import Foundation
import Tensors

/// Prepares one epoch's batches ahead of their use on the loader's threads, and hands them out
/// in order. Each batch is cut into chunks of rows; a thread takes the next chunk in (batch,
/// chunk) order, but none of a batch more than `prefetch` past the one the caller takes next,
/// so at most that many batches (and the caller's) are in memory. What a batch holds depends
/// only on the loader's seed, the epoch and its position: never on which thread did what.
///
/// When a batch cannot be made (a file that does not decode, without `skipBadFiles`), the
/// iteration ends there: `nextBatch()` throws the error, `next()` returns nil and keeps it in
/// `failure`. Dropping the iterator stops its threads after the chunks they are on.
public final class PrefetchingIterator: IteratorProtocol {
    /// One batch being prepared.
    private final class Slot {
        let inputs: Tensor
        let indices: [Int]
        var remainingChunks: Int
        var failures: [(row: Int, error: Error)] = []
        init(inputs: Tensor, indices: [Int], chunks: Int) {
            self.inputs = inputs
            self.indices = indices
            remainingChunks = chunks
        }
    }

    /// What the iterator and its threads share; the threads hold this, not the iterator, so
    /// that dropping the iterator is seen by them.
    private final class Shared: @unchecked Sendable {
        let condition = NSCondition()
        let loader: DataLoader
        let epoch: Int
        let order: [Int]
        let first: Int, count: Int
        let chunksPerBatch: Int
        /// The next chunk to take, counted from the first chunk of batch `first`.
        var nextChunk = 0
        /// The batch the caller takes next.
        var next: Int
        var preparing: [Int: Slot] = [:]
        var ready: [Int: Result<Batch, Error>] = [:]
        var cancelled = false

        init(loader: DataLoader, epoch: Int, first: Int, chunksPerBatch: Int) {
            self.loader = loader
            self.epoch = epoch
            order = loader.order(epoch: epoch)
            count = loader.batchesPerEpoch
            self.first = Swift.min(Swift.max(first, 0), count)
            next = self.first
            self.chunksPerBatch = chunksPerBatch
        }

        /// A thread's loop: take a chunk, prepare its rows, finish its batch if it was the last.
        func work() {
            let buffers = loader.dataset.isStreamed ? ImageBuffers() : nil
            while true {
                condition.lock()
                var batch = first + nextChunk / chunksPerBatch
                while !cancelled && batch < count && batch >= next + loader.prefetch {
                    condition.wait()
                    batch = first + nextChunk / chunksPerBatch
                }
                if cancelled || batch >= count {
                    condition.unlock()
                    return
                }
                let chunk = nextChunk % chunksPerBatch
                nextChunk += 1
                let slot: Slot
                if let existing = preparing[batch] {
                    slot = existing
                } else {
                    let indices = loader.indices(ofBatch: batch, in: order)
                    slot = Slot(inputs: Tensor.zeros(loader.dataset.batchShape(indices)), indices: indices, chunks: chunksPerBatch)
                    preparing[batch] = slot
                }
                condition.unlock()

                let rows = (chunk * slot.indices.count / chunksPerBatch)..<((chunk + 1) * slot.indices.count / chunksPerBatch)
                let rowSize = slot.inputs.count / Swift.max(slot.indices.count, 1)
                let failures = loader.prepare(slot.indices[rows], into: slot.inputs.storage.pointer + rows.lowerBound * rowSize,
                                              epoch: epoch, threads: 1, buffers: buffers, batchShape: slot.inputs.shape)

                condition.lock()
                slot.failures += failures.map { (rows.lowerBound + $0.row, $0.error) }
                slot.remainingChunks -= 1
                let finished = slot.remainingChunks == 0
                if finished { preparing[batch] = nil }
                condition.unlock()
                if finished {
                    let result = Result { try loader.assemble(slot.inputs, indices: slot.indices, failures: slot.failures.sorted { $0.row < $1.row }) }
                    condition.lock()
                    ready[batch] = result
                    condition.broadcast()
                    condition.unlock()
                }
            }
        }
    }

    private let shared: Shared
    /// Why the iteration ended early, if it did.
    public private(set) var failure: Error?
    /// The files dropped from the batches handed out so far (with `skipBadFiles`).
    public private(set) var skippedFiles: [DatasetError] = []

    init(loader: DataLoader, epoch: Int, first: Int) {
        let threads = loader.dataset.isStreamed ? loader.workers : 1
        // Two chunks a thread per batch: a thread that finishes early takes more of the batch.
        shared = Shared(loader: loader, epoch: epoch, first: first, chunksPerBatch: threads == 1 ? 1 : Swift.min(2 * threads, loader.batchSize))
        for index in 0..<threads {
            let shared = self.shared
            let thread = Thread { shared.work() }
            thread.name = "distill-data-\(index + 1)"
            thread.start()
        }
    }

    /// The next batch, nil at the end of the epoch; throws the error that stopped a batch
    /// (then, and on every later call).
    public func nextBatch() throws -> Batch? {
        if let failure { throw failure }
        shared.condition.lock()
        guard shared.next < shared.count else {
            shared.condition.unlock()
            return nil
        }
        while shared.ready[shared.next] == nil { shared.condition.wait() }
        let result = shared.ready.removeValue(forKey: shared.next)!
        shared.next += 1
        if case .failure = result { shared.cancelled = true }
        shared.condition.broadcast()
        shared.condition.unlock()
        switch result {
        case let .success(batch):
            skippedFiles += batch.skippedFiles
            return batch
        case let .failure(error):
            failure = error
            throw error
        }
    }

    /// The next batch; nil at the end of the epoch or when a batch failed (see `failure`).
    public func next() -> Batch? { try? nextBatch() }

    deinit {
        shared.condition.lock()
        shared.cancelled = true
        shared.condition.broadcast()
        shared.condition.unlock()
    }
}
