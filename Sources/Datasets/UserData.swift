import DistillInference
import Foundation
import Tensors

/// The data a user names with one path, of whichever kind is there:
///
/// - a folder with the four Fashion-MNIST / IDX files (`train-images-idx3-ubyte[.gz]`, ...);
/// - a folder with `train/` and `test/` (and optionally `val/`) inside, each holding one
///   subfolder of PNG or JPEG images per class;
/// - a folder with one subfolder of images per class (the test set is carved from it);
/// - an `.npz` archive with an inputs array [N, ...] and an integer labels array [N];
/// - an `.npy` inputs file, with the labels in a second `.npy` file;
/// - a `.csv` (or `.tsv`) table: one example a row, a label column, numeric features.
///
/// Test sets come from the data's own split, `testPath` (same kind), or a stratified,
/// seeded `testFraction` of the examples, carved before anything else. Examples come back
/// raw — pixels in [0, 1], features as read — except IDX data, which comes normalised with
/// Fashion-MNIST's published statistics; normalisation is fitted on the training split
/// afterwards (`preprocessing(fittedOn:)`).
public struct UserData {
    /// What `load` was asked for.
    public struct Request: Sendable {
        public var path: String
        public var testPath: String?
        /// The fraction of examples held out as the test set (data without a test set of its own).
        public var testFraction: Double?
        /// Image folders: the size every image is resized to (default: the images' own, which
        /// must then agree) and the channels (1 gray or 3 RGB; default 3).
        public var imageHeight: Int?
        public var imageWidth: Int?
        public var channels: Int?
        /// `.npz`: the inputs array's name. Default: the first of `inputs`, `x`, `X`, `images`, `features`, `data` present.
        public var inputs: String?
        /// `.npz`: the labels array's name (default: the first of `labels`, `y`, `Y`, `targets`
        /// present); `.csv`: the label column, by name or 0-based index (default: the last);
        /// `.npy`: the labels file.
        public var labels: String?

        public init(path: String, testPath: String? = nil, testFraction: Double? = nil, imageHeight: Int? = nil, imageWidth: Int? = nil,
                    channels: Int? = nil, inputs: String? = nil, labels: String? = nil) {
            self.path = path
            self.testPath = testPath
            self.testFraction = testFraction
            self.imageHeight = imageHeight
            self.imageWidth = imageWidth
            self.channels = channels
            self.inputs = inputs
            self.labels = labels
        }
    }

    /// Which kind of data `load` found.
    public enum Kind: String, Sendable {
        case idx = "IDX files"
        case splitImageFolders = "image folders train/ and test/"
        case imageFolder = "an image folder"
        case arrays = "an NPZ archive"
        case array = "NPY arrays"
        case table = "a CSV table"
    }

    /// The test fraction when the data has no test set of its own and none is given.
    public static let defaultTestFraction = 0.2
    /// The seed of the test split: fixed, so that every run on the same data, whatever its
    /// own seed, is scored on the same test examples.
    public static let testSplitSeed: UInt64 = 0x7E57

    public var kind: Kind
    public var train: Dataset
    /// A validation split the data brings (`val/`), if any.
    public var validation: Dataset?
    public var test: Dataset
    /// A table's feature names (its header).
    public var featureNames: [String]?
    /// The normalisation the data came with (IDX: Fashion-MNIST's statistics), when not to be fitted.
    public var fixedNormalization: Normalization?
    /// The fraction of the examples held out as the test set, when one was carved.
    public var testFraction: Double?

