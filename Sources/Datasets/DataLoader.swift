import Foundation
import Tensors

/// A batch: inputs [B, ...], their labels, and their indices in the dataset.
public struct Batch {
    public let inputs: Tensor
    public let labels: [Int]
    public let indices: [Int]
    /// The files dropped from this batch because they could not be decoded (with
    /// `DataLoader.skipBadFiles`), each error naming its file; the batch is that much smaller.
    public let skippedFiles: [DatasetError]

    public init(inputs: Tensor, labels: [Int], indices: [Int], skippedFiles: [DatasetError] = []) {
        self.inputs = inputs
        self.labels = labels
        self.indices = indices
        self.skippedFiles = skippedFiles
    }
}

/// Batches of a dataset: a seeded shuffle per epoch, optional drop-last and augmentation,
/// prepared ahead on background threads while the current batch trains.
///
/// An in-memory dataset's batches are gathered by one thread, a batch ahead. A streamed
/// dataset's (`Dataset.isStreamed`) are decoded by `workers` threads that split each batch
/// between them and work up to `prefetch` batches ahead of the one in use, so memory holds a
/// few batches, never the dataset. Either way a batch depends only on (seed, epoch, position),
/// never on thread timing, and `batches(epoch:from:)` resumes inside an epoch.
///
/// A file that cannot be decoded stops the epoch: `PrefetchingIterator.nextBatch()` throws
/// its `DatasetError` (plain iteration ends early and keeps it in `failure`). With
/// `skipBadFiles` the example is dropped from its batch instead and listed in
/// `Batch.skippedFiles`.
public final class DataLoader: @unchecked Sendable {
    public let dataset: Dataset
    public let batchSize: Int
    public let shuffle: Bool
    public let dropLast: Bool
    public let seed: UInt64
    public let augmentation: Augmentation
    /// Drop examples whose file cannot be decoded (see `Batch.skippedFiles`) instead of failing.
    public let skipBadFiles: Bool
    /// Threads decoding a streamed dataset's batches (in-memory datasets use one).
    public let workers: Int
    /// How many batches past the one in use may be prepared at once.
    public let prefetch: Int

    /// Throws when `batchSize`, `workers` or `prefetch` is below 1, or augmentation is asked of
    /// examples that are not images [C, H, W]. `workers` defaults to every core.
    /// The most values one batch may hold.
    public static let maximumBatchValues = 1 << 28

    /// Data-parallel training: this process's part of every batch. Each batch of `batchSize`
    /// (the global batch, drawn from the same seeded order on every process, as PyTorch's
    /// DistributedSampler does) is cut into `count` equal consecutive parts and process
    /// `rank` takes part `rank`.
    public struct Shard: Sendable, Equatable {
        public var rank: Int, count: Int
        public init(rank: Int, count: Int) { self.rank = rank; self.count = count }
        public static let whole = Shard(rank: 0, count: 1)
    }
    public let shard: Shard
    /// Texts only: batches of texts of similar lengths, so that padding to each batch's
    /// longest wastes little (see `order(epoch:)`).
    public let lengthBuckets: Bool

    /// How many batches of texts are sorted by length together with `lengthBuckets`.
    public static let batchesPerLengthBucket = 50

    public init(_ dataset: Dataset, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false, seed: UInt64 = 0,
                augmentation: Augmentation = Augmentation(), skipBadFiles: Bool = false,
                workers: Int = ProcessInfo.processInfo.activeProcessorCount, prefetch: Int = 2, shard: Shard = .whole,
                lengthBuckets: Bool = false) throws {
        guard batchSize >= 1 else { throw DatasetError(file: "data loader", "batch size must be at least 1, got \(batchSize)") }
        guard shard.count >= 1, (0..<shard.count).contains(shard.rank) else {
            throw DatasetError(file: "data loader", "shard \(shard.rank) of \(shard.count) does not exist")
        }
        guard batchSize % shard.count == 0 else {
            throw DatasetError(file: "data loader", "the batch of \(batchSize) does not split evenly over \(shard.count) processes: give a multiple of \(shard.count)")
        }
        // A batch (and the few prepared ahead) must fit in memory: past 2^28 values (1 GiB) a
        // batch is an error naming the sizes, not a process killed for its memory.
        let (values, overflow) = min(batchSize, max(dataset.count, 1)).multipliedReportingOverflow(by: dataset.exampleShape.count)
        guard !overflow, values <= DataLoader.maximumBatchValues else {
            throw DatasetError(file: "data loader", "a batch of \(batchSize) examples of shape \(dataset.exampleShape.dimensions) would hold \(overflow ? "too many" : String(values)) values, above \(DataLoader.maximumBatchValues) (1 GiB): lower --batch")
        }
        guard workers >= 1, prefetch >= 1 else { throw DatasetError(file: "data loader", "workers and prefetch must be at least 1, got \(workers) and \(prefetch)") }
        guard !augmentation.isActive || dataset.exampleShape.rank == 3 else {
            throw DatasetError(file: "data loader", "augmentation needs images [C, H, W], got examples \(dataset.exampleShape)")
        }
        guard augmentation.cropPadding >= 0, augmentation.erasingProbability >= 0, augmentation.erasingProbability <= 1 else {
            throw DatasetError(file: "data loader", "crop padding must be ≥ 0 and erasing probability in [0, 1]")
        }
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.seed = seed
        self.augmentation = augmentation
        self.skipBadFiles = skipBadFiles
        self.workers = workers
        self.prefetch = prefetch
        self.shard = shard
        guard !lengthBuckets || dataset.isText else {
            throw DatasetError(file: "data loader", "length buckets sort texts by length; these examples are not texts")
        }
        self.lengthBuckets = lengthBuckets
    }

