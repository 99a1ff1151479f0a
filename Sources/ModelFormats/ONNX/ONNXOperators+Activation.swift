import Tensors

extension ONNXOperators {
    // MARK: HardSigmoid, HardSwish, PRelu

    /// max(0, min(1, α·x + β)); ONNX's defaults α = 0.2, β = 0.5 (PyTorch's Hardsigmoid
    /// exports α = 1/6).
    func hardSigmoid() throws -> Tensor {
        let alpha = try float("alpha", 0.2), beta = try float("beta", 0.5)
        guard alpha.isFinite, beta.isFinite else { throw fail("alpha \(alpha) and beta \(beta) should be finite") }
        return ONNXOperators.hardSigmoid(try tensor(0), alpha: alpha, beta: beta)
    }

    static func hardSigmoid(_ x: Tensor, alpha: Float, beta: Float) -> Tensor {
        (x * alpha + beta).clamped(min: 0, max: 1)
    }

    /// x · max(0, min(1, x/6 + ½)).
    func hardSwish() throws -> Tensor {
        let x = try tensor(0)
        return x * ONNXOperators.hardSigmoid(x, alpha: 1 / 6, beta: 0.5)
    }

    /// max(0, x) + slope · min(0, x), the slope broadcast to x (one per channel from
    /// PyTorch's PReLU: [C, 1, 1]). Both x and the slope get gradients.
    func prelu() throws -> Tensor {
        let x = try tensor(0), slope = try tensor(1)
        guard Shape.broadcast(slope.shape, x.shape) == x.shape else { throw fail("slope \(slope.shape) does not broadcast to input \(x.shape)") }
        return x.relu() - slope * (-x).relu()
    }
}
