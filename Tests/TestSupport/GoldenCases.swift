import Foundation
import Tensors
import XCTest

/// One case of a fixture written by scripts/generate_golden_ops.py: an op, its inputs and
/// parameters, PyTorch's output, an upstream gradient G and PyTorch's gradients of
/// sum(output · G) for the inputs that ask for one.
public struct GoldenCase {
    public let name: String
    public let op: String
    public let params: [String: Any]
    public let inputs: [Tensor]
    public let output: (shape: [Int], data: [Float])
    public let upstream: [Float]
    public let grads: [[Float]?]

    /// Every case of the fixture at `url`.
    public static func load(_ url: URL) throws -> [GoldenCase] {
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        return (root["cases"] as! [[String: Any]]).map { raw in
            let inputs = (raw["inputs"] as! [[String: Any]]).map { input -> Tensor in
                Tensor(numbers(input["data"]), shape: Shape(input["shape"] as! [Int]), requiresGrad: input["grad"] as! Bool)
            }
            let output = raw["output"] as! [String: Any]
            return GoldenCase(name: raw["name"] as! String, op: raw["op"] as! String, params: raw["params"] as! [String: Any],
                              inputs: inputs, output: (output["shape"] as! [Int], numbers(output["data"])),
                              upstream: numbers(raw["upstream"]),
                              grads: (raw["grads"] as! [Any]).map { $0 is NSNull ? nil : numbers($0) })
        }
    }

    public func int(_ key: String) -> Int { params[key] as! Int }
    public func float(_ key: String) -> Float { (params[key] as! NSNumber).floatValue }
    public func floats(_ key: String) -> [Float] { Self.numbers(params[key]) }
    public func bool(_ key: String, default fallback: Bool = false) -> Bool { params[key] as? Bool ?? fallback }
    /// An (height, width) parameter given as one number or a pair; `fallback` when absent.
    public func pair(_ key: String, default fallback: (Int, Int)? = nil) -> (Int, Int) {
        if params[key] == nil, let fallback { return fallback }
        if let v = params[key] as? Int { return (v, v) }
        let a = params[key] as! [Int]
        return (a[0], a[1])
    }
    /// The reduction axes (nil: all).
    public var axes: [Int]? { params["axes"] as? [Int] }

    private static func numbers(_ any: Any?) -> [Float] { (any as! [NSNumber]).map(\.floatValue) }
}

/// Applies each case's op (`apply` maps a case and its inputs to the op's output) and compares
/// the output and the input gradients with PyTorch's. A case whose PyTorch gradient is all
/// zeros is itself a failure: any op that returned no gradient at all would pass it.
public func assertMatchPyTorch(_ cases: [GoldenCase], file: StaticString = #filePath, line: UInt = #line,
                               _ apply: (GoldenCase, [Tensor]) -> Tensor) {
    for c in cases {
        for input in c.inputs { input.zeroGrad() }
        let out = apply(c, c.inputs)
        XCTAssertEqual(out.shape.dimensions, c.output.shape, c.name, file: file, line: line)
        // Large-logit cases carry magnitudes near 1e4: a relative bound covers them.
        assertClose(out.scalars, c.output.data, absolute: 1e-4, relative: 1e-4, "\(c.name) forward", file: file, line: line)
        (out * Tensor(c.upstream, shape: out.shape)).sum().backward()
        for (index, expected) in c.grads.enumerated() {
            guard let expected else { continue }
            XCTAssertTrue(expected.contains { abs($0) > 1e-6 }, "\(c.name): PyTorch's gradient of input \(index) is all zeros, so it checks nothing",
                          file: file, line: line)
            guard let grad = c.inputs[index].grad else {
                XCTFail("\(c.name): input \(index) got no gradient", file: file, line: line)
                continue
            }
            assertClose(grad.scalars, expected, absolute: 1e-4, relative: 1e-3, "\(c.name) gradient of input \(index)", file: file, line: line)
        }
    }
}

/// Checks every case's gradients against central finite differences (fresh copies of the
/// inputs, so the fixture's tensors keep their values).
public func assertFiniteDifferences(_ cases: [GoldenCase], file: StaticString = #filePath, line: UInt = #line,
                                    _ apply: (GoldenCase, [Tensor]) -> Tensor) {
    for c in cases {
        let inputs = c.inputs.map { t in Tensor(t.scalars, shape: t.shape, requiresGrad: t.requiresGrad) }
        assertGradientsMatchFiniteDifferences(inputs, tolerance: 3e-2, step: 1e-2, c.name, file: file, line: line) { apply(c, $0) }
    }
}
