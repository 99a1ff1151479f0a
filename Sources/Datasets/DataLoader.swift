import Foundation
import Tensors

/// Random image augmentation, applied per example. Every random choice comes from a
/// generator derived from (loader seed, epoch, example index), so an epoch's batches are the
/// same whatever the thread timing and however the run was interrupted and resumed.
public struct Augmentation: Equatable, Sendable {
    /// Pad by this many pixels on each side (with `fillValue`), then crop back at a random offset.
    public var cropPadding: Int
    /// Mirror left-right with probability ½.
    public var horizontalFlip: Bool
    /// Random erasing (Zhong et al. 2017) with this probability: a rectangle of 2-33% of the
    /// area, aspect ratio 0.3-3.3, filled with `fillValue`.
    public var erasingProbability: Float
    /// What padding and erasing fill with: the normalised value of a black pixel, usually
    /// (`FashionMNIST.normalizedBlack`).
    public var fillValue: Float

    public init(cropPadding: Int = 0, horizontalFlip: Bool = false, erasingProbability: Float = 0, fillValue: Float = 0) {
        self.cropPadding = cropPadding
        self.horizontalFlip = horizontalFlip
        self.erasingProbability = erasingProbability
        self.fillValue = fillValue
    }

    /// Whether any transform is on.
    public var isActive: Bool { cropPadding > 0 || horizontalFlip || erasingProbability > 0 }

    /// Transforms one image [channels, height, width] in place.
    func apply(_ image: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, channels: Int, height: Int, width: Int,
               using g: inout RandomGenerator) {
        let area = height * width
        if cropPadding > 0 {
            let dy = Int(g.next() % UInt64(2 * cropPadding + 1)) - cropPadding
            let dx = Int(g.next() % UInt64(2 * cropPadding + 1)) - cropPadding
            scratch.update(from: image, count: channels * area)
            for c in 0..<channels {
                for y in 0..<height {
                    let sy = y + dy
                    for x in 0..<width {
                        let sx = x + dx
                        image[c * area + y * width + x] = sy >= 0 && sy < height && sx >= 0 && sx < width
                            ? scratch[c * area + sy * width + sx] : fillValue
                    }
                }
            }
        }
        if horizontalFlip && g.next() & 1 == 1 {
            for row in 0..<(channels * height) {
                let r = image + row * width
                for x in 0..<(width / 2) { r.swapAt(x, width - 1 - x) }
            }
        }
        if erasingProbability > 0 && g.nextUniform() < erasingProbability {
            for _ in 0..<10 {
                let target = Float(area) * (0.02 + g.nextUniform() * 0.31)
                let ratio = Foundation.exp(Foundation.log(Float(0.3)) + g.nextUniform() * (Foundation.log(Float(3.3)) - Foundation.log(Float(0.3))))
                let h = Int((target * ratio).squareRoot().rounded()), w = Int((target / ratio).squareRoot().rounded())
                guard h >= 1, w >= 1, h < height, w < width else { continue }
                let y0 = Int(g.next() % UInt64(height - h + 1)), x0 = Int(g.next() % UInt64(width - w + 1))
                for c in 0..<channels { for y in y0..<(y0 + h) { for x in x0..<(x0 + w) { image[c * area + y * width + x] = fillValue } } }
                break
            }
        }
    }
}

extension UnsafeMutablePointer {
    fileprivate func swapAt(_ i: Int, _ j: Int) { let t = self[i]; self[i] = self[j]; self[j] = t }
}

/// A batch: inputs [B, ...], their labels, and their indices in the dataset.
public struct Batch {
    public let inputs: Tensor
    public let labels: [Int]
    public let indices: [Int]
}

/// Batches of a dataset: a seeded shuffle per epoch, optional drop-last and augmentation,
/// and the next batch prepared on a background thread while the current one trains.
public final class DataLoader: @unchecked Sendable {
    public let dataset: Dataset
    public let batchSize: Int
    public let shuffle: Bool
    public let dropLast: Bool
    public let seed: UInt64
    public let augmentation: Augmentation