    /// Reads the data at `request.path` (see the type's description).
    public static func load(_ request: Request) throws -> UserData {
        let path = request.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DatasetError(file: path, path == FashionMNIST.defaultDirectory
                ? "data folder does not exist (install Debian's dataset-fashion-mnist, or give your own data with --data)" : "data does not exist")
        }
        let kind = try detect(path, isDirectory: isDirectory.boolValue)
        let ownTest = kind == .idx || kind == .splitImageFolders
        if ownTest, let fraction = request.testFraction {
            throw DatasetError(file: path, "has a test set of its own (\(kind.rawValue)); --test-fraction \(fraction) applies to data without one")
        }
        if ownTest, let testPath = request.testPath {
            throw DatasetError(file: path, "has a test set of its own (\(kind.rawValue)); --test-data \(testPath) applies to data without one")
        }
        if kind != .splitImageFolders && kind != .imageFolder && (request.imageHeight != nil || request.channels != nil) {
            throw DatasetError(file: path, "--image-size and --channels apply to image folders, and this is \(kind.rawValue)")
        }
        if (kind == .idx || kind == .splitImageFolders || kind == .imageFolder) && (request.inputs != nil || request.labels != nil) {
            throw DatasetError(file: path, "--inputs and --labels apply to NPZ, NPY and CSV data, and this is \(kind.rawValue)")
        }
        switch kind {
        case .idx:
            let data = try FashionMNIST(directory: path)
            return UserData(kind: kind, train: data.train, test: data.test,
                            fixedNormalization: Normalization(mean: [FashionMNIST.mean], standardDeviation: [FashionMNIST.standardDeviation]))
        case .splitImageFolders:
            let train = try ImageFolder.scan((path as NSString).appendingPathComponent("train"))
            let test = try ImageFolder.scan((path as NSString).appendingPathComponent("test"), classNames: train.classNames)
            let validationFolder = ["val", "validation"].map { (path as NSString).appendingPathComponent($0) }
                .first { FileManager.default.fileExists(atPath: $0) }
            let validation = try validationFolder.map { try ImageFolder.scan($0, classNames: train.classNames) }
            let (channels, size) = try imageGeometry(request)
            let trainSet = try ImageFolder.dataset(train, channels: channels, size: size)
            // Without --image-size the training images decide the size; test and validation
            // images of another size are resized to it (the model takes one size).
            let fixed = size ?? (trainSet.exampleShape[1], trainSet.exampleShape[2])
            return UserData(kind: kind, train: trainSet,
                            validation: try validation.map { try ImageFolder.dataset($0, channels: channels, size: fixed) },
                            test: try ImageFolder.dataset(test, channels: channels, size: fixed))
        case .imageFolder:
            let listing = try ImageFolder.scan(path)
            let (channels, size) = try imageGeometry(request)
            let all = try ImageFolder.dataset(listing, channels: channels, size: size)
            if let testPath = request.testPath {
                guard request.testFraction == nil else { throw DatasetError(file: testPath, "give --test-data or --test-fraction, not both") }
                let test = try ImageFolder.scan(testPath, classNames: listing.classNames)
                return UserData(kind: kind, train: all, test: try ImageFolder.dataset(test, channels: channels,
                                                                                      size: size ?? (all.exampleShape[1], all.exampleShape[2])))
            }
            return try carvingTest(from: all, kind: kind, request: request, featureNames: nil)
        case .arrays, .array:
            let all = try arrays(request, kind: kind, file: path)
            if let testPath = request.testPath {
                guard request.testFraction == nil else { throw DatasetError(file: testPath, "give --test-data or --test-fraction, not both") }
                guard kind == .arrays, testPath.lowercased().hasSuffix(".npz") else {
                    throw DatasetError(file: testPath, "a separate test set of arrays is an .npz archive (inputs and labels together)")
                }
                var testRequest = request
                testRequest.path = testPath
                let test = try arrays(testRequest, kind: .arrays, file: testPath, classCount: all.classCount)
                return try UserData(kind: kind, train: all, test: matching(test, all, file: testPath))
            }
            return try carvingTest(from: all, kind: kind, request: request, featureNames: nil)
        case .table:
            let column = labelColumn(request.labels)
            let table = try CSV.readTable(path, label: column, hasHeader: nil, delimiter: CSV.delimiter(for: path))
            if let testPath = request.testPath {
                guard request.testFraction == nil else { throw DatasetError(file: testPath, "give --test-data or --test-fraction, not both") }
                let test = try CSV.readTable(testPath, label: column, hasHeader: nil, delimiter: CSV.delimiter(for: testPath),
                                             classNames: table.dataset.classNames)
                if let names = table.featureNames, let testNames = test.featureNames, names != testNames {
                    throw DatasetError(file: testPath, "has feature columns \(testNames.joined(separator: ",")), the training table \(names.joined(separator: ","))")
                }
                return try UserData(kind: kind, train: table.dataset, test: matching(test.dataset, table.dataset, file: testPath),
                                    featureNames: table.featureNames)
            }
            return try carvingTest(from: table.dataset, kind: kind, request: request, featureNames: table.featureNames)
        }
    }

    /// The normalisation of this data's training split: the fixed one (IDX), or per channel
    /// (images) / per feature (tables) mean and standard deviation of `train`'s examples.
    /// With `normalization` given (a trained model's record) nothing is computed.
    public func preprocessing(fittedOn train: Dataset, skippingBadFiles: Bool = false, normalization given: Normalization? = nil) throws -> Preprocessing {
        let normalization = try given ?? fixedNormalization ?? train.channelStatistics(skippingBadFiles: skippingBadFiles)
        let shape = train.exampleShape.dimensions
        let result: Preprocessing
        if shape.count == 1 {
            result = .features(shape[0], names: featureNames, normalization: normalization, classNames: train.classNames)
        } else if shape.count == 3 {
            result = .images(channels: shape[0], height: shape[1], width: shape[2], normalization: normalization, classNames: train.classNames)
        } else {
            throw DatasetError(file: "data", "examples of shape \(shape) are neither images [C, H, W] nor feature vectors [D]")
        }
        try result.check(file: "data")
        return result
    }

    static func detect(_ path: String, isDirectory: Bool) throws -> Kind {
        let expected = "expected a folder of Fashion-MNIST IDX files, a folder of images in one subfolder per class (or train/ and test/ folders of them), an .npz archive, an .npy file with --labels, or a .csv table"
        guard isDirectory else {
            switch (path as NSString).pathExtension.lowercased() {
            case "npz": return .arrays
            case "npy": return .array
            case "csv", "tsv": return .table
            default: throw DatasetError(file: path, "is not data Distill reads: \(expected)")
            }
        }
        let fm = FileManager.default
        let entries = (try? fm.contentsOfDirectory(atPath: path)) ?? []
        if entries.contains(where: { $0.hasPrefix("train-images-idx3-ubyte") }) { return .idx }
        func isFolder(_ name: String) -> Bool {
            var sub: ObjCBool = false
            return fm.fileExists(atPath: (path as NSString).appendingPathComponent(name), isDirectory: &sub) && sub.boolValue
        }
        if isFolder("train") {
            guard isFolder("test") else { throw DatasetError(file: path, "has train/ but no test/ folder: give both (and optionally val/), or one folder of class subfolders") }
            return .splitImageFolders
        }
        guard entries.contains(where: { !$0.hasPrefix(".") && isFolder($0) }) else { throw DatasetError(file: path, "holds no data Distill reads: \(expected)") }
        return .imageFolder
    }

    /// Channels and size for an image folder: as requested, else 3 channels and the images' own size.
    static func imageGeometry(_ request: Request) throws -> (Int, (height: Int, width: Int)?) {
        let channels = request.channels ?? 3
        guard channels == 1 || channels == 3 else { throw DatasetError(file: request.path, "--channels must be 1 or 3, got \(channels)") }
        guard let height = request.imageHeight else { return (channels, nil) }
        return (channels, (height, request.imageWidth ?? height))
    }

    static func carvingTest(from all: Dataset, kind: Kind, request: Request, featureNames: [String]?) throws -> UserData {
        let fraction = request.testFraction ?? defaultTestFraction
        guard fraction > 0 && fraction < 1 else { throw DatasetError(file: request.path, "--test-fraction must be in (0, 1), got \(fraction)") }
        let split: (kept: Dataset, heldOut: Dataset)
        do { split = try all.stratifiedSplit(fraction: fraction, seed: testSplitSeed) } catch let error as DatasetError {
            throw DatasetError(file: request.path, "cannot carve a test set: \(error.problem)")
        }
        return UserData(kind: kind, train: split.kept, test: split.heldOut, featureNames: featureNames, testFraction: fraction)
    }

    /// `test`, checked to have `train`'s example shape.
    static func matching(_ test: Dataset, _ train: Dataset, file: String) throws -> Dataset {
        guard test.exampleShape == train.exampleShape else {
            throw DatasetError(file: file, "has examples of shape \(test.exampleShape.dimensions), the training data \(train.exampleShape.dimensions)")
        }
        return test
    }

    static func labelColumn(_ text: String?) -> CSV.LabelColumn {
        guard let text else { return .last }
        return Int(text).map { .index($0) } ?? .name(text)
    }

    /// An NPZ archive's or NPY files' inputs and labels.
    static func arrays(_ request: Request, kind: Kind, file: String, classCount: Int? = nil) throws -> Dataset {
        let inputs: NPY.Array, labels: NPY.Array, labelsFile: String
        if kind == .arrays {
            let archive = try NPZ.read(file)
            func pick(_ given: String?, _ defaults: [String], _ role: String) throws -> NPY.Array {
                let names = given.map { [$0] } ?? defaults
                guard let name = names.first(where: { archive[$0] != nil }), let array = archive[name] else {
                    throw DatasetError(file: file, "has no \(role) array \(given.map { "'\($0)'" } ?? "(looked for \(defaults.joined(separator: ", ")))"); it holds \(archive.keys.sorted().joined(separator: ", ")) (name it with --\(role))")
                }
                return array
            }
            inputs = try pick(request.inputs, ["inputs", "x", "X", "images", "features", "data"], "inputs")
            labels = try pick(request.labels, ["labels", "y", "Y", "targets"], "labels")
            labelsFile = file
        } else {
            guard let path = request.labels else { throw DatasetError(file: file, "an .npy inputs file needs its labels: --labels LABELS.npy") }
            guard request.inputs == nil else { throw DatasetError(file: file, "--inputs names an array inside an .npz archive, and this is an .npy file") }
            inputs = try NPY.read(file)
            labels = try NPY.read(path)
            labelsFile = path
        }
        guard inputs.shape.count == 2 || inputs.shape.count == 4 || inputs.shape.count == 3 else {
            throw DatasetError(file: file, "inputs have shape \(inputs.shape): expected [N, features], [N, H, W] or [N, C, H, W]")
        }
        guard inputs.shape.dropFirst().allSatisfy({ $0 > 0 }) else {
            throw DatasetError(file: file, "inputs have shape \(inputs.shape): every size after N must be positive")
        }
        if inputs.shape.count == 4 && ![1, 3].contains(inputs.shape[1]) {
            let hint = [1, 3].contains(inputs.shape[3]) ? "; it looks like [N, H, W, C]: transpose it to [N, C, H, W] (np.transpose(x, (0, 3, 1, 2)))" : ""
            throw DatasetError(file: file, "image inputs \(inputs.shape) must be [N, C, H, W] with 1 or 3 channels\(hint)")
        }
        let values = try labels.integers(file: labelsFile)
        guard labels.shape.count == 1 || (labels.shape.count == 2 && labels.shape[1] == 1) else {
            throw DatasetError(file: labelsFile, "labels have shape \(labels.shape): expected [N] class indices")
        }
        guard values.count == inputs.shape[0] else {
            throw DatasetError(file: labelsFile, "has \(values.count) labels for \(inputs.shape[0]) inputs")
        }
        guard !values.isEmpty else { throw DatasetError(file: file, "has no examples") }
        if let bad = values.first(where: { $0 < 0 || $0 >= (classCount ?? 100_000) }) {
            throw DatasetError(file: labelsFile, "label \(bad) is outside 0...\((classCount ?? 100_000) - 1)")
        }
        if let bad = inputs.values.firstIndex(where: { !$0.isFinite }) {
            throw DatasetError(file: file, "input value \(bad) (example \(bad / max(1, inputs.values.count / inputs.shape[0]))) is not finite")
        }
        let classes = classCount ?? (values.max()! + 1)
        let shape = inputs.shape.count == 3 ? [inputs.shape[0], 1, inputs.shape[1], inputs.shape[2]] : inputs.shape
        return Dataset(inputs: Tensor(inputs.values, shape: Shape(shape)), labels: values, classNames: (0..<classes).map(String.init))
    }
}

extension UserData {
    /// Whether `path` holds image folders (one folder of class subfolders, or train/ and test/).
    public static func isImageFolder(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue,
              let kind = try? detect(path, isDirectory: true) else { return false }
        return kind == .imageFolder || kind == .splitImageFolders
    }
}
