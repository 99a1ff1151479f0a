// DistillBench: times engine workloads for the side-by-side comparison with PyTorch
// (bench/peers/run_side_by_side.py drives it and the PyTorch peer alternately).
//
//   DistillBench --case NAME [--iterations N] [--threads T] [--no-flush-denormals]
//       prints one JSON line: {"case": NAME, "seconds": [per-iteration times]}
//   DistillBench --smoke
//       runs every case once at small size and checks the results are finite (CI).
//   DistillBench --case infer-NAME[-cC] --export-onnx PATH
//       writes the case's model (the same weights as its timing) as ONNX, for bench/peers/ort_peer.py.
//
// Cases (the PyTorch peer implements the same ones):
//   sgemm            1024×1024 · 1024×1024
//   int8-gemm, int8-gemm-mlp: the int8 GEMM (uint8 × int8 → int32, Sources/CKernels/q8.c) at
//                    sgemm's and sgemm-mlp's sizes (no peer); --kernel-path NAME forces a path
//   int8-infer-MODEL[-cC]: forward passes of a zoo model quantized to int8 (seed-0 weights,
//                    calibrated on 64 random inputs) at --batch; infer-MODEL is its float twin, and
//                    --export-onnx writes it in QDQ form for bench/peers/ort_peer.py
//   conv             conv2d forward + backward, [128, 32, 28, 28] → 64 channels, 3×3, padding 1
//   cnn              forward + backward (+ SGD update) of a small CNN at batch 128
//   denormal         64 passes of y = x·0.5 + x·1e-3 over 1M denormal floats
//   loader           one epoch of Fashion-MNIST batches of 128 through DataLoader (no peer:
//                    reported as images per second); loader-augmented adds crop, flip, erasing
//   train-*, infer-*, distill-epoch[-cold], epoch-size, memory-steps: zoo models, see ModelCases.swift
//   tokenize         WordPiece-tokenises every quote of Debian's fortunes (15,217) with
//                    all-MiniLM-L6-v2's tokenizer.json (scripts/fetch-minilm.sh), one thread, no
//                    truncation or padding; peer: bench/peers/tokenizer_peer.py (Hugging Face tokenizers)
//   infer-minilm     the all-MiniLM-L6-v2 teacher's forward pass, see TextCases.swift
//   infer-text-bag, infer-text-transformer: the text students' forward passes, see TextCases.swift
//   idle             loads nothing and does nothing: its peak resident memory is the baseline
//                    that the driver subtracts ("peak above an idle process")
//   stream-epoch, stream-train: image folders streamed from disk (--folder DIR), see StreamCases.swift
//
// Options: --batch N (model cases, default 128); --rss adds the peak resident memory to the line;
// --convolution-path im2col|primitives (Compute.convolutionPath) for A/B runs; --matmul-precision
// float32|bfloat16 (Compute.matmulPrecision, for the whole case) for A/B runs; --unfused runs the
// infer-* cases through the model's own modules instead of FusedModel (what InferenceModel and
// `distill predict` run), for A/B runs; --unfused-batch-norm runs batch norm and the ReLU / ReLU6
// after it as two ops in training (BatchNorm.fusesActivations), for A/B runs.
// Model cases add "parameters" (the model's trainable parameter count) to the line.

import Datasets
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import Training

struct Options {
    var caseName = ""
    var iterations = 10
    var threads = ProcessInfo.processInfo.activeProcessorCount
    var flushDenormals = true
    var smoke = false
    var batch = 128
    var reportPeakMemory = false
    var folder = ""
    var exportPath = ""
    var kernelPath = ""
    var convolutionPath = ""
    var matmulPrecision = ""
    var unfused = false
}

