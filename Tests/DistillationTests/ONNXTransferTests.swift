import Datasets
import Distillation
import Foundation
import ModelFormats
import NeuralNet
import Tensors
import TestSupport
import Training
import XCTest

/// Transfer from the user's own model: `branchnet.onnx`, a CNN that is not a zoo architecture
/// (a residual Add, a concat of two branches, a batch norm after the Add, a Gemm head and a
/// Softmax after it), trained by PyTorch on Fashion-MNIST classes 0-4 and exported by
/// torch.onnx (scripts/generate_transfer_fixture.py).
final class ONNXTransferTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("ModelFormatsTests/Fixtures/onnx")
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("distill-onnx-transfer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    func fixture(_ name: String) -> String { fixtures.appendingPathComponent(name).path }
    func network() throws -> ONNXNetwork { try ONNXNetwork(contentsOf: fixture("branchnet.onnx")) }
    func input() throws -> Tensor { try NPY.read(fixture("input.npy")).tensor }

    func reheaded(classes: Int = 5, head: String? = nil, seed: UInt64 = 2) throws -> MultiHeadModel {
        var g = RandomGenerator(seed: seed)
        return try MultiHeadModel(from: network(), head: head, newClasses: classes, using: &g)
    }

    func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
        XCTAssertEqual(a.shape, b.shape)
        return zip(a.scalars, b.scalars).map { Swift.abs($0 - $1) }.max() ?? .infinity
    }

    // MARK: Re-heading

    /// The head is the last Gemm; the Softmax after it is dropped, so the old head gives the
    /// logits whose softmax is PyTorch's output; the backbone is the graph up to the Gemm's
    /// input, its parameters named as in PyTorch's state dict.
    func testReheadingKeepsTheOldModelAsTheOldHead() throws {
        let classifier = try network().classifierHead()
        XCTAssertEqual(classifier.node, "node_linear")
        XCTAssertEqual(classifier.opType, "Gemm")
        XCTAssertEqual(classifier.features, "view")
        XCTAssertEqual(classifier.droppedAfter, ["Softmax"])
        XCTAssertEqual(classifier.weight.shape, [5, 16])
        let model = try reheaded(classes: 3)
        let x = try input()
        let old = try withoutGradients { try model.forward(x, capturing: ["old_head"]) }
        XCTAssertLessThan(maxDifference(old.features["old_head"]!.softmax(alongAxis: -1), try NPY.read(fixture("branchnet_expected.npy")).tensor), 1e-5)
        XCTAssertEqual(old.output.shape, [16, 3])
        XCTAssertEqual(model.backbone.namedParameters().map(\.name),
                       ["stem.weight", "stem.bias", "left.weight", "left.bias", "bn.weight", "bn.bias", "right.weight", "right.bias", "mix.weight", "mix.bias"])
        XCTAssertEqual(model.backbone.namedBuffers().map(\.name).sorted(), ["bn.running_mean", "bn.running_var"], "statistics do not train")
        XCTAssertTrue(model.backbone.parameters.allSatisfy(\.requiresGrad), "an imported backbone trains once re-headed")
        // By node name or output name, the same head.
        XCTAssertEqual(try reheaded(head: "linear").head("old").weight.scalars, model.head("old").weight.scalars)
    }

    /// Gemm with transB = 0 or 1, alpha and beta, and MatMul + Add all become the Linear that
    /// computes the same logits: the old head on the backbone is the original graph.
    func testEveryLinearFormBecomesTheSameOldHead() throws {
        var g = RandomGenerator(seed: 4)
        let x = Tensor.randomNormal([3, 4], using: &g)
        func values(_ dims: [Int]) -> ONNXTensor.Values { .floats(Tensor.randomNormal(Shape(dims), using: &g).scalars) }
        let gemmT = [ONNXNode(name: "fc", opType: "Gemm", inputs: ["h", "w", "b"], outputs: ["y"],
                              attributes: [ONNXAttribute("transB", .int(1)), ONNXAttribute("alpha", .float(0.5)), ONNXAttribute("beta", .float(2))])]
        let gemm = [ONNXNode(name: "fc", opType: "Gemm", inputs: ["h", "w", "b"], outputs: ["y"], attributes: [ONNXAttribute("alpha", .float(1.5))])]
        let matmul = [ONNXNode(name: "fc", opType: "MatMul", inputs: ["h", "w"], outputs: ["p"]),
                      ONNXNode(name: "bias", opType: "Add", inputs: ["b", "p"], outputs: ["y"])]
        for (nodes, weightDims, biasDims) in [(gemmT, [3, 4], [3]), (gemm, [4, 3], [1, 3]), (matmul, [4, 3], [3])] {
            let graph = ONNXGraph(name: "g", nodes: [ONNXNode(name: "act", opType: "Tanh", inputs: ["x"], outputs: ["h"])] + nodes,
                                  initializers: [ONNXTensor(name: "w", dims: weightDims, values: values(weightDims)),
                                                 ONNXTensor(name: "b", dims: biasDims, values: values(biasDims))],
                                  inputs: [ONNXValueInfo(name: "x", dims: [nil, 4])], outputs: [ONNXValueInfo(name: "y", dims: [nil, 3])])
            let network = try ONNXNetwork(ONNXModel(graph: graph))
            var h = RandomGenerator(seed: 0)
            let model = try MultiHeadModel(from: network, head: nil, newClasses: 2, using: &h)
            XCTAssertEqual(model.head("old").weight.shape, [3, 4])
            let old = try withoutGradients { try model.forward(x, capturing: ["old_head"]).features["old_head"]! }
            XCTAssertLessThan(maxDifference(old, withoutGradients { network(x) }), 1e-5, nodes.map(\.opType).joined(separator: "+"))
        }
    }

    func testBadHeadsAreClearErrors() throws {
        var g = RandomGenerator(seed: 0)
        XCTAssertThrowsError(try MultiHeadModel(from: network(), head: "nope", newClasses: 3, using: &g)) {
            XCTAssertTrue("\($0)".contains("branchnet.onnx: has no node named 'nope'; classifier heads it could take: node_linear (Gemm → linear)"), "\($0)")
        }
        XCTAssertThrowsError(try MultiHeadModel(from: network(), head: "node_relu", newClasses: 3, using: &g)) {
            XCTAssertTrue("\($0)".contains("node 'node_relu' is a Relu; a classifier head is a Gemm or MatMul"), "\($0)")
        }
        // A Gemm whose output goes through anything but Softmax, Identity or Dropout is not the last layer.
        let graph = ONNXGraph(name: "g", nodes: [ONNXNode(name: "fc", opType: "Gemm", inputs: ["x", "w"], outputs: ["h"], attributes: [ONNXAttribute("transB", .int(1))]),
                                                 ONNXNode(name: "act", opType: "Relu", inputs: ["h"], outputs: ["y"])],
                              initializers: [ONNXTensor(name: "w", dims: [2, 4], values: .floats([Float](repeating: 0.1, count: 8)))],
                              inputs: [ONNXValueInfo(name: "x", dims: [nil, 4])], outputs: [ONNXValueInfo(name: "y", dims: [nil, 2])])
        XCTAssertThrowsError(try MultiHeadModel(from: ONNXNetwork(ONNXModel(graph: graph), file: "relu.onnx"), head: nil, newClasses: 3, using: &g)) {
            XCTAssertTrue("\($0)".contains("relu.onnx: head 'fc' (Gemm) is followed by Relu node 'act'"), "\($0)")
        }
        XCTAssertThrowsError(try network().parameterNames(readBy: ["nope"])) {
            XCTAssertTrue("\($0)".contains("has no node named 'nope' (nodes: node_conv2d, node_relu"), "\($0)")
        }
        XCTAssertThrowsError(try network().parameterNames(readBy: ["node_relu"])) {
            XCTAssertTrue("\($0)".contains("read no trainable parameters"), "\($0)")
        }
    }

    // MARK: Training

    /// Fashion-MNIST classes 5-9 (new task, 160 images) and 0-4 (old task, for joint training).
    func tasks() throws -> (new: Dataset, old: Dataset) {
        try requireTool(FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist"), "dataset-fashion-mnist is not installed (make test installs it)")
        let data = try FashionMNIST()
        let new = try data.train.selectingClasses([5, 6, 7, 8, 9]), old = try data.train.selectingClasses([0, 1, 2, 3, 4])
        return (new.subset(Array(0..<160)), old.subset(Array(0..<160)))
    }

    func training(steps: Int = 30) -> TrainerConfiguration {
        var c = TrainerConfiguration()
        c.steps = steps
        c.batchSize = 16
        c.learningRate = 0.05
        c.warmupSteps = 0
        return c
    }

    /// Every strategy trains the re-headed import through the one Trainer: the loss goes down,
    /// what the strategy freezes is bit-for-bit unchanged (batch-norm statistics always), and
    /// what it trains moves. `frozenLayers` (the CLI's `--freeze`) keeps the stem and the left
    /// branch fixed while the rest fine-tunes.
    func testEveryStrategyFineTunesTheImportedNetwork() throws {
        let (new, old) = try tasks()
        let stemAndLeft = try network().parameterNames(readBy: ["node_conv2d", "conv2d_1"])
        XCTAssertEqual(stemAndLeft, ["stem.weight", "stem.bias", "left.weight", "left.bias"])
        for (label, strategy, frozen) in TransferStrategy.allCases.map({ ($0.rawValue, $0, [String]()) }) + [("finetune --freeze", .finetune, stemAndLeft)] {
            var g = RandomGenerator(seed: 2)
            let base = try network()
            if strategy == .scratch { base.reinitializeParameters(using: &g) }
            let model = try MultiHeadModel(from: base, head: nil, newClasses: 5, using: &g)
            let before = Dictionary(uniqueKeysWithValues: model.stateDict().map { ($0.name, $0.tensor.scalars) })
            var configuration = TransferConfiguration(strategy: strategy)
            configuration.frozenLayers = frozen
            let logits = try network().classifierHead().logits
            let trainer = try KnowledgeTransfer.trainer(model, strategy: configuration, training: training(),
                                                        oldModel: strategy == .lwf ? try network().truncated(at: logits) : nil, oldTask: old)
            let history = try trainer.fit(train: new).history
            XCTAssertLessThan(history.last!.loss, history.first!.loss, "\(label): the loss goes down")
            let changed = Set(model.stateDict().filter { before[$0.name] != $0.tensor.scalars }.map(\.name))
            let backbone = Set(model.backbone.namedParameters().map { "backbone." + $0.name })
            XCTAssertTrue(changed.contains("new_head.weight"), label)
            XCTAssertFalse(changed.contains { $0.hasSuffix("running_mean") || $0.hasSuffix("running_var") }, "\(label): statistics stay fixed")
            switch strategy {
            case .freeze: XCTAssertEqual(changed, ["new_head.weight", "new_head.bias"], label)
            case .finetune where !frozen.isEmpty:
                XCTAssertEqual(backbone.subtracting(changed), Set(frozen.map { "backbone." + $0 }), "\(label): exactly the named layers stay")
            case .finetune, .scratch:
                XCTAssertTrue(backbone.isSubset(of: changed), "\(label): the whole backbone trains")
                XCTAssertFalse(changed.contains("old_head.weight"), label)
            case .gradual:
                // 3 groups asked, 2 non-empty ([mix], [the rest]): from step 15 of 30 everything trains.
                XCTAssertTrue(backbone.isSubset(of: changed), label)
            case .lwf, .joint: XCTAssertTrue(backbone.isSubset(of: changed) && changed.contains("old_head.weight"), label)
            }
        }
    }

    /// Gradual unfreezing splits an imported graph's nodes, top down, into groups of about
    /// equal parameter count; early in training only the head and the top group move.
    func testGradualUnfreezingGroupsTheImportedGraphByParameterCount() throws {
        let backbone = try reheaded().backbone as! ONNXNetwork
        // mix holds 2,320 of the 3,072 backbone parameters, so it is a group of its own.
        XCTAssertEqual(backbone.layerGroups(count: 3), [["mix.weight", "mix.bias"],
                                                        ["right.weight", "right.bias", "bn.weight", "bn.bias", "left.weight", "left.bias", "stem.weight", "stem.bias"]])
        // Six asked: mix alone is more than half, so the groups are mix, then right and bn, then left and stem.
        XCTAssertEqual(backbone.layerGroups(count: 6).count, 3)
        XCTAssertEqual(Set(backbone.layerGroups(count: 6).flatMap { $0 }), Set(backbone.namedParameters().map(\.name)))
        let (new, _) = try tasks()
        let model = try reheaded()
        let before = Dictionary(uniqueKeysWithValues: model.backbone.stateDict().map { ($0.name, $0.tensor.scalars) })
        var configuration = TransferConfiguration(strategy: .gradual)
        configuration.groups = 2
        // 12 steps, 3 stages of 4: the head alone, then mix, never the rest.
        _ = try KnowledgeTransfer.trainer(model, strategy: configuration, training: training(steps: 12)).fit(train: new, stoppingAfter: 8)
        let changed = Set(model.backbone.stateDict().filter { before[$0.name] != $0.tensor.scalars }.map(\.name))
        XCTAssertEqual(changed, ["mix.weight", "mix.bias"])
    }

    func testReinitializationIsSeededAndResetsBatchNorm() throws {
        let a = try network(), b = try network()
        var g1 = RandomGenerator(seed: 9), g2 = RandomGenerator(seed: 9)
        a.reinitializeParameters(using: &g1)
        b.reinitializeParameters(using: &g2)
        XCTAssertEqual(a.stateDict().map(\.tensor.scalars), b.stateDict().map(\.tensor.scalars))
        let state = Dictionary(uniqueKeysWithValues: a.stateDict().map { ($0.name, $0.tensor.scalars) })
        XCTAssertEqual(state["bn.running_var"], [Float](repeating: 1, count: 8))
        XCTAssertEqual(state["bn.weight"], [Float](repeating: 1, count: 8))
        XCTAssertEqual(state["bn.bias"], [Float](repeating: 0, count: 8))
        // stem: fanIn 9, so U(−1/3, 1/3).
        XCTAssertLessThanOrEqual(state["stem.weight"]!.map(Swift.abs).max()!, 1 / 3)
        XCTAssertNotEqual(state["mix.weight"], try network().stateDict().first { $0.name == "mix.weight" }!.tensor.scalars)
    }

    // MARK: Export

    /// A fine-tuned re-headed import exports as the imported graph with its trained
    /// initializers, then the new head as a Gemm, at the import's opset; read back by Distill
    /// and run by onnxruntime, it gives the trained model's logits.
    func testTheTrainedModelExportsAndRunsInOnnxRuntime() throws {
        let (new, _) = try tasks()
        let model = try reheaded()
        _ = try KnowledgeTransfer.trainer(model, strategy: TransferConfiguration(strategy: .finetune), training: training(steps: 10)).fit(train: new)
        let x = try input()
        model.eval()
        let expected = withoutGradients { model(x) }
        let onnx = try ONNXExport.model(model, inputShape: [1, 28, 28])
        XCTAssertEqual(onnx.opset, 18, "the imported graph's opset")
        XCTAssertEqual(onnx.graph.nodes.last?.opType, "Gemm")
        XCTAssertFalse(onnx.graph.nodes.contains { $0.opType == "Softmax" })
        // The float initializers are the state dict without the old head (and the graph's integer constants, val_12 and val_17, come along).
        let floats = onnx.graph.initializers.filter { if case .floats = $0.values { return true } else { return false } }
        XCTAssertEqual(Set(floats.map(\.name)), Set(model.stateDict().map(\.name).filter { !$0.hasPrefix("old_head") }))
        let path = scratch.appendingPathComponent("reheaded.onnx").path
        try onnx.write(to: path)
        let reread = try ONNXNetwork(contentsOf: path)
        XCTAssertLessThan(maxDifference(withoutGradients { reread(x) }, expected), 1e-5)
        // Exported again from the re-read file, it is the same graph.
        XCTAssertEqual(try ONNXExport.model(reread, inputShape: [1, 28, 28]).graph.nodes.map(\.opType), onnx.graph.nodes.map(\.opType))

        try requireTool(pythonCanImport("onnx", "onnxruntime", "numpy"), "python3 with onnx, onnxruntime and numpy is not installed (make test installs them)")
        let inputPath = scratch.appendingPathComponent("input.npy").path, expectedPath = scratch.appendingPathComponent("expected.npy").path
        try NPY.write(x, to: inputPath)
        try NPY.write(expected, to: expectedPath)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/check_onnx.py").path
        let result = try runPython([script, path, inputPath, expectedPath])
        XCTAssertEqual(result.status, 0, result.output)
        let line = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.output.split(separator: "\n").last.map(String.init)?.utf8 ?? "".utf8)) as? [String: Any])
        XCTAssertLessThan(line["max_abs_diff"] as? Double ?? 1, 1e-4, result.output)
        XCTAssertEqual(line["opset"] as? Int, 18)
    }

}
