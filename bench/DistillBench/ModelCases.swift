import Datasets
import Distillation
import Foundation
import NeuralNet
import Tensors
import Training

// The model-level cases of issue 9: zoo models trained and run exactly as the PyTorch peer
// runs scripts/zoo_models.py's copies of them.
//
//   train-NAME[-cC][-bB] one SGD step (momentum 0.9, weight decay 5e-4 on weights only) of a
//                        zoo model in training mode at --batch (or B); -c3: 3×32×32 inputs,
//                        -c1 (default): 1×28×28
//   infer-NAME[-cC][-bB] evaluation-mode forward passes without gradients through FusedModel
//                        (batch norm folded, activations fused, NHWC: what InferenceModel and
//                        `distill predict` run; --unfused: the model's own modules); at batch 1 a
//                        step is 100 calls and the time is reported per call
//   distill-epoch        one KD epoch (cnn-teacher → cnn-student, T = 4, α = 0.9, batch 128,
//                        no augmentation) over Fashion-MNIST's 60,000 training images with the
//                        teacher's outputs cached (warm: built once, on disk, by the warm-up)
//   distill-epoch-cold   the same epoch building the teacher's cache inside the timing
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

/// Whether infer-* cases run through FusedModel (`--unfused` turns it off).
nonisolated(unsafe) var fusedInference = true
/// How long an infer-* case took to make its FusedModel (folding, packing the weights): what an
/// app waits for once when it loads the model; printed as "prepare_seconds".
nonisolated(unsafe) var preparationSeconds: Double?

/// A zoo model case name: `train-MODEL`, `infer-MODEL`, optionally followed by `-c3` (3×32×32
/// inputs, the CIFAR shape) or `-c1` (1×28×28, the Fashion-MNIST shape, also the default) and
/// `-bN` (batch N, overriding --batch). The PyTorch and onnxruntime peers parse names the same way.
struct ModelCase {
    let training: Bool
    let model: String
    let options: ModelOptions
    let batch: Int

    init?(_ name: String, batch defaultBatch: Int) {
        guard name.hasPrefix("train-") || name.hasPrefix("infer-") else { return nil }
        training = name.hasPrefix("train-")
        var parts = name.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false).map(String.init)
        var batch = defaultBatch
        if let last = parts.last, last.count > 1, last.first == "b", let value = Int(last.dropFirst()), value > 0 {
            batch = value
            parts.removeLast()
        }
        var options = ModelOptions()
        if let last = parts.last, last == "c3" || last == "c1" {
            options = last == "c3" ? ModelOptions(inputChannels: 3, inputSize: 32) : ModelOptions(inputChannels: 1, inputSize: 28)
            parts.removeLast()
        }
        model = parts.joined(separator: "-")
        self.options = options
        self.batch = batch
    }

    func make() -> (any Module)? {
        var generator = RandomGenerator(seed: 0)
        return try? ModelZoo.make(model, options: options, using: &generator)
    }
}

/// Trainable parameter count of the model a case builds (the driver checks it against the peer's).
func parameterCount(_ name: String, batch: Int) -> Int? {
    guard let spec = ModelCase(name, batch: batch), let model = spec.make() else { return nil }
    return model.parameters.reduce(0) { $0 + $1.count }
}

func makeModelWorkload(_ name: String, batch: Int, small: Bool) -> Workload? {
    var generator = RandomGenerator(seed: 1)
    if let spec = ModelCase(name, batch: batch) {
        guard let model = spec.make() else { return nil }
        let x = Tensor.randomNormal(Shape([small ? 2 : spec.batch] + spec.options.exampleShape), using: &generator)
        let labels = (0..<x.shape[0]).map { $0 % 10 }
        if spec.training {
            model.train()
            // The literature's recipe and the Trainer's: momentum 0.9, weight decay 5e-4 on
            // weights only (not biases or normalisation parameters); the peer uses the same groups.
            let optimizer = SGD(ParameterGroup.decayingWeightsOnly(model, learningRate: 0.01, weightDecay: 5e-4), momentum: 0.9)
            return Workload {
                let loss = Tensor.crossEntropy(logits: model(x), labels: labels)
                loss.backward()
                optimizer.step()
                optimizer.zeroGrad()
                return loss.item
            }
        }
        model.eval()
        let calls = spec.batch == 1 ? 100 : 1
        // Made outside the timing, as an app makes it once when it loads the model.
        let start = DispatchTime.now().uptimeNanoseconds
        let runner: any Module = fusedInference ? ((try? FusedModel(model, exampleShape: spec.options.exampleShape)) ?? model) : model
        preparationSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return Workload(callsPerStep: calls) {
            withoutGradients {
                var total: Float = 0
                for _ in 0..<calls { total += runner(x).sliced(alongAxis: 1, 0..<1).sum().item }
                return total
            }
        }
    }
    switch name {
    case "distill-epoch", "distill-epoch-cold":
        // Warm ("distill-epoch"): the teacher's outputs are cached on disk by the untimed warm-up
        // and loaded by each timed epoch. Cold: each timed epoch builds its cache in a fresh,
        // empty directory, as a first run does; the warm-up fits 1,280 images only.
        guard let data = try? FashionMNIST() else { return nil }
        let cold = name == "distill-epoch-cold"
        let train = small ? data.train.subset(Array(0..<256)) : data.train
        let teacher = try! ModelZoo.make("cnn-teacher", using: &generator)
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("distill-bench-cache").path
        var run = 0
        func epoch(_ images: Dataset, cache: String) -> Float {
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
            return try! distiller.fit(train: images).history.last!.loss
        }
        guard cold else { return Workload { epoch(train, cache: base) } }
        func fresh() -> String {
            let directory = base + "-cold-\(getpid())-\(run)"
            try? FileManager.default.removeItem(atPath: directory)
            return directory
        }
        return Workload(warmup: {
            let directory = fresh()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            return epoch(train.subset(Array(0..<min(1280, train.count))), cache: directory)
        }) {
            let directory = fresh()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            return epoch(train, cache: directory)
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