func parseOptions() -> Options {
    var options = Options()
    var arguments = CommandLine.arguments.dropFirst().makeIterator()
    while let argument = arguments.next() {
        switch argument {
        case "--case": options.caseName = arguments.next() ?? ""
        case "--iterations": options.iterations = Int(arguments.next() ?? "") ?? 0
        case "--threads": options.threads = Int(arguments.next() ?? "") ?? 0
        case "--no-flush-denormals": options.flushDenormals = false
        case "--smoke": options.smoke = true
        case "--batch": options.batch = Int(arguments.next() ?? "") ?? 0
        case "--rss": options.reportPeakMemory = true
        case "--folder": options.folder = arguments.next() ?? ""
        case "--export-onnx": options.exportPath = arguments.next() ?? ""
        case "--kernel-path": options.kernelPath = arguments.next() ?? ""
        case "--convolution-path": options.convolutionPath = arguments.next() ?? ""
        case "--matmul-precision": options.matmulPrecision = arguments.next() ?? ""
        case "--unfused": options.unfused = true
        case "--unfused-batch-norm": BatchNorm.fusesActivations = false
        case "--images-per-chunk": FusedModel.imagesPerChunk = Int(arguments.next() ?? "") ?? 0
        case "--split-multiply-adds": PackedConvolution.minimumSplitMultiplyAdds = Int(arguments.next() ?? "") ?? 0
        case "--direct-channels": PackedConvolution.directMaximumChannels = Int(arguments.next() ?? "") ?? 0
        default:
            FileHandle.standardError.write("DistillBench: unknown argument '\(argument)'\n".data(using: .utf8)!)
            exit(2)
        }
    }
    if options.iterations < 1 || options.threads < 1 || options.batch < 1 {
        FileHandle.standardError.write("DistillBench: --iterations, --threads and --batch must be positive\n".data(using: .utf8)!)
        exit(2)
    }
    return options
}

/// A prepared workload: `step` runs one timed iteration (of `callsPerStep` calls, timed per
/// call) and returns a value to check; `warmup` runs once, untimed, before the first (the
/// step itself unless a case needs a cheaper or different one).
struct Workload {
    var callsPerStep = 1
    let step: () -> Float
    let warmup: () -> Float

    init(callsPerStep: Int = 1, warmup: (() -> Float)? = nil, step: @escaping () -> Float) {
        self.callsPerStep = callsPerStep
        self.step = step
        self.warmup = warmup ?? step
    }
}

