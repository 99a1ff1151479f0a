import Datasets
import Foundation
import Tensors
import XCTest

final class DatasetTests: XCTestCase {
    /// 40 examples of 4 classes (10 each), inputs [40, 1, 2, 2] whose first pixel is the index.
    func makeDataset() -> Dataset {
        let inputs = Tensor((0..<160).map { Float($0 % 4 == 0 ? $0 / 4 : 0) }, shape: [40, 1, 2, 2])
        return Dataset(inputs: inputs, labels: (0..<40).map { $0 % 4 }, classNames: ["a", "b", "c", "d"])
    }

    /// Data parallelism: each process's shard of a global batch is its consecutive part of the
    /// same seeded order; the parts put together are the one-process batch, a short last batch
    /// is cut as evenly as it can be, and a global batch that does not split evenly is an error.
    func testShardsOfEachBatchMakeTheWholeBatch() throws {
        let data = makeDataset()
        let whole = try DataLoader(data, batchSize: 12, shuffle: true, seed: 9, workers: 1)
        let shards = try (0..<3).map { try DataLoader(data, batchSize: 12, shuffle: true, seed: 9, workers: 1, shard: .init(rank: $0, count: 3)) }
        for epoch in 0..<2 {
            let expected = Array(whole.batches(epoch: epoch)).map(\.indices)
            let parts = shards.map { loader in Array(loader.batches(epoch: epoch)).map(\.indices) }
            XCTAssertEqual(expected.count, 4)
            for (b, batch) in expected.enumerated() {
                XCTAssertEqual(parts[0][b] + parts[1][b] + parts[2][b], batch, "epoch \(epoch), batch \(b)")
                XCTAssertEqual(parts.map { $0[b].count }, b < 3 ? [4, 4, 4] : [1, 1, 2])
            }
        }
        XCTAssertThrowsError(try DataLoader(data, batchSize: 10, workers: 1, shard: .init(rank: 0, count: 3))) {
            XCTAssertTrue("\($0)".contains("the batch of 10 does not split evenly over 3 processes"), "\($0)")
        }
        XCTAssertThrowsError(try DataLoader(data, batchSize: 12, workers: 1, shard: .init(rank: 3, count: 3)))
    }

    func testSelectingClassesRelabelsInTheGivenOrder() throws {
        let subset = try makeDataset().selectingClasses([3, 1])
        XCTAssertEqual(subset.count, 20)
        XCTAssertEqual(subset.classNames, ["d", "b"])
        XCTAssertEqual(Set(subset.labels), [0, 1])
        XCTAssertEqual(subset.inputs.scalars[0], 1, "first kept example is index 1 (class b)")
        XCTAssertEqual(subset.labels[0], 1)
        XCTAssertThrowsError(try makeDataset().selectingClasses([])) { XCTAssertTrue("\($0)".contains("empty")) }
        XCTAssertThrowsError(try makeDataset().selectingClasses([1, 7])) { XCTAssertTrue("\($0)".contains("class 7 is outside 0...3")) }
        XCTAssertThrowsError(try makeDataset().selectingClasses([1, 1])) { XCTAssertTrue("\($0)".contains("repeat")) }
    }

    func testLabeledSplitIsStratifiedSeededAndDisjoint() throws {
        let data = makeDataset()
        let (labeled, rest) = try data.splittingLabeled(perClass: 3, seed: 9)
        XCTAssertEqual(labeled.classCounts, [3, 3, 3, 3])
        XCTAssertEqual(rest.count, 28)
        let ids = { (d: Dataset) in Set(stride(from: 0, to: d.inputs.count, by: 4).map { Int(d.inputs.scalars[$0]) }) }
        XCTAssertTrue(ids(labeled).isDisjoint(with: ids(rest)))
        XCTAssertEqual(ids(labeled).union(ids(rest)).count, 40)
        XCTAssertEqual(try data.splittingLabeled(perClass: 3, seed: 9).labeled.inputs.scalars, labeled.inputs.scalars)
        XCTAssertNotEqual(try data.splittingLabeled(perClass: 3, seed: 10).labeled.inputs.scalars, labeled.inputs.scalars)
        XCTAssertThrowsError(try data.splittingLabeled(perClass: 11, seed: 0)) { XCTAssertTrue("\($0)".contains("fewer than 11")) }
    }

    func testValidationSplitAndConcatenation() throws {
        let (train, _, validation, _) = try makeDataset().holdingOutValidation(fraction: 0.25, seed: 1)
        XCTAssertEqual(train.count, 28)
        XCTAssertEqual(validation.count, 12)
        XCTAssertEqual(validation.classCounts, [3, 3, 3, 3], "stratified: round(10 × 0.25) = 3 of each class")
        // From the labelled examples only, at least one per class, and never all of a class.
        let mask = (0..<40).map { $0 % 8 < 4 }
        let few = try makeDataset().holdingOutValidation(fraction: 0.01, labeled: mask, seed: 1)
        XCTAssertEqual(few.validation.classCounts, [1, 1, 1, 1])
        XCTAssertEqual(few.labeled?.filter { $0 }.count, 16)
        XCTAssertEqual(few.train.count, 36)
        XCTAssertThrowsError(try makeDataset().holdingOutValidation(fraction: 0.5, labeled: (0..<40).map { $0 < 4 }, seed: 1)) {
            XCTAssertTrue("\($0)".contains("at least 2"), "\($0)")
        }
        let joined = try Dataset.concatenating([train, validation])
        XCTAssertEqual(joined.count, 40)
        XCTAssertEqual(joined.classCounts, [10, 10, 10, 10])
        let other = Dataset(inputs: Tensor.zeros([2, 3]), labels: [0, 1], classNames: ["a", "b", "c", "d"])
        XCTAssertThrowsError(try Dataset.concatenating([train, other])) { XCTAssertTrue("\($0)".contains("example shapes")) }
    }

