import Datasets
import Distillation
import DistillInference
import Foundation
import NeuralNet
import Tensors

// Streaming image folders (bench/peers/run_data_side_by_side.py generates the folders and runs
// the PyTorch peer, torch_data_peer.py, on the same ones):
//
//   stream-epoch --folder DIR    scan the folder, then one shuffled epoch of batches of 256
//                                through DataLoader: decode, convert to float, normalise with
//                                fixed per-channel statistics (0.5, 0.25), batch. Each
//                                iteration is a fresh scan and epoch, all of it timed: what a
//                                user waits for. Prints the seconds and the image count.
//   stream-train --folder DIR    scan, per-channel statistics over the whole folder, then
//                                --iterations steps of cnn-student (3 channels, the folder's
//                                image size, batch 128) through the Trainer and its streaming
//                                loader; prints the seconds of each phase and the peak
//                                resident memory (VmHWM).

/// The per-channel statistics both sides normalise with in `stream-epoch`.
let streamNormalization = Normalization(mean: [0.5, 0.5, 0.5], standardDeviation: [0.25, 0.25, 0.25])

func streamEpochCase(folder: String, iterations: Int) throws {
    var seconds: [Double] = []
    var images = 0
    for epoch in 0..<iterations {
        let start = DispatchTime.now().uptimeNanoseconds
        let data = try ImageFolder.dataset(try ImageFolder.scan(folder), channels: 3, size: nil).normalized(streamNormalization)
        let loader = try DataLoader(data, batchSize: 256, shuffle: true, seed: UInt64(epoch))
        images = 0
        let batches = loader.batches(epoch: epoch).makeIterator()
        while let batch = try batches.nextBatch() { images += batch.inputs.shape[0] }
        seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    print("{\"case\": \"stream-epoch\", \"images\": \(images), \"seconds\": [\(seconds.map { String($0) }.joined(separator: ", "))]}")
}

func streamTrainCase(folder: String, steps: Int) throws {
    var start = Date()
    let data = try ImageFolder.dataset(try ImageFolder.scan(folder), channels: 3, size: nil)
    let scanSeconds = Date().timeIntervalSince(start)
    start = Date()
    let statistics = try data.channelStatistics()
    let statisticsSeconds = Date().timeIntervalSince(start)
    let train = try data.normalized(statistics)
    var generator = RandomGenerator(seed: 0)
    let model = try ModelZoo.make("cnn-student", options: ModelOptions(classes: train.classCount, inputChannels: 3, inputSize: train.exampleShape[1]),
                                  using: &generator)
    var configuration = TrainerConfiguration()
    configuration.steps = steps
    configuration.batchSize = 128
    start = Date()
    let result = try Trainer(model: model, configuration: configuration).fit(train: train)
    let trainSeconds = Date().timeIntervalSince(start)
    print("{\"case\": \"stream-train\", \"images\": \(data.count), \"scan_seconds\": \(scanSeconds), \"statistics_seconds\": \(statisticsSeconds), "
        + "\"train_seconds\": \(trainSeconds), \"steps\": \(result.steps), \"loss\": \(result.history.last?.loss ?? .nan), \"peak_rss\": \(peakResidentBytes())}")
}
