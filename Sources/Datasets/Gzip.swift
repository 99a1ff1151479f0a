import CZlib
import Foundation

/// Gzip and raw-deflate decompression through zlib, bounded so that a hostile file cannot
/// make us allocate without limit.
enum Gzip {
    /// True when `data` starts with the gzip magic bytes.
    static func isCompressed(_ data: Data) -> Bool {
        data.count >= 2 && data[data.startIndex] == 0x1F && data[data.startIndex + 1] == 0x8B
    }

    /// Inflates gzip `data` (or, with `raw`, a bare deflate stream as in zip files), refusing
    /// to produce more than `limit` bytes.
    static func decompress(_ data: Data, file: String, limit: Int = 1 << 30, raw: Bool = false) throws -> Data {
        var stream = z_stream()
        // 15 window bits + 16: expect a gzip header; −15: no header at all.
        guard inflateInit2_(&stream, raw ? -15 : 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DatasetError(file: file, "zlib could not start")
        }
        defer { inflateEnd(&stream) }
        var output = Data()
        let chunkSize = 1 << 20
        var chunk = [UInt8](repeating: 0, count: chunkSize)
        var status: Int32 = Z_OK
        try data.withUnsafeBytes { (input: UnsafeRawBufferPointer) in
            stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(input.count)
            repeat {
                try chunk.withUnsafeMutableBufferPointer { buffer in
                    stream.next_out = buffer.baseAddress
                    stream.avail_out = uInt(chunkSize)
                    status = inflate(&stream, Z_NO_FLUSH)
                    guard status == Z_OK || status == Z_STREAM_END else {
                        throw DatasetError(file: file, status == Z_BUF_ERROR ? "\(raw ? "deflate" : "gzip") data is truncated" : "\(raw ? "deflate" : "gzip") data is corrupt (zlib status \(status))")
                    }
                    output.append(buffer.baseAddress!, count: chunkSize - Int(stream.avail_out))
                }
                if output.count > limit { throw DatasetError(file: file, "decompresses to more than \(limit) bytes") }
                if status != Z_STREAM_END && stream.avail_in == 0 && stream.avail_out != 0 {
                    throw DatasetError(file: file, "\(raw ? "deflate" : "gzip") data is truncated")
                }
            } while status != Z_STREAM_END
        }
        return output
    }
}
