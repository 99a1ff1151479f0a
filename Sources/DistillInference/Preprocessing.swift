import Foundation
import Tensors

/// What turns a user's raw example into a model's input, and what the model's outputs mean.
/// A run computes it from its training split alone (never from test data), writes it into
/// every model file it saves, and `evaluate`, `predict` and `export` apply the same.
///
/// Images: decoded as 8-bit pixels, converted to `channels` (gray or RGB, in `channelOrder`),
/// resized bilinearly to `height` × `width`, scaled to [0, 1], then (x − mean[c]) / std[c].
/// Tables: each feature standardised, (x − mean[f]) / std[f].
///
/// The description and `prepare` (channel order, normalisation) are the inference library's;
/// reading inputs from files (image decoding, `.npy`, `.csv`) is Datasets'.
public struct Preprocessing: Codable, Equatable, Sendable {
    /// Images [channels, height, width] or feature vectors [features].
    public enum Kind: String, Codable, Sendable { case images, features }
    /// The order of colour channels in the model's input.
    public enum ChannelOrder: String, Codable, Sendable, CaseIterable { case rgb, bgr }

    public var kind: Kind
    public var channels: Int
    public var height: Int
    public var width: Int
    /// Features per example (tables); their names when the table had a header.
    public var features: Int?
    public var featureNames: [String]?
    public var normalization: Normalization
    public var classNames: [String]
    /// The colour order of the model's input (`rgb` unless a teacher from another project
    /// expects BGR).
    public var channelOrder: ChannelOrder?

    /// Preprocessing of images of `channels` × `height` × `width`.
    public static func images(channels: Int, height: Int, width: Int, normalization: Normalization, classNames: [String]) -> Preprocessing {
        Preprocessing(kind: .images, channels: channels, height: height, width: width, features: nil, featureNames: nil,
                      normalization: normalization, classNames: classNames, channelOrder: nil)
    }

    /// Preprocessing of feature vectors of length `features`.
    public static func features(_ features: Int, names: [String]?, normalization: Normalization, classNames: [String]) -> Preprocessing {
        Preprocessing(kind: .features, channels: features, height: 1, width: 1, features: features, featureNames: names,
                      normalization: normalization, classNames: classNames, channelOrder: nil)
    }

    /// The shape of one model input.
    public var exampleShape: [Int] { kind == .images ? [channels, height, width] : [features ?? channels] }

    /// The most pixels an image may have (the image decoder's limit too).
    public static let maximumPixels = 64 << 20

    /// Metadata key under which model files carry this as JSON.
    public static let metadataKey = "distill.preprocessing"

    /// This, as compact JSON with sorted keys (the same preprocessing gives the same bytes).
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// Decodes `json` (a model file's metadata entry); `file` names the source in errors.
    public static func decode(_ json: String, file: String) throws -> Preprocessing {
        let value: Preprocessing
        do { value = try JSONDecoder().decode(Preprocessing.self, from: Data(json.utf8)) } catch {
            throw FileError(file: file, "its preprocessing record is not valid: \(json.prefix(200))")
        }
        try value.check(file: file)
        return value
    }

    /// Checks that the record is usable: positive sizes (images of 1 or 3 channels), one mean
    /// and one positive standard deviation per channel or feature, as many feature names as
    /// features, at least one class.
    public func check(file: String) throws {
        let n = kind == .images ? channels : (features ?? channels)
        let (pixels, overflow) = height.multipliedReportingOverflow(by: width)
        guard channels >= 1, height >= 1, width >= 1, !overflow, pixels <= Self.maximumPixels, n >= 1, n <= 1 << 24,
              kind == .features || channels == 1 || channels == 3 else {
            throw FileError(file: file, "preprocessing has sizes \(kind == .images ? "\(channels)×\(height)×\(width)" : "\(n) features") that Distill does not read")
        }
        try normalization.check(channels: n, source: file)
        guard featureNames.map({ $0.count == n }) ?? true else {
            throw FileError(file: file, "preprocessing names \(featureNames?.count ?? 0) features for \(n)")
        }
        guard !classNames.isEmpty else { throw FileError(file: file, "preprocessing names no classes") }
    }

    /// Turns one raw example (RGB pixels in [0, 1], or a table's raw features) into the model's
    /// input in place: the channel order it expects, then its normalisation.
    public func prepare(_ values: inout [Float]) {
        if kind == .images && channelOrder == .bgr && channels == 3 { values = Preprocessing.swappingRedAndBlue(values, plane: height * width) }
        normalize(&values)
    }

    /// Normalises one example's values in place, per channel or feature.
    func normalize(_ values: inout [Float]) {
        let n = normalization.mean.count, plane = values.count / max(n, 1)
        for c in 0..<n {
            let (mean, std) = (normalization.mean[c], normalization.standardDeviation[c])
            for i in (c * plane)..<((c + 1) * plane) { values[i] = (values[i] - mean) / std }
        }
    }

