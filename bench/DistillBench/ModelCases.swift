import Datasets
import Distillation
import Foundation
import NeuralNet
import Tensors

// The model-level cases of issue 9: zoo models trained and run exactly as the PyTorch peer
// runs scripts/zoo_models.py's copies of them.
//
//   train-NAME           one SGD step (momentum 0.9) of a zoo model in training mode at --batch,
//                        on inputs of --input C,H,W (default 1,28,28)
//   infer-NAME           evaluation-mode forward passes without gradients at --batch; at batch
//                        1 a step is 100 calls and the time is reported per call
//   distill-epoch        one KD epoch (cnn-teacher → cnn-student, T = 4, α = 0.9, batch 128,
//                        no augmentation) over Fashion-MNIST's 60,000 training images with the
//                        teacher's outputs cached (the cache is built once, on disk, by the warm-up)
//   epoch-size           one cnn-student training epoch over the first 10,000, 30,000 and
//                        60,000 training images (prints the three times)
//   memory-steps         --iterations training steps of cnn-student at --batch, resident memory
//                        sampled every 250 steps

/// Resident set size now, in bytes (Linux: /proc/self/statm).
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
}

/// Peak resident set size of this process, in bytes: VmHWM from /proc/self/status. (Not
/// getrusage's ru_maxrss, which Linux carries over from the parent across fork and exec:
/// a child of a 1.5 GB driver reported 1.5 GB.)
func peakResidentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
          let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
    return kilobytes * 1024
}

func makeModelWorkload(_ name: String, batch: Int, small: Bool, input: [Int] = [1, 28, 28]) -> Workload? {
    var generator = RandomGenerator(seed: 0)
    if name.hasPrefix("train-") || name.hasPrefix("infer-") {
        let zooName = String(name.dropFirst(6))
        let options = ModelOptions(inputChannels: input[0], inputSize: input[1], inputWidth: input[2] == input[1] ? nil : input[2])
        guard let model = try? ModelZoo.make(zooName, options: options, using: &generator) else { return nil }
        let x = Tensor.randomNormal(Shape([small ? 2 : batch] + input), using: &generator)
        let labels = (0..<x.shape[0]).map { $0 % 10 }
        if name.hasPrefix("train-") {
            model.train()
            let optimizer = SGD(parameters: model.parameters, learningRate: 0.01, momentum: 0.9)
            return Workload {
                let loss = Tensor.crossEntropy(logits: model(x), labels: labels)
                loss.backward()
                optimizer.step()
                optimizer.zeroGrad()
                return loss.item
            }
        }
        model.eval()
        let calls = batch == 1 ? 100 : 1
        return Workload(callsPerStep: calls) {
            withoutGradients {
                var total: Float = 0
                for _ in 0..<calls { total += model(x).sliced(alongAxis: 1, 0..<1).sum().item }
                return total
            }
        }
    }
    switch name {
    case "distill-epoch":
        guard let data = try? FashionMNIST() else { return nil }
        let train = small ? data.train.subset(Array(0..<256)) : data.train
        let teacher = try! ModelZoo.make("cnn-teacher", using: &generator)
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("distill-bench-cache").path
        var run = 0
        return Workload {
            run += 1
            var g = RandomGenerator(seed: UInt64(run))
            let student = try! ModelZoo.make("cnn-student", using: &g)
            var configuration = TrainerConfiguration()
            configuration.epochs = 1
            configuration.batchSize = 128
            configuration.cacheDirectory = cache
            configuration.crossEntropyWeight = 0.1
            let distiller = try! Trainer(model: student, teachers: [Teacher(.model(teacher))],
                                         losses: [WeightedLoss(KnowledgeDistillation(temperature: 4), weight: 0.9)],
                                         configuration: configuration)
            return try! distiller.fit(train: train).history.last!.loss
        }
    default:
        return nil
    }
}

/// One cnn-student epoch at batch 128 over the first 10k, 30k and 60k images: prints seconds.
func epochSizeCase(small: Bool) {
    guard let data = try? FashionMNIST() else { fatalError("epoch-size needs dataset-fashion-mnist") }
    var line: [String] = []
    for count in small ? [256, 512] : [10_000, 30_000, 60_000] {
        var g = RandomGenerator(seed: 0)
        let model = try! ModelZoo.make("cnn-student", using: &g)
        let subset = data.train.subset(Array(0..<count))
        var configuration = TrainerConfiguration()
        configuration.epochs = 1
        let result = try! Trainer(model: model, configuration: configuration).fit(train: subset)
        line.append("\"\(count)\": \(result.history[0].seconds)")
    }
    print("{\"case\": \"epoch-size\", \"seconds\": {\(line.joined(separator: ", "))}}")
}

/// `steps` cnn-student training steps; resident memory every 250 steps.
func memoryStepsCase(steps: Int, batch: Int) {
    guard let workload = makeModelWorkload("train-cnn-student", batch: batch, small: false) else { return }
    var samples: [String] = []
    for step in 1...steps {
        _ = workload.step()
        if step % 250 == 0 || step == 1 { samples.append("[\(step), \(residentBytes())]") }
    }
    print("{\"case\": \"memory-steps\", \"resident\": [\(samples.joined(separator: ", "))], \"peak\": \(peakResidentBytes())}")
}
