import Datasets
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import TestSupport
import XCTest

/// ONNX models from other projects: every operator case against onnxruntime at opsets 10
/// to 20, and PyTorch exports with dynamic axes from both exporters (fixtures:
/// scripts/generate_onnx_import_fixtures.py). Tolerance: |Δ| ≤ 1e-4 · max(1, |reference|).
final class ONNXImportTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    func fixture(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    /// The largest |Δ| relative to max(1, |reference|), failing above 1e-4.
    @discardableResult
    func assertMatches(_ actual: Tensor, _ expected: Tensor, _ message: String, file: StaticString = #filePath, line: UInt = #line) -> Float {
        XCTAssertEqual(actual.shape, expected.shape, message, file: file, line: line)
        guard actual.shape == expected.shape else { return .infinity }
        let worst = zip(actual.scalars, expected.scalars).map { Swift.abs($0 - $1) / max(1, Swift.abs($1)) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 1e-4, message, file: file, line: line)
        return worst
    }

    struct OperatorCase {
        let name: String, model: ONNXModel, input: Tensor, output: Tensor, gradients: [String]
        /// False for cases with steps in the input (integer casts), which finite differences cannot check.
        var smooth = true
    }

    func operatorCases(_ file: String = "onnx/operators.json") throws -> [OperatorCase] {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixture(file)))
        let root = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        func tensor(_ object: Any?) -> Tensor {
            let dictionary = object as! [String: Any]
            return Tensor((dictionary["data"] as! [NSNumber]).map(\.floatValue), shape: Shape(dictionary["shape"] as! [Int]))
        }
        return try (root["cases"] as! [[String: Any]]).map { c in
            let name = c["name"] as! String
            let bytes = [UInt8](Data(base64Encoded: c["model"] as! String)!)
            return OperatorCase(name: name, model: try ONNXModel(parsing: bytes, file: name), input: tensor(c["input"]),
                                output: tensor(c["output"]), gradients: c["gradients"] as! [String], smooth: c["smooth"] as? Bool ?? true)
        }
    }

    func network(_ c: OperatorCase) throws -> ONNXNetwork {
        try ONNXNetwork(c.model, file: c.name, inputShape: Array(c.input.shape.dimensions.dropFirst()))
    }

    // MARK: Operators

    /// Every case (Resize, Pad, Split, Expand, Where, Pow, Sqrt, HardSigmoid, HardSwish, PRelu
    /// and the operators whose attributes became inputs) at the opset it names gives
    /// onnxruntime's output.
    func testEveryOperatorCaseMatchesOnnxRuntime() throws {
        let cases = try operatorCases()
        XCTAssertGreaterThanOrEqual(cases.count, 50)
        let opsets = Set(cases.map(\.model.opset))
        XCTAssertTrue([10, 11, 13, 18, 19, 20].allSatisfy(opsets.contains), "\(opsets.sorted())")
        var worst: Float = 0
        for c in cases {
            do {
                let network = try network(c)
                worst = max(worst, assertMatches(try withoutGradients { try network.run(c.input) }, c.output, c.name))
            } catch {
                XCTFail("\(c.name): \(error)")
            }
        }
        print("operator cases: largest relative |Δ| from onnxruntime \(worst)")
    }

    /// Imported graphs train: the gradient of every case's output reaches its input (and the
    /// initializers the case names, such as PReLU's slopes and Pow's exponents) and agrees
    /// with finite differences.
    func testEveryOperatorCaseIsDifferentiable() throws {
        for c in try operatorCases() where c.smooth {
            let network = try network(c)
            let x = c.input.copy()
            x.requiresGrad = true
            // Scalar constants (Pow's exponent) are fixed state of an imported graph, not trained,
            // but the operator's gradient with respect to them is checked all the same.
            let parameters = Dictionary(uniqueKeysWithValues: (network.namedParameters() + network.namedBuffers()).map { ($0.name, $0.tensor) })
            let trained = c.gradients.map { parameters[$0]! }
            for p in trained { p.requiresGrad = true }
            // A small step: with the default one, inputs near a clip bound read as smooth.
            assertGradientsMatchFiniteDifferences([x] + trained, step: 1e-3, c.name) { inputs in try! network.run(inputs[0]) }
        }
    }

    // MARK: PyTorch exports with dynamic axes

    /// A small CNN (Hardswish, Hardsigmoid, PReLU, bilinear and nearest interpolation,
    /// reflect, replicate and constant padding, split, where, pow, sqrt) exported with batch,
    /// height and width as dynamic axes by the TorchScript exporter (opset 11) and by the
    /// torch.export-based one (opset 20) runs at two image sizes given at load time and
    /// gives PyTorch's outputs.
    func testPyTorchExportsWithDynamicAxesRunAtTheGivenSize() throws {
        for file in ["small_cnn_legacy.onnx", "small_cnn_dynamo.onnx"] {
            let path = fixture("onnx/" + file)
            XCTAssertEqual(try ONNXModel.read(path).graph.inputs[0].dims.compactMap { $0 }, [3], "\(file): only the channels are fixed")
            for (height, width) in [(20, 28), (33, 17)] {
                let input = try NPY.read(fixture("onnx/small_cnn_input_\(height)x\(width).npy")).tensor
                let expected = try NPY.read(fixture("onnx/small_cnn_expected_\(height)x\(width).npy")).tensor
                let network = try ONNXNetwork(contentsOf: path, inputShape: [3, height, width])
                XCTAssertEqual(network.inputShape, [3, height, width])
                let worst = assertMatches(withoutGradients { network(input) }, expected, "\(file) at \(height)×\(width)")
                print("\(file) \(height)×\(width): largest relative |Δ| from PyTorch \(worst)")
            }
        }
    }

    // MARK: Input shapes

    /// A model with open sizes (here PyTorch's export with dynamic height and width) says to
    /// give the input size when loaded without one, and refuses a size its fixed channels do
    /// not fit, naming the file, the input and both shapes.
    func testModelsWithOpenSizesNeedAnInputShapeThatFits() throws {
        let path = fixture("onnx/small_cnn_legacy.onnx")
        XCTAssertThrowsError(try ONNXNetwork(contentsOf: path)) { error in
            for fragment in [path, "input 'input'", "[?, 3, ?, ?]", "give the per-example input shape", "--teacher-input-size"] {
                XCTAssertTrue("\(error)".contains(fragment), "'\(fragment)' not in: \(error)")
            }
        }
        XCTAssertThrowsError(try ONNXNetwork(contentsOf: path, inputShape: [1, 28, 28])) { error in
            for fragment in [path, "input 'input'", "[?, 3, ?, ?]", "[1, 28, 28]", "does not fit the data"] {
                XCTAssertTrue("\(error)".contains(fragment), "'\(fragment)' not in: \(error)")
            }
        }
        XCTAssertThrowsError(try ONNXNetwork(contentsOf: path, inputShape: [3, 48])) { XCTAssertTrue("\($0)".contains("does not fit the data"), "\($0)") }
        XCTAssertThrowsError(try ONNXNetwork(contentsOf: path, inputShape: [3, 0, 192])) { XCTAssertTrue("\($0)".contains("positive"), "\($0)") }
        XCTAssertThrowsError(try ONNXNetwork(contentsOf: path, inputShape: [3, Int.max, 2])) { XCTAssertTrue("\($0)".contains("too large"), "\($0)") }
        // Too small for the network: the trial run at load time says which node cannot run.
        XCTAssertThrowsError(try ONNXNetwork(contentsOf: path, inputShape: [3, 2, 2])) { XCTAssertTrue("\($0)".contains("node '"), "\($0)") }
        // A model with every size fixed takes its own shape, or the same one given.
        let teacher = fixture("onnx/teacher.onnx")
        XCTAssertEqual(try ONNXNetwork(contentsOf: teacher).inputShape, [1, 28, 28])
        XCTAssertEqual(try ONNXNetwork(contentsOf: teacher, inputShape: [1, 28, 28]).inputShape, [1, 28, 28])
        XCTAssertThrowsError(try ONNXNetwork(contentsOf: teacher, inputShape: [1, 32, 32])) { error in
            XCTAssertTrue("\(error)".contains("[?, 1, 28, 28]") && "\(error)".contains("[1, 32, 32]"), "\(error)")
        }
    }

    // MARK: Bad attributes

    func assertRefused(_ nodes: [ONNXNode], _ initializers: [ONNXTensor] = [], opset: Int = 17, dims: [Int?] = [nil, 2, 4, 4],
                       _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        let model = ONNXModel(opsets: ["": opset], graph: ONNXGraph(name: "t", nodes: nodes, initializers: initializers,
                                                                     inputs: [ONNXValueInfo(name: "x", dims: dims)], outputs: [ONNXValueInfo(name: "y", dims: [nil])]))
        XCTAssertThrowsError(try ONNXNetwork(model, file: "bad.onnx"), file: file, line: line) { error in
            for fragment in ["bad.onnx"] + fragments { XCTAssertTrue("\(error)".contains(fragment), "'\(fragment)' not in: \(error)", file: file, line: line) }
        }
    }

    /// Attributes and inputs the new operators cannot run are errors that name the node and
    /// the problem, never traps.
    func testNewOperatorsRefuseWhatTheyCannotRun() {
        func ints(_ name: String, _ values: [Int]) -> ONNXTensor { ONNXTensor(name: name, dims: [values.count], values: .ints(values)) }
        func floats(_ name: String, _ values: [Float]) -> ONNXTensor { ONNXTensor(name: name, dims: [values.count], values: .floats(values)) }
        func node(_ op: String, _ inputs: [String], outputs: [String] = ["y"], _ attributes: [ONNXAttribute] = []) -> ONNXNode {
            ONNXNode(name: "n", opType: op, inputs: inputs, outputs: outputs, attributes: attributes)
        }
        assertRefused([node("Pad", ["x", "pads"], [ONNXAttribute("mode", .string("reflect"))])], [ints("pads", [0, 0, 4, 0, 0, 0, 0, 0])],
                      ["node 'n' (Pad)", "reflect padding by 4"])
        assertRefused([node("Pad", ["x", "pads"])], [ints("pads", [1, 1])], ["start and an end for each of 4 axes"])
        assertRefused([node("Pad", ["x", "pads"], [ONNXAttribute("mode", .string("mirror"))])], [ints("pads", [0, 0, 0, 0, 0, 0, 0, 0])],
                      ["mode 'mirror'"])
        assertRefused([node("Resize", ["x", "", "scales", "sizes"])], [floats("scales", [1, 1, 2, 2]), ints("sizes", [1, 2, 8, 8])],
                      ["node 'n' (Resize)", "both scales and sizes"])
        assertRefused([node("Resize", ["x", "", "scales"], [ONNXAttribute("coordinate_transformation_mode", .string("tf_crop_and_resize"))])],
                      [floats("scales", [1, 1, 2, 2])], ["tf_crop_and_resize"])
        assertRefused([node("Resize", ["x", "", "scales"], [ONNXAttribute("antialias", .int(1)), ONNXAttribute("mode", .string("linear"))])],
                      [floats("scales", [1, 1, 0.5, 0.5])], ["antialias"])
        assertRefused([node("Resize", ["x", "", "scales"])], [floats("scales", [1, 1, 0.1, 2])], ["empty shape"])
        assertRefused([node("Resize", ["x", "scales"])], [floats("scales", [1, 1, 2, 2])], opset: 10, ["Resize from operator set 10"])
        assertRefused([node("Split", ["x", "split"], outputs: ["y", "z"], [ONNXAttribute("axis", .int(2))])], [ints("split", [1, 2])],
                      ["node 'n' (Split)", "does not divide axis 2"])
        assertRefused([node("Split", ["x"], outputs: ["y", "z", "w"], [ONNXAttribute("axis", .int(2))])], [], ["3 equal parts"])
        assertRefused([node("Expand", ["x", "shape"])], [ints("shape", [3, 1, 1])], ["node 'n' (Expand)", "do not broadcast"])
        assertRefused([node("PRelu", ["x", "slope"])], [floats("slope", [0.1, 0.2, 0.3])], ["slope [3] does not broadcast"])
        assertRefused([node("Where", ["mask", "x", "x"])], [ints("mask", [1, 0, 1])], ["node 'n' (Where)", "do not broadcast"])
        assertRefused([node("Slice", ["x", "s", "e", "a", "st"])], [ints("s", [0]), ints("e", [2]), ints("a", [3]), ints("st", [0])], ["steps [0]"])
        assertRefused([ONNXNode(name: "n", opType: "ConstantOfShape", inputs: ["s"], outputs: ["c"], attributes: [ONNXAttribute("value", .tensor(ONNXTensor(name: "v", dims: [2], values: .floats([1, 2]))))]),
                       node("Add", ["x", "c"])], [ints("s", [4])], ["one element"])
    }
}

