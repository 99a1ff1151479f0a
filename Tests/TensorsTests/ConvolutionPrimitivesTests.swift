import CKernels
import Foundation
import Tensors
import TestSupport
import XCTest

/// conv2d through oneDNN's convolution primitives (Kernels/ConvolutionPrimitives.swift,
/// Sources/CKernels/convolution.c) against the im2col path, on shapes chosen to be awkward:
/// strides, asymmetric padding, groups, 1×1, dilation, batches of 1 and 7, non-square images,
/// on one and two threads; output and the gradients of input, weight and bias; and
/// GoldenOpsTests' PyTorch values for conv2d on the primitives.
final class ConvolutionPrimitivesTests: XCTestCase {
    override func tearDown() {
        Compute.threadCount = ProcessInfo.processInfo.activeProcessorCount
        Compute.convolutionPath = ConvolutionPath.primitives.isSupported ? .primitives : .im2col
    }

    private struct Case {
        let name: String
        let batch: Int, channels: Int, height: Int, width: Int, outChannels: Int
        var kernel = (3, 3), stride = (1, 1), padding = (0, 0), dilation = (1, 1), groups = 1, bias = true
    }

    private let cases: [Case] = [
        Case(name: "3x3 s1 p1", batch: 7, channels: 5, height: 11, width: 9, outChannels: 6, padding: (1, 1)),
        Case(name: "3x3 s2 p1 odd", batch: 7, channels: 16, height: 15, width: 13, outChannels: 32, stride: (2, 2), padding: (1, 1)),
        Case(name: "1x1 s2 (resnet shortcut, negative right padding)", batch: 4, channels: 16, height: 16, width: 16, outChannels: 32,
             kernel: (1, 1), stride: (2, 2), bias: false),
        Case(name: "1x1 s1", batch: 1, channels: 24, height: 7, width: 5, outChannels: 8, kernel: (1, 1)),
        Case(name: "batch 1, 5x3 kernel, stride (2, 1), padding (2, 1)", batch: 1, channels: 3, height: 17, width: 10, outChannels: 4,
             kernel: (5, 3), stride: (2, 1), padding: (2, 1)),
        Case(name: "groups 2", batch: 7, channels: 8, height: 9, width: 9, outChannels: 12, padding: (1, 1), groups: 2),
        Case(name: "groups 4, stride 2", batch: 3, channels: 8, height: 10, width: 12, outChannels: 8, stride: (2, 2), padding: (1, 1), groups: 4),
        Case(name: "dilation 2", batch: 2, channels: 4, height: 12, width: 11, outChannels: 6, padding: (2, 2), dilation: (2, 2)),
        Case(name: "depthwise with dilation (grouped path)", batch: 2, channels: 6, height: 10, width: 10, outChannels: 6,
             padding: (2, 2), dilation: (2, 2), groups: 6),
        Case(name: "kernel as large as the image", batch: 5, channels: 2, height: 4, width: 6, outChannels: 3, kernel: (4, 6)),
        Case(name: "one input channel (first layer)", batch: 9, channels: 1, height: 28, width: 28, outChannels: 8, padding: (1, 1)),
    ]

