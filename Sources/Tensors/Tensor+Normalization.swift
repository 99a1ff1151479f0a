import CKernels
import Foundation

// Batch norm, layer norm and dropout, each a fused op with its own backward rule.

extension Tensor {
    /// Batch normalisation over channel axis 1 of [N, C] or [N, C, ...] (Ioffe & Szegedy 2015).
    ///
    /// Training: y = (x − μ_B)/√(σ²_B + ε)·γ + β with batch statistics, and the running
    /// statistics move by `momentum` towards them (running variance unbiased, as PyTorch).
    /// Evaluation: the running statistics replace the batch ones.
    ///
    /// `synchronize` (synchronised batch norm, for data-parallel training) sums per-channel
    /// values over every process in place: training then normalises with the statistics of
    /// the whole global batch, and backward sums Σg and Σg·x̂ over it too, so that the
    /// input's gradient is the one a single process would compute for the global batch (γ's
    /// and β's stay this process's share, summed with the other gradients afterwards).
    ///
    /// `activation` (ReLU or ReLU6) is applied in the same pass, and backward masks the output
    /// gradient inside its own passes: no separate activation op, no pre-activation tensor.
    /// The gradient passes where the output lies strictly inside the activation's range
    /// (y > 0 for ReLU, as `relu()`; 0 < y < 6 for ReLU6, as PyTorch's ReLU6).
    public static func batchNorm(_ x: Tensor, runningMean: Tensor?, runningVariance: Tensor?,
                                 weight: Tensor?, bias: Tensor?, training: Bool,
                                 momentum: Float = 0.1, epsilon: Float = 1e-5,
                                 synchronize: ((UnsafeMutableBufferPointer<Double>) -> Void)? = nil,
                                 activation: FusedActivation = .none) -> Tensor {
        require(x.rank >= 2, "batchNorm: needs [N, C, ...], got \(x.shape)")
        let (n, c) = (x.shape[0], x.shape[1])
        let spatial = x.count / Swift.max(n * c, 1)
        for (name, t) in [("runningMean", runningMean), ("runningVariance", runningVariance), ("weight", weight), ("bias", bias)] {
            if let t { require(t.shape == [c], "batchNorm: \(name) \(t.shape) does not fit \(c) channels of \(x.shape)") }
        }
        var reduced = n * spatial
        var mu = (training ? nil : runningMean?.scalars) ?? [Float](repeating: 0, count: c)
        var invStd = [Float](repeating: 0, count: c)
        let px = x.storage.pointer
        let synchronize = training ? synchronize : nil
        if let synchronize {
            // One round over every process: each sends per channel Σx and Σx² (the latter as
            // Σ(x − a)² + 2a·Σx − n·a² about its own mean a, so without float cancellation)
            // and its count. The global variance is then Σx²/N − μ², in Double: cancellation
            // costs about 1e-16·μ²/σ² of it, nothing for activations. (One exchange instead of
            // two, as PyTorch's SyncBatchNorm combines per-process means and variances.)
            var sums = [Double](repeating: 0, count: 2 * c + 1)
            sums.withUnsafeMutableBufferPointer { s in
                let ps = s.baseAddress!
                Compute.parallelFor(c, costPerItem: reduced * 2) { channels in
                    for ch in channels {
                        var total: Double = 0
                        for i in 0..<n { total += Double(ReductionKernels.sum(px + (i * c + ch) * spatial, spatial)) }
                        let local = Float(total / Double(Swift.max(reduced, 1)))
                        var squares: Double = 0
                        for i in 0..<n {
                            squares += Double(ReductionKernels.sumOfSquaredDeviations(px + (i * c + ch) * spatial, spatial, mean: local))
                        }
                        ps[ch] = total
                        let a = Double(local)
                        ps[c + ch] = squares + 2 * a * total - Double(reduced) * a * a
                    }
                }
                ps[2 * c] = Double(reduced)
                synchronize(s)
            }
            reduced = Int(sums[2 * c])
            require(reduced > 1, "batchNorm: training needs more than one value per channel, got \(x.shape) over every process")
            for ch in 0..<c {
                let mean = sums[ch] / Double(reduced)
                mu[ch] = Float(mean)
                invStd[ch] = Float(Swift.max(sums[c + ch] / Double(reduced) - mean * mean, 0))  // biased variance, for now
            }
        } else if training {
            require(reduced > 1, "batchNorm: training needs more than one value per channel, got \(x.shape)")
            mu.withUnsafeMutableBufferPointer { m in
                invStd.withUnsafeMutableBufferPointer { s in
                    let pm = m.baseAddress!, ps = s.baseAddress!
                    Compute.parallelFor(c, costPerItem: reduced * 2) { channels in
                        for ch in channels {
                            var total: Double = 0
                            for i in 0..<n { total += Double(ReductionKernels.sum(px + (i * c + ch) * spatial, spatial)) }
                            let average = Float(total / Double(reduced))
                            var squares: Double = 0
                            for i in 0..<n {
                                squares += Double(ReductionKernels.sumOfSquaredDeviations(px + (i * c + ch) * spatial, spatial, mean: average))
                            }
                            pm[ch] = average
                            ps[ch] = Float(squares / Double(reduced))  // biased variance, stored here for now
                        }
                    }
                }
            }
        } else {
            require(runningMean != nil && runningVariance != nil, "batchNorm: evaluation needs running statistics")
            for ch in 0..<c { invStd[ch] = 1 / (runningVariance!.storage.pointer[ch] + epsilon).squareRoot() }
        }
        if training {
            // invStd holds the biased batch variance here: the running statistics move towards
            // the batch's (variance unbiased), then it becomes 1/√(σ² + ε).
            if let runningMean, let runningVariance {
                let rm = runningMean.storage.pointer, rv = runningVariance.storage.pointer
                let unbias = Float(reduced) / Float(reduced - 1)
                for ch in 0..<c {
                    rm[ch] = (1 - momentum) * rm[ch] + momentum * mu[ch]
                    rv[ch] = (1 - momentum) * rv[ch] + momentum * invStd[ch] * unbias
                }
            }
            for ch in 0..<c { invStd[ch] = 1 / (invStd[ch] + epsilon).squareRoot() }
        }
        let gamma = weight.map { $0.scalars } ?? [Float](repeating: 1, count: c)
        let beta = bias.map { $0.scalars } ?? [Float](repeating: 0, count: c)
        let out = Tensor(uninitialized: x.shape)
        let po = out.storage.pointer
        let (low, high) = (activation.range.lowerBound, activation.range.upperBound)
        Compute.parallelFor(n * c, costPerItem: spatial) { rows in
            for row in rows {
                let ch = row % c
                let scale = invStd[ch] * gamma[ch], shift = beta[ch] - mu[ch] * scale
                let src = px + row * spatial, dst = po + row * spatial
                if activation == .none {
                    for j in 0..<spatial { dst[j] = src[j] * scale + shift }
                } else {
                    for j in 0..<spatial { dst[j] = Swift.min(Swift.max(src[j] * scale + shift, low), high) }
                }
            }
        }
        let inputs = [x] + [weight, bias].compactMap { $0 }
        let savedMean = mu, savedInvStd = invStd, reducedCount = reduced
        let savedOutput = activation == .none ? nil : out.detached()
        return out.recorded("batchNorm", inputs) { gradient in
            // With an activation: the output gradient masked where the output is clamped, one
            // pass, as the activation's own backward was. (Masking inside the passes below, a row
            // at a time, measured slower: those loops did not vectorise.)
            let g = savedOutput.map { y in ElementwiseKernels.zip(gradient, y, ClampedGradient(low: low, high: high)) } ?? gradient
            let pg = g.storage.pointer
            // Per channel: Σg and Σg·x̂ with x̂ = (x − μ)·r.
            var sumG = [Float](repeating: 0, count: c), sumGXhat = [Float](repeating: 0, count: c)
            sumG.withUnsafeMutableBufferPointer { sg in
                sumGXhat.withUnsafeMutableBufferPointer { sgx in
                    let psg = sg.baseAddress!, psgx = sgx.baseAddress!
                    Compute.parallelFor(c, costPerItem: n * spatial * 2) { channels in
                        for ch in channels {
                            var a: Float = 0, b: Float = 0
                            for i in 0..<n {
                                let (sa, sb) = ReductionKernels.sumAndCenteredDot(pg + (i * c + ch) * spatial, px + (i * c + ch) * spatial,
                                                                                   spatial, mean: savedMean[ch])
                                a += sa
                                b += sb
                            }
                            psg[ch] = a
                            psgx[ch] = b * savedInvStd[ch]
                        }
                    }
                }
            }
            // Synchronised: x's gradient needs the sums over the global batch; γ's and β's keep
            // this process's (they are summed with every other gradient afterwards).
            var sumGForX = sumG, sumGXhatForX = sumGXhat
            if let synchronize {
                var both = (sumG + sumGXhat).map(Double.init)
                both.withUnsafeMutableBufferPointer { synchronize($0) }
                sumGForX = both[0..<c].map(Float.init)
                sumGXhatForX = both[c...].map(Float.init)
            }
            var grads: [Tensor?] = []
            if x.needsGrad {
                let gx = Tensor(uninitialized: x.shape)
                let pgx = gx.storage.pointer
                let m = Float(reducedCount)
                Compute.parallelFor(n * c, costPerItem: spatial) { rows in
                    for row in rows {
                        let ch = row % c
                        let r = savedInvStd[ch], gam = gamma[ch], mean = savedMean[ch]
                        let gr = pg + row * spatial, xr = px + row * spatial, dst = pgx + row * spatial
                        if training {
                            // dx = γr/M · (M·g − Σg − x̂·Σ(g·x̂))
                            let a = gam * r / m, sg = sumGForX[ch], sgx = sumGXhatForX[ch]
                            for j in 0..<spatial { dst[j] = a * (m * gr[j] - sg - (xr[j] - mean) * r * sgx) }
                        } else {
                            for j in 0..<spatial { dst[j] = gr[j] * gam * r }  // dx = g·γ·r
                        }
                    }
                }
                grads.append(gx)
            } else {
                grads.append(nil)
            }
            if let weight { grads.append(weight.needsGrad ? Tensor(sumGXhat, shape: [c]) : nil) }  // dγ = Σ g·x̂
            if let bias { grads.append(bias.needsGrad ? Tensor(sumG, shape: [c]) : nil) }  // dβ = Σ g
            return grads
        }
    }