extension ONNXImportTests {
    /// The operator cases with their integer and float attributes and initializers (pads,
    /// sizes, scales, axes, splits, steps, slopes) replaced by hostile values: loading and the
    /// trial run throw or succeed, never trap.
    func testHostileOperatorArgumentsNeverCrash() throws {
        let cases = try operatorCases()
        var generator = RandomGenerator(seed: 11)
        func pick<T>(_ values: [T]) -> T { values[Int(generator.next() % UInt64(values.count))] }
        let hostileInts = [0, 1, -1, 2, -2, 3, 7, 1 << 20, -(1 << 20), 1 << 40, Int.max, Int.min, Int.max - 1, Int.min + 1]
        let hostileFloats: [Float] = [0, -1, 0.5, 1e-30, 1e30, -1e30, .infinity, -.infinity, .nan, 1e-7, 3]
        var accepted = 0
        let iterations = 2_000
        for _ in 0..<iterations {
            var model = pick(cases).model
            for _ in 0..<(1 + Int(generator.next() % 3)) {
                if generator.next() % 2 == 0, !model.graph.initializers.isEmpty {
                    let i = Int(generator.next() % UInt64(model.graph.initializers.count))
                    switch model.graph.initializers[i].values {
                    case let .ints(v) where !v.isEmpty:
                        var w = v
                        w[Int(generator.next() % UInt64(w.count))] = pick(hostileInts)
                        model.graph.initializers[i].values = .ints(w)
                    case let .floats(v) where !v.isEmpty:
                        var w = v
                        w[Int(generator.next() % UInt64(w.count))] = pick(hostileFloats)
                        model.graph.initializers[i].values = .floats(w)
                    default: break
                    }
                } else {
                    let n = Int(generator.next() % UInt64(model.graph.nodes.count))
                    guard !model.graph.nodes[n].attributes.isEmpty else { continue }
                    let a = Int(generator.next() % UInt64(model.graph.nodes[n].attributes.count))
                    switch model.graph.nodes[n].attributes[a].value {
                    case .int: model.graph.nodes[n].attributes[a].value = .int(pick(hostileInts))
                    case .float: model.graph.nodes[n].attributes[a].value = .float(pick(hostileFloats))
                    case let .ints(v) where !v.isEmpty:
                        var w = v
                        w[Int(generator.next() % UInt64(w.count))] = pick(hostileInts)
                        model.graph.nodes[n].attributes[a].value = .ints(w)
                    case .string: model.graph.nodes[n].attributes[a].value = .string(pick(["", "linear", "nearest", "cubic", "reflect", "edge", "wrap", "constant", "floor", "align_corners"]))
                    default: break
                    }
                }
            }
            if (try? ONNXNetwork(model, inputShape: [3, 4, 6])) != nil { accepted += 1 }
        }
        print("hostile operator arguments: \(accepted) of \(iterations) models accepted")
        XCTAssertGreaterThan(accepted, iterations / 10)
    }
}

