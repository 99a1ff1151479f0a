import Foundation

/// A 64-byte aligned, reference-counted buffer of Float32 values. Tensors that share a
/// storage (a reshape of another) see each other's in-place updates.
public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    /// Uninitialised memory for `count` floats; every kernel that asks for it writes it whole.
    init(uninitializedCount count: Int) {
        self.count = count
        pointer = BufferCache.shared.allocate(bytes: max(count, 1) * MemoryLayout<Float>.stride)
            .bindMemory(to: Float.self, capacity: max(count, 1))
    }

    convenience init(repeating value: Float, count: Int) {
        self.init(uninitializedCount: count)
        pointer.initialize(repeating: value, count: count)
    }

    deinit { BufferCache.shared.release(UnsafeMutableRawPointer(pointer), bytes: max(count, 1) * MemoryLayout<Float>.stride) }
}

/// Keeps freed large buffers for reuse. A training step allocates the same activation and
/// gradient sizes every time; handing fresh pages back to the kernel and faulting them in
/// again cost about 8% of a small CNN's step (page faults and zeroing in the profile).
/// Buffers of 64 KiB and more are cached by size, up to `limit` bytes in all.
final class BufferCache: @unchecked Sendable {
    static let shared = BufferCache()
    private let minimumBytes = 4 << 10
    private let limit = 256 << 20
    private var free: [Int: [UnsafeMutableRawPointer]] = [:]
    private var cachedBytes = 0
    private let lock: UnsafeMutablePointer<pthread_mutex_t> = {
        let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        return lock
    }()

    func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        if bytes >= minimumBytes {
            pthread_mutex_lock(lock)
            let reused = free[bytes]?.popLast()
            if reused != nil { cachedBytes -= bytes }
            pthread_mutex_unlock(lock)
            if let reused { return reused }
        }
        var raw: UnsafeMutableRawPointer?
        let status = posix_memalign(&raw, 64, bytes)
        require(status == 0 && raw != nil, "TensorStorage: could not allocate \(bytes) bytes")
        return raw!
    }

    func release(_ pointer: UnsafeMutableRawPointer, bytes: Int) {
        if bytes >= minimumBytes {
            pthread_mutex_lock(lock)
            if cachedBytes + bytes <= limit {
                free[bytes, default: []].append(pointer)
                cachedBytes += bytes
                pthread_mutex_unlock(lock)
                return
            }
            pthread_mutex_unlock(lock)
        }
        Foundation.free(pointer)
    }
}
