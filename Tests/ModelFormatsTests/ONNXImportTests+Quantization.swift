import Foundation
import ModelFormats
import Tensors
import XCTest

/// Quantized models in QDQ form (QuantizeLinear / DequantizeLinear around float operators):
/// the operators against onnxruntime, and a cnn-student quantized by onnxruntime's
/// `quantize_static` (fixtures: scripts/generate_qdq_fixtures.py).
extension ONNXImportTests {
    /// Per tensor and per axis, uint8 and int8, with and without zero points, ties and
    /// saturation, at opsets 13 and 19: onnxruntime's values.
    func testQuantizeAndDequantizeCasesMatchOnnxRuntime() throws {
        let cases = try operatorCases("onnx/quantization.json")
        XCTAssertEqual(cases.count, 20)
        for c in cases {
            do {
                let network = try network(c)
                let output = try withoutGradients { try network.run(c.input) }
                XCTAssertEqual(output.shape, c.output.shape, c.name)
                if c.name.hasPrefix("qdq-") {
                    // Quantize-dequantize gives exactly onnxruntime's numbers: the same rounding.
                    XCTAssertEqual(output.scalars, c.output.scalars, c.name)
                } else {
                    assertMatches(output, c.output, c.name)
                }
            } catch {
                XCTFail("\(c.name): \(error)")
            }
        }
    }

    /// onnxruntime's QDQ cnn-student (int8 weights per channel, uint8 activations): the
    /// logits of onnxruntime running the graph as written, and of its integer kernels.
    func testQuantizedStudentFromOnnxRuntimeMatches() throws {
        let network = try ONNXNetwork(contentsOf: fixture("onnx/cnn_student_qdq.onnx"))
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixture("onnx/cnn_student_qdq.json")))) as! [String: Any]
        func tensor(_ key: String) -> Tensor {
            let d = root[key] as! [String: Any]
            return Tensor((d["data"] as! [NSNumber]).map(\.floatValue), shape: Shape(d["shape"] as! [Int]))
        }
        let logits = try withoutGradients { try network.run(tensor("input")) }
        let asWritten = tensor("as_written"), optimized = tensor("optimized")
        let worst = zip(logits.scalars, asWritten.scalars).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(worst, 1e-5, "against onnxruntime running the QDQ graph as written")
        XCTAssertEqual(logits.max(alongAxis: 1).indices, optimized.max(alongAxis: 1).indices, "against onnxruntime's integer kernels")
        print("QDQ cnn-student: largest |Δ| from onnxruntime \(worst)")
    }

    /// Scales that are zero or not finite, an unsupported element type, and a per-axis scale
    /// of the wrong length are one-line errors naming the node.
    func testBadQuantizationParametersAreErrors() throws {
        let cases = try operatorCases("onnx/quantization.json")
        let perTensor = try XCTUnwrap(cases.first { $0.name == "qdq-tensor-uint8-zp128-opset13" })
        for (value, message) in [(Float(0), "scales must be finite and positive"), (.nan, "scales must be finite and positive")] {
            var model = perTensor.model
            let i = try XCTUnwrap(model.graph.initializers.firstIndex { $0.name == "s" })
            model.graph.initializers[i].values = .floats([value])
            XCTAssertThrowsError(try ONNXNetwork(model, file: "bad.onnx", inputShape: Array(perTensor.input.shape.dimensions.dropFirst()))) { error in
                XCTAssertTrue("\(error)".contains(message) && "\(error)".contains("QuantizeLinear"), "\(error)")
            }
        }
        var wide = perTensor.model
        let z = try XCTUnwrap(wide.graph.initializers.firstIndex { $0.name == "z" })
        wide.graph.initializers[z].elementType = 7
        XCTAssertThrowsError(try ONNXNetwork(wide, file: "bad.onnx", inputShape: Array(perTensor.input.shape.dimensions.dropFirst()))) { error in
            XCTAssertTrue("\(error)".contains("quantized element type 7 is not supported"), "\(error)")
        }
        let perAxis = try XCTUnwrap(cases.first { $0.name == "qdq-axis-int8-zp0-opset19" })
        var short = perAxis.model
        for name in ["s", "z"] {
            let i = try XCTUnwrap(short.graph.initializers.firstIndex { $0.name == name })
            short.graph.initializers[i].values = name == "s" ? .floats([0.1, 0.2]) : .ints([0, 0])
            short.graph.initializers[i].dims = [2]
        }
        XCTAssertThrowsError(try ONNXNetwork(short, file: "bad.onnx", inputShape: Array(perAxis.input.shape.dimensions.dropFirst()))) { error in
            XCTAssertTrue("\(error)".contains("2 scales for axis 1 of size 3"), "\(error)")
        }
    }
}
