import NeuralNet
import Tensors

/// Quantization-aware training of a float model the `Quantizer` takes (chains, the zoo's
/// residual networks, depthwise convolutions, layers that stay float): while attached, every
/// forward pass computes what the int8 model will: the input and every value the int8 model
/// requantizes fake-quantized to uint8 per tensor, the convolutions' and linear layers'
/// weights to int8 per output channel. Train the model as usual (any loss, a teacher's included), then `convert()`:
/// the int8 model gets exactly the ranges training ended with.
///
/// Batch norm: its running statistics are frozen at attach time (those of the trained float
/// model, in use in training mode too; γ and β still train), and the weights are
/// fake-quantized before it. That is exact, not an approximation of folding: per-channel
/// symmetric quantization commutes with a per-channel scale (scale_j and the rounded
/// integers of w·s_j are |s_j| times and equal to those of w), so the folded int8 weights are
/// the fake-quantized ones times γ/√(var + ε). Frozen statistics keep the fold the model
/// trains against the one it gets (PyTorch's QAT recipes freeze them after a few epochs for
/// the same reason; a short fine-tune of a trained student needs no warm-up of its own).
///
/// Activation ranges: a running minimum and maximum of every training batch until
/// `freezeRanges()` (min–max calibration on the training data as it flows), fixed after.
/// Evaluation passes quantize with the current ranges and never move them.
public final class QuantizationAwareTraining {
    public let model: any Module
    let stages: [Quantizer.Stage]
    let input: ActivationFakeQuantizer
    /// The observed module of every value the int8 model requantizes (all but the last
    /// layer's, whose float logits the int8 model keeps).
    let outputs: [(name: String, quantizer: ActivationFakeQuantizer)]
    var hooked: [any Module]
    var frozenNorms: [(BatchNorm, Bool)]

    /// Attaches fake quantization to `model`: everything the post-training quantizer takes
    /// (chains, the zoo's residual networks, depthwise convolutions, layers that stay float);
    /// throws, naming the problem, for a model with nothing to quantize.
    public init(_ model: any Module) throws {
        let stages = try Quantizer.plan(model)
        func named(_ path: String) -> any Module { model.module(named: path)! }  // plan() found them
        var hooked: [any Module] = [], frozenNorms: [(BatchNorm, Bool)] = []

        // Every convolution and linear layer computes with fake-quantized weights; batch
        // norm's statistics are frozen.
        func weights(_ stages: [Quantizer.Stage]) -> [(layer: any Module, norm: BatchNorm?)] {
            stages.flatMap { stage -> [(layer: any Module, norm: BatchNorm?)] in
                switch stage {
                case let .conv(conv, norm, _, _, _): return [(conv, norm)]
                case let .linear(linear, _, _, _): return [(linear, nil)]
                case let .residual(main, shortcut, _, _): return weights(main) + weights(shortcut)
                default: return []
                }
            }
        }
        for (layer, norm) in weights(stages) {
            layer.state.weightTransform = { $0.fakeQuantizedPerChannel() }
            hooked.append(layer)
            if let norm {
                frozenNorms.append((norm, norm.state.freezesStatistics))
                norm.state.freezesStatistics = true
            }
        }
        // Every value the int8 model requantizes is fake-quantized where the quantizer observes
        // it, except the last layer's (the int8 model's logits stay float). A tap behind an
        // inline ReLU observes the activated values and fake-quantizes the module's output on
        // their grid, whose floor is 0: the same values once the ReLU follows.
        let last = stages.lastIndex { if case .maxPool = $0 { return false }; if case .flatten = $0 { return false }; return true }
        let lastTap = last.flatMap { Quantizer.taps([stages[$0]]).last }
        var seen = Set<String>(), outputs: [(name: String, quantizer: ActivationFakeQuantizer)] = []
        for tap in Quantizer.taps(stages) where tap != lastTap && !seen.contains(tap.module) {
            seen.insert(tap.module)
            let quantizer = ActivationFakeQuantizer(), module = named(tap.module), activation = tap.activation
            module.state.outputTransform = { [module] x in quantizer(x, observing: module.isTraining, through: activation) }
            hooked.append(module)
            outputs.append((tap.module, quantizer))
        }
        let input = ActivationFakeQuantizer()
        model.state.inputTransform = { [model] x in input(x, observing: model.isTraining) }
        hooked.append(model)
        (self.model, self.stages, self.input, self.outputs, self.hooked, self.frozenNorms) = (model, stages, input, outputs, hooked, frozenNorms)
    }

