import Tensors

extension Module {
    /// The model's logits for `inputs` [N, ...] in evaluation mode, recording nothing, in
    /// batches of `batchSize`. Each module's train or eval mode is put back afterwards.
    public func predictions(_ inputs: Tensor, batchSize: Int = 1000) -> Tensor {
        inEvaluationMode { batched(inputs, batchSize) { self($0) } }
    }

    /// The outputs of the submodule `output` (one head of a multi-head model) for `inputs`,
    /// as `predictions(_:batchSize:)` gives the logits; throws when there is no such module.
    public func predictions(_ inputs: Tensor, output: String, batchSize: Int = 1000) throws -> Tensor {
        guard module(named: output) != nil else {
            throw ModuleError.noSuchModule(output, available: namedModules().map(\.name).filter { !$0.isEmpty })
        }
        return inEvaluationMode { batched(inputs, batchSize) { try! forward($0, capturing: [output]).features[output]! } }
    }

    /// Runs `body` with every module in evaluation mode and no gradients recorded, then puts
    /// each module's mode back.
    func inEvaluationMode<R>(_ body: () throws -> R) rethrows -> R {
        let modules = namedModules()
        let modes = modules.map { $0.module.state.isTraining }
        eval()
        defer { for ((_, module), mode) in zip(modules, modes) { module.state.isTraining = mode } }
        return try withoutGradients(body)
    }

    private func batched(_ inputs: Tensor, _ batchSize: Int, _ body: (Tensor) -> Tensor) -> Tensor {
        let count = inputs.shape[0], size = max(batchSize, 1)
        return Tensor.concatenating(stride(from: 0, to: count, by: size).map { body(inputs.sliced(alongAxis: 0, $0..<min($0 + size, count))) },
                                    alongAxis: 0)
    }
}