    /// Output and gradients of input, weight and bias for upstream gradient g on `path`.
    private func run(_ c: Case, path: ConvolutionPath, threads: Int, seed: UInt64) -> [[Float]] {
        Compute.convolutionPath = path
        Compute.threadCount = threads
        let x = randomLeaf([c.batch, c.channels, c.height, c.width], seed: seed)
        let w = randomLeaf([c.outChannels, c.channels / c.groups, c.kernel.0, c.kernel.1], seed: seed + 1, scale: 0.3)
        let b = c.bias ? randomLeaf([c.outChannels], seed: seed + 2) : nil
        let y = Tensor.conv2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups)
        let g = randomLeaf(y.shape, seed: seed + 3).detached()
        (y * g).sum().backward()
        return [y.scalars, x.grad!.scalars, w.grad!.scalars] + (b.map { [$0.grad!.scalars] } ?? [])
    }

    func testPrimitivesMatchIm2colOnAwkwardShapes() throws {
        try XCTSkipUnless(ConvolutionPath.primitives.isSupported, "this build has no oneDNN convolution primitives")
        for (index, c) in cases.enumerated() {
            let seed = UInt64(100 + 10 * index)
            let reference = run(c, path: .im2col, threads: 1, seed: seed)
            // Two threads: parts of 3 and 4 samples at batch 7, im2col below batch 4.
            for threads in [1, 2] {
                let got = run(c, path: .primitives, threads: threads, seed: seed)
                XCTAssertEqual(got.count, reference.count)
                for (name, (a, e)) in zip(["output", "input gradient", "weight gradient", "bias gradient"], zip(got, reference)) {
                    assertClose(a, e, absolute: 1e-4, relative: 1e-4, "\(c.name), \(threads) threads: \(name)")
                }
            }
        }
    }

    func testGradientsMatchFiniteDifferencesOnPrimitives() throws {
        try XCTSkipUnless(ConvolutionPath.primitives.isSupported, "this build has no oneDNN convolution primitives")
        Compute.convolutionPath = .primitives
        Compute.threadCount = 1 // every batch size runs the primitives on one thread
        // Small shapes: every input and weight is perturbed twice.
        let small = [
            Case(name: "3x3 s2 p1 odd", batch: 3, channels: 4, height: 7, width: 6, outChannels: 5, stride: (2, 2), padding: (1, 1)),
            Case(name: "groups 2", batch: 4, channels: 4, height: 5, width: 5, outChannels: 6, padding: (1, 1), groups: 2),
            Case(name: "1x1 s2", batch: 2, channels: 3, height: 6, width: 6, outChannels: 4, kernel: (1, 1), stride: (2, 2)),
        ]
        for c in small {
            let x = randomLeaf([c.batch, c.channels, c.height, c.width], seed: 1)
            let w = randomLeaf([c.outChannels, c.channels / c.groups, c.kernel.0, c.kernel.1], seed: 2, scale: 0.3)
            assertGradientsMatchFiniteDifferences([x, w], tolerance: 2e-2, step: 1e-2, c.name) { t in
                Tensor.conv2d(t[0], weight: t[1], stride: c.stride, padding: c.padding, groups: c.groups)
            }
        }
    }

    /// PyTorch's convolutions (GoldenOpsTests' fixture) on the primitives: one thread, so that
    /// the fixture's batches of 1 and 2 run them (at two threads they would run im2col).
    func testGoldenConvolutionCasesOnPrimitives() throws {
        try XCTSkipUnless(ConvolutionPath.primitives.isSupported, "this build has no oneDNN convolution primitives")
        Compute.convolutionPath = .primitives
        Compute.threadCount = 1
        let cases = try GoldenOpsTests.loadCases().filter { $0.op == "conv2d" }
        XCTAssertGreaterThanOrEqual(cases.count, 6)
        assertMatchPyTorch(cases, GoldenOpsTests.apply)
    }

    /// The batch is split over the threads by the same rule as the im2col path, and the
    /// per-thread weight gradients are added in batch order: two runs give the same bits.
    func testPrimitivesAreDeterministic() throws {
        try XCTSkipUnless(ConvolutionPath.primitives.isSupported, "this build has no oneDNN convolution primitives")
        let c = cases[1]
        XCTAssertEqual(run(c, path: .primitives, threads: 2, seed: 7), run(c, path: .primitives, threads: 2, seed: 7))
    }

    /// On Linux the build links oneDNN, and conv2d runs the primitives by default.
    func testLinuxRunsThePrimitivesByDefault() {
        #if os(Linux)
        XCTAssertTrue(ConvolutionPath.primitives.isSupported)
        XCTAssertEqual(Compute.convolutionPath, .primitives)
        #else
        XCTAssertEqual(Compute.convolutionPath, ConvolutionPath.primitives.isSupported ? .primitives : .im2col)
        #endif
    }

    /// A shape oneDNN refuses answers 0 (the caller then runs im2col), without a crash and
    /// without asking oneDNN again each call.
    func testRefusedShapeAnswersZero() {
        // Groups that do not divide the channels: oneDNN's descriptor check refuses them.
        var shape = distill_convolution_shape(batch: 1, channels: 2, height: 5, width: 5, outChannels: 3, groups: 3,
                                              kernelHeight: 3, kernelWidth: 3, strideHeight: 1, strideWidth: 1,
                                              paddingHeight: 0, paddingWidth: 0, dilationHeight: 1, dilationWidth: 1,
                                              outputHeight: 3, outputWidth: 3)
        var image = [Float](repeating: 1, count: 50), weights = [Float](repeating: 1, count: 36), output = [Float](repeating: 0, count: 54)
        for _ in 0..<2 {
            XCTAssertEqual(distill_convolution_run(&shape, DISTILL_CONVOLUTION_FORWARD, 1, &image, &weights, &output, nil), 0)
        }
    }
}
