import CBLAS
import Foundation

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