    static func swappingRedAndBlue(_ values: [Float], plane: Int) -> [Float] {
        Array(values[(2 * plane)..<(3 * plane)] + values[plane..<(2 * plane)] + values[0..<plane])
    }

    /// How a batch prepared for a model with preprocessing `source` becomes a batch for a
    /// model with this preprocessing (a teacher from another project): undo the source's
    /// normalisation, convert channels (gray ↔ RGB, RGB ↔ BGR), resize bilinearly, apply
    /// this normalisation. Nil when the two agree. Resizing an already resized image is not
    /// the same as resizing the original: give the student the teacher's size when that matters.
    public func conversion(from source: Preprocessing) throws -> InputConversion? {
        guard kind == source.kind else { throw FileError(file: "preprocessing", "a model that takes \(kind.rawValue) cannot learn from one that takes \(source.kind.rawValue)") }
        if kind == .images && channels != source.channels && Set([channels, source.channels]) != [1, 3] {
            throw FileError(file: "preprocessing", "a model of \(channels) input channels cannot learn from one of \(source.channels)")
        }
        if kind == .features {
            guard exampleShape == source.exampleShape else {
                throw FileError(file: "preprocessing", "feature counts differ: \(source.exampleShape[0]) and \(exampleShape[0])")
            }
        }
        let same = channels == source.channels && height == source.height && width == source.width
            && (channelOrder ?? .rgb) == (source.channelOrder ?? .rgb) && normalization == source.normalization
        return same ? nil : InputConversion(source: source, target: self)
    }
}

/// Converts batches between two preprocessings (see `Preprocessing.conversion(from:)`).
public struct InputConversion: Sendable {
    public let source: Preprocessing
    public let target: Preprocessing

    /// `batch` [B, ...] prepared for `source`, as `target` expects it. Records no gradient.
    public func callAsFunction(_ batch: Tensor) -> Tensor {
        let count = batch.shape[0]
        let sourceSize = source.exampleShape.reduce(1, *), targetSize = target.exampleShape.reduce(1, *)
        var out = [Float](repeating: 0, count: count * targetSize)
        let values = batch.scalars
        for example in 0..<count {
            var raw = Array(values[(example * sourceSize)..<((example + 1) * sourceSize)])
            let sourcePlane = raw.count / source.normalization.mean.count
            for c in 0..<source.normalization.mean.count {
                for i in (c * sourcePlane)..<((c + 1) * sourcePlane) {
                    raw[i] = raw[i] * source.normalization.standardDeviation[c] + source.normalization.mean[c]
                }
            }
            if source.kind == .images {
                let plane = source.height * source.width
                if (source.channelOrder ?? .rgb) == .bgr && source.channels == 3 { raw = Preprocessing.swappingRedAndBlue(raw, plane: plane) }
                if source.channels == 1 && target.channels == 3 {
                    raw = raw + raw + raw
                } else if source.channels == 3 && target.channels == 1 {
                    // ITU-R BT.601 luma, as PIL's convert("L").
                    raw = (0..<plane).map { 0.299 * raw[$0] + 0.587 * raw[plane + $0] + 0.114 * raw[2 * plane + $0] }
                }
                if source.height != target.height || source.width != target.width {
                    raw = InputConversion.resized(raw, channels: target.channels, from: (source.height, source.width), to: (target.height, target.width))
                }
            }
            target.prepare(&raw)
            out.replaceSubrange((example * targetSize)..<((example + 1) * targetSize), with: raw)
        }
        return Tensor(out, shape: Shape([count] + target.exampleShape))
    }
}

extension InputConversion {
    /// Planar [channels, h, w] values resized bilinearly with half-pixel centres, as
    /// `ImageFolder` resizes decoded images (PyTorch's `interpolate(mode="bilinear")`).
    static func resized(_ values: [Float], channels: Int, from: (Int, Int), to: (Int, Int)) -> [Float] {
        let (ih, iw) = from, (oh, ow) = to
        var out = [Float](repeating: 0, count: channels * oh * ow)
        let scaleY = Float(ih) / Float(oh), scaleX = Float(iw) / Float(ow)
        for y in 0..<oh {
            let sy = max(0, (Float(y) + 0.5) * scaleY - 0.5)
            let y0 = min(Int(sy), ih - 1), y1 = min(y0 + 1, ih - 1), fy = sy - Float(y0)
            for x in 0..<ow {
                let sx = max(0, (Float(x) + 0.5) * scaleX - 0.5)
                let x0 = min(Int(sx), iw - 1), x1 = min(x0 + 1, iw - 1), fx = sx - Float(x0)
                for c in 0..<channels {
                    let base = c * ih * iw
                    let top = values[base + y0 * iw + x0] * (1 - fx) + values[base + y0 * iw + x1] * fx
                    let bottom = values[base + y1 * iw + x0] * (1 - fx) + values[base + y1 * iw + x1] * fx
                    out[(c * oh + y) * ow + x] = top * (1 - fy) + bottom * fy
                }
            }
        }
        return out
    }
}
