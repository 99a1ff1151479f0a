import Foundation
import NeuralNet
import Tensors
import TestSupport
import Training
import XCTest

/// Layers, optimizers, schedules and clipping against PyTorch (scripts/generate_golden_nn.py).
final class GoldenNNTests: XCTestCase {
    nonisolated(unsafe) static let fixture: [String: Any] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/nn_golden.json")
        return try! JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }()

    static func floats(_ any: Any?) -> [Float] { (any as! [NSNumber]).map(\.floatValue) }
    static func tensor(_ entry: Any?) -> Tensor {
        let e = entry as! [String: Any]
        return Tensor(floats(e["data"]), shape: Shape(e["shape"] as! [Int]))
    }

    static func build(_ kind: String, _ p: [String: Any], _ g: inout RandomGenerator) throws -> any Module {
        func int(_ key: String) -> Int { p[key] as! Int }
        switch kind {
        case "linear": return Linear(int("in"), int("out"), using: &g)
        case "conv2d":
            return Conv2d(int("in"), int("out"), kernelSize: int("kernel"), stride: int("stride"), padding: int("padding"),
                          groups: int("groups"), using: &g)
        case "batchnorm": return BatchNorm(int("features"))
        case "layernorm": return LayerNorm(Shape(p["shape"] as! [Int]))
        case "basicblock": return BasicBlock(int("in"), int("out"), stride: int("stride"), using: &g)
        case "wideblock": return WideBasicBlock(int("in"), int("out"), stride: int("stride"), using: &g)
        case "invertedresidual": return InvertedResidual(int("in"), int("out"), stride: int("stride"), expansion: int("expansion"), using: &g)
        default:
            let name = String(kind.dropFirst(4))
            return try ModelZoo.make(name, options: ModelOptions(inputSize: p["inputSize"] as! Int, width: (p["width"] as! NSNumber).floatValue), using: &g)
        }
    }

    func testLayersMatchPyTorch() throws {
        for case let entry as [String: Any] in Self.fixture["layers"] as! [Any] {
            let name = entry["name"] as! String
            var g = RandomGenerator(seed: 0)
            let layer = try Self.build(entry["kind"] as! String, entry["params"] as! [String: Any], &g)
            let state = (entry["state"] as! [String: Any]).mapValues(Self.tensor)
            try layer.loadStateDict(state)
            if !(entry["training"] as! Bool) { layer.eval() }
            let x = Self.tensor(entry["input"])
            x.requiresGrad = true
            let y = layer(x)
            let expected = Self.tensor(entry["output"])
            XCTAssertEqual(y.shape, expected.shape, name)
            assertClose(y.scalars, expected.scalars, absolute: 1e-4, relative: 1e-4, "\(name) output")
            (y * Tensor(Self.floats(entry["upstream"]), shape: y.shape)).sum().backward()
            assertClose(x.grad!.scalars, Self.floats(entry["inputGrad"]), absolute: 1e-4, relative: 1e-3, "\(name) input gradient")
            let parameters = Dictionary(uniqueKeysWithValues: layer.namedParameters().map { ($0.name, $0.tensor) })
            for (key, grad) in entry["paramGrads"] as! [String: Any] {
                guard let parameter = parameters[key] else { XCTFail("\(name): no parameter \(key)"); continue }
                assertClose(parameter.grad?.scalars ?? [], Self.floats(grad), absolute: 1e-4, relative: 1e-3, "\(name) gradient of \(key)")
            }
            let buffers = Dictionary(uniqueKeysWithValues: layer.stateDict().map { ($0.name, $0.tensor) })
            for (key, after) in entry["stateAfter"] as! [String: Any] {
                assertClose(buffers[key]!.scalars, Self.tensor(after).scalars, absolute: 1e-5, relative: 1e-5, "\(name) \(key) after forward")
            }
        }
    }

    func testOptimizersMatchPyTorch() throws {
        let initial = Self.fixture["optimizerInit"] as! [String: Any]
        let shapes = (initial["shapes"] as! [[Int]]).map { Shape($0) }
        let starts = (initial["params"] as! [Any]).map(Self.floats)
        let cs = zip((initial["c"] as! [Any]).map(Self.floats), shapes).map { Tensor($0, shape: $1) }
        let ds = zip((initial["d"] as! [Any]).map(Self.floats), shapes).map { Tensor($0, shape: $1) }
        let makers: [String: ([Tensor]) -> any Optimizer] = [
            "sgd": { SGD(parameters: $0, learningRate: 0.1) },
            "sgd momentum nesterov decay": { SGD(parameters: $0, learningRate: 0.05, momentum: 0.9, nesterov: true, weightDecay: 0.01) },
            "sgd momentum dampening": { SGD([ParameterGroup(parameters: $0, learningRate: 0.05)], momentum: 0.8, dampening: 0.1) },
            "adam decay": { Adam([ParameterGroup(parameters: $0, learningRate: 0.01, weightDecay: 0.01)]) },
            "adamw": { Adam([ParameterGroup(parameters: $0, learningRate: 0.01, weightDecay: 0.1)], decoupledWeightDecay: true) },
            "sgd groups": {
                SGD([ParameterGroup(parameters: [$0[0]], learningRate: 0.1),
                     ParameterGroup(parameters: [$0[1]], learningRate: 0.01, weightDecay: 0.1)], momentum: 0.9)
            },
        ]
        for case let entry as [String: Any] in Self.fixture["optimizers"] as! [Any] {
            let name = entry["name"] as! String
            let params = zip(starts, shapes).map { Tensor($0, shape: $1, requiresGrad: true) }
            let optimizer = try XCTUnwrap(makers[name], name)(params)
            for (step, expected) in (entry["trajectory"] as! [[Any]]).enumerated() {
                optimizer.zeroGrad()
                zip(zip(params, cs), ds).map { pc, d in (pc.1 * pc.0 * pc.0 + d * pc.0).sum() }.reduce(Tensor(scalar: 0), +).backward()
                optimizer.step()
                for (p, values) in zip(params, expected) {
                    assertClose(p.scalars, Self.floats(values), absolute: 1e-5, relative: 1e-5, "\(name) step \(step + 1)")
                }
            }
        }
    }

    func testSchedulesMatchPyTorch() throws {
        let schedules: [String: any LearningRateSchedule] = [
            "step": StepSchedule(stepSize: 7, gamma: 0.5),
            "multistep": MultiStepSchedule(milestones: [5, 12, 30], gamma: 0.3),
            "cosine": CosineSchedule(totalSteps: 30, minimumFactor: 0.05),
            "warmup cosine": WarmupSchedule(warmupSteps: 5, startFactor: 0.1, then: CosineSchedule(totalSteps: 35)),
            "onecycle": OneCycleSchedule(totalSteps: 40),
        ]
        XCTAssertEqual(CosineSchedule(totalSteps: 30, minimumFactor: 0.05).factor(atStep: 35), 0.05, "held after the last step")
        for case let entry as [String: Any] in Self.fixture["schedules"] as! [Any] {
            let name = entry["name"] as! String
            let schedule = try XCTUnwrap(schedules[name], name)
            // PyTorch's cosine restarts upwards after T_max (steps 31...); ours holds the minimum
            // there, since a schedule is sized to the run. The first T_max + 1 steps must agree.
            let count = name == "cosine" ? 31 : 40
            let ours = (0..<count).map { schedule.factor(atStep: $0) }
            assertClose(ours, Array(Self.floats(entry["rates"]).prefix(count)), absolute: 1e-6, relative: 1e-5, name)
        }
    }

    func testGradientClippingMatchesPyTorch() {
        let c = Self.fixture["clipping"] as! [String: Any]
        let shapes = (c["shapes"] as! [[Int]]).map { Shape($0) }
        let params = shapes.map { Tensor.zeros($0) }
        for (p, (g, s)) in zip(params, zip((c["grads"] as! [Any]).map(Self.floats), shapes)) { p.grad = Tensor(g, shape: s) }
        let norm = clipGradientNorm(params, maxNorm: (c["maxNorm"] as! NSNumber).floatValue)
        XCTAssertEqual(norm, (c["norm"] as! NSNumber).floatValue, accuracy: 1e-4)
        for (p, expected) in zip(params, (c["clipped"] as! [Any]).map(Self.floats)) {
            assertClose(p.grad!.scalars, expected, absolute: 1e-6, relative: 1e-5, "clipped gradient")
        }
    }
}
