import Foundation

/// The collective operations of data-parallel training, over the processes ("ranks") of one
/// job: rank 0 … size − 1 run the same program on their own shards of each batch and sum
/// what they computed. `SingleProcess` is the world of one (no MPI needed); the `distill`
/// command brings an MPI implementation (target DistillMPI) when started by `mpirun`.
///
/// Every rank must make the same calls in the same order with the same sizes; a rank that
/// skips one blocks the others. Calls are made from one thread of each process.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Replaces `values` with their sum over all ranks.
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>)
    /// Replaces `values` with their sum over all ranks.
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>)
    /// Replaces `bytes` on every rank with rank `root`'s.
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int)
    /// Every rank's `bytes` (the same length on every rank), in rank order.
    func allGather(_ bytes: [UInt8]) -> [[UInt8]]
    func barrier()
    /// Starts replacing `values` with their sum over all ranks and returns at once; the sum
    /// is there when the returned collective's `wait()` returns. Until then `values` must
    /// stay allocated and untouched. Collectives, started or blocking, must be made in the
    /// same order on every rank. (Default: the blocking sum, already done.)
    func startAllReduceSum(_ values: UnsafeMutableBufferPointer<Float>) -> any StartedCollective
}

/// A collective operation under way (`Communicator.startAllReduceSum`).
public protocol StartedCollective: AnyObject {
    /// Lets the communication library move the operation on; true once it is complete.
    /// Called between pieces of other work, so that the transfer proceeds while it runs.
    func progress() -> Bool
    /// Blocks until the operation is complete.
    func wait()
}

/// A collective that was complete when it was returned.
public final class CompletedCollective: StartedCollective {
    public init() {}
    public func progress() -> Bool { true }
    public func wait() {}
}

extension Communicator {
    public func startAllReduceSum(_ values: UnsafeMutableBufferPointer<Float>) -> any StartedCollective {
        allReduceSum(values)
        return CompletedCollective()
    }

    public var isDistributed: Bool { size > 1 }
    /// Whether this rank writes files and prints: rank 0 only.
    public var isWriter: Bool { rank == 0 }

    /// The sum of `values` over all ranks.
    public func sum(_ values: [Double]) -> [Double] {
        guard isDistributed else { return values }
        var result = values
        result.withUnsafeMutableBufferPointer { allReduceSum($0) }
        return result
    }

    /// Replaces the tensors' values on every rank with rank 0's (parameters and buffers at start).
    public func broadcast(_ tensors: [Tensor]) {
        guard isDistributed else { return }
        for tensor in tensors {
            tensor.withUnsafeMutableBufferPointer { broadcast(UnsafeMutableRawBufferPointer($0), from: 0) }
        }
    }

    /// Every rank's `text`, in rank order (for checking that the ranks agree).
    public func allGather(_ text: String) -> [String] {
        guard isDistributed else { return [text] }
        let bytes = Array(text.utf8)
        var length = UInt64(bytes.count)
        let lengths = allGather(withUnsafeBytes(of: &length) { Array($0) }).map { $0.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
        let longest = Int(lengths.max() ?? 0)
        let padded = bytes + [UInt8](repeating: 0, count: longest - bytes.count)
        return zip(allGather(padded), lengths).map { String(decoding: $0.0.prefix(Int($0.1)), as: UTF8.self) }
    }
}

/// Averages parameters' gradients over the ranks in buckets, as PyTorch's
/// DistributedDataParallel does: backward reports each parameter whose gradient is complete
/// (`ready`), and once the reported gradients fill a bucket of `bucketBytes` their sum is
/// started while backward goes on through earlier layers; `finish()` starts the rest, waits
/// and replaces each `grad` with the average over the ranks. One collective per bucket, not
/// one per tensor. Buckets fill in the order backward completes gradients, which is the
/// same on every rank (the same program on the same graph).
public final class GradientAverager {
    public let communicator: any Communicator
    public let bucketBytes: Int
    /// False: nothing starts before `finish()` (to measure what overlapping hides).
    public let overlap: Bool
    private let members: Set<ObjectIdentifier>
    private let parameters: [Tensor]
    private var reported = Set<ObjectIdentifier>()
    private var pending: [Tensor] = []
    private var pendingCount = 0
    private var started: [(parameters: [Tensor], buffer: UnsafeMutableBufferPointer<Float>, collective: any StartedCollective)] = []
    private var firstIncomplete = 0
    /// Seconds `finish()` waited for the sums after backward: the communication that
    /// backward did not hide.
    public private(set) var waitSeconds = 0.0