    func testLoaderShufflesPerEpochDeterministicallyAndDropsLast() throws {
        let loader = try DataLoader(makeDataset(), batchSize: 16, shuffle: true, dropLast: true, seed: 5)
        XCTAssertEqual(loader.batchesPerEpoch, 2)
        let epoch0 = Array(loader.batches(epoch: 0)).map(\.indices)
        XCTAssertEqual(epoch0.count, 2)
        XCTAssertEqual(epoch0.map(\.count), [16, 16])
        XCTAssertEqual(Array(loader.batches(epoch: 0)).map(\.indices), epoch0, "same seed and epoch: same batches")
        XCTAssertNotEqual(Array(loader.batches(epoch: 1)).map(\.indices), epoch0, "a new order each epoch")
        let keepLast = try DataLoader(makeDataset(), batchSize: 16, shuffle: false)
        XCTAssertEqual(Array(keepLast.batches(epoch: 0)).map(\.indices.count), [16, 16, 8])
        let batch = Array(keepLast.batches(epoch: 0))[2]
        XCTAssertEqual(batch.labels, (32..<40).map { $0 % 4 })
        XCTAssertEqual(batch.inputs.shape, [8, 1, 2, 2])
        XCTAssertEqual(batch.inputs.scalars[0], 32)
    }

    func testAugmentationDependsOnSeedEpochAndIndexOnly() throws {
        var g = RandomGenerator(seed: 0)
        let images = Dataset(inputs: Tensor.randomNormal([32, 1, 6, 6], using: &g), labels: Array(repeating: 0, count: 32), classNames: ["x"])
        let augmentation = Augmentation(cropPadding: 2, horizontalFlip: true, erasingProbability: 0.5, fillValue: -1)
        let small = try DataLoader(images, batchSize: 4, shuffle: true, seed: 3, augmentation: augmentation)
        let large = try DataLoader(images, batchSize: 32, shuffle: false, seed: 3, augmentation: augmentation)
        // Example 7 in epoch 2 is transformed the same whichever batch carries it.
        let a = try small.makeBatch([7], epoch: 2).inputs.scalars
        let b = try large.makeBatch(Array(0..<32), epoch: 2).inputs.sliced(alongAxis: 0, 7..<8).scalars
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(try small.makeBatch([7], epoch: 3).inputs.scalars, a, "another epoch draws again")
        XCTAssertNotEqual(a, images.inputs.sliced(alongAxis: 0, 7..<8).scalars)
        XCTAssertThrowsError(try DataLoader(Dataset(inputs: Tensor.zeros([2, 3]), labels: [0, 0], classNames: ["x"]), batchSize: 1,
                                            augmentation: augmentation))
    }

    func testFlipAndCropMoveThePixelsTheySay() throws {
        // One 1×1×3 image [1, 2, 3]: a flip reverses it; padding 1 shifts by at most one pixel.
        let image = Dataset(inputs: Tensor([1, 2, 3], shape: [1, 1, 1, 3]), labels: [0], classNames: ["x"])
        var seen = Set<[Float]>()
        for epoch in 0..<64 {
            let flipped = try DataLoader(image, batchSize: 1, augmentation: Augmentation(horizontalFlip: true)).makeBatch([0], epoch: epoch)
            seen.insert(flipped.inputs.scalars)
        }
        XCTAssertEqual(seen, [[1, 2, 3], [3, 2, 1]])
        var crops = Set<[Float]>()
        for epoch in 0..<64 {
            let loader = try DataLoader(image, batchSize: 1, augmentation: Augmentation(cropPadding: 1, fillValue: 0))
            crops.insert(try loader.makeBatch([0], epoch: epoch).inputs.scalars)
        }
        XCTAssertTrue(crops.isSubset(of: [[1, 2, 3], [0, 1, 2], [2, 3, 0], [0, 0, 0]]), "\(crops)")
        XCTAssertTrue(crops.contains([0, 1, 2]) && crops.contains([2, 3, 0]))
    }

    func testStoppingEarlyDoesNotHang() throws {
        let loader = try DataLoader(makeDataset(), batchSize: 1)
        for batch in loader.batches(epoch: 0) where batch.indices == [2] { break }
        var iterator: PrefetchingIterator? = loader.batches(epoch: 0).makeIterator()
        _ = iterator?.next()
        iterator = nil
        XCTAssertNil(iterator)
    }
}
