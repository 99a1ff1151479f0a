import Foundation
import Tensors
import TestSupport
import XCTest

/// Forward values and gradients of every differentiable op against PyTorch
/// (fixture: scripts/generate_golden_ops.py).
final class GoldenOpsTests: XCTestCase {
    static func loadCases() throws -> [GoldenCase] {
        try GoldenCase.load(URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/ops_golden.json"))
    }

    /// Applies the fixture's op to `x` with its parameters.
    static func apply(_ c: GoldenCase, _ x: [Tensor]) -> Tensor {
        switch c.op {
        case "add": return x[0] + x[1]
        case "subtract": return x[0] - x[1]
        case "multiply": return x[0] * x[1]
        case "divide": return x[0] / x[1]
        case "pow": return x[0].pow(x[1])
        case "powScalar": return x[0].pow(c.float("exponent"))
        case "maximum": return x[0].maximum(x[1])
        case "minimum": return x[0].minimum(x[1])
        case "scalarMix": return (3 - x[0]) * 2 + x[0] / 4 - 1
        case "scalarDivide": return 2 / x[0]
        case "negate": return -x[0]
        case "exp": return x[0].exp()
        case "log": return x[0].log()
        case "sqrt": return x[0].sqrt()
        case "abs": return x[0].abs()
        case "relu": return x[0].relu()
        case "leakyRelu": return x[0].leakyRelu(negativeSlope: c.float("slope"))
        case "gelu": return x[0].gelu()
        case "erf": return x[0].erf()
        case "sigmoid": return x[0].sigmoid()
        case "tanh": return x[0].tanh()
        case "softplus": return x[0].softplus()
        case "clamp": return x[0].clamped(min: c.float("min"), max: c.float("max"))
        case "sum": return x[0].sum(alongAxes: c.axes, keepDims: c.bool("keepDims"))
        case "mean": return x[0].mean(alongAxes: c.axes, keepDims: c.bool("keepDims"))
        case "variance": return x[0].variance(alongAxes: c.axes, correction: c.int("correction"))
        case "maxAxis": return x[0].max(alongAxis: c.int("axis")).values
        case "minAxis": return x[0].min(alongAxis: c.int("axis")).values
        case "amax": return x[0].max(alongAxes: c.axes)
        case "amin": return x[0].min(alongAxes: c.axes, keepDims: c.bool("keepDims"))
        case "logSumExp": return x[0].logSumExp(alongAxes: c.axes)
        case "norm": return x[0].norm(alongAxes: c.axes)
        case "matmul": return x[0].matmul(x[1])
        case "linear": return Tensor.linear(x[0], weight: x[1], bias: x.count > 2 ? x[2] : nil)
        case "softmax": return x[0].softmax(alongAxis: c.int("axis"))
        case "logSoftmax": return x[0].logSoftmax(alongAxis: c.int("axis"))
        case "conv2d":
            return Tensor.conv2d(x[0], weight: x[1], bias: x.count > 2 ? x[2] : nil, stride: c.pair("stride"),
                                 padding: c.pair("padding"), dilation: c.pair("dilation"), groups: c.int("groups"))
        case "maxPool2d":
            return Tensor.maxPool2d(x[0], kernel: c.pair("kernel"), stride: c.pair("stride"), padding: c.pair("padding"),
                                    dilation: c.pair("dilation", default: (1, 1)))
        case "avgPool2d":
            return Tensor.avgPool2d(x[0], kernel: c.pair("kernel"), stride: c.pair("stride"), padding: c.pair("padding"),
                                    countIncludePadding: c.bool("countIncludePadding"))
        case "adaptiveAvgPool2d": return Tensor.adaptiveAvgPool2d(x[0], outputSize: c.pair("size"))
        case "batchNorm":
            // Weight and bias are the second and third inputs when the case has them (affine).
            return Tensor.batchNorm(x[0], runningMean: Tensor(c.floats("runningMean")), runningVariance: Tensor(c.floats("runningVariance")),
                                    weight: x.count > 1 ? x[1] : nil, bias: x.count > 2 ? x[2] : nil, training: c.bool("training"))
        case "layerNorm":
            return Tensor.layerNorm(x[0], normalizedShape: Shape(c.params["normalizedShape"] as! [Int]),
                                    weight: x.count > 1 ? x[1] : nil, bias: x.count > 2 ? x[2] : nil)
        case "reshape": return x[0].reshaped(c.params["shape"] as! [Int])
        case "permute": return x[0].permuted(c.params["axes"] as! [Int])
        case "transpose": return x[0].transposed()
        case "slice": return x[0].sliced(alongAxis: c.int("axis"), c.int("start")..<c.int("end"))
        case "concat": return Tensor.concatenating(x, alongAxis: c.int("axis"))
        case "stack": return Tensor.stacking(x, alongAxis: c.int("axis"))
        case "indexSelect": return x[0].indexSelect(alongAxis: c.int("axis"), indices: c.params["indices"] as! [Int])
        case "select": return Tensor.selecting(x[0], where: x[2], otherwise: x[1])
        case "gather":
            return x[0].gathering(alongAxis: c.int("axis"), indices: c.floats("indices").map { Int($0) },
                                  indexShape: Shape(c.params["indexShape"] as! [Int]))
        case "embedding":
            return try! Tensor.embedding(x[0], indices: c.params["indices"] as! [Int], indexShape: Shape(c.params["indexShape"] as! [Int]))
        case "maskedSoftmax":
            let mask = c.params["mask"] == nil ? nil : Tensor(c.floats("mask"), shape: [x[0].shape[0], x[0].shape[-1]])
            return Tensor.maskedSoftmax(x[0], keyMask: mask, scale: c.float("scale"))
        case "matmulTransposed": return x[0].matmul(x[1], transposingOther: true)
        case "multiHeadAttention":
            let mask = c.params["mask"] == nil ? nil : Tensor(c.floats("mask"), shape: [x[0].shape[0], x[0].shape[1]])
            return Tensor.multiHeadAttention(query: x[0], key: x[1], value: x[2], heads: c.params["heads"] as! Int, keyMask: mask,
                                             scale: c.float("scale"))
        default: preconditionFailure("fixture op \(c.op) has no Swift counterpart")
        }
    }

    func testEveryCaseMatchesPyTorch() throws {
        let cases = try Self.loadCases()
        XCTAssertGreaterThan(cases.count, 75)
        assertMatchPyTorch(cases, Self.apply)
    }

    func testEveryCasePassesFiniteDifferences() throws {
        // Stability cases (|x| ≈ 1e4) are beyond Float32 finite differences; PyTorch covers them.
        let cases = try Self.loadCases().filter { !$0.name.contains("1e4") && !$0.name.contains("large") }
        assertFiniteDifferences(cases, Self.apply)
    }
}
