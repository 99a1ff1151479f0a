import Tensors

extension ONNXOperators {
    // MARK: Resize

    /// Resize (opset 11 and later): nearest, linear and cubic interpolation, separable over
    /// axes, with every coordinate transformation but `tf_crop_and_resize`.
    ///
    /// Inputs are X, roi, scales and sizes; opset 11 requires `scales` (empty when `sizes`
    /// is given), opset 13 makes both optional, opset 18 adds `axes` and
    /// `keep_aspect_ratio_policy`. Each resized axis is a sum of index selections weighted
    /// per output position (one for nearest, two for linear, four for cubic), so the
    /// gradient flows to X as it does through PyTorch's `interpolate`.
    func resize() throws -> Tensor {
        guard opset >= 11 else { throw fail("Resize from operator set \(opset) is not supported (opset 11 and later are)") }
        let x = try tensor(0)
        let mode = try string("mode", "nearest")
        guard ["nearest", "linear", "cubic"].contains(mode) else { throw fail("mode '\(mode)' is not nearest, linear or cubic") }
        guard try int("antialias", 0) == 0 else { throw fail("antialias 1 is not supported") }
        let axes = try intList("axes").map { list in try list.map { a -> Int in
            guard a >= -x.rank, a < x.rank else { throw fail("axis \(a) is out of range for \(x.shape)") }
            return a < 0 ? a + x.rank : a
        } } ?? Array(0..<x.rank)
        guard Set(axes).count == axes.count else { throw fail("axes \(axes) repeat an axis") }

        // An empty tensor counts as absent: exporters pass one for scales when sizes are given.
        let hasScales = optional(2).map { $0.dims.reduce(1, *) > 0 } ?? false
        let hasSizes = optional(3).map { $0.dims.reduce(1, *) > 0 } ?? false
        let input = x.shape.dimensions
        var outputSizes = input, scaleFactors = [Float](repeating: 1, count: x.rank)
        switch (hasScales, hasSizes) {
        case (true, false):
            let values = try tensor(2).scalars
            guard values.count == axes.count, values.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                throw fail("scales \(values) should be \(axes.count) positive numbers")
            }
            for (a, s) in zip(axes, values) {
                scaleFactors[a] = s
                let size = (Double(input[a]) * Double(s)).rounded(.down)
                guard size <= Double(ONNXOperators.maximumElements) else { throw fail("scale \(s) makes axis \(a) too large") }
                outputSizes[a] = Int(size)
            }
        case (false, true):
            let requested = try ints(3)
            guard requested.count == axes.count, requested.allSatisfy({ $0 > 0 && $0 <= ONNXOperators.maximumElements }) else {
                throw fail("sizes \(requested) should be \(axes.count) positive sizes")
            }
            let policy = try string("keep_aspect_ratio_policy", "stretch")
            switch policy {
            case "stretch":
                for (a, size) in zip(axes, requested) {
                    outputSizes[a] = size
                    scaleFactors[a] = Float(size) / Float(input[a])
                }
            case "not_larger", "not_smaller":
                let ratios = zip(axes, requested).map { a, size in Float(size) / Float(input[a]) }
                let scale = policy == "not_larger" ? ratios.min()! : ratios.max()!
                for a in axes {
                    scaleFactors[a] = scale
                    outputSizes[a] = Int((scale * Float(input[a]) + 0.5).rounded(.down))
                }
            default: throw fail("keep_aspect_ratio_policy '\(policy)' is not stretch, not_larger or not_smaller")
            }
        case (false, false): throw fail("needs scales or sizes")
        case (true, true): throw fail("has both scales and sizes; exactly one is allowed")
        }
        guard outputSizes.allSatisfy({ $0 > 0 }) else { throw fail("resizing \(x.shape) gives an empty shape \(outputSizes)") }
        _ = try checked(outputSizes)

        let geometry = try ResizeGeometry(
            transformation: try string("coordinate_transformation_mode", "half_pixel"), mode: mode,
            nearestMode: try string("nearest_mode", "round_prefer_floor"), cubicCoefficient: try float("cubic_coeff_a", -0.75),
            excludeOutside: try int("exclude_outside", 0) != 0, fail: fail)
        var y = x
        for a in axes where outputSizes[a] != input[a] || scaleFactors[a] != 1 {
            var weightShape = [Int](repeating: 1, count: x.rank)
            weightShape[a] = outputSizes[a]
            var sum: Tensor?
            for tap in geometry.taps(input: input[a], output: outputSizes[a], scale: scaleFactors[a]) {
                var term = y.indexSelect(alongAxis: a, indices: tap.indices)
                if let weights = tap.weights { term = term * Tensor(weights, shape: Shape(weightShape)) }
                sum = sum.map { $0 + term } ?? term
            }
            y = sum!
        }
        return y
    }
}

