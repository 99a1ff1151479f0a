import Foundation
import NeuralNet
import Tensors

/// d KL / d input = −t/N (t from log-probabilities when `targetIsLog`).
private struct KLInputGradient: UnaryFunction {
    let scale: Float, targetIsLog: Bool
    func callAsFunction(_ t: Float) -> Float { -(targetIsLog ? Foundation.exp(t) : t) * scale }
}
/// d KL / d t = (log t + 1 − input)/N, 0 where t = 0; for log targets e^{lt}(lt + 1 − input)/N.
private struct KLTargetGradient: BinaryFunction {
    let scale: Float, targetIsLog: Bool
    func callAsFunction(_ t: Float, _ x: Float) -> Float {
        if targetIsLog { return Foundation.exp(t) * (t + 1 - x) * scale }
        return t > 0 ? (Foundation.log(t) + 1 - x) * scale : 0
    }
}
/// 0.5·d²/β where |d| < β, |d| − 0.5·β elsewhere.
private struct SmoothL1: UnaryFunction {
    let beta: Float
    func callAsFunction(_ v: Float) -> Float { Swift.abs(v) < beta ? 0.5 * v * v / beta : Swift.abs(v) - 0.5 * beta }
}
/// d/dd = d/β inside, sign(d) outside.
private struct SmoothL1Gradient: BinaryFunction {
    let beta: Float
    func callAsFunction(_ g: Float, _ v: Float) -> Float { Swift.abs(v) < beta ? g * v / beta : (v > 0 ? g : -g) }
}

// Losses and similarity functions, as Tensor extensions beside the layers they train.
// Losses reduce to a scalar mean over the batch unless their doc says otherwise. The fused
// ones (KL divergence, smooth L1, pairwise distances) record their own backward rule with
// `recorded`, as the engine's ops do; the rest are composed from differentiable ops.

extension Tensor {
    /// Cross-entropy of logits [N, C] against integer labels, mean over N. With label smoothing ε
    /// the target is (1 − ε)·onehot + ε/C (PyTorch's definition).
    ///
    /// With `classWeights` w [C] (non-negative, finite) the mean is weighted by the label's
    /// weight, as PyTorch's `CrossEntropyLoss(weight: w)`:
    /// Σᵢ w[yᵢ]·ceᵢ / Σᵢ w[yᵢ], and with label smoothing
    /// [(1 − ε)·Σᵢ w[yᵢ]·(−log pᵢ,yᵢ) + (ε/C)·Σᵢ Σ_c w_c·(−log pᵢ,c)] / Σᵢ w[yᵢ].
    /// Without weights every w is 1 and both reduce to the plain mean. A batch whose labels
    /// all weigh 0 gives NaN, as in PyTorch.
    public static func crossEntropy(logits: Tensor, labels: [Int], labelSmoothing: Float = 0, classWeights: [Float]? = nil) -> Tensor {
        require(logits.rank == 2 && logits.shape[0] == labels.count,
                     "crossEntropy: logits \(logits.shape) do not fit \(labels.count) labels")
        require(labelSmoothing >= 0 && labelSmoothing <= 1, "crossEntropy: label smoothing \(labelSmoothing) is outside [0, 1]")
        let (n, classes) = (labels.count, logits.shape[1])
        let weights = classWeights ?? [Float](repeating: 1, count: classes)
        require(weights.count == classes, "crossEntropy: \(weights.count) class weights for logits \(logits.shape)")
        require(weights.allSatisfy { $0 >= 0 && $0.isFinite }, "crossEntropy: class weights must be finite and ≥ 0, got \(weights)")
        require(labels.allSatisfy { (0..<classes).contains($0) }, "crossEntropy: labels must lie in 0..<\(classes)")
        // The weighted target t[i][c] = (1 − ε)·w[yᵢ]·onehot + (ε/C)·w_c, scaled by N / Σᵢ w[yᵢ] so
        // that the mean over N below is the weighted mean (the scale is exactly 1 without weights).
        let scale = Float(n) / labels.reduce(0) { $0 + weights[$1] }
        var target = [Float](repeating: 0, count: n * classes)
        for (i, label) in labels.enumerated() {
            for c in 0..<classes { target[i * classes + c] = labelSmoothing / Float(classes) * weights[c] }
            target[i * classes + label] += (1 - labelSmoothing) * weights[label]
            for c in 0..<classes { target[i * classes + c] *= scale }
        }
        return crossEntropy(logits: logits, targetProbabilities: Tensor(target, shape: logits.shape))
    }

    /// Cross-entropy against a target distribution [N, C]: −(1/N) Σ t·log softmax(x).
    public static func crossEntropy(logits: Tensor, targetProbabilities target: Tensor) -> Tensor {
        require(logits.shape == target.shape && logits.rank == 2,
                     "crossEntropy: logits \(logits.shape) and targets \(target.shape) must both be [N, C]")
        return -(target * logits.logSoftmax(alongAxis: 1)).sum() / Float(logits.shape[0])
    }

