import Tensors

/// Per-channel normalisation, (x − mean[c]) / standardDeviation[c], where the channel is the
/// first axis of one example: a colour channel of an image [C, H, W], a feature of a table row
/// [D]. Images are normalised from pixel values in [0, 1].
public struct Normalization: Codable, Equatable, Sendable {
    public var mean: [Float]
    public var standardDeviation: [Float]

    public init(mean: [Float], standardDeviation: [Float]) {
        self.mean = mean
        self.standardDeviation = standardDeviation
    }

    /// The normalisation that changes nothing, for `channels` channels.
    public static func identity(channels: Int) -> Normalization {
        Normalization(mean: Array(repeating: 0, count: channels), standardDeviation: Array(repeating: 1, count: channels))
    }

    /// Throws unless there are `channels` finite means and positive, finite standard deviations.
    public func check(channels: Int, source: String) throws {
        guard mean.count == channels, standardDeviation.count == channels,
              mean.allSatisfy(\.isFinite), standardDeviation.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw FileError(file: source, "normalization needs \(channels) finite means and \(channels) positive standard deviations, got mean \(mean), standard deviation \(standardDeviation)")
        }
    }
}
