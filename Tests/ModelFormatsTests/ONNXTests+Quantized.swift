import Datasets
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import TestSupport
import XCTest

/// Quantized models exported in QDQ form (`ONNXExport.quantized`): residual blocks,
/// depthwise convolutions and layers that stay float, read back by our importer and run by
/// onnxruntime (scripts/check_onnx.py, the graph as written).
extension ONNXTests {
    /// The largest |a − b| in steps of b's range in 255.
    private func steps(_ a: Tensor, _ b: Tensor) -> Float {
        let range = b.scalars.max()! - b.scalars.min()!
        return maxDifference(a, b) / (range / 255)
    }

    func testQuantizedModelsExportToQDQ() throws {
        var g = RandomGenerator(seed: 41)
        let x = Tensor.randomNormal([64, 1, 28, 28], using: &g)
        let chain = Sequential(named: [
            ("conv", Conv2d(1, 4, kernelSize: 3, padding: 1, using: &g)), ("relu", Activation(.relu)),
            ("grouped", Conv2d(4, 4, kernelSize: 3, padding: 1, groups: 2, using: &g)), ("tanh", Activation(.tanh)),
            ("pool", MaxPool2d(kernelSize: 2)), ("flatten", Flatten()), ("fc", Linear(4 * 14 * 14, 10, using: &g)),
        ])
        let models: [(String, any Module)] = [("resnet8", try ModelZoo.make("resnet8", options: ModelOptions(width: 0.5), using: &g)),
                                              ("mobilenetv2", try ModelZoo.make("mobilenetv2", options: ModelOptions(width: 0.5), using: &g)),
                                              ("float-stages", chain)]
        let inputPath = scratch.appendingPathComponent("input.npy").path
        try NPY.write(x, to: inputPath)
        var arguments = [packageRoot + "/scripts/check_onnx.py"]
        var tolerance: [String: Double] = [:]
        for (name, model) in models {
            model.eval()
            let quantized = try Quantizer.quantize(model, calibration: x)
            let ours = quantized(x)
            let onnx = try ONNXExport.quantized(quantized, metadata: ["distill.model": name])
            let ops = Set(onnx.graph.nodes.map(\.opType))
            XCTAssertTrue(ops.isSuperset(of: ["QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"]), "\(name): \(ops.sorted())")
            if name != "float-stages" { XCTAssertTrue(ops.contains("Add") && ops.contains("GlobalAveragePool"), "\(name): \(ops.sorted())") }
            let path = scratch.appendingPathComponent("\(name)-int8.onnx").path
            try onnx.write(to: path)
            // Our import runs the QDQ graph in float: our int8 logits within one step.
            let imported = try withoutGradients { try ONNXNetwork(contentsOf: path).run(x) }
            let worst = steps(imported, ours)
            print("QDQ export \(name): our import within \(worst) steps of our int8 logits")
            XCTAssertLessThanOrEqual(worst, 1, name)
            let expectedPath = scratch.appendingPathComponent("\(name)-expected.npy").path
            try NPY.write(ours, to: expectedPath)
            arguments += [path, inputPath, expectedPath]
            tolerance[path] = Double((ours.scalars.max()! - ours.scalars.min()!) / 255)
        }
        try requireTool(pythonCanImport("onnx", "onnxruntime", "numpy"),
                        "python3 with onnx, onnxruntime and numpy is not installed (make test installs them)")
        let (status, output) = try runPython(arguments)
        XCTAssertEqual(status, 0, output)
        let lines = output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertEqual(lines.count, models.count, output)
        for line in lines {
            let path = line["model"] as! String
            let difference = try XCTUnwrap(line["max_abs_diff"] as? Double, "\(path): \(line)")
            print("QDQ export: onnxruntime \((path as NSString).lastPathComponent) within \(difference / tolerance[path]!) steps")
            XCTAssertLessThanOrEqual(difference, tolerance[path]!, path)
        }
    }
}
