import CBLAS
import CKernels
import Foundation

/// The instruction sets of the C kernels (Sources/CKernels), from the most portable.
public enum KernelPath: Int, CaseIterable, Sendable, CustomStringConvertible {
    case portable = 0
    /// AVX2 with fused multiply-add, 8 floats a vector.
    case avx2 = 1
    /// AVX-512F, 16 floats a vector (the int8 GEMM with AVX-512BW where the CPU has it).
    case avx512 = 2
    /// AVX-512F, BW and VNNI: the float kernels of `avx512`, the int8 GEMM with vpdpbusd.
    case avx512vnni = 3
    /// Intel AMX (Sapphire Rapids and later Xeons): the kernels of `avx512vnni`, the int8
    /// GEMM on AMX tiles (TDPBUSD), about 4× vpdpbusd's.
    case amx = 4

    /// Whether this build has the path and this CPU executes it.
    public var isSupported: Bool { distill_kernels_path_supported(cPath) == 1 }

    /// Whether the path runs by default where supported: it has been verified against the
    /// portable path by the tests on a CPU that executes it (docs/benchmarks.md says where).
    public var isVerified: Bool { distill_kernels_path_verified(cPath) == 1 }

    public var description: String { ["portable", "avx2", "avx512", "avx512vnni", "amx"][rawValue] }

    var cPath: distill_kernels_path { distill_kernels_path(rawValue: UInt32(rawValue)) }
}

/// How conv2d computes a (non-depthwise) convolution.
public enum ConvolutionPath: String, CaseIterable, Sendable {
    /// im2col + sgemm per sample, the batch split over our threads: every platform.
    case im2col
    /// oneDNN's convolution primitives, the batch split over our threads (Linux with
    /// oneDNN); batches smaller than two samples a thread still run im2col.
    case primitives

    /// Whether this build can run the path.
    public var isSupported: Bool { self == .im2col || ConvolutionPrimitives.isAvailable }
}

/// Process-wide compute settings: how many threads our kernels (and the BLAS) use, and
/// whether compute threads flush denormal floats to zero.
public enum Compute {
    nonisolated(unsafe) private static var storedThreadCount = ProcessInfo.processInfo.activeProcessorCount
    nonisolated(unsafe) private static var storedFlushDenormals = true

    /// Threads used by elementwise, reduction and convolution kernels and by the BLAS.
    /// Defaults to all active cores. This is our own knob: no environment variable is read or written.
    public static var threadCount: Int {
        get { storedThreadCount }
        set {
            require(newValue >= 1, "Compute.threadCount: must be at least 1, got \(newValue)")
            storedThreadCount = newValue
        }
    }

    /// When true (the default) every compute chunk runs with flush-to-zero and
    /// denormals-are-zero, so tiny gradients cannot fall into the CPU's slow path.
    /// Turning it off exists to measure the difference (see bench/).
    public static var flushDenormals: Bool {
        get { storedFlushDenormals }
        set {
            storedFlushDenormals = newValue
            distill_set_flush_denormals(newValue ? 1 : 0)
        }
    }

    /// Keeps the memory the process frees for its next allocations instead of handing it back
    /// to the system (glibc: no trimming of the heap's top, and blocks up to 64 MiB from the
    /// heap rather than their own mappings). Every forward pass allocates its activations
    /// afresh; without this, each of those pages is faulted in and zeroed again by the kernel on
    /// every pass (about 9% of an int8 resnet8 pass at batch 256). The `distill` command and
    /// the benchmarks call it once at start; a library user may, as it changes the whole
    /// process's allocator (the resident size stays at its peak). No effect off glibc.
    public static func keepFreedMemory() {
        distill_keep_freed_memory()
    }

    nonisolated(unsafe) private static var storedMatmulPrecision = MatmulPrecision.float32

    /// The arithmetic of matrix products (matmul, linear layers and their gradients): float32
    /// by default. Process-wide, as PyTorch's `set_float32_matmul_precision`; the Trainer sets
    /// it for its training steps only (`TrainerConfiguration.matmulPrecision`). Not to be
    /// changed while products run on other threads.
    public static var matmulPrecision: MatmulPrecision {
        get { storedMatmulPrecision }
        set {
            require(newValue.isSupported, "Compute.matmulPrecision: this CPU has no \(newValue) matrix products")
            storedMatmulPrecision = newValue
        }
    }

