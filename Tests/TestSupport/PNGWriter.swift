import Foundation

/// Writes small PNG files for tests: 8-bit grayscale or RGB, filter 0, the image data in
/// stored (uncompressed) deflate blocks, so that no compression library is needed.
public enum PNGWriter {
    /// The PNG of `pixels` (row-major, `channels` 1 or 3 interleaved per pixel).
    public static func encode(_ pixels: [UInt8], width: Int, height: Int, channels: Int) -> Data {
        precondition((channels == 1 || channels == 3) && pixels.count == width * height * channels, "PNGWriter: pixels do not fit \(width)×\(height)×\(channels)")
        var raw: [UInt8] = []
        for y in 0..<height { raw.append(0); raw += pixels[(y * width * channels)..<((y + 1) * width * channels)] }
        var zlib: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let count = min(65_535, raw.count - offset)
            let last: UInt8 = offset + count == raw.count ? 1 : 0
            zlib += [last, UInt8(count & 0xFF), UInt8(count >> 8), UInt8(~count & 0xFF), UInt8((~count >> 8) & 0xFF)]
            zlib += raw[offset..<(offset + count)]
            offset += count
        } while offset < raw.count
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in raw { a = (a + UInt32(byte)) % 65_521; b = (b + a) % 65_521 }
        zlib += bigEndian((b << 16) | a)
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        png += chunk("IHDR", bigEndian(UInt32(width)) + bigEndian(UInt32(height)) + [8, channels == 1 ? 0 : 2, 0, 0, 0])
        png += chunk("IDAT", zlib)
        png += chunk("IEND", [])
        return Data(png)
    }

    /// Writes `encode(...)` to `path` (with stdio: Foundation's `Data.write` takes milliseconds
    /// a file here, and tests write hundreds).
    public static func write(_ pixels: [UInt8], width: Int, height: Int, channels: Int, to path: String) throws {
        let data = encode(pixels, width: width, height: height, channels: channels)
        guard let file = fopen(path, "wb") else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path]) }
        let written = data.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        guard fclose(file) == 0, written == data.count else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path]) }
    }

    private static func bigEndian(_ value: UInt32) -> [UInt8] { [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)] }

    private static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in body {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return bigEndian(UInt32(data.count)) + body + bigEndian(~crc)
    }
}
