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
        var start = 0
        while start < values.count {
            let count = min(Self.piece, values.count - start)
            distill_mpi_allreduce_float(values.baseAddress! + start, count)
            start += count
        }
    }

    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) {
        var start = 0
        while start < values.count {
            let count = min(Self.piece, values.count - start)
            distill_mpi_allreduce_double(values.baseAddress! + start, count)
            start += count
        }
    }

    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) {
        var start = 0
        while start < bytes.count {
            let count = min(Self.piece, bytes.count - start)
            distill_mpi_broadcast_bytes(bytes.baseAddress! + start, count, Int32(root))
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
