import Foundation

/// Progress within an epoch: a redrawn bar with step, loss, throughput and ETA on a terminal;
/// plain lines at each quarter of the epoch when output goes to a file or pipe.
struct ProgressReporter {
    let isTerminal = isatty(STDOUT_FILENO) != 0
    private var lastQuarter = -1

    mutating func step(epoch: Int, step: Int, of total: Int, loss: Float, examplesPerSecond: Double, batchSize: Int) {
        let remaining = Double((total - step) * batchSize) / max(examplesPerSecond, 1e-9)
        let line = String(format: "epoch %d  step %d/%d  loss %.4f  %.0f examples/s  ETA %.0f s", epoch, step, total, loss, examplesPerSecond, remaining)
        if isTerminal {
            let width = 24, filled = width * step / max(total, 1)
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            // Unbuffered, so the bar moves as steps finish.
            FileHandle.standardOutput.write(Data(("\r[\(bar)] " + line + (step == total ? "\n" : "")).utf8))
        } else {
            let quarter = 4 * step / max(total, 1)
            if quarter != lastQuarter && quarter < 4 {
                lastQuarter = quarter
                if step > 1 { print("  " + line) }
            }
            if step == total { lastQuarter = -1 }
        }
    }
}