/// Where each output position of one resized axis reads the input, as ONNX's Resize
/// specifies: the coordinate transformation, then the interpolation's neighbours (clamped
/// to the edge) and their weights.
struct ResizeGeometry {
    /// One neighbour per output position: its input index, and its weight (nil: all 1).
    typealias Tap = (indices: [Int], weights: [Float]?)

    let transformation: String, mode: String, nearestMode: String
    let cubicCoefficient: Float, excludeOutside: Bool

    init(transformation: String, mode: String, nearestMode: String, cubicCoefficient: Float, excludeOutside: Bool,
         fail: (String) -> ONNXOperators.Failure) throws {
        let transformations = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn"]
        guard transformations.contains(transformation) else {
            throw fail("coordinate_transformation_mode '\(transformation)' is not supported (supported: \(transformations.joined(separator: ", ")))")
        }
        guard mode != "nearest" || ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"].contains(nearestMode) else {
            throw fail("nearest_mode '\(nearestMode)' is not round_prefer_floor, round_prefer_ceil, floor or ceil")
        }
        guard cubicCoefficient.isFinite else { throw fail("cubic_coeff_a \(cubicCoefficient) is not finite") }
        self.transformation = transformation
        self.mode = mode
        self.nearestMode = nearestMode
        self.cubicCoefficient = cubicCoefficient
        self.excludeOutside = excludeOutside
    }

    /// The input coordinate of output position `j` (in Float, as onnxruntime computes it).
    func source(_ j: Int, input: Int, output: Int, scale: Float) -> Float {
        let x = Float(j)
        switch transformation {
        case "align_corners": return output == 1 ? 0 : x * Float(input - 1) / Float(output - 1)
        case "asymmetric": return x / scale
        case "pytorch_half_pixel": return output > 1 ? (x + 0.5) / scale - 0.5 : 0
        case "tf_half_pixel_for_nn": return (x + 0.5) / scale
        case "half_pixel_symmetric":
            // Centres the output on the input when the output size was rounded down.
            let adjustment = Float(output) / (scale * Float(input))
            return Float(input) / 2 * (1 - adjustment) + (x + 0.5) / scale - 0.5
        default: return (x + 0.5) / scale - 0.5
        }
    }

    func taps(input: Int, output: Int, scale: Float) -> [Tap] {
        // Coordinates far outside the input all read its edge; bounding them keeps Int(_:) in range.
        let coordinates = (0..<output).map { min(max(source($0, input: input, output: output, scale: scale), -3), Float(input + 2)) }
        func clamp(_ i: Int) -> Int { min(max(i, 0), input - 1) }
        switch mode {
        case "nearest":
            return [(coordinates.map { c in
                let below = c.rounded(.down), fraction = c - below
                let up: Bool
                switch nearestMode {
                case "round_prefer_ceil": up = fraction >= 0.5
                case "floor": up = false
                case "ceil": up = fraction > 0
                default: up = fraction > 0.5
                }
                return clamp(Int(below) + (up ? 1 : 0))
            }, nil)]
        case "linear":
            // The coordinate clamped into the input, then its two neighbours.
            let clamped = coordinates.map { min(max($0, 0), Float(input - 1)) }
            let lower = clamped.map { Int($0.rounded(.down)) }
            let upperWeights = zip(clamped, lower).map { $0 - Float($1) }
            return [(lower, upperWeights.map { 1 - $0 }), (lower.map { clamp($0 + 1) }, upperWeights)]
        default:
            // Keys' cubic convolution with a = cubic_coeff_a over the four neighbours.
            let a = cubicCoefficient
            func near(_ d: Float) -> Float { ((a + 2) * d - (a + 3)) * d * d + 1 }
            func far(_ d: Float) -> Float { ((a * d - 5 * a) * d + 8 * a) * d - 4 * a }
            var taps: [Tap] = (0..<4).map { _ in ([], []) }
            for c in coordinates {
                let below = c.rounded(.down), t = c - below, base = Int(below)
                var weights = [far(t + 1), near(t), near(1 - t), far(2 - t)]
                if excludeOutside {
                    for k in 0..<4 where base - 1 + k < 0 || base - 1 + k >= input { weights[k] = 0 }
                    let total = weights.reduce(0, +)
                    weights = weights.map { total != 0 ? $0 / total : 0 }
                }
                for k in 0..<4 {
                    taps[k].indices.append(clamp(base - 1 + k))
                    taps[k].weights!.append(weights[k])
                }
            }
            return taps
        }
    }
}
