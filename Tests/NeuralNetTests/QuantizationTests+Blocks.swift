import Foundation
import NeuralNet
import Tensors
import XCTest

/// Residual networks, depthwise convolutions and layers that stay float: the zoo's resnet8 and
/// mobilenetv2 quantize whole, and what the quantizer cannot take runs in float and is listed.
extension QuantizationTests {
    /// The largest logit error of `quantized` against `model` on `x`, in steps of the float
    /// logits' range in 255.
    private func worstSteps(_ model: any Module, _ quantized: QuantizedModel, _ x: Tensor) -> Float {
        let float = model.predictions(x).scalars, q = quantized(x).scalars
        XCTAssertEqual(q.count, float.count)
        let range = float.max()! - float.min()!
        return zip(q, float).map { abs($0 - $1) }.max()! / (range / 255)
    }

    /// resnet8 (basic blocks: the add of two quantized branches requantized, ReLU fused into
    /// it; 1×1 projecting shortcuts; global average pooling) and mobilenetv2 (depthwise 3×3
    /// convolutions, ReLU6, inverted residuals without activation) quantize with nothing left
    /// in float, close to their float selves, with the same bits on every kernel path.
    func testResidualAndDepthwiseZooModelsQuantize() throws {
        var g = RandomGenerator(seed: 12)
        for (name, width) in [("resnet8", Float(0.5)), ("mobilenetv2", Float(0.25))] {
            let model = try ModelZoo.make(name, options: ModelOptions(width: width), using: &g)
            perturbNorms(model)
            let x = Tensor.randomNormal([48, 1, 28, 28], using: &g)
            let quantized = try Quantizer.quantize(model, calibration: x)
            XCTAssertEqual(quantized.floatLayers, [], name)
            // Folding batch norm changes no convolution's shape: the int8 model does the float one's multiply-adds.
            XCTAssertEqual(quantized.multiplyAddsPerExample, ModelSummary(model, inputShape: [1, 28, 28]).totalMultiplyAdds, name)
            let worst = worstSteps(model, quantized, x)
            print("QuantizationTests: \(name) ×\(width): max logit error \(worst) steps of the logits' range in 255")
            XCTAssertLessThan(worst, 4, "\(name): within 4 steps (measured 1.1 resnet8, 1.4 mobilenetv2)")
            var residuals = 0, depthwise = 0
            for case let .residual(r) in quantized.layers {
                residuals += 1
                depthwise += r.main.filter { if case let .conv2d(c) = $0 { return c.depthwise }; return false }.count
            }
            XCTAssertEqual(residuals, 3, "\(name): residual blocks")
            if name == "mobilenetv2" { XCTAssertEqual(depthwise, 3, "the residual blocks' depthwise convolutions") }
            let bits = quantized(x).scalars.map(\.bitPattern)
            for path in KernelPath.allCases where path.isSupported {
                Compute.forceKernelPath(path)
                XCTAssertEqual(quantized(x).scalars.map(\.bitPattern), bits, "\(name): \(path) path")
            }
            Compute.forceKernelPath(nil)
        }
    }

    /// A grouped convolution, tanh, average pooling and GELU stay float (dequantized before,
    /// quantized after, listed by module path); the rest is quantized and the logits stay close.
    /// Wide ResNet's pre-activation batch norms (no convolution before them to fold into) too.
    func testUnsupportedLayersStayFloatAndAreListed() throws {
        var g = RandomGenerator(seed: 13)
        let model = Sequential(named: [
            ("conv", Conv2d(1, 4, kernelSize: 3, padding: 1, using: &g)), ("norm", BatchNorm(4)), ("relu", Activation(.relu)),
            ("grouped", Conv2d(4, 4, kernelSize: 3, padding: 1, groups: 2, using: &g)), ("tanh", Activation(.tanh)),
            ("pool", AvgPool2d(kernelSize: 2)), ("flatten", Flatten()),
            ("fc1", Linear(4 * 14 * 14, 32, using: &g)), ("gelu", Activation(.gelu)), ("fc2", Linear(32, 10, using: &g)),
        ])
        perturbNorms(model)
        let x = Tensor.randomNormal([48, 1, 28, 28], using: &g)
        let quantized = try Quantizer.quantize(model, calibration: x)
        XCTAssertEqual(quantized.floatLayers, ["grouped", "tanh", "pool", "gelu"])
        // The float stages' work and parameters count too; the batch norm's γ and β are folded away.
        XCTAssertEqual(quantized.multiplyAddsPerExample, ModelSummary(model, inputShape: [1, 28, 28]).totalMultiplyAdds)
        XCTAssertEqual(quantized.storedParameterCount, model.parameterCount - 2 * 4)
        let worst = worstSteps(model, quantized, x)
        print("QuantizationTests: float stages: max logit error \(worst) steps")
        XCTAssertLessThan(worst, 4, "measured 1.05")

        let wide = try ModelZoo.make("wrn-16-2", options: ModelOptions(width: 0.25), using: &g)
        perturbNorms(wide)
        let wideQuantized = try Quantizer.quantize(wide, calibration: x)
        XCTAssertEqual(wideQuantized.floatLayers, ["block1.0.bn1", "block1.1.bn1", "block2.0.bn1", "block2.1.bn1", "block3.0.bn1", "block3.1.bn1", "bn1"])
        let wideWorst = worstSteps(wide, wideQuantized, x)
        print("QuantizationTests: wrn-16-2 ×0.25: max logit error \(wideWorst) steps")
        XCTAssertLessThan(wideWorst, 5, "measured 2.5")
    }
}
