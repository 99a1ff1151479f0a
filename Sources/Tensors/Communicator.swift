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
}

extension Communicator {
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

    /// The tensors summed over all ranks and divided by `size`, as fresh tensors (the
    /// gradients of a global batch's mean loss when each rank's loss is its shard's mean),
    /// in buckets of about `bucketBytes`: one collective per bucket, not one per tensor.
    public func averaged(_ tensors: [Tensor], bucketBytes: Int = 4 << 20) -> [Tensor] {
        guard isDistributed, !tensors.isEmpty else { return tensors }
        let capacity = max(bucketBytes / 4, tensors.map(\.count).max() ?? 1)
        var bucket = [Float](repeating: 0, count: capacity)
        let scale = 1 / Float(size)
        var result: [Tensor] = []
        result.reserveCapacity(tensors.count)
        var start = 0
        while start < tensors.count {
            var end = start, filled = 0
            while end < tensors.count && (end == start || filled + tensors[end].count <= capacity) {
                filled += tensors[end].count
                end += 1
            }
            bucket.withUnsafeMutableBufferPointer { b in
                var offset = 0
                for tensor in tensors[start..<end] {
                    tensor.withUnsafeBufferPointer { (b.baseAddress! + offset).update(from: $0.baseAddress!, count: $0.count) }
                    offset += tensor.count
                }
                allReduceSum(UnsafeMutableBufferPointer(rebasing: b[0..<filled]))
                offset = 0
                for tensor in tensors[start..<end] {
                    let averaged = Tensor(uninitialized: tensor.shape)
                    averaged.withUnsafeMutableBufferPointer { t in
                        for i in 0..<t.count { t[i] = b[offset + i] * scale }
                    }
                    offset += tensor.count
                    result.append(averaged)
                }
            }
            start = end
        }
        return result
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
