import Tensors

/// Batch normalisation over axis 1 of [N, C] (BatchNorm1d) or [N, C, H, W] (BatchNorm2d).
/// Buffers `running_mean`, `running_var` and `num_batches_tracked`, as in PyTorch.
public final class BatchNorm: Module {
    public let weight: Tensor
    public let bias: Tensor
    public let runningMean: Tensor
    public let runningVariance: Tensor
    /// Counted like PyTorch's (a float here, as every tensor is); kept for state-dict parity.
    public let batchesTracked: Tensor
    public let momentum: Float
    public let epsilon: Float
    public let state = ModuleState()
    /// Set by data-parallel training (synchronised batch norm): training normalises with the
    /// statistics of the global batch, summed over these processes. Nil: this process's batch.
    public var synchronization: (any Communicator)?
    /// Set (to []) by deterministic data-parallel training: a training forward then leaves
    /// the running statistics alone and appends its update here — momentum × the batch mean,
    /// then momentum × the unbiased batch variance, per channel — for `replay` to apply in
    /// the order of the parts of the global batch, whichever process computed them.
    public var deferredStatistics: [[Float]]?

    public init(_ features: Int, momentum: Float = 0.1, epsilon: Float = 1e-5) {
        weight = constantParameter([features], 1)
        bias = constantParameter([features], 0)
        runningMean = Tensor.zeros([features])
        runningVariance = Tensor.ones([features])
        batchesTracked = Tensor.zeros([])
        self.momentum = momentum
        self.epsilon = epsilon
    }

    public func forward(_ input: Tensor) -> Tensor { forward(input, activation: .none) }

    /// activation(self(input)) in one op (`Tensor.batchNorm(…, activation:)`) when nothing
    /// observes or rewrites this module's output (a tap, quantization-aware training's
    /// transforms) and `fusesActivations` is on; otherwise the two ops one after the other.
    public func callAsFunction(_ input: Tensor, then activation: FusedActivation) -> Tensor {
        guard activation != .none, Self.fusesActivations, state.tap == nil, state.inputTransform == nil, state.outputTransform == nil else {
            return activation.applied(to: self(input))
        }
        return forward(input, activation: activation)
    }

    /// Whether `callAsFunction(_:then:)` fuses (A/B benchmarks and tests turn it off).
    nonisolated(unsafe) public static var fusesActivations = true

    private func forward(_ input: Tensor, activation: FusedActivation) -> Tensor {
        let useBatch = state.isTraining && !state.freezesStatistics
        if useBatch, deferredStatistics != nil {
            // Running statistics that start at zero receive exactly the update's terms:
            // (1 − m)·0 + m·μ is m·μ, the value `replay` adds.
            let c = runningMean.count
            let mean = Tensor.zeros([c]), variance = Tensor.zeros([c])
            let output = Tensor.batchNorm(input, runningMean: mean, runningVariance: variance, weight: weight, bias: bias,
                                          training: true, momentum: momentum, epsilon: epsilon, activation: activation)
            deferredStatistics!.append(mean.scalars + variance.scalars)
            return output
        }
        if useBatch {
            batchesTracked.withUnsafeMutableBufferPointer { $0[0] += 1 }
        }
        let synchronize = synchronization.flatMap { communicator -> ((UnsafeMutableBufferPointer<Double>) -> Void)? in
            communicator.isDistributed ? { communicator.allReduceSum($0) } : nil
        }
        return Tensor.batchNorm(input, runningMean: runningMean, runningVariance: runningVariance, weight: weight, bias: bias,
                                training: useBatch, momentum: momentum, epsilon: epsilon, synchronize: synchronize, activation: activation)
    }

    /// Applies updates recorded in `deferredStatistics` (`count` values each, 2 × channels),
    /// in order, with the arithmetic a training forward uses, and counts them as batches.
    public func replay(_ updates: UnsafeBufferPointer<Float>, count: Int) {
        let c = runningMean.count
        let rm = runningMean.storage.pointer, rv = runningVariance.storage.pointer
        var offset = 0
        while offset + 2 * c <= min(count, updates.count) {
            for ch in 0..<c {
                rm[ch] = (1 - momentum) * rm[ch] + updates[offset + ch]
                rv[ch] = (1 - momentum) * rv[ch] + updates[offset + c + ch]
            }
            batchesTracked.withUnsafeMutableBufferPointer { $0[0] += 1 }
            offset += 2 * c
        }
    }

    public var localParameters: [(name: String, tensor: Tensor)] { [("weight", weight), ("bias", bias)] }
    public var localBuffers: [(name: String, tensor: Tensor)] {
        [("running_mean", runningMean), ("running_var", runningVariance), ("num_batches_tracked", batchesTracked)]
    }
}

/// Layer normalisation over the trailing `normalizedShape` axes, with learned γ and β.
public final class LayerNorm: Module {
    public let weight: Tensor
    public let bias: Tensor
    public let normalizedShape: Shape
    public let epsilon: Float
    public let state = ModuleState()

    public init(_ normalizedShape: Shape, epsilon: Float = 1e-5) {
        self.normalizedShape = normalizedShape
        self.epsilon = epsilon
        weight = constantParameter(normalizedShape, 1)
        bias = constantParameter(normalizedShape, 0)
    }

    public func forward(_ input: Tensor) -> Tensor {
        Tensor.layerNorm(input, normalizedShape: normalizedShape, weight: weight, bias: bias, epsilon: epsilon)
    }

    public var localParameters: [(name: String, tensor: Tensor)] { [("weight", weight), ("bias", bias)] }
}

/// Inverted dropout with its own seeded generator (saved with the training state, so a
/// resumed run drops the same units).
public final class Dropout: Module {
    public let probability: Float
    public var generator: RandomGenerator
    public let state = ModuleState()

    public init(probability: Float, using generator: inout RandomGenerator) {
        require(probability >= 0 && probability < 1, "Dropout: probability \(probability) must be in [0, 1)")
        self.probability = probability
        self.generator = RandomGenerator(seed: generator.next())
    }

    public func forward(_ input: Tensor) -> Tensor {
        input.dropout(probability: probability, training: state.isTraining, using: &generator)
    }
}
