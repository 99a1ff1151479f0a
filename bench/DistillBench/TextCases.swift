import Foundation
import ModelFormats
import NeuralNet
import Tensors
import Training

// Text encoder cases (bench/peers/text_peer.py times the same forward pass in PyTorch
// `transformers`, eager attention):
//
//   infer-minilm   the all-MiniLM-L6-v2 teacher's forward pass and mean pooling, no
//                  gradients, on --batch sequences (default 128; the figure is 32) of
//                  128 token ids drawn with seed 0 from 1000..<30000, no padding. The teacher
//                  comes from ${XDG_CACHE_HOME:-~/.cache}/distill/all-minilm-l6-v2-0.1.2
//                  (scripts/fetch-minilm.sh).
//   infer-text-bag, infer-text-transformer
//                  the zoo's text students (seed-0 weights: the speed does not depend on
//                  them) on the same ids, as `distill distill` builds them for MiniLM: text-bag
//                  with 256-value token vectors and a map to 384; text-transformer with 3
//                  layers of MiniLM's width (384, 12 heads); infer-text-transformer-lN with N
//                  layers (1 to 12), and infer-text-transformer-lN-fM with feed-forward blocks M
//                  wide (1 to 16384; default 1536, MiniLM's). A name ending in -int8 (such as
//                  infer-text-transformer-l2-f192-int8) runs the student dynamically quantized
//                  (DynamicQuantization, as `distill quantize` makes it) on the kernel path in
//                  use (--kernel-path); infer-minilm-int8 is the teacher so quantized. No peer:
//                  compare with infer-minilm.
//   train-text-transformer-lN[-fM]
//                  one training step of that student as `distill distill --method embedding`
//                  takes it (forward pass, mean pooling, 1 − cosine with fixed targets, backward
//                  pass, Adam's update) on the same ids; with --matmul-precision bfloat16 for
//                  the bfloat16 products. Peer: bench/peers/text_peer.py --case train-text-transformer-lN.

let textSequenceLength = 128

/// The ids both sides run: a fixed linear-congruential stream, so the peer makes the same ones.
func textBenchIds(batch: Int, length: Int) -> [Int] {
    var state: UInt64 = 0
    return (0..<batch * length).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return 1000 + Int((state >> 33) % 29000)
    }
}

func makeTextWorkload(_ given: String, batch: Int, small: Bool) -> Workload? {
    // infer-text-transformer-lN[-fM][-int8]: the same student with N layers (1 to 12) instead of 3,
    // feed-forward blocks M wide, and in int8.
    let int8 = given.hasSuffix("-int8")
    let name = int8 ? String(given.dropLast("-int8".count)) : given
    let training = name.hasPrefix("train-text-transformer-l")
    if training && int8 { return nil }
    var layers = 3, feedForward: Int? = nil, base = training ? "infer" + name.dropFirst("train".count) : name
    if base.hasPrefix("infer-text-transformer-l") {
        let parts = base.dropFirst("infer-text-transformer-l".count).split(separator: "-f", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let n = Int(parts[0]), (1...12).contains(n) else { return nil }
        if parts.count == 2 {
            guard let m = Int(parts[1]), (1...16_384).contains(m) else { return nil }
            feedForward = m
        }
        layers = n
        base = "infer-text-transformer"
    }
    guard ["infer-minilm", "infer-text-bag", "infer-text-transformer"].contains(base) else { return nil }
    let length = small ? 16 : textSequenceLength
    let tokens = TokenBatch(ids: textBenchIds(batch: batch, length: length), batchSize: batch, length: length)
    if base == "infer-text-bag" || base == "infer-text-transformer" {
        var generator = RandomGenerator(seed: 0)
        let options = ModelOptions.text(vocabularySize: 30_522, paddingId: 0, outputs: 384, hidden: base == "infer-text-bag" ? 256 : 384,
                                        layers: layers, heads: 12, maxTokens: 512, feedForward: feedForward)
        let model = try! ModelZoo.make(String(base.dropFirst("infer-".count)), options: options, using: &generator)
        let packed = tokens.packed()
        if training {
            let targets = Tensor.randomNormal([batch, 384], using: &generator)
            let optimizer = Adam([ParameterGroup(parameters: model.parameters, learningRate: 1e-4)])
            model.train()
            return Workload {
                optimizer.zeroGrad()
                let y = model(packed)
                let cosine = (y * targets).sum(alongAxes: [1]) / ((y * y).sum(alongAxes: [1]).sqrt() * (targets * targets).sum(alongAxes: [1]).sqrt())
                let loss = (1 - cosine).mean()
                loss.backward()
                optimizer.step()
                return loss.item
            }
        }
        model.eval()
        if int8 { DynamicQuantization.quantize(model) }
        return Workload { withoutGradients { model(packed).sum().item } }
    }
    let cache = ProcessInfo.processInfo.environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache")
    let folder = cache + "/distill/all-minilm-l6-v2-0.1.2"
    let encoder: SentenceEncoder
    do { encoder = try HuggingFaceBERT.sentenceEncoder(folder: folder) } catch {
        FileHandle.standardError.write("DistillBench: infer-minilm needs the teacher (scripts/fetch-minilm.sh): \(error)\n".data(using: .utf8)!)
        exit(2)
    }
    if int8 { DynamicQuantization.quantize(encoder) }
    return Workload {
        withoutGradients { (try? encoder.embed(tokens))?.sum().item ?? .nan }
    }
}