    /// Runs `body` with `matmulPrecision` set to `precision`, and restores it afterwards.
    public static func withMatmulPrecision<T>(_ precision: MatmulPrecision, _ body: () throws -> T) rethrows -> T {
        let saved = storedMatmulPrecision
        matmulPrecision = precision
        defer { storedMatmulPrecision = saved }
        return try body()
    }

    nonisolated(unsafe) private static var storedConvolutionPath: ConvolutionPath =
        ConvolutionPrimitives.isAvailable ? .primitives : .im2col

    /// How conv2d runs: oneDNN's primitives where this build has them, else im2col + sgemm.
    /// Settable for tests and benchmarks (both paths give the same results within float
    /// rounding); not to be changed while convolutions run on other threads.
    public static var convolutionPath: ConvolutionPath {
        get { storedConvolutionPath }
        set {
            require(newValue.isSupported, "Compute.convolutionPath: this build has no \(newValue) path")
            storedConvolutionPath = newValue
        }
    }

    /// The C kernels' path now: by default the widest one that this CPU executes and that has
    /// been verified (see `forceKernelPath`).
    public static var kernelPath: KernelPath {
        KernelPath(rawValue: Int(distill_kernels_active_path().rawValue))!
    }

    /// Forces the C kernels onto `path` (`nil`: back to the default choice); the tests run
    /// each path this way. Not to be called while kernels run on other threads.
    public static func forceKernelPath(_ path: KernelPath?) {
        guard let path else {
            distill_kernels_reset_path()
            return
        }
        require(path.isSupported, "Compute.forceKernelPath: this CPU does not execute the \(path) kernels")
        _ = distill_kernels_set_path(path.cPath)
    }

    /// Sets the calling thread's floating-point mode to match `flushDenormals`, and keeps
    /// the sgemm it calls on this thread.
    @inline(__always) static func prepareThread() {
        distill_set_flush_denormals(storedFlushDenormals ? 1 : 0)
        distill_single_threaded_blas()
    }

    /// Runs `body` over `0..<count` split into contiguous chunks, in parallel when the work
    /// is large enough (`count * costPerItem` above about 32k simple operations). Public for
    /// other modules' kernels (the optimizers); nested calls run serially.
    @inline(__always)
    public static func parallelFor(_ count: Int, costPerItem: Int = 1, _ body: (Range<Int>) -> Void) {
        prepareThread()
        let threads = storedThreadCount
        let work = count * max(costPerItem, 1)
        if threads <= 1 || work < 32_768 || count < 2 {
            body(0..<count)
            return
        }
        // One job at a time uses the pool; a nested call, or a call from a second thread while
        // the pool is busy, runs serially on its own thread.
        guard runLock.try() else {
            body(0..<count)
            return
        }
        defer { runLock.unlock() }
        let chunks = min(threads, count)
        workerPool(threads: threads).run(chunks: chunks) { chunk in
            let start = count * chunk / chunks
            let end = count * (chunk + 1) / chunks
            if start < end { body(start..<end) }
        }
    }

    nonisolated(unsafe) private static var pool: WorkerPool?
    private static let runLock = NSLock()

    /// The pool for `threads` (threads − 1 workers plus the caller), made on first use and
    /// remade when the thread count changes. Called with `runLock` held.
    private static func workerPool(threads: Int) -> WorkerPool {
        if let pool, pool.workerCount == threads - 1 { return pool }
        pool?.retire()
        let fresh = WorkerPool(workers: threads - 1)
        pool = fresh
        return fresh
    }
}

/// How matrix products compute (`Compute.matmulPrecision`).
public enum MatmulPrecision: String, CaseIterable, Codable, Sendable {
    /// float32 operands and sums.
    case float32
    /// Each product's operands rounded to bfloat16 (8 bits of mantissa), the sums in float32,
    /// through oneDNN (AMX tiles or AVX512-BF16 where the CPU has them); the weights stay
    /// float32. PyTorch's bfloat16 autocast on CPU computes its products the same way.
    /// Products under 2²⁰ multiply-adds (attention's per-head products of short sequences)
    /// stay float32: a call into oneDNN costs more than they do.
    case bfloat16

    /// Whether this build and CPU compute products this way (bfloat16: oneDNN has a bfloat16
    /// matmul for the CPU, which needs AVX-512).
    public var isSupported: Bool { self == .float32 || Self.bfloat16Implementation != nil }

    /// oneDNN's name for the bfloat16 matmul it runs here ("brg:avx512_core_amx_bf16", ...),
    /// or nil where there is none.
    public static let bfloat16Implementation: String? = distill_gemm_bf16_implementation().map { String(cString: $0) }
}
