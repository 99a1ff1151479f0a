import CImage
import DistillInference
import Foundation
import Tensors

/// Decodes PNG and JPEG images (libpng, libjpeg-turbo).
public enum ImageDecoder {
    /// Images larger than this many pixels are refused before any pixel memory is allocated.
    public static let maximumPixels = Preprocessing.maximumPixels

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
/// does), PNG and JPEG files in each, grayscale or RGB, streamed from disk:
///
/// ```swift
/// let listing = try ImageFolder.scan("photos/train")
/// let train = try ImageFolder.dataset(listing, channels: 3, size: (height: 32, width: 32))
/// let statistics = try train.channelStatistics()
/// let test = try ImageFolder.dataset(try ImageFolder.scan("photos/test", classNames: listing.classNames),
///                                    channels: 3, size: (height: 32, width: 32)).normalized(statistics)
/// ```
public enum ImageFolder {
    /// The image files of a folder and their classes, before anything is decoded.
    public struct Listing: Equatable, Sendable {
        /// Every image's path, class by class, sorted by name within a class.
        public var files: [String]
        /// Each file's class: an index into `classNames`.
        public var labels: [Int]
        /// The class folders' names, sorted (or as given to `scan`).
        public var classNames: [String]

        public init(files: [String], labels: [Int], classNames: [String]) {
            self.files = files
            self.labels = labels
            self.classNames = classNames
        }
    }

    static let extensions: Set<String> = ["png", "jpg", "jpeg"]

    /// Lists the images under `path`: one subfolder per class, PNG and JPEG files (by
    /// extension; hidden files and other files are ignored). With `classNames` (a test or
    /// validation folder scanned with the training folder's classes) the folder must hold
    /// exactly those class folders, and labels follow that order. Throws a `DatasetError`
    /// naming the folder when it is missing, has no class folders, a class folder has no
    /// images, or the class folders differ from `classNames`.
    public static func scan(_ path: String, classNames expected: [String]? = nil) throws -> Listing {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError(file: path, "image folder does not exist")
        }
        func join(_ folder: String, _ name: String) -> String { (folder as NSString).appendingPathComponent(name) }
        let found = try manager.contentsOfDirectory(atPath: path).filter { name in
            var sub: ObjCBool = false
            return !name.hasPrefix(".") && manager.fileExists(atPath: join(path, name), isDirectory: &sub) && sub.boolValue
        }.sorted()
        guard !found.isEmpty else { throw DatasetError(file: path, "has no class subfolders (expected one folder of images per class)") }
        let classNames = expected ?? found
        if let expected {
            if let missing = expected.first(where: { !found.contains($0) }) {
                throw DatasetError(file: path, "has no folder for class '\(missing)' (expected the same class folders as the training images: \(expected.joined(separator: ", ")))")
            }
            if let extra = found.first(where: { !expected.contains($0) }) {
                throw DatasetError(file: join(path, extra), "is not one of the training classes (\(expected.joined(separator: ", ")))")
            }
        }
        var files: [String] = [], labels: [Int] = []
        for (label, name) in classNames.enumerated() {
            let folder = join(path, name)
            let images = try manager.contentsOfDirectory(atPath: folder)
                .filter { !$0.hasPrefix(".") && extensions.contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
            guard !images.isEmpty else { throw DatasetError(file: folder, "class folder has no PNG or JPEG images") }
            files += images.map { join(folder, $0) }
            labels += Array(repeating: label, count: images.count)
        }
        return Listing(files: files, labels: labels, classNames: classNames)
    }

    /// A streamed dataset of the listed images: each decoded when a batch needs it, with
    /// `channels` (1: grayscale, 3: RGB) and pixel values in [0, 1] (normalise with
    /// `Dataset.normalized`). With `size`, every image is resized bilinearly to it (half-pixel
    /// centres, as PyTorch's `interpolate(mode="bilinear", align_corners=False)`); without,
    /// the first image's size is the dataset's, and every image's header is read now (in
    /// parallel, nothing decoded) so that an image of another size is an error naming it before
    /// training starts. A file that cannot be decoded is found when its batch is read.
    public static func dataset(_ listing: Listing, channels: Int, size: (height: Int, width: Int)?) throws -> Dataset {
        guard channels == 1 || channels == 3 else { throw DatasetError(file: "image folder", "channels must be 1 or 3, got \(channels)") }
        guard !listing.files.isEmpty, listing.files.count == listing.labels.count,
              listing.labels.allSatisfy({ $0 >= 0 && $0 < listing.classNames.count }) else {
            throw DatasetError(file: "image folder", "the listing needs one label in 0..<\(listing.classNames.count) per file, and at least one file")
        }
        let (height, width): (Int, Int)
        if let size {
            guard size.height >= 1, size.width >= 1, size.height * size.width <= ImageDecoder.maximumPixels else {
                throw DatasetError(file: "image size", "\(size.height)×\(size.width) is not accepted (1 to \(ImageDecoder.maximumPixels) pixels)")
            }
            (height, width) = (size.height, size.width)
        } else {
            (height, width) = try commonSize(listing.files)
        }
        let files = ImageFiles(paths: listing.files, channels: channels, height: height, width: width, resizes: size != nil)
        return Dataset(examples: .files(files), labels: listing.labels, classNames: listing.classNames)
    }

    /// The size every file's header gives, or an error naming the first that differs from the
    /// first readable file's. Unreadable headers are left for decoding to report.
    static func commonSize(_ paths: [String]) throws -> (height: Int, width: Int) {
        // Small folders on this thread: waking Dispatch's threads costs more than their headers.
        let chunks = paths.count < 64 ? 1 : Swift.min(paths.count, ProcessInfo.processInfo.activeProcessorCount * 4)
        let sizes = UnsafeSendable(UnsafeMutablePointer<(width: Int, height: Int)?>.allocate(capacity: paths.count))
        sizes.value.initialize(repeating: nil, count: paths.count)
        defer { sizes.value.deinitialize(count: paths.count); sizes.value.deallocate() }
        let probe: @Sendable (Int) -> Void = { chunk in
            for i in (chunk * paths.count / chunks)..<((chunk + 1) * paths.count / chunks) { sizes.value[i] = try? ImageFiles.probe(paths[i]) }
        }
        if chunks == 1 { probe(0) } else { DispatchQueue.concurrentPerform(iterations: chunks, execute: probe) }
        guard let first = (0..<paths.count).first(where: { sizes.value[$0] != nil }), let reference = sizes.value[first] else {
            _ = try ImageFiles.probe(paths[0])  // throws, naming the file
            throw DatasetError(file: paths[0], "no image header could be read")
        }
        if let other = (0..<paths.count).first(where: { sizes.value[$0].map { $0 != reference } ?? false }), let found = sizes.value[other] {
            throw DatasetError(file: paths[other], "is \(found.width)×\(found.height) pixels but \(paths[first]) is \(reference.width)×\(reference.height); give --image-size to resize every image to one size")
        }
        return (reference.height, reference.width)
    }
}
