import CImage
import DistillInference
import Foundation
import Tensors

/// The examples of a streamed dataset: image files decoded when a batch needs them, each to
/// [channels, height, width] with pixel values in [0, 1], then normalised.
struct ImageFiles: Equatable, Sendable {
    var paths: [String]
    var channels: Int
    var height: Int
    var width: Int
    /// Whether images of another size are resized (bilinear) or refused.
    var resizes: Bool
    /// Applied in order after decoding (the first while converting the pixels).
    var normalizations: [Normalization] = []

    /// Files larger than this are refused before they are read.
    static let maximumFileBytes = 1 << 30

    var exampleShape: Shape { [channels, height, width] }

    func normalized(_ normalization: Normalization) -> ImageFiles {
        var result = self
        result.normalizations.append(normalization)
        return result
    }

    /// Decodes file `index` into `target` (channels·height·width floats).
    func decode(_ index: Int, into target: UnsafeMutablePointer<Float>, buffers: ImageBuffers) throws {
        let path = paths[index]
        let first = normalizations.first ?? .identity(channels: channels)
        var message = [CChar](repeating: 0, count: 512)
        var foundWidth: Int32 = 0, foundHeight: Int32 = 0
        let status = first.mean.withUnsafeBufferPointer { mean in
            first.standardDeviation.withUnsafeBufferPointer { deviation in
                distill_image_load(path, buffers.pointer, Int32(channels), ImageDecoder.maximumPixels, Self.maximumFileBytes,
                                   Int32(height), Int32(width), resizes ? 1 : 0, mean.baseAddress, deviation.baseAddress, target,
                                   &foundWidth, &foundHeight, &message, message.count)
            }
        }
        switch status {
        case 0: break
        case 2:
            throw DatasetError(file: path, "is \(foundWidth)×\(foundHeight) pixels but the dataset's images are \(width)×\(height); give --image-size to resize every image to one size")
        default:
            throw DatasetError(file: path, String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        let plane = height * width
        for normalization in normalizations.dropFirst() {
            for c in 0..<channels {
                let mean = normalization.mean[c], deviation = normalization.standardDeviation[c]
                let row = target + c * plane
                for i in 0..<plane { row[i] = (row[i] - mean) / deviation }
            }
        }
    }

    /// What decides the decoded values: every path with its size and modification time, and
    /// the preprocessing (the teacher cache's key for a streamed set).
    func fingerprint() -> [UInt8] {
        var text = "\(channels) \(height) \(width) \(resizes) \(normalizations.map { "\($0.mean) \($0.standardDeviation)" })\n"
        var bytes = Array(text.utf8)
        for path in paths {
            var info = stat()
            let found = stat(path, &info) == 0
            text = "\(path) \(found ? Int(info.st_size) : -1) \(found ? Int(info.st_mtim.tv_sec) : 0).\(found ? Int(info.st_mtim.tv_nsec) : 0)\n"
            bytes += text.utf8
        }
        return bytes
    }

    /// Width and height of `path` from its header, without decoding.
    static func probe(_ path: String) throws -> (width: Int, height: Int) {
        var message = [CChar](repeating: 0, count: 512)
        var width: Int32 = 0, height: Int32 = 0
        guard distill_image_probe_file(path, &width, &height, &message, message.count) == 0 else {
            throw DatasetError(file: path, String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        guard width >= 1, height >= 1, Int(width) * Int(height) <= ImageDecoder.maximumPixels else {
            throw DatasetError(file: path, "is \(width)×\(height) pixels, outside the accepted 1...\(ImageDecoder.maximumPixels)")
        }
        return (Int(width), Int(height))
    }
}

/// One thread's reusable decoding buffers (the file's bytes, the decoded pixels).
final class ImageBuffers {
    let pointer: OpaquePointer

    init() {
        guard let pointer = distill_image_buffers_create() else { fatalError("ImageBuffers: out of memory") }
        self.pointer = pointer
    }

    deinit { distill_image_buffers_free(pointer) }
}
