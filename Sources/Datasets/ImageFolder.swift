import CImage
import Foundation
import Tensors

/// Decodes PNG and JPEG images (libpng, libjpeg-turbo).
public enum ImageDecoder {
    /// Images larger than this many pixels are refused before any pixel memory is allocated.
    public static let maximumPixels = 64 << 20

    /// 8-bit pixels, interleaved with `channels` (1 or 3) per pixel.
    public struct Image {
        public var width: Int, height: Int, channels: Int
        public var pixels: [UInt8]
    }

    /// Decodes `data` (PNG or JPEG, told apart by signature); `file` names it in errors.
    public static func decode(_ data: Data, file: String, channels: Int) throws -> Image {
        var pointer: UnsafeMutablePointer<UInt8>?
        var width: Int32 = 0, height: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = data.withUnsafeBytes { raw -> Int32 in
            guard let base = raw.bindMemory(to: UInt8.self).baseAddress else { return -1 }
            return distill_image_decode(base, raw.count, Int32(channels), maximumPixels, &pointer, &width, &height, &message, 256)
        }
        guard status == 0, let pointer else {
            throw DatasetError(file: file, status == -1 ? "is empty" : String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        defer { distill_image_free(pointer) }
        let count = Int(width) * Int(height) * channels
        return Image(width: Int(width), height: Int(height), channels: channels, pixels: Array(UnsafeBufferPointer(start: pointer, count: count)))
    }
}

/// Your own images: one subfolder per class (sorted by name, as torchvision's ImageFolder
/// does), PNG and JPEG files in each, grayscale or RGB. Images are resized (bilinear) to one
/// size and normalised.
public enum ImageFolder {
    /// How pixel values in [0, 1] are normalised, per channel: (x − mean)/std.
    public struct Normalization: Equatable, Sendable {
        public var mean: [Float], standardDeviation: [Float]
        public init(mean: [Float], standardDeviation: [Float]) {
            self.mean = mean
            self.standardDeviation = standardDeviation
        }
    }

    static let extensions: Set<String> = ["png", "jpg", "jpeg"]

    /// Loads every image under `path` into [N, channels, height, width]. With no
    /// `normalization` the images' own per-channel mean and standard deviation are used and
    /// returned (apply the same to a test folder).
    public static func load(_ path: String, channels: Int = 1, height: Int = 28, width: Int = 28,
                            normalization: Normalization? = nil) throws -> (dataset: Dataset, normalization: Normalization) {
        guard channels == 1 || channels == 3 else { throw DatasetError(file: path, "channels must be 1 or 3, got \(channels)") }
        guard height >= 1, width >= 1, height * width <= ImageDecoder.maximumPixels else {
            throw DatasetError(file: path, "image size \(height)×\(width) is not accepted")
        }
        if let normalization, normalization.mean.count != channels || normalization.standardDeviation.count != channels
            || normalization.standardDeviation.contains(where: { !($0 > 0) }) {
            throw DatasetError(file: path, "normalization needs \(channels) means and \(channels) positive standard deviations")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError(file: path, "image folder does not exist")
        }
        let fm = FileManager.default
        let classNames = try fm.contentsOfDirectory(atPath: path).filter { name in
            var sub: ObjCBool = false
            return !name.hasPrefix(".") && fm.fileExists(atPath: (path as NSString).appendingPathComponent(name), isDirectory: &sub) && sub.boolValue
        }.sorted()
        guard !classNames.isEmpty else { throw DatasetError(file: path, "has no class subfolders (expected one folder of images per class)") }
        var values: [Float] = [], labels: [Int] = []
        for (label, name) in classNames.enumerated() {
            let folder = (path as NSString).appendingPathComponent(name)
            let files = try fm.contentsOfDirectory(atPath: folder)
                .filter { !$0.hasPrefix(".") && extensions.contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
            guard !files.isEmpty else { throw DatasetError(file: folder, "class folder has no PNG or JPEG images") }
            for file in files {
                let filePath = (folder as NSString).appendingPathComponent(file)
                let image = try ImageDecoder.decode(try readFile(filePath), file: filePath, channels: channels)
                values += resized(image, height: height, width: width)
                labels.append(label)
            }
        }
        let plane = height * width
        let stats = normalization ?? {
            var mean = [Float](repeating: 0, count: channels), std = [Float](repeating: 0, count: channels)
            for c in 0..<channels {
                var total: Double = 0, squares: Double = 0, n = 0
                for image in 0..<labels.count {
                    for v in values[(image * channels + c) * plane..<((image * channels + c) + 1) * plane] {
                        total += Double(v); squares += Double(v) * Double(v); n += 1
                    }
                }
                let m = total / Double(n)
                mean[c] = Float(m)
                std[c] = Float(max((squares / Double(n) - m * m).squareRoot(), 1e-6))
            }
            return Normalization(mean: mean, standardDeviation: std)
        }()
        for image in 0..<labels.count {
            for c in 0..<channels {
                let base = (image * channels + c) * plane
                for i in base..<(base + plane) { values[i] = (values[i] - stats.mean[c]) / stats.standardDeviation[c] }
            }
        }
        let dataset = Dataset(inputs: Tensor(values, shape: [labels.count, channels, height, width]), labels: labels, classNames: classNames)
        return (dataset, stats)
    }

    /// Planar [channels, height, width] values in [0, 1], resized bilinearly with half-pixel
    /// centres (PyTorch's `interpolate(mode="bilinear", align_corners=False)`).
    static func resized(_ image: ImageDecoder.Image, height: Int, width: Int) -> [Float] {
        let (ih, iw, c) = (image.height, image.width, image.channels)
        var out = [Float](repeating: 0, count: c * height * width)
        let scaleY = Float(ih) / Float(height), scaleX = Float(iw) / Float(width)
        for y in 0..<height {
            let sy = max(0, (Float(y) + 0.5) * scaleY - 0.5)
            let y0 = min(Int(sy), ih - 1), y1 = min(y0 + 1, ih - 1), fy = sy - Float(y0)
            for x in 0..<width {
                let sx = max(0, (Float(x) + 0.5) * scaleX - 0.5)
                let x0 = min(Int(sx), iw - 1), x1 = min(x0 + 1, iw - 1), fx = sx - Float(x0)
                for ch in 0..<c {
                    func p(_ yy: Int, _ xx: Int) -> Float { Float(image.pixels[(yy * iw + xx) * c + ch]) / 255 }
                    let top = p(y0, x0) * (1 - fx) + p(y0, x1) * fx
                    let bottom = p(y1, x0) * (1 - fx) + p(y1, x1) * fx
                    out[(ch * height + y) * width + x] = top * (1 - fy) + bottom * fy
                }
            }
        }
        return out
    }
}