    public init(_ communicator: any Communicator, parameters: [Tensor], bucketBytes: Int = 1 << 20, overlap: Bool = true) {
        self.communicator = communicator
        self.parameters = parameters
        self.members = Set(parameters.map(ObjectIdentifier.init))
        self.bucketBytes = max(bucketBytes, 4)
        self.overlap = overlap
    }

    /// Backward's hook: `tensor`'s gradient is complete.
    public func ready(_ tensor: Tensor) {
        let id = ObjectIdentifier(tensor)
        guard members.contains(id), let gradient = tensor.grad, reported.insert(id).inserted else { return }
        pending.append(tensor)
        pendingCount += gradient.count
        if overlap && pendingCount * 4 >= bucketBytes { startPending() }
        progress()
    }

    /// Backward's other hook, after each op: lets the library move the started sums on
    /// (MPI progresses non-blocking collectives only inside its calls).
    public func progress() {
        while firstIncomplete < started.count && started[firstIncomplete].collective.progress() { firstIncomplete += 1 }
    }

    /// Starts the sums not yet started (gradients backward did not report go last, in
    /// parameter order), waits for all, and writes the averages into the `grad`s.
    public func finish() {
        for parameter in parameters where parameter.grad != nil && !reported.contains(ObjectIdentifier(parameter)) {
            reported.insert(ObjectIdentifier(parameter))
            pending.append(parameter)
            pendingCount += parameter.count
        }
        // Without overlap, the same buckets are cut here.
        var bucket: [Tensor] = [], filled = 0
        let all = pending
        pending = []
        pendingCount = 0
        for tensor in all {
            bucket.append(tensor)
            filled += tensor.count
            if filled * 4 >= bucketBytes {
                pending = bucket
                startPending()
                bucket = []
                filled = 0
            }
        }
        pending = bucket
        startPending()
        let start = DispatchTime.now().uptimeNanoseconds
        for entry in started { entry.collective.wait() }
        waitSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let scale = 1 / Float(communicator.size)
        for entry in started {
            var offset = 0
            for parameter in entry.parameters {
                let average = Tensor(uninitialized: parameter.grad!.shape)
                average.withUnsafeMutableBufferPointer { t in
                    for i in 0..<t.count { t[i] = entry.buffer[offset + i] * scale }
                }
                offset += average.count
                parameter.grad = average
            }
            entry.buffer.deallocate()
        }
        started = []
        firstIncomplete = 0
        reported = []
    }

    /// Copies the pending gradients into one buffer and starts its sum.
    private func startPending() {
        guard !pending.isEmpty else { return }
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: pending.reduce(0) { $0 + $1.grad!.count })
        var offset = 0
        for tensor in pending {
            tensor.grad!.withUnsafeBufferPointer { (buffer.baseAddress! + offset).update(from: $0.baseAddress!, count: $0.count) }
            offset += tensor.grad!.count
        }
        started.append((pending, buffer, communicator.startAllReduceSum(buffer)))
        pending = []
        pendingCount = 0
    }

    deinit {
        for entry in started {
            entry.collective.wait()
            entry.buffer.deallocate()
        }
    }
}

/// The world of one process: every collective is the identity.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) {}
    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) {}
    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) {}
    public func allGather(_ bytes: [UInt8]) -> [[UInt8]] { [bytes] }
    public func barrier() {}
}
