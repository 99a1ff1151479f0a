/// FNV-1a, 64-bit: a fast, stable hash of bytes (not cryptographic), for cache keys and
/// record checksums. Fed in pieces with `combine`; the same bytes give the same value on
/// every machine.
public struct FNV1a: Sendable {
    public private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325

    public init() {}

    public mutating func combine(_ bytes: UnsafeRawBufferPointer) {
        var hash = value
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        value = hash
    }

    /// The integer's 8 little-endian bytes.
    public mutating func combine(_ number: Int) {
        withUnsafeBytes(of: Int64(number).littleEndian) { combine($0) }
    }

    /// The text's length in UTF-8 bytes, then the bytes (so that "ab", "c" and "a", "bc" differ).
    public mutating func combine(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            combine(bytes.count)
            combine(UnsafeRawBufferPointer(bytes))
        }
    }

    /// The hash of `bytes` alone.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var hasher = FNV1a()
        hasher.combine(bytes)
        return hasher.value
    }
}