    public init(_ dataset: Dataset, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false, seed: UInt64 = 0,
                augmentation: Augmentation = Augmentation()) throws {
        guard batchSize >= 1 else { throw DatasetError(file: "data loader", "batch size must be at least 1, got \(batchSize)") }
        guard !augmentation.isActive || dataset.inputs.rank == 4 else {
            throw DatasetError(file: "data loader", "augmentation needs images [N, C, H, W], got inputs \(dataset.inputs.shape)")
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
    }

    /// Batches in one epoch.
    public var batchesPerEpoch: Int { dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize }

    /// The example order of `epoch` (the identity when not shuffling).
    public func order(epoch: Int) -> [Int] {
        var indices = Array(0..<dataset.count)
        if shuffle {
            var generator = RandomGenerator(seed: seed &+ 0x9E37_79B9 &* UInt64(epoch + 1))
            indices.shuffle(using: &generator)
        }
        return indices
    }

    /// The batch of examples `indices` in `epoch`: gathered, then augmented.
    public func makeBatch(_ indices: [Int], epoch: Int) -> Batch {
        let example = dataset.exampleShape
        let size = example.count
        let inputs = Tensor.zeros(Shape([indices.count] + example.dimensions))
        dataset.inputs.withUnsafeBufferPointer { source in
            inputs.withUnsafeMutableBufferPointer { target in
                for (row, index) in indices.enumerated() {
                    (target.baseAddress! + row * size).update(from: source.baseAddress! + index * size, count: size)
                }
                if augmentation.isActive {
                    let (c, h, w) = (example[0], example[1], example[2])
                    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: size)
                    defer { scratch.deallocate() }
                    let base = RandomGenerator(seed: seed ^ 0xA5A5_5A5A_DEAD_BEEF).derived(UInt64(epoch))
                    for (row, index) in indices.enumerated() {
                        var generator = base.derived(UInt64(index))
                        augmentation.apply(target.baseAddress! + row * size, scratch: scratch, channels: c, height: h, width: w, using: &generator)
                    }
                }
            }
        }
        return Batch(inputs: inputs, labels: indices.map { dataset.labels[$0] }, indices: indices)
    }

    /// The batches of `epoch` from batch `first` on (a resumed run's position), each prepared
    /// on a background thread while the previous one is used.
    public func batches(epoch: Int, from first: Int = 0) -> BatchSequence { BatchSequence(loader: self, epoch: epoch, first: first) }
}

/// The batches of one epoch (see `DataLoader.batches(epoch:)`).
public struct BatchSequence: Sequence {
    let loader: DataLoader
    let epoch: Int
    let first: Int
    public func makeIterator() -> PrefetchingIterator { PrefetchingIterator(loader: loader, epoch: epoch, first: first) }
}

/// Runs batch preparation one batch ahead on its own thread. Stopping early (dropping the
/// iterator) stops the thread after the batch it is on.
public final class PrefetchingIterator: IteratorProtocol {
    /// What the iterator and its thread share; the thread holds this, not the iterator, so
    /// that dropping the iterator is seen by the thread.
    private final class Shared: @unchecked Sendable {
        let condition = NSCondition()
        var ready: [Batch] = []
        var finished = false
        var cancelled = false
    }

    private let shared = Shared()

    init(loader: DataLoader, epoch: Int, first: Int) {
        let order = loader.order(epoch: epoch)
        let count = loader.batchesPerEpoch
        let shared = self.shared
        let thread = Thread {
            for b in min(max(first, 0), count)..<count {
                let indices = Array(order[(b * loader.batchSize)..<min((b + 1) * loader.batchSize, order.count)])
                let batch = loader.makeBatch(indices, epoch: epoch)
                shared.condition.lock()
                while shared.ready.count >= 2 && !shared.cancelled { shared.condition.wait() }
                let stop = shared.cancelled
                if !stop { shared.ready.append(batch) }
                shared.condition.broadcast()
                shared.condition.unlock()
                if stop { return }
            }
            shared.condition.lock()
            shared.finished = true
            shared.condition.broadcast()
            shared.condition.unlock()
        }
        thread.name = "distill-data"
        thread.start()
    }

    public func next() -> Batch? {
        shared.condition.lock()
        defer { shared.condition.unlock() }
        while shared.ready.isEmpty && !shared.finished { shared.condition.wait() }
        guard !shared.ready.isEmpty else { return nil }
        let batch = shared.ready.removeFirst()
        shared.condition.broadcast()
        return batch
    }

    deinit {
        shared.condition.lock()
        shared.cancelled = true
        shared.condition.broadcast()
        shared.condition.unlock()
    }
}
