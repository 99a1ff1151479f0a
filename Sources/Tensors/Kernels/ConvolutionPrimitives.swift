import CKernels
import Synchronization

/// Convolutions through oneDNN's convolution primitives (Sources/CKernels/convolution.c):
/// forward, backward data and backward weights, each primitive made once per shape and kept.
/// Linux builds only; elsewhere `isAvailable` is false and conv2d keeps its im2col path.
///
/// Threading: the batch is split over our own pool, one single-threaded primitive per
/// thread's part (the parts' sizes are keys of their own), as the im2col path splits it.
/// The alternative, oneDNN's OpenMP threads on the whole batch while our pool waits, was
/// measured 2-14× slower than this split for whole resnet20 training steps at 2 threads on
/// a loaded machine, and 10-20× slower than im2col at batch 1 (two pools' threads spinning
/// on the same cores; docs/benchmarks.md, "oneDNN's convolution primitives"). So a batch
/// too small to give every thread two samples stays on the im2col path, which splits inside
/// a sample (`takes`).
enum ConvolutionPrimitives {
    static let isAvailable = distill_convolution_available() == 1

    /// Whether conv2d should run `shape` here: the path is on and every thread gets a part
    /// of at least two samples (or there is one thread).
    static func takes(_ shape: distill_convolution_shape) -> Bool {
        Compute.convolutionPath == .primitives && (Compute.threadCount == 1 || shape.batch >= 2 * Compute.threadCount)
    }

    /// output = conv(input, weight) + bias. False when oneDNN refused (the output is then unspecified).
    static func forward(_ shape: distill_convolution_shape, input: UnsafeMutablePointer<Float>, weight: UnsafeMutablePointer<Float>,
                        bias: UnsafeMutablePointer<Float>?, output: UnsafeMutablePointer<Float>) -> Bool {
        split(shape) { part, range, _ in
            distill_convolution_run(&part, DISTILL_CONVOLUTION_FORWARD, 1,
                                    input + range.lowerBound * imageCount(shape), weight,
                                    output + range.lowerBound * outputCount(shape), bias) == 1
        }
    }

    /// Both backward passes, each thread on its part of the batch: gradInput (when given) =
    /// the input's gradient, gradWeight (when given) = the weight's gradient, both overwritten;
    /// the output gradient is reordered once for both (`distill_convolution_backward`). Each
    /// part's weight gradient goes into a sum of its own, the sums added in batch order (the
    /// result does not depend on which thread finished first).
    static func backward(_ shape: distill_convolution_shape, input: UnsafeMutablePointer<Float>, weight: UnsafeMutablePointer<Float>,
                         gradOutput: UnsafeMutablePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
                         gradWeight: UnsafeMutablePointer<Float>?) -> Bool {
        let count = shape.outChannels * patchSize(shape)
        let parts = partCount(shape)
        let scratch = TensorStorage(uninitializedCount: gradWeight == nil ? 0 : (parts - 1) * count)
        return withExtendedLifetime(scratch) {
            let ok = split(shape) { part, range, index in
                let target = gradWeight.map { index == 0 ? $0 : scratch.pointer + (index - 1) * count }
                return distill_convolution_backward(&part, 1, input + range.lowerBound * imageCount(shape), weight,
                                                    gradOutput + range.lowerBound * outputCount(shape),
                                                    gradInput.map { $0 + range.lowerBound * imageCount(shape) }, target) == 1
            }
            guard ok, let gradWeight else { return ok }
            for index in 1..<Swift.max(parts, 1) {
                let source = scratch.pointer + (index - 1) * count
                for i in 0..<count { gradWeight[i] += source[i] }
            }
            return true
        }
    }

    /// Threads split the batch in `partCount` parts, each run by `body` on its sub-batch
    /// shape, its range of samples and its index; true when every part succeeded.
    private static func split(_ shape: distill_convolution_shape,
                              _ body: (inout distill_convolution_shape, Range<Int>, Int) -> Bool) -> Bool {
        let parts = partCount(shape)
        let failed = Atomic<Bool>(false)
        if parts == 1 {
            var part = shape
            return body(&part, 0..<shape.batch, 0)
        }
        // parallelFor's chunks are count·i/chunks ..< count·(i+1)/chunks: one a part here.
        Compute.parallelFor(parts, costPerItem: Int.max / parts) { chunks in
            for chunk in chunks {
                let range = (shape.batch * chunk / parts)..<(shape.batch * (chunk + 1) / parts)
                var part = shape
                part.batch = range.count
                if !body(&part, range, chunk) { failed.store(true, ordering: .relaxed) }
            }
        }
        return !failed.load(ordering: .relaxed)
    }

    /// Parts the batch is split in: one per thread, with at least two samples a part.
    private static func partCount(_ shape: distill_convolution_shape) -> Int {
        Swift.max(1, Swift.min(Compute.threadCount, shape.batch / 2))
    }

    private static func patchSize(_ s: distill_convolution_shape) -> Int { s.channels / s.groups * s.kernelHeight * s.kernelWidth }
    private static func outputArea(_ s: distill_convolution_shape) -> Int { s.outputHeight * s.outputWidth }
    private static func imageCount(_ s: distill_convolution_shape) -> Int { s.channels * s.height * s.width }
    private static func outputCount(_ s: distill_convolution_shape) -> Int { s.outChannels * s.outputHeight * s.outputWidth }
}
