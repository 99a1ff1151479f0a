import Foundation

/// The work shared by the querying threads: the next batch, the examples asked for, the rate
/// limit and the first error (after which no new batch starts).
final class QueryState: @unchecked Sendable {
    private let lock = NSLock()
    private var nextBatch = 0
    private(set) var asked = 0
    private var done: Int
    private var nextStart = Date.distantPast
    private(set) var error: Error?
    let total: Int

    init(total: Int, answered: Int) {
        self.total = total
        done = answered
    }

    /// Batches are numbered from 0 again (a new chunk of examples).
    func startRound() { lock.withLock { nextBatch = 0 } }

    func next(_ count: Int) -> Int? {
        lock.withLock {
            guard error == nil, nextBatch < count else { return nil }
            defer { nextBatch += 1 }
            return nextBatch
        }
    }

    func reserve(_ examples: Int, limit: Int?) -> Bool {
        lock.withLock {
            if let limit, asked + examples > limit { return false }
            asked += examples
            return true
        }
    }

    func waitForSlot(_ perSecond: Double) throws {
        guard perSecond > 0 else { return }
        let start: Date = lock.withLock {
            let start = max(Date(), nextStart)
            nextStart = start.addingTimeInterval(1 / perSecond)
            return start
        }
        let wait = start.timeIntervalSinceNow
        if wait > 0 { Thread.sleep(forTimeInterval: wait) }
    }

    func answered(_ examples: Int) -> Int { lock.withLock { done += examples; return done } }

    func fail(_ error: Error) { lock.withLock { if self.error == nil { self.error = error } } }
}