    /// Layer normalisation over the trailing axes `normalizedShape` (Ba et al. 2016):
    /// y = (x − μ)/√(σ² + ε)·γ + β, with γ and β of `normalizedShape` (or none).
    public static func layerNorm(_ x: Tensor, normalizedShape: Shape, weight: Tensor?, bias: Tensor?,
                                 epsilon: Float = 1e-5) -> Tensor {
        require(normalizedShape.rank >= 1 && normalizedShape.rank <= x.rank
                     && Array(x.shape.dimensions.suffix(normalizedShape.rank)) == normalizedShape.dimensions,
                     "layerNorm: normalized shape \(normalizedShape) is not the trailing axes of \(x.shape)")
        let normalizedCount = normalizedShape.count
        if let weight { require(weight.count == normalizedCount, "layerNorm: weight \(weight.shape) is not of \(normalizedCount) elements") }
        if let bias { require(bias.count == normalizedCount, "layerNorm: bias \(bias.shape) is not of \(normalizedCount) elements") }
        let d = normalizedCount, rows = x.count / d
        var mean = [Float](repeating: 0, count: rows), invStd = [Float](repeating: 0, count: rows)
        let out = Tensor(uninitialized: x.shape)
        let px = x.storage.pointer, po = out.storage.pointer
        let pGamma = weight.map { UnsafePointer($0.storage.pointer) }, pBeta = bias.map { UnsafePointer($0.storage.pointer) }
        mean.withUnsafeMutableBufferPointer { mb in
            invStd.withUnsafeMutableBufferPointer { sb in
                let pm = mb.baseAddress!, ps = sb.baseAddress!
                Compute.parallelFor(rows, costPerItem: d * 3) { range in
                    for row in range {
                        distill_layer_norm_row(d, px + row * d, pGamma, pBeta, epsilon, po + row * d, pm + row, ps + row)
                    }
                }
            }
        }
        let inputs = [x] + [weight, bias].compactMap { $0 }
        return out.recorded("layerNorm", inputs) { g in
            let pg = g.storage.pointer
            var grads: [Tensor?] = []
            if x.needsGrad {
                let gx = Tensor(uninitialized: x.shape)
                let pgx = gx.storage.pointer
                Compute.parallelFor(rows, costPerItem: d * 4) { range in
                    // dx = r/D · (D·ĝ − Σĝ − x̂·Σ(ĝ·x̂)) with ĝ = g·γ
                    for row in range { distill_layer_norm_backward_row(d, pg + row * d, px + row * d, pGamma, mean[row], invStd[row], pgx + row * d) }
                }
                grads.append(gx)
            } else {
                grads.append(nil)
            }
            if weight != nil || bias != nil {
                // dγ = Σ g·x̂ and dβ = Σ g over the rows, the columns split over the threads
                // (each column summed in row order, whatever the thread count).
                var gGamma = [Float](repeating: 0, count: d), gBeta = [Float](repeating: 0, count: d)
                gGamma.withUnsafeMutableBufferPointer { gb in
                    gBeta.withUnsafeMutableBufferPointer { bb in
                        let pgg = gb.baseAddress!, pgb = bb.baseAddress!
                        let blocks = Swift.max(1, Swift.min(Compute.threadCount, d / 64))
                        Compute.parallelFor(blocks, costPerItem: rows * d * 3 / blocks) { range in
                            for block in range {
                                let start = d * block / blocks, end = d * (block + 1) / blocks
                                for row in 0..<rows {
                                    let src = px + row * d, gr = pg + row * d, mu = mean[row], r = invStd[row]
                                    for j in start..<end {
                                        pgg[j] += gr[j] * (src[j] - mu) * r
                                        pgb[j] += gr[j]
                                    }
                                }
                            }
                        }
                    }
                }
                if let weight { grads.append(weight.needsGrad ? Tensor(gGamma, shape: weight.shape) : nil) }
                if let bias { grads.append(bias.needsGrad ? Tensor(gBeta, shape: bias.shape) : nil) }
            }
            return grads
        }
    }

    /// Inverted dropout: each element is zeroed with `probability` and the rest scaled by
    /// 1/(1 − probability), so evaluation needs no rescaling. Identity when not training.
    public func dropout(probability: Float, training: Bool, using generator: inout RandomGenerator) -> Tensor {
        require(probability >= 0 && probability < 1, "dropout: probability \(probability) must be in [0, 1)")
        guard training && probability > 0 else { return self }
        let keep = 1 / (1 - probability)
        let mask = Tensor(uninitialized: shape)
        let pm = mask.storage.pointer
        for i in 0..<count { pm[i] = generator.nextUniform() >= probability ? keep : 0 }
        return self * mask
    }
}

extension Tensor {
    /// x / max(‖x‖₂, ε) along `axis` (PyTorch's `F.normalize`): the text models' embeddings
    /// at inference, and the similarity losses in training.
    public func l2Normalized(alongAxis axis: Int = 1, epsilon: Float = 1e-12) -> Tensor {
        self / norm(alongAxes: [axis], keepDims: true).maximum(Tensor(scalar: epsilon))
    }
}
