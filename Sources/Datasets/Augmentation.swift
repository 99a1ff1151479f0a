import Foundation
import Tensors

/// Random image augmentation, applied per example. Every random choice comes from a
/// generator derived from (loader seed, epoch, example index), so an epoch's batches are the
/// same whatever the thread timing and however the run was interrupted and resumed.
public struct Augmentation: Equatable, Sendable {
    /// Pad by this many pixels on each side (with `fillValue`), then crop back at a random offset.
    public var cropPadding: Int
    /// Mirror left-right with probability ½.
    public var horizontalFlip: Bool
    /// Random erasing (Zhong et al. 2017) with this probability: a rectangle of 2-33% of the
    /// area, aspect ratio 0.3-3.3, filled with `fillValue`.
    public var erasingProbability: Float
    /// What padding and erasing fill with: the normalised value of a black pixel, usually
    /// (`FashionMNIST.normalizedBlack`).
    public var fillValue: Float

    public init(cropPadding: Int = 0, horizontalFlip: Bool = false, erasingProbability: Float = 0, fillValue: Float = 0) {
        self.cropPadding = cropPadding
        self.horizontalFlip = horizontalFlip
        self.erasingProbability = erasingProbability
        self.fillValue = fillValue
    }

    /// Whether any transform is on.
    public var isActive: Bool { cropPadding > 0 || horizontalFlip || erasingProbability > 0 }

    /// Transforms one image [channels, height, width] in place.
    func apply(_ image: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, channels: Int, height: Int, width: Int,
               using g: inout RandomGenerator) {
        let area = height * width
        if cropPadding > 0 {
            let dy = Int(g.next() % UInt64(2 * cropPadding + 1)) - cropPadding
            let dx = Int(g.next() % UInt64(2 * cropPadding + 1)) - cropPadding
            scratch.update(from: image, count: channels * area)
            for c in 0..<channels {
                for y in 0..<height {
                    let sy = y + dy
                    for x in 0..<width {
                        let sx = x + dx
                        image[c * area + y * width + x] = sy >= 0 && sy < height && sx >= 0 && sx < width
                            ? scratch[c * area + sy * width + sx] : fillValue
                    }
                }
            }
        }
        if horizontalFlip && g.next() & 1 == 1 {
            for row in 0..<(channels * height) {
                let r = image + row * width
                for x in 0..<(width / 2) { r.swapAt(x, width - 1 - x) }
            }
        }
        if erasingProbability > 0 && g.nextUniform() < erasingProbability {
            for _ in 0..<10 {
                let target = Float(area) * (0.02 + g.nextUniform() * 0.31)
                let ratio = Foundation.exp(Foundation.log(Float(0.3)) + g.nextUniform() * (Foundation.log(Float(3.3)) - Foundation.log(Float(0.3))))
                let h = Int((target * ratio).squareRoot().rounded()), w = Int((target / ratio).squareRoot().rounded())
                guard h >= 1, w >= 1, h < height, w < width else { continue }
                let y0 = Int(g.next() % UInt64(height - h + 1)), x0 = Int(g.next() % UInt64(width - w + 1))
                for c in 0..<channels { for y in y0..<(y0 + h) { for x in x0..<(x0 + w) { image[c * area + y * width + x] = fillValue } } }
                break
            }
        }
    }
}

extension UnsafeMutablePointer {
    fileprivate func swapAt(_ i: Int, _ j: Int) { let t = self[i]; self[i] = self[j]; self[j] = t }
}
