import CMPI
import Foundation
import Tensors

/// The `Communicator` over MPI's world (Open MPI or MPICH), for processes started by
/// `mpirun`. A separate module, so that a package using Distill's library without
/// distribution never needs MPI: only the `distill` command links it.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    /// Ranks on this machine (Open MPI's and MPICH's launchers say; 1 when neither does).
    public let localSize: Int

    /// MPI's largest count per call is an Int32; longer buffers go in pieces.
    private static let piece = 1 << 30

    /// Whether this process was started by an MPI launcher (Open MPI's `mpirun`, or a PMI
    /// launcher such as MPICH's Hydra or Slurm's `srun`). A process started otherwise is a
    /// world of one and never initialises MPI.
    public static var isLaunchedByMPI: Bool {
        let environment = ProcessInfo.processInfo.environment
        return ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"].contains { environment[$0] != nil }
    }

    /// Initialises MPI. Call once, from the main thread, before any other MPI use.
    public init() throws {
        guard distill_mpi_init() == 0 else { throw CommunicatorError("MPI_Init_thread failed") }
        rank = Int(distill_mpi_rank())
        size = Int(distill_mpi_size())
        let environment = ProcessInfo.processInfo.environment
        localSize = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"].lazy.compactMap { environment[$0].flatMap { Int($0) } }.first ?? 1
    }

    deinit { distill_mpi_finalize() }

    /// Leaves the MPI world (every rank, at the end of a run that succeeded).
    public func finalize() { distill_mpi_finalize() }

    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) {
        Self.inPieces(values.count) { distill_mpi_allreduce_float(values.baseAddress! + $0, $1) }
    }

    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) {
        Self.inPieces(values.count) { distill_mpi_allreduce_double(values.baseAddress! + $0, $1) }
    }

    public func startAllReduceSum(_ values: UnsafeMutableBufferPointer<Float>) -> any StartedCollective {
        var requests: [UnsafeMutableRawPointer] = []
        Self.inPieces(values.count) { start, count in
            if let request = distill_mpi_iallreduce_float(values.baseAddress! + start, count) {
                requests.append(request)
            } else {
                // No memory for a request: this piece is summed at once, in the same order on every rank.
                distill_mpi_allreduce_float(values.baseAddress! + start, count)
            }
        }
        return Started(requests)
    }

    /// Non-blocking MPI requests; MPI moves them on inside `MPI_Test` and `MPI_Wait`.
    private final class Started: StartedCollective {
        private var requests: [UnsafeMutableRawPointer]
        private var done = false
        init(_ requests: [UnsafeMutableRawPointer]) { self.requests = requests }
        func progress() -> Bool {
            if !done { done = requests.allSatisfy { distill_mpi_test($0) != 0 } }
            return done
        }
        func wait() {
            for request in requests { distill_mpi_wait(request) }
            requests = []
            done = true
        }
        deinit { for request in requests { distill_mpi_wait(request) } }
    }

    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) {
        Self.inPieces(bytes.count) { distill_mpi_broadcast_bytes(bytes.baseAddress! + $0, $1, Int32(root)) }
    }

    /// Calls `body(start, count)` over `0..<total` in pieces MPI's Int32 counts can hold.
    private static func inPieces(_ total: Int, _ body: (Int, Int) -> Void) {
        var start = 0
        while start < total {
            let count = min(piece, total - start)
            body(start, count)
            start += count
        }
    }

    public func allGather(_ bytes: [UInt8]) -> [[UInt8]] {
        var result = [UInt8](repeating: 0, count: bytes.count * size)
        bytes.withUnsafeBytes { source in
            result.withUnsafeMutableBytes { target in
                distill_mpi_allgather_bytes(source.baseAddress, bytes.count, target.baseAddress)
            }
        }
        return (0..<size).map { Array(result[($0 * bytes.count)..<(($0 + 1) * bytes.count)]) }
    }

    public func barrier() { distill_mpi_barrier() }

    /// Ends the whole job (every rank) with `code`: what a rank does when it cannot go on
    /// and the others would wait for it forever.
    public func abort(code: Int32) -> Never {
        distill_mpi_abort(code)
        exit(code)
    }
}

public struct CommunicatorError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
