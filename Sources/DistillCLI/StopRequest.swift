import Foundation

/// SIGINT and SIGTERM ask a training run to stop: the trainer writes a checkpoint after the
/// step it is on and the command exits (130 or 143). A second signal exits at once.
enum StopRequest {
    nonisolated(unsafe) static var signal: Int32 = 0

    static func install() {
        for number in [SIGINT, SIGTERM] {
            Foundation.signal(number) { received in
                if StopRequest.signal != 0 { _exit(128 + received) }
                StopRequest.signal = received
            }
        }
    }

    static func isRequested() -> Bool { signal != 0 }
}