func makeWorkload(_ name: String, small: Bool, batch: Int = 128) -> Workload? {
    if let model = makeModelWorkload(name, batch: batch, small: small) { return model }
    if let text = makeTextWorkload(name, batch: batch, small: small) { return text }
    var generator = RandomGenerator(seed: 0)
    switch name {
    case "sgemm":
        let n = small ? 64 : 1024
        let a = Tensor.randomNormal([n, n], using: &generator), b = Tensor.randomNormal([n, n], using: &generator)
        return Workload { withoutGradients { a.matmul(b).sliced(alongAxis: 0, 0..<1).sum().item } }
    case "sgemm-mlp":
        // The mlp's largest products: [128, 784] · [784, 128] (forward) and its weight gradient.
        let x = Tensor.randomNormal([128, 784], using: &generator), w = Tensor.randomNormal([784, 128], using: &generator)
        return Workload { withoutGradients { x.matmul(w).sliced(alongAxis: 0, 0..<1).sum().item } }
    case "int8-gemm", "int8-gemm-mlp":
        // rows m × inputs k against k × outputs n, as sgemm (m = k = n = 1024) and sgemm-mlp (128, 784, 128).
        let (m, k, n) = name == "int8-gemm" ? (small ? (64, 64, 64) : (1024, 1024, 1024)) : (128, 784, 128)
        let a = (0..<(m * k)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let w = PackedInt8Weights((0..<(n * k)).map { _ in Int8(truncatingIfNeeded: generator.next()) }, outputs: n, inputs: k)
        return Workload { Float(Int8Kernels.gemm(a, rows: m, zeroPoint: 3, weights: w)[0]) }
    case let name where name.hasPrefix("int8-infer-"):
        let rows = small ? 4 : batch
        guard let (quantized, shape) = quantizedCase(name) else { return nil }
        let x = Tensor.randomNormal(Shape([rows] + shape), using: &generator)
        // At batch 1 a step is 100 calls, as the float infer-* cases time it.
        let calls = rows == 1 ? 100 : 1
        return Workload(callsPerStep: calls) { (0..<calls).reduce(Float(0)) { total, _ in total + quantized(x).sliced(alongAxis: 0, 0..<1).sum().item } }
    case "conv":
        let batch = small ? 4 : 128
        let x = Tensor.randomNormal([batch, 32, 28, 28], using: &generator)
        let w = Tensor.randomNormal([64, 32, 3, 3], standardDeviation: 0.05, using: &generator)
        let b = Tensor.zeros([64])
        x.requiresGrad = true; w.requiresGrad = true; b.requiresGrad = true
        return Workload {
            let y = Tensor.conv2d(x, weight: w, bias: b, padding: (1, 1))
            y.backward(seed: Tensor.ones(y.shape))
            let check = w.grad!.sum().item
            x.zeroGrad(); w.zeroGrad(); b.zeroGrad()
            return check
        }
    case "cnn":
        let batch = small ? 8 : 128
        let model = SmallCNN(using: &generator)
        let x = Tensor.randomNormal([batch, 1, 28, 28], using: &generator)
        let labels = (0..<batch).map { $0 % 10 }
        return Workload { model.trainStep(x, labels) }
    case "denormal":
        let count = small ? 1024 : 1 << 20
        let x = Tensor.full([count], Float(bitPattern: 0x000B_0000))  // about 1e-39, a denormal
        return Workload {
            var y = x
            for _ in 0..<64 { y = y * 0.5 + y * 1e-3 + x }
            return y.sum().item
        }
    case "loader", "loader-augmented":
        guard let data = try? FashionMNIST() else {
            FileHandle.standardError.write("DistillBench: the loader case needs dataset-fashion-mnist\n".data(using: .utf8)!)
            exit(2)
        }
        let augmentation = name == "loader" ? Augmentation()
            : Augmentation(cropPadding: 2, horizontalFlip: true, erasingProbability: 0.5, fillValue: FashionMNIST.normalizedBlack)
        let loader = try! DataLoader(data.train, batchSize: 128, shuffle: true, seed: 0, augmentation: augmentation)
        var epoch = 0
        return Workload {
            epoch += 1
            var total: Float = 0
            for batch in loader.batches(epoch: epoch) { total += Float(batch.labels.count) }
            return total
        }
    case "tokenize":
        let cache = ProcessInfo.processInfo.environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache")
        let fortunes = "/usr/share/games/fortunes"
        do {
            var tokenizer = try WordPieceTokenizer(contentsOf: cache + "/distill/all-minilm-l6-v2-0.1.2/tokenizer.json")
            (tokenizer.truncation, tokenizer.padding) = (nil, nil)
            let quotes = try TextData.read(fortunes, separator: "%").texts
            return Workload { Float(tokenizer.encode(batch: quotes).reduce(0) { $0 + $1.ids.count }) }
        } catch {
            FileHandle.standardError.write("DistillBench: the tokenize case needs fortunes and scripts/fetch-minilm.sh: \(error)\n".data(using: .utf8)!)
            exit(2)
        }
    default:
        return nil
    }
}

/// Conv(1→8)-ReLU-MaxPool-Conv(8→16)-ReLU-MaxPool-Linear(784→64)-ReLU-Linear(64→10),
/// cross-entropy, plain SGD: the same network as the PyTorch peer's.
final class SmallCNN {
    let parameters: [Tensor]

    init(using generator: inout RandomGenerator) {
        func leaf(_ shape: Shape, fanIn: Int) -> Tensor {
            let bound = 1 / Float(fanIn).squareRoot()
            let t = Tensor.randomUniform(shape, low: -bound, high: bound, using: &generator)
            t.requiresGrad = true
            return t
        }
        parameters = [leaf([8, 1, 3, 3], fanIn: 9), leaf([8], fanIn: 9), leaf([16, 8, 3, 3], fanIn: 72), leaf([16], fanIn: 72),
                      leaf([64, 784], fanIn: 784), leaf([64], fanIn: 784), leaf([10, 64], fanIn: 64), leaf([10], fanIn: 64)]
    }

    func trainStep(_ x: Tensor, _ labels: [Int]) -> Float {
        let p = parameters
        var h = Tensor.maxPool2d(Tensor.conv2d(x, weight: p[0], bias: p[1], padding: (1, 1)).relu(), kernel: (2, 2))
        h = Tensor.maxPool2d(Tensor.conv2d(h, weight: p[2], bias: p[3], padding: (1, 1)).relu(), kernel: (2, 2)).flattened()
        h = Tensor.linear(Tensor.linear(h, weight: p[4], bias: p[5]).relu(), weight: p[6], bias: p[7])
        let loss = Tensor.crossEntropy(logits: h, labels: labels)
        loss.backward()
        for parameter in p {
            let grad = parameter.grad!
            parameter.withUnsafeMutableBufferPointer { w in
                grad.withUnsafeBufferPointer { g in for i in 0..<w.count { w[i] -= 0.01 * g[i] } }
            }
            parameter.zeroGrad()
        }
        return loss.item
    }
}

let options = parseOptions()
Compute.threadCount = options.threads
Compute.flushDenormals = options.flushDenormals
Compute.keepFreedMemory() // as the distill command does
if !options.kernelPath.isEmpty {
    guard let path = KernelPath.allCases.first(where: { $0.description == options.kernelPath && $0.isSupported }) else {
        FileHandle.standardError.write("DistillBench: --kernel-path must be a path this CPU executes: \(KernelPath.allCases.filter(\.isSupported).map(\.description))\n".data(using: .utf8)!)
        exit(2)
    }
    Compute.forceKernelPath(path)
}
fusedInference = !options.unfused
if !options.convolutionPath.isEmpty {
    guard let path = ConvolutionPath(rawValue: options.convolutionPath), path.isSupported else {
        FileHandle.standardError.write("DistillBench: --convolution-path must be one this build has: \(ConvolutionPath.allCases.filter(\.isSupported).map(\.rawValue))\n".data(using: .utf8)!)
        exit(2)
    }
    Compute.convolutionPath = path
}
if !options.matmulPrecision.isEmpty {
    guard let precision = MatmulPrecision(rawValue: options.matmulPrecision), precision.isSupported else {
        FileHandle.standardError.write("DistillBench: --matmul-precision must be one this CPU has: \(MatmulPrecision.allCases.filter(\.isSupported).map(\.rawValue))\n".data(using: .utf8)!)
        exit(2)
    }
    Compute.matmulPrecision = precision
}

if options.smoke {
    for name in ["sgemm", "int8-gemm", "int8-gemm-mlp", "int8-infer-cnn-student", "conv", "cnn", "denormal", "train-cnn-teacher", "train-mlp", "infer-cnn-student", "distill-epoch",
                 "distill-epoch-cold", "train-resnet20-c3", "train-wrn-16-2-c1", "train-mobilenetv2-c3", "infer-mobilenetv2-c1"] {
        guard let workload = makeWorkload(name, small: true) else {
            FileHandle.standardError.write("DistillBench smoke: case \(name) could not be prepared\n".data(using: .utf8)!)
            exit(1)
        }
        let value = workload.step()
        guard value.isFinite else {
            FileHandle.standardError.write("DistillBench smoke: case \(name) produced \(value)\n".data(using: .utf8)!)
            exit(1)
        }
        print("smoke \(name): ok")
    }
    epochSizeCase(small: true)
    let onnx = FileManager.default.temporaryDirectory.appendingPathComponent("distill-bench-smoke-\(getpid()).onnx").path
    // Removed by hand: exit ends the process without running a defer.
    do {
        try exportONNX("infer-resnet20-c3", to: onnx)
        try exportONNX("int8-infer-resnet8", to: onnx)
    } catch {
        try? FileManager.default.removeItem(atPath: onnx)
        FileHandle.standardError.write("DistillBench smoke: ONNX export failed: \(error)\n".data(using: .utf8)!)
        exit(1)
    }
    try? FileManager.default.removeItem(atPath: onnx)
    print("smoke export-onnx: ok")
    exit(0)
}

/// The int8 model of case `int8-infer-MODEL[-cC]`: the zoo model with seed-0 weights (as
/// infer-MODEL times it in float), quantized on 64 random inputs (seed 2); and its example shape.
func quantizedCase(_ name: String) -> (QuantizedModel, [Int])? {
    guard name.hasPrefix("int8-infer-"), let spec = ModelCase(String(name.dropFirst(5)), batch: 1), let model = spec.make() else { return nil }
    model.eval()
    var generator = RandomGenerator(seed: 2)
    let shape = spec.options.exampleShape
    guard let quantized = try? Quantizer.quantize(model, calibration: Tensor.randomNormal(Shape([64] + shape), using: &generator)) else { return nil }
    return (quantized, shape)
}

/// Writes the model of case `name` (seed 0, as timed) as ONNX to `path`; an int8-infer-*
/// case's int8 model in QDQ form.
func exportONNX(_ name: String, to path: String) throws {
    if name.hasPrefix("int8-infer-") {
        guard let (quantized, _) = quantizedCase(name) else { throw ModelFormatError(file: path, "no int8 model for case '\(name)'") }
        return try ONNXExport.quantized(quantized).write(to: path)
    }
    guard let spec = ModelCase(name, batch: 1), let model = spec.make() else {
        throw ModelFormatError(file: path, "no zoo model for case '\(name)'")
    }
    model.eval()
    try ONNXExport.model(model, inputShape: spec.options.exampleShape).write(to: path)
}

if !options.exportPath.isEmpty {
    do { try exportONNX(options.caseName, to: options.exportPath) } catch {
        FileHandle.standardError.write("DistillBench: \(error)\n".data(using: .utf8)!)
        exit(1)
    }
    exit(0)
}

switch options.caseName {
case "idle":
    print("{\"case\": \"idle\", \"seconds\": [], \"peak_rss\": \(peakResidentBytes())}")
    exit(0)
case "epoch-size":
    epochSizeCase(small: false)
    exit(0)
case "memory-steps":
    memoryStepsCase(steps: options.iterations, batch: options.batch)
    exit(0)
case "stream-epoch", "stream-train":
    do {
        if options.caseName == "stream-epoch" { try streamEpochCase(folder: options.folder, iterations: options.iterations) }
        else { try streamTrainCase(folder: options.folder, steps: options.iterations) }
    } catch {
        FileHandle.standardError.write("DistillBench: \(error)\n".data(using: .utf8)!)
        exit(1)
    }
    exit(0)
default: break
}

guard let workload = makeWorkload(options.caseName, small: false, batch: options.batch) else {
    FileHandle.standardError.write("DistillBench: unknown --case '\(options.caseName)' (sgemm, conv, cnn, denormal, loader, tokenize, train-NAME, infer-NAME, distill-epoch, epoch-size, memory-steps, stream-epoch, stream-train)\n".data(using: .utf8)!)
    exit(2)
}
_ = workload.warmup()  // first-touch page faults, BLAS thread start
var seconds: [Double] = []
for _ in 0..<options.iterations {
    let start = DispatchTime.now().uptimeNanoseconds
    _ = workload.step()
    seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(workload.callsPerStep))
}
let peak = options.reportPeakMemory ? ", \"peak_rss\": \(peakResidentBytes())" : ""
let parameters = parameterCount(options.caseName, batch: options.batch).map { ", \"parameters\": \($0)" } ?? ""
let preparation = preparationSeconds.map { ", \"prepare_seconds\": \($0)" } ?? ""
print("{\"case\": \"\(options.caseName)\", \"seconds\": [\(seconds.map { String($0) }.joined(separator: ", "))]\(peak)\(parameters)\(preparation)}")
