import Foundation
import Tensors

/// Fashion-MNIST (Xiao et al. 2017): 28×28 grayscale images of 10 clothing classes,
/// 60,000 for training and 10,000 for testing.
public struct FashionMNIST {
    /// Where Debian's `dataset-fashion-mnist` package puts the files.
    public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"

    public static let classNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

    /// Mean and standard deviation of the training pixels in [0, 1].
    public static let mean: Float = 0.2860
    public static let standardDeviation: Float = 0.3530

    /// Training images [60000, 1, 28, 28], normalised with the dataset statistics, labels 0...9.
    public let train: Dataset
    /// Test images [10000, 1, 28, 28].
    public let test: Dataset

    /// The value a black pixel has after normalisation (what padding should fill).
    public static let normalizedBlack: Float = -mean / standardDeviation

    /// Loads the four IDX files (gzip or raw) from `directory`.
    public init(directory: String = FashionMNIST.defaultDirectory) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError(file: directory, "data folder does not exist (install Debian's dataset-fashion-mnist or pass a folder with the four IDX files)")
        }
        train = try FashionMNIST.loadSplit(directory: directory, prefix: "train")
        test = try FashionMNIST.loadSplit(directory: directory, prefix: "t10k")
    }

    private static func locate(_ directory: String, _ name: String) throws -> String {
        for candidate in [name + ".gz", name] {
            let path = (directory as NSString).appendingPathComponent(candidate)
            if FileManager.default.fileExists(atPath: path) { return path }
        }
        throw DatasetError(file: (directory as NSString).appendingPathComponent(name + ".gz"), "does not exist")
    }

    private static func loadSplit(directory: String, prefix: String) throws -> Dataset {
        let imagePath = try locate(directory, "\(prefix)-images-idx3-ubyte")
        let labelPath = try locate(directory, "\(prefix)-labels-idx1-ubyte")
        let images = try IDX.read(imagePath)
        let labels = try IDX.read(labelPath)
        guard images.dimensions.count == 3, images.dimensions[1] == 28, images.dimensions[2] == 28 else {
            throw DatasetError(file: imagePath, "expected images [N, 28, 28], found \(images.dimensions)")
        }
        guard labels.dimensions.count == 1 else { throw DatasetError(file: labelPath, "expected labels [N], found \(labels.dimensions)") }
        guard labels.dimensions[0] == images.dimensions[0] else {
            throw DatasetError(file: labelPath, "\(labels.dimensions[0]) labels but \(images.dimensions[0]) images in \(imagePath)")
        }
        if let bad = labels.bytes.first(where: { $0 > 9 }) {
            throw DatasetError(file: labelPath, "label \(bad) is outside 0...9")
        }
        let count = images.dimensions[0]
        let scale = 1 / (255 * standardDeviation), shift = -mean / standardDeviation
        let values = images.bytes.map { Float($0) * scale + shift }
        return Dataset(inputs: Tensor(values, shape: [count, 1, 28, 28]), labels: labels.bytes.map(Int.init), classNames: classNames)
    }
}