    /// Batches in one epoch.
    public var batchesPerEpoch: Int { dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize }

    /// The example order of `epoch` (the identity when not shuffling). With `lengthBuckets`,
    /// every `batchesPerLengthBucket` batches of that order are sorted by text length and cut
    /// into batches, and the full batches are shuffled (when shuffling) with the short last
    /// one kept last: each batch holds texts of similar lengths, in an order that depends only
    /// on the seed and the epoch.
    public func order(epoch: Int) -> [Int] {
        var indices = Array(0..<dataset.count)
        var generator = RandomGenerator(seed: seed &+ 0x9E37_79B9 &* UInt64(epoch + 1))
        if shuffle { indices.shuffle(using: &generator) }
        guard lengthBuckets, let lengths = dataset.sequenceLengths else { return indices }
        let bucket = batchSize * Self.batchesPerLengthBucket
        var sorted: [Int] = []
        sorted.reserveCapacity(indices.count)
        for start in stride(from: 0, to: indices.count, by: bucket) {
            // Sorted by length, ties in the shuffled order.
            let members = indices[start..<Swift.min(start + bucket, indices.count)].enumerated()
            sorted += members.sorted { (lengths[$0.element], $0.offset) < (lengths[$1.element], $1.offset) }.map(\.element)
        }
        let full = sorted.count / batchSize
        var batches = Array(0..<full)
        if shuffle { batches.shuffle(using: &generator) }
        return batches.flatMap { sorted[($0 * batchSize)..<(($0 + 1) * batchSize)] } + sorted[(full * batchSize)...]
    }

    /// The dataset positions of batch `batch` of an epoch whose order is `order`.
    func indices(ofBatch batch: Int, in order: [Int]) -> [Int] {
        let global = order[(batch * batchSize)..<Swift.min((batch + 1) * batchSize, order.count)]
        guard shard.count > 1 else { return Array(global) }
        // A short last batch is cut the same way, in parts as equal as they can be.
        let start = global.startIndex + global.count * shard.rank / shard.count
        let end = global.startIndex + global.count * (shard.rank + 1) / shard.count
        return Array(order[start..<end])
    }

    /// The batch of examples `indices` in `epoch`, prepared on this thread and the `workers`:
    /// gathered or decoded, then augmented. Throws the first undecodable file's error unless
    /// `skipBadFiles`.
    public func makeBatch(_ indices: [Int], epoch: Int) throws -> Batch {
        let inputs = Tensor.zeros(dataset.batchShape(indices))
        let failures = prepare(indices[...], into: inputs.storage.pointer, epoch: epoch, threads: dataset.isStreamed ? workers : 1, buffers: nil,
                               batchShape: inputs.shape)
        return try assemble(inputs, indices: indices, failures: failures)
    }

    /// Fills consecutive rows from `target` with `indices` (gathered or decoded; texts padded
    /// to the length of `batchShape`, the whole batch's) and augments them; returns what
    /// failed, by row within `indices`.
    func prepare(_ indices: ArraySlice<Int>, into target: UnsafeMutablePointer<Float>, epoch: Int, threads: Int,
                 buffers: ImageBuffers?, batchShape: Shape) -> [(row: Int, error: Error)] {
        let failures = dataset.fill(target, with: Array(indices), threads: threads, buffers: buffers,
                                    length: dataset.isText ? batchShape[2] : nil)
        if augmentation.isActive {
            let example = dataset.exampleShape
            let size = example.count
            let (c, h, w) = (example[0], example[1], example[2])
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: size)
            defer { scratch.deallocate() }
            let base = RandomGenerator(seed: seed ^ 0xA5A5_5A5A_DEAD_BEEF).derived(UInt64(epoch))
            for (row, index) in indices.enumerated() {
                var generator = base.derived(UInt64(index))
                augmentation.apply(target + row * size, scratch: scratch, channels: c, height: h, width: w, using: &generator)
            }
        }
        return failures
    }

    /// The batch from its filled rows: the first failure thrown, or (skipping) the failed rows dropped.
    func assemble(_ inputs: Tensor, indices: [Int], failures: [(row: Int, error: Error)]) throws -> Batch {
        let labels = indices.map { dataset.labels[$0] }
        guard let firstFailure = failures.first else { return Batch(inputs: inputs, labels: labels, indices: indices, skippedFiles: []) }
        let skipped = try failures.map { failure -> DatasetError in
            guard skipBadFiles, let error = failure.error as? DatasetError else { throw firstFailure.error }
            return error
        }
        let failed = Set(failures.map(\.row))
        let kept = indices.indices.filter { !failed.contains($0) }
        return Batch(inputs: withoutGradients { inputs.indexSelect(alongAxis: 0, indices: kept) }, labels: kept.map { labels[$0] },
                     indices: kept.map { indices[$0] }, skippedFiles: skipped)
    }

    /// The batches of `epoch` from batch `first` on (a resumed run's position), prepared on
    /// background threads ahead of their use.
    public func batches(epoch: Int, from first: Int = 0) -> BatchSequence { BatchSequence(loader: self, epoch: epoch, first: first) }
}

/// The batches of one epoch (see `DataLoader.batches(epoch:)`).
public struct BatchSequence: Sequence {
    let loader: DataLoader
    let epoch: Int
    let first: Int
    public func makeIterator() -> PrefetchingIterator { PrefetchingIterator(loader: loader, epoch: epoch, first: first) }
}
