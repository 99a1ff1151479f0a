import Datasets
import Foundation
import ModelFormats
import Tensors
import XCTest

/// PP-OCR's text-direction classifier as published (ch_ppocr_mobile_v2.0_cls_infer.onnx from
/// the rapidocr-onnxruntime 1.4.4 wheel, Apache-2.0; fixtures: scripts/generate_ppocr_fixtures.py).
extension ONNXImportTests {
    /// The classifier as PP-OCR applies it: the [N, 3, 48, 192] text images normalised as
    /// (x/255 − 0.5)/0.5.
    func ppocrInputs() throws -> Tensor {
        let pixels = try NPY.read(fixture("ppocr/text_images.npy")).tensor
        XCTAssertEqual(pixels.shape.dimensions.dropFirst(), [3, 48, 192])
        return Tensor(pixels.scalars.map { ($0 / 255 - 0.5) / 0.5 }, shape: pixels.shape)
    }

    /// ch_ppocr_mobile_v2.0_cls_infer.onnx (Paddle2ONNX, opset 11, input [-1, 3, ?, ?]) loads
    /// at 3×48×192 and gives onnxruntime's logits and probabilities on real text images,
    /// upright and turned by 180°, and so the same direction for each.
    func testPPOCRTextDirectionClassifierMatchesOnnxRuntime() throws {
        let network = try ONNXNetwork(contentsOf: fixture("ppocr/ch_ppocr_mobile_v2.0_cls_infer.onnx"), inputShape: [3, 48, 192])
        XCTAssertEqual(network.model.opset, 11)
        let inputs = try ppocrInputs()
        let expectedLogits = try NPY.read(fixture("ppocr/text_logits.npy")).tensor
        let expected = try NPY.read(fixture("ppocr/text_expected.npy")).tensor
        let (output, features) = try withoutGradients { try network.forward(inputs, capturing: ["linear_1.tmp_1"]) }
        let logitsDifference = assertMatches(features["linear_1.tmp_1"]!, expectedLogits, "logits")
        let outputDifference = assertMatches(output, expected, "probabilities")
        print("PP-OCR classifier: largest relative |Δ| from onnxruntime, logits \(logitsDifference), probabilities \(outputDifference)")

        func directions(_ scores: Tensor) -> [Int] { (0..<scores.shape[0]).map { scores.scalars[2 * $0 + 1] > scores.scalars[2 * $0] ? 180 : 0 } }
        XCTAssertEqual(directions(output), directions(expected))
        // The images alternate upright and turned lines, and onnxruntime reads them so.
        XCTAssertEqual(directions(expected), [0, 180].cycled(to: inputs.shape[0]))
    }

    /// The file declares its input as [-1, 3, ?, ?]: without a size, loading says to give one.
    func testPPOCRTextDirectionClassifierAsksForItsInputSize() {
        let path = fixture("ppocr/ch_ppocr_mobile_v2.0_cls_infer.onnx")
        XCTAssertThrowsError(try ONNXNetwork(contentsOf: path)) { error in
            XCTAssertEqual("\(error)", "\(path): input 'x' has shape [?, 3, ?, ?] with sizes left open after the batch axis; "
                + "give the per-example input shape, such as [3, ?, ?] with every ? filled (inputShape: in Swift, --teacher-input-size on the command line)")
        }
    }

    /// Paddle2ONNX writes the weights as Constant nodes; loading lifts them into parameters, so
    /// the imported classifier can be re-headed, frozen by node and fine-tuned like any other.
    func testPPOCRWeightsWrittenAsConstantsBecomeParameters() throws {
        let path = fixture("ppocr/ch_ppocr_mobile_v2.0_cls_infer.onnx")
        let original = try ONNXModel.read(path)
        let constants = original.graph.nodes.filter { $0.opType == "Constant" }.count
        let network = try ONNXNetwork(contentsOf: path, inputShape: [3, 48, 192])
        XCTAssertLessThan(network.model.graph.nodes.filter { $0.opType == "Constant" }.count, constants)
        let trainable = network.namedParameters().reduce(0) { $0 + $1.tensor.count }
        XCTAssertGreaterThan(trainable, 100_000, "the convolutions' weights train")
        let head = try network.classifierHead()
        XCTAssertEqual(head.weight.shape[0], 2, "the classifier's head: two directions")
    }
}

extension Array {
    /// The elements repeated until there are `count` of them.
    fileprivate func cycled(to count: Int) -> [Element] { (0..<count).map { self[$0 % self.count] } }
}
