import DistillInference
import Foundation
import Tensors

extension Dataset {
    /// Examples per batch when a whole dataset is read in batches (statistics, evaluation,
    /// the teacher cache).
    public static let readingBatchSize = 256

    /// Examples per batch when this dataset is read whole: `readingBatchSize`, fewer for large
    /// examples, so that a batch holds at most 2^24 values (64 MiB) — 256 images up to 3×148×148.
    public var readingBatch: Int { Swift.max(1, Swift.min(Self.readingBatchSize, (1 << 24) / Swift.max(exampleShape.count, 1))) }

    /// Normalised per channel with `normalization` (see `Normalization`). In-memory sets are
    /// normalised now; streamed sets when their batches are decoded, after any normalisation
    /// they already have.
    public func normalized(_ normalization: Normalization) throws -> Dataset {
        let channels = exampleShape.rank == 0 ? 1 : exampleShape[0]
        try normalization.check(channels: channels, source: "normalization")
        switch examples {
        case .tokens:
            throw DatasetError(file: "normalization", "texts are token ids, which are not normalised")
        case let .files(files):
            var result = self
            result.examples = .files(files.normalized(normalization))
            return result
        case let .memory(inputs):
            let normalized = inputs.copy()
            let plane = Swift.max(exampleShape.count / channels, 1)
            normalized.withUnsafeMutableBufferPointer { values in
                for start in stride(from: 0, to: values.count, by: plane) {
                    let c = (start / plane) % channels
                    let mean = normalization.mean[c], deviation = normalization.standardDeviation[c]
                    for i in start..<(start + plane) { values[i] = (values[i] - mean) / deviation }
                }
            }
            return Dataset(inputs: normalized, labels: labels, classNames: classNames)
        }
    }

    /// The mean and standard deviation of every channel (the first axis of an example) over all
    /// examples, computed in batches of `readingBatch` (a streamed set is decoded once,
    /// never held whole). Standard deviations below 1e-6 are raised to it, so the result can
    /// normalise. Use the training set's statistics for its validation and test sets. With
    /// `skippingBadFiles`, images that cannot be read are left out (as training skips them).
    public func channelStatistics(skippingBadFiles: Bool = false) throws -> Normalization {
        guard count > 0 else { throw DatasetError(file: "channel statistics", "the dataset is empty") }
        guard !isText else { throw DatasetError(file: "channel statistics", "texts are token ids, which have no channel statistics") }
        let channels = exampleShape.rank == 0 ? 1 : exampleShape[0]
        let plane = Swift.max(exampleShape.count / channels, 1)
        var sums = [Double](repeating: 0, count: channels), squares = [Double](repeating: 0, count: channels)
        var used = 0
        for first in stride(from: 0, to: count, by: readingBatch) {
            let indices = Array(first..<Swift.min(first + readingBatch, count))
            let values = Tensor.zeros(Shape([indices.count] + exampleShape.dimensions))
            let failures = fill(values.storage.pointer, with: indices, threads: ProcessInfo.processInfo.activeProcessorCount)
            if let failure = failures.first, !skippingBadFiles { throw failure.error }
            let bad = Set(failures.map(\.row))
            used += indices.count - bad.count
            values.withUnsafeBufferPointer { buffer in
                for start in stride(from: 0, to: buffer.count, by: plane) where !bad.contains(start / exampleShape.count) {
                    var sum: Double = 0, square: Double = 0
                    for v in buffer[start..<(start + plane)] {
                        sum += Double(v)
                        square += Double(v) * Double(v)
                    }
                    let c = (start / plane) % channels
                    sums[c] += sum
                    squares[c] += square
                }
            }
        }
        guard used > 0 else { throw DatasetError(file: "channel statistics", "no example could be read") }
        let n = Double(used * plane)
        let means = sums.map { $0 / n }
        return Normalization(mean: means.map { Float($0) },
                             standardDeviation: zip(squares, means).map { Float(Swift.max(Swift.max($0 / n - $1 * $1, 0).squareRoot(), 1e-6)) })
    }
}
