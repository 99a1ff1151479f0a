import DistillMPI
import Foundation
import Tensors

/// The processes of this run: one, or the ranks `mpirun` started (data-parallel training).
/// Started by MPI's launcher, the command joins the MPI world, gives each rank its share of
/// the machine's cores (two ranks on two cores must not run four spinning workers), and
/// only rank 0 prints and writes; otherwise it never touches MPI.
enum Processes {
    nonisolated(unsafe) private(set) static var communicator: any Communicator = SingleProcess()
    nonisolated(unsafe) private static var mpi: MPICommunicator?

    /// Whether this process prints and writes files: rank 0 (or the only process).
    static var isWriter: Bool { communicator.isWriter }

    static func start() throws {
        guard MPICommunicator.isLaunchedByMPI else { return }
        let world = try MPICommunicator()
        mpi = world
        communicator = world
        let cores = ProcessInfo.processInfo.activeProcessorCount
        Compute.threadCount = max(1, cores / max(world.localSize, 1))
    }

    /// Leaves the MPI world after a command that succeeded. (After an error a rank exits
    /// without it: mpirun then ends the job's other ranks, which may be waiting for this one.)
    static func finish() { mpi?.finalize() }

    /// "rank N: " before a distributed run's messages on standard error, so that they say whose they are.
    static var errorPrefix: String { communicator.isDistributed ? "rank \(communicator.rank): " : "" }
}