    /// The observed ranges as buffers of a module (`input`, then each observed module's path
    /// with `_` for `.`): give it to the trainer's checkpoints (`Trainer.keepInCheckpoints`)
    /// so that a resumed run goes on with the ranges it had.
    public var state: any Module { RangeBuffers(buffers: [("input", input.range)] + outputs.map { ($0.name.replacingOccurrences(of: ".", with: "_"), $0.quantizer.range) }) }

    /// Data-parallel runs: every process takes the lowest low and the highest high that any
    /// process observed so far, so that all of them fake-quantize alike (call it at the same
    /// point of the same step in every process; nothing happens in a world of one).
    public func agreeOnRanges(over communicator: any Communicator) {
        guard communicator.isDistributed else { return }
        let quantizers = [input] + outputs.map(\.quantizer)
        let mine = quantizers.flatMap { [$0.low, $0.high] }
        let everyone = communicator.allGather(mine.withUnsafeBytes { Array($0) }).map { bytes in
            bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        for (i, quantizer) in quantizers.enumerated() {
            let lows = everyone.map { $0.count == mine.count ? $0[2 * i] : .infinity }
            let highs = everyone.map { $0.count == mine.count ? $0[2 * i + 1] : -.infinity }
            quantizer.range.storage.pointer[0] = lows.min()!
            quantizer.range.storage.pointer[1] = highs.max()!
        }
    }

    /// Whether `freezeRanges()` was called (kept in `state`, so true again after a resume).
    public var rangesAreFrozen: Bool { input.isFrozen }

    /// Fixes every activation range from now on (the end of the warm-up).
    public func freezeRanges() {
        input.freeze()
        for (_, quantizer) in outputs { quantizer.freeze() }
    }

    /// The int8 model of the trained weights with the ranges training ended with, for
    /// examples of `exampleShape`. Throws when a range was never observed (no training or
    /// evaluation batch went through yet).
    public func convert(exampleShape: [Int]) throws -> QuantizedModel {
        try Quantizer.quantize(model, exampleShape: exampleShape, ranges: ranges())
    }

    /// The activation ranges observed so far; throws when one was never observed.
    public func ranges() throws -> QuantizationRanges {
        func range(_ quantizer: ActivationFakeQuantizer, _ what: String) throws -> QuantizationParameters {
            guard let p = quantizer.parameters else { throw QuantizationError.invalidCalibration("no finite value of \(what) was seen during training") }
            return p
        }
        var ranges = QuantizationRanges(input: try range(input, "the model's input"))
        for (name, quantizer) in outputs { ranges.outputs[name] = try range(quantizer, "'\(name)'") }
        return ranges
    }

    /// Takes fake quantization off the model and gives batch norm its own statistics back.
    public func detach() {
        for module in hooked {
            module.state.inputTransform = nil
            module.state.outputTransform = nil
            module.state.weightTransform = nil
        }
        for (norm, frozen) in frozenNorms { norm.state.freezesStatistics = frozen }
        hooked = []
        frozenNorms = []
    }
}

/// Tensors kept as buffers and nothing else (the observed ranges in checkpoints).
final class RangeBuffers: Module {
    let buffers: [(name: String, tensor: Tensor)]
    let state = ModuleState()

    init(buffers: [(name: String, tensor: Tensor)]) { self.buffers = buffers }

    func forward(_ input: Tensor) -> Tensor { input }
    var localBuffers: [(name: String, tensor: Tensor)] { buffers }
}