    /// KL(target ‖ input) summed and divided by the batch size (PyTorch's `reduction="batchmean"`),
    /// with `logProbabilities` the input's log-probabilities and `target` probabilities:
    /// (1/N) Σ t·(log t − input). Terms with t = 0 contribute 0 (no −∞·0 NaN).
    /// With `targetIsLog`, target holds log-probabilities instead.
    public static func klDivergence(logProbabilities input: Tensor, target: Tensor, targetIsLog: Bool = false) -> Tensor {
        require(input.shape == target.shape && input.rank >= 1,
                     "klDivergence: input \(input.shape) and target \(target.shape) differ")
        let batch = Float(input.shape[0])
        let pi = input.storage.pointer, pt = target.storage.pointer
        var total: Double = 0
        for i in 0..<input.count {
            let (t, logT) = targetIsLog ? (Foundation.exp(pt[i]), pt[i]) : (pt[i], pt[i] > 0 ? Foundation.log(pt[i]) : 0)
            if t > 0 { total += Double(t * (logT - pi[i])) }
        }
        let out = Tensor(scalar: Float(total) / batch)
        return out.recorded("klDivergence", [input, target]) { g in
            let scale = g.item / batch
            let gi = input.needsGrad ? ElementwiseKernels.map(target, KLInputGradient(scale: scale, targetIsLog: targetIsLog)) : nil
            let gt = target.needsGrad
                ? ElementwiseKernels.zip(target, input, KLTargetGradient(scale: scale, targetIsLog: targetIsLog))
                : nil
            return [gi, gt]
        }
    }

    /// Mean squared error, mean over all elements.
    public static func meanSquaredError(_ prediction: Tensor, _ target: Tensor) -> Tensor {
        require(prediction.shape == target.shape, "meanSquaredError: shapes \(prediction.shape) and \(target.shape) differ")
        let difference = prediction - target
        return (difference * difference).mean()
    }

    /// Smooth L1 (Huber with β): 0.5·d²/β where |d| < β, |d| − 0.5·β elsewhere; mean over all elements.
    public static func smoothL1(_ prediction: Tensor, _ target: Tensor, beta: Float = 1) -> Tensor {
        require(prediction.shape == target.shape, "smoothL1: shapes \(prediction.shape) and \(target.shape) differ")
        require(beta > 0, "smoothL1: beta \(beta) must be positive")
        let d = prediction - target
        let loss = ElementwiseKernels.map(d, SmoothL1(beta: beta))
            .recorded("smoothL1", [d]) { g in
                [ElementwiseKernels.zip(g, d, SmoothL1Gradient(beta: beta))]
            }
        return loss.mean()
    }

    /// Cosine similarity along `axis`: a·b / max(‖a‖·‖b‖, ε) (PyTorch's definition).
    public static func cosineSimilarity(_ a: Tensor, _ b: Tensor, alongAxis axis: Int = 1, epsilon: Float = 1e-8) -> Tensor {
        let dot = (a * b).sum(alongAxis: axis)
        let norms = a.norm(alongAxes: [axis]) * b.norm(alongAxes: [axis])
        return dot / norms.maximum(Tensor(scalar: epsilon))
    }

    /// Euclidean distances between the rows of x [N, D] and y [M, D]: [N, M] (`torch.cdist`).
    /// The gradient at zero distance is 0.
    public static func pairwiseDistances(_ x: Tensor, _ y: Tensor) -> Tensor {
        require(x.rank == 2 && y.rank == 2 && x.shape[1] == y.shape[1],
                     "pairwiseDistances: needs [N, D] and [M, D], got \(x.shape) and \(y.shape)")
        let (n, m, d) = (x.shape[0], y.shape[0], x.shape[1])
        let out = Tensor.zeros([n, m])
        let px = x.storage.pointer, py = y.storage.pointer, po = out.storage.pointer
        // Direct differences rather than ‖x‖² + ‖y‖² − 2x·y: no cancellation for close points.
        Compute.parallelFor(n, costPerItem: m * d) { rows in
            for i in rows {
                for j in 0..<m {
                    var total: Float = 0
                    for k in 0..<d { let v = px[i * d + k] - py[j * d + k]; total += v * v }
                    po[i * m + j] = total.squareRoot()
                }
            }
        }
        let distances = out.detached()
        return out.recorded("pairwiseDistances", [x, y]) { g in
            // d dᵢⱼ / d xᵢ = (xᵢ − yⱼ)/dᵢⱼ ; d dᵢⱼ / d yⱼ = −(xᵢ − yⱼ)/dᵢⱼ
            let weights = ElementwiseKernels.zip(g, distances, SafeDivide())
            let rowSums = weights.sum(alongAxis: 1, keepDims: true)   // [N, 1]
            let colSums = weights.sum(alongAxis: 0).reshaped([m, 1])  // [M, 1]
            let gx = x.needsGrad ? x * rowSums - weights.matmul(y) : nil
            let gy = y.needsGrad ? y * colSums - weights.transposed().matmul(x) : nil
            return [gx, gy]
        }
    }
}
