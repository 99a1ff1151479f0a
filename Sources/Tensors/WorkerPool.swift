import Foundation
import Synchronization

/// Persistent compute threads for `Compute.parallelFor`. Dispatch's concurrentPerform cost
/// about 3 ms a call here (thread wake-ups), ten times the work of a 1M-element add; these
/// workers spin briefly on an atomic ticket after each job, then sleep on a condition.
///
/// A job is split into `chunks` indices handed out through `ticket`, which packs the job's
/// generation (high 32 bits) with the next chunk index (low 32 bits), so a late worker can
/// never take a chunk of a newer job for an older one.
final class WorkerPool: @unchecked Sendable {
    private let ticket = Atomic<Int>(0)
    private let remaining = Atomic<Int>(0)
    /// The current job; read by a worker only after it wins a chunk of the job's generation.
    private var job: JobBox?
    private var chunks = 0
    /// Workers asleep on `lock`, and whether the pool is ending: atomics, so that neither a job's
    /// start nor a worker's loop takes the lock while every worker is spinning (it did, and at
    /// batch-1 inference, a job every few microseconds, the two threads met on it).
    private let sleepers = Atomic<Int>(0)
    private let retired = Atomic<Bool>(false)
    private let lock = NSCondition()
    let workerCount: Int

    init(workers: Int) {
        workerCount = workers
        for index in 0..<workers {
            let thread = Thread { self.workerLoop() }
            thread.name = "distill-compute-\(index + 1)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Runs `body(chunk)` for every chunk in `0..<chunks` on the caller and the workers; returns when all are done.
    /// Calls must not overlap (the engine calls it from one thread at a time per pool).
    func run(chunks count: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { escaping in
            let generation = (ticket.load(ordering: .acquiring) >> 32) + 1
            let box = JobBox(escaping)
            job = box
            chunks = count
            remaining.store(count, ordering: .relaxed)
            ticket.store(generation << 32, ordering: .sequentiallyConsistent)
            // A worker counts itself a sleeper before it checks the ticket (both sequentially
            // consistent): either it sees this job, or this load sees it asleep and wakes it.
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                lock.lock()
                lock.broadcast()
                lock.unlock()
            }
            work(generation: generation)
            while remaining.load(ordering: .acquiring) > 0 {}
            // Every chunk has run: no worker can reach the closure any more, so it is
            // released here and withoutActuallyEscaping's check holds.
            box.body = nil
            job = nil
        }
    }

    /// Takes and runs chunks of job `generation` until none is left.
    private func work(generation: Int) {
        while true {
            let current = ticket.load(ordering: .acquiring)
            guard current >> 32 == generation, current & 0xFFFF_FFFF < chunks else { return }
            let (exchanged, _) = ticket.compareExchange(expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
            guard exchanged else { continue }
            job!.body!(current & 0xFFFF_FFFF)
            remaining.subtract(1, ordering: .releasing)
        }
    }

    /// Ends the workers once they next wake (the thread count changed).
    func retire() {
        lock.lock()
        retired.store(true, ordering: .sequentiallyConsistent)
        ticket.add(1 << 32, ordering: .sequentiallyConsistent)
        lock.broadcast()
        lock.unlock()
    }

    private func workerLoop() {
        var seen = 0
        while true {
            if retired.load(ordering: .acquiring) { return }
            var generation = ticket.load(ordering: .acquiring) >> 32
            var spins = 0
            while generation == seen && spins < 1_000_000 {
                spins += 1
                generation = ticket.load(ordering: .acquiring) >> 32
            }
            if generation == seen {
                lock.lock()
                sleepers.add(1, ordering: .sequentiallyConsistent)
                while ticket.load(ordering: .sequentiallyConsistent) >> 32 == seen { lock.wait() }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                lock.unlock()
                generation = ticket.load(ordering: .acquiring) >> 32
            }
            seen = generation
            Compute.prepareThread()
            work(generation: generation)
        }
    }
}

/// Holds a job's closure so that it can be dropped before the job's scope ends.
private final class JobBox {
    var body: ((Int) -> Void)?
    init(_ body: @escaping (Int) -> Void) { self.body = body }
}
