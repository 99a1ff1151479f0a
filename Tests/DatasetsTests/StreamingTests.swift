import Datasets
import DistillInference
import Foundation
import Tensors
import TestSupport
import XCTest

/// Streamed image folders: the same tensors as in memory, splits and statistics without
/// holding the set, a deterministic multi-threaded loader, and bad files named or skipped.
final class StreamingTests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("distill-stream-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    /// A folder of `perClass[k]` random `width`×`height` RGB PNGs per class "c0", "c1", ...,
    /// and the same images in memory as [N, 3, height, width] values in [0, 1] (file order).
    func makeFolder(_ name: String = "train", perClass: [Int] = [7, 7, 6], width: Int = 5, height: Int = 4,
                    seed: UInt64 = 1) throws -> (path: String, inMemory: Dataset) {
        var g = RandomGenerator(seed: seed)
        let root = scratch.appendingPathComponent(name)
        var values: [Float] = [], labels: [Int] = []
        for (label, count) in perClass.enumerated() {
            let folder = root.appendingPathComponent("c\(label)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for i in 0..<count {
                let pixels = (0..<(width * height * 3)).map { _ in UInt8(g.next() % 256) }
                try PNGWriter.write(pixels, width: width, height: height, channels: 3, to: folder.appendingPathComponent(String(format: "%03d.png", i)).path)
                for c in 0..<3 { for p in 0..<(width * height) { values.append(Float(pixels[p * 3 + c]) / 255) } }
                labels.append(label)
            }
        }
        let inMemory = Dataset(inputs: Tensor(values, shape: [labels.count, 3, height, width]), labels: labels,
                               classNames: perClass.indices.map { "c\($0)" })
        return (root.path, inMemory)
    }

    func assertError(_ body: @autoclosure () throws -> Any, contains fragments: String..., file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            for fragment in fragments { XCTAssertTrue("\(error)".contains(fragment), "expected '\(fragment)' in: \(error)", file: file, line: line) }
        }
    }

    func testStreamedFolderGivesTheTensorsOfInMemoryDecoding() throws {
        let (path, inMemory) = try makeFolder()
        let streamed = try ImageFolder.dataset(try ImageFolder.scan(path), channels: 3, size: nil)
        XCTAssertTrue(streamed.isStreamed)
        XCTAssertFalse(inMemory.isStreamed)
        XCTAssertEqual(streamed.exampleShape, [3, 4, 5])
        XCTAssertEqual(streamed.labels, inMemory.labels)
        let order = [19, 0, 7, 7, 3]
        XCTAssertEqual(try streamed.batch(order).scalars, try inMemory.batch(order).scalars, "bit for bit, in the order asked")
        let normalization = Normalization(mean: [0.5, 0.4, 0.3], standardDeviation: [0.2, 0.25, 0.3])
        XCTAssertEqual(try streamed.normalized(normalization).batch(order).scalars, try inMemory.normalized(normalization).batch(order).scalars,
                       "lazy normalisation equals eager")
        XCTAssertEqual(try streamed.normalized(normalization).normalized(normalization).batch(order).scalars,
                       try inMemory.normalized(normalization).normalized(normalization).batch(order).scalars)
        // Resizing: the same size changes nothing; another is bilinear with half-pixel centres.
        let listing = try ImageFolder.scan(path)
        XCTAssertEqual(try ImageFolder.dataset(listing, channels: 3, size: (height: 4, width: 5)).batch(order).scalars, try inMemory.batch(order).scalars)
        let resized = try ImageFolder.dataset(listing, channels: 3, size: (height: 3, width: 7)).batch([2])
        let source = try inMemory.batch([2]).scalars
        var reference: [Float] = []
        for c in 0..<3 {
            for y in 0..<3 {
                let sy = max(0, (Float(y) + 0.5) * 4 / 3 - 0.5), y0 = min(Int(sy), 3), y1 = min(y0 + 1, 3), fy = sy - Float(y0)
                for x in 0..<7 {
                    let sx = max(0, (Float(x) + 0.5) * 5 / 7 - 0.5), x0 = min(Int(sx), 4), x1 = min(x0 + 1, 4), fx = sx - Float(x0)
                    func p(_ yy: Int, _ xx: Int) -> Float { source[c * 20 + yy * 5 + xx] }
                    reference.append((p(y0, x0) * (1 - fx) + p(y0, x1) * fx) * (1 - fy) + (p(y1, x0) * (1 - fx) + p(y1, x1) * fx) * fy)
                }
            }
        }
        assertClose(resized.scalars, reference, absolute: 1e-6, "PyTorch's bilinear, align_corners=False")
        let gray = try ImageFolder.dataset(listing, channels: 1, size: nil)
        XCTAssertEqual(gray.exampleShape, [1, 4, 5])
    }

    func testSplitsSubsetsAndClassesNeedNoDecoding() throws {
        let (path, _) = try makeFolder(perClass: [10, 4, 2])
        let streamed = try ImageFolder.dataset(try ImageFolder.scan(path), channels: 3, size: (height: 4, width: 5))
        try FileManager.default.removeItem(atPath: path)  // nothing below reads a file
        let (kept, heldOut) = try streamed.stratifiedSplit(fraction: 0.25, seed: 4)
        XCTAssertEqual(heldOut.classCounts, [3, 1, 1], "round(10 × 0.25) = 3; at least one a class; never all of one")
        XCTAssertEqual(kept.classCounts, [7, 3, 1])
        XCTAssertTrue(kept.isStreamed && heldOut.isStreamed)
        XCTAssertEqual(Set(kept.files!).union(heldOut.files!), Set(streamed.files!))
        XCTAssertTrue(Set(kept.files!).isDisjoint(with: heldOut.files!))
        XCTAssertEqual(try streamed.stratifiedSplit(fraction: 0.25, seed: 4).heldOut.files, heldOut.files, "seeded")
        XCTAssertNotEqual(try streamed.stratifiedSplit(fraction: 0.5, seed: 5).heldOut.files, heldOut.files)
        XCTAssertEqual(try streamed.holdingOutValidation(fraction: 0.25, seed: 4).validation.files, heldOut.files,
                       "the validation split is the same stratified split")
        assertError(try streamed.subset([0, 1, 2, 3, 10, 11]).stratifiedSplit(fraction: 0.5, seed: 0), contains: "class 2", "at least 2")
        assertError(try streamed.stratifiedSplit(fraction: 1, seed: 0), contains: "fraction must be in (0, 1)")

        let selected = try streamed.selectingClasses([2, 0])
        XCTAssertEqual(selected.classCounts, [2, 10])
        XCTAssertEqual(selected.files!.first.map { ($0 as NSString).deletingLastPathComponent.hasSuffix("c0") }, true)
        XCTAssertEqual(try streamed.labeledMask(perClass: 2, seed: 1).filter { $0 }.count, 6)
        XCTAssertEqual(streamed.subset([15, 0]).files, [streamed.files![15], streamed.files![0]])
        XCTAssertEqual(try Dataset.concatenating([kept, heldOut]).count, 16)
        assertError(try Dataset.concatenating([kept, Dataset(inputs: Tensor.zeros([1, 3, 4, 5]), labels: [0], classNames: streamed.classNames)]),
                    contains: "in-memory")
        assertError(try streamed.batch([0]), contains: "c0/000.png", "cannot open")
    }

    func testScanChecksTheClassFolders() throws {
        let (path, _) = try makeFolder(perClass: [1, 1])
        XCTAssertEqual(try ImageFolder.scan(path, classNames: ["c0", "c1"]).labels, [0, 1])
        XCTAssertEqual(try ImageFolder.scan(path, classNames: ["c1", "c0"]).labels, [0, 1], "labels follow the classes given")
        assertError(try ImageFolder.scan(path, classNames: ["c0", "c1", "c2"]), contains: path, "no folder for class 'c2'")
        assertError(try ImageFolder.scan(path, classNames: ["c0"]), contains: "c1", "is not one of the training classes")
        let flat = scratch.appendingPathComponent("flat")
        try FileManager.default.createDirectory(at: flat, withIntermediateDirectories: true)
        try PNGWriter.write([0], width: 1, height: 1, channels: 1, to: flat.appendingPathComponent("a.png").path)
        assertError(try ImageFolder.scan(flat.path), contains: "flat", "expected one folder of images per class")
    }

    func testChannelStatisticsEqualADirectComputation() throws {
        let (path, inMemory) = try makeFolder(perClass: [200, 100, 50])  // more than one reading batch
        let streamed = try ImageFolder.dataset(try ImageFolder.scan(path), channels: 3, size: nil)
        let values = inMemory.inputs.scalars
        var expectedMean: [Float] = [], expectedDeviation: [Float] = []
        for c in 0..<3 {
            var channel: [Double] = []
            for n in 0..<inMemory.count {
                let start = (n * 3 + c) * 20
                channel += values[start..<(start + 20)].map(Double.init)
            }
            let mean = channel.reduce(0, +) / Double(channel.count)
            let variance = channel.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(channel.count)
            expectedMean.append(Float(mean))
            expectedDeviation.append(Float(variance.squareRoot()))
        }
        for statistics in [try streamed.channelStatistics(), try inMemory.channelStatistics()] {
            assertClose(statistics.mean, expectedMean, absolute: 1e-5)
            assertClose(statistics.standardDeviation, expectedDeviation, absolute: 1e-5)
        }
        let normalized = try streamed.normalized(try streamed.channelStatistics()).channelStatistics()
        assertClose(normalized.mean, [0, 0, 0], absolute: 1e-4)
        assertClose(normalized.standardDeviation, [1, 1, 1], absolute: 1e-4)
        // A table's channels are its features.
        let table = Dataset(inputs: Tensor([1, 10, 3, 30], shape: [2, 2]), labels: [0, 0], classNames: ["x"])
        XCTAssertEqual(try table.channelStatistics(), Normalization(mean: [2, 20], standardDeviation: [1, 10]))
        XCTAssertEqual(try table.normalized(Normalization(mean: [2, 20], standardDeviation: [1, 10])).inputs.scalars, [-1, -1, 1, 1])
        assertError(try table.normalized(Normalization(mean: [0], standardDeviation: [1])), contains: "2 finite means")
    }

    func testLoaderBatchesDoNotDependOnThreadsAndResumeMidEpoch() throws {
        let (path, inMemory) = try makeFolder(perClass: [20, 15, 12])
        let normalization = Normalization(mean: [0.5, 0.5, 0.5], standardDeviation: [0.25, 0.25, 0.25])
        let streamed = try ImageFolder.dataset(try ImageFolder.scan(path), channels: 3, size: nil).normalized(normalization)
        let augmentation = Augmentation(cropPadding: 1, horizontalFlip: true, erasingProbability: 0.5, fillValue: -2)
        func batches(_ data: Dataset, workers: Int, prefetch: Int = 2, from first: Int = 0) throws -> [[Float]] {
            let loader = try DataLoader(data, batchSize: 10, shuffle: true, seed: 7, augmentation: augmentation, workers: workers, prefetch: prefetch)
            XCTAssertEqual(loader.batchesPerEpoch, 5)
            return Array(loader.batches(epoch: 1, from: first)).map { $0.inputs.scalars + $0.indices.map(Float.init) + $0.labels.map(Float.init) }
        }
        let reference = try batches(inMemory.normalized(normalization), workers: 1)
        XCTAssertEqual(reference.count, 5)
        for (workers, prefetch) in [(1, 1), (2, 2), (3, 1), (8, 4)] {
            XCTAssertEqual(try batches(streamed, workers: workers, prefetch: prefetch), reference, "\(workers) workers, prefetch \(prefetch)")
        }
        XCTAssertEqual(try batches(streamed, workers: 3, from: 2), Array(reference[2...]), "resumed at batch 2")
        XCTAssertEqual(try batches(streamed, workers: 2, from: 5), [])
    }

    func testABadFileStopsTheEpochNamingItOrIsSkippedAndCounted() throws {
        let (path, _) = try makeFolder(perClass: [10, 10])
        // A PNG whose header is intact (so the size check passes) but whose data is cut short.
        let bad = (path as NSString).appendingPathComponent("c1/004.png")
        let whole = try Data(contentsOf: URL(fileURLWithPath: bad))
        try whole.prefix(40).write(to: URL(fileURLWithPath: bad))
        let streamed = try ImageFolder.dataset(try ImageFolder.scan(path), channels: 3, size: nil)
        let badIndex = streamed.files!.firstIndex(of: bad)!
        let strict = try DataLoader(streamed, batchSize: 4, shuffle: false, workers: 2)
        let iterator = strict.batches(epoch: 0).makeIterator()
        var seen: [Int] = []
        XCTAssertThrowsError(try { while let batch = try iterator.nextBatch() { seen += batch.indices } }()) { error in
            XCTAssertTrue(error is DatasetError && "\(error)".contains("c1/004.png"), "\(error)")
        }
        XCTAssertEqual(seen, Array(0..<(badIndex / 4 * 4)), "the batches before the bad file's come out")
        XCTAssertNotNil(iterator.failure)
        XCTAssertNil(iterator.next(), "and then nothing")
        assertError(try strict.makeBatch([badIndex], epoch: 0), contains: "c1/004.png")

        let skipping = try DataLoader(streamed, batchSize: 4, shuffle: true, seed: 2, skipBadFiles: true, workers: 3)
        let all = skipping.batches(epoch: 0).makeIterator()
        var indices: [Int] = [], sizes: [Int] = []
        while let batch = try all.nextBatch() {
            indices += batch.indices
            sizes.append(batch.inputs.shape[0])
            XCTAssertEqual(batch.labels, batch.indices.map { streamed.labels[$0] })
        }
        XCTAssertEqual(Set(indices), Set(0..<20).subtracting([badIndex]))
        XCTAssertEqual(sizes.sorted(), [3, 4, 4, 4, 4], "the bad file's batch is one smaller")
        XCTAssertEqual(all.skippedFiles.map(\.file), [bad])
    }

    func testMixedSizesWithoutAnImageSizeAreNamed() throws {
        let (path, _) = try makeFolder(perClass: [3, 3])
        let odd = (path as NSString).appendingPathComponent("c1/zz.png")
        try PNGWriter.write(Array(repeating: 9, count: 6 * 4 * 3), width: 6, height: 4, channels: 3, to: odd)
        let listing = try ImageFolder.scan(path)
        assertError(try ImageFolder.dataset(listing, channels: 3, size: nil), contains: odd, "6×4", "5×4", "--image-size")
        XCTAssertEqual(try ImageFolder.dataset(listing, channels: 3, size: (height: 4, width: 5)).batch([6]).shape, [1, 3, 4, 5])
        // A JPEG's size comes from its frame header.
        let photos = scratch.appendingPathComponent("photos/a")
        try FileManager.default.createDirectory(at: photos, withIntermediateDirectories: true)
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/rgb.jpg")
        try FileManager.default.copyItem(at: fixture, to: photos.appendingPathComponent("x.jpg"))
        XCTAssertEqual(try ImageFolder.dataset(try ImageFolder.scan(photos.deletingLastPathComponent().path), channels: 3, size: nil).exampleShape, [3, 4, 6])
        assertError(try ImageFolder.dataset(listing, channels: 2, size: nil), contains: "channels must be 1 or 3")
        assertError(try ImageFolder.dataset(listing, channels: 3, size: (height: 0, width: 4)), contains: "not accepted")
    }
}
