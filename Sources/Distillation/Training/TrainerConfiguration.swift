import Datasets
import NeuralNet
import Tensors
import Training

/// Every training default, in one place: the command line's option tables, YAML experiments,
/// the library's configurations and the docs take their values from here.
///
/// Chosen by measurement (docs/distillation.md): gradient clipping at global norm 2 and a
/// linear warm-up keep the plain KD recipe from collapsing (2 of 5 seeds at 10% without them,
/// none with them); the same clipping does not slow scratch training of the zoo's teachers.
public enum TrainingDefaults {
    public static let epochs = 3
    public static let batchSize = 128
    public static let learningRate: Float = 0.05
    public static let optimizer = OptimizerChoice.sgd
    /// Nesterov momentum of SGD.
    public static let momentum: Float = 0.9
    /// L2 weight decay on weights (not on biases or normalisation parameters).
    public static let weightDecay: Float = 5e-4
    public static let schedule = ScheduleChoice.cosine
    /// Gradient clipping by global norm.
    public static let clipNorm: Float = 2
    /// Linear warm-up steps (from 1% of the rate), at most a tenth of the run.
    public static let warmupSteps = 100
    /// What a NaN or infinite loss or gradient does.
    public static let nonFinite = NonFinitePolicy.stop
    /// The arithmetic of the training steps' matrix products.
    public static let matmulPrecision = MatmulPrecision.float32
    /// KD's softmax temperature (Hinton et al. use 2-20; 4 is the common CIFAR choice).
    public static let temperature: Float = 4
    /// KD's weight α; the cross-entropy gets 1 − α.
    public static let alpha: Float = 0.9
    /// Fraction of each class's labelled training examples held out for checkpoint selection.
    public static let validationFraction = 0.1
    /// Below this many labelled examples per class there is no validation split unless asked.
    public static let minimumLabelsPerClassForValidation = 5
}

/// What to do when a loss or a gradient becomes NaN or infinite.
public enum NonFinitePolicy: Equatable, Sendable {
    /// Stop with an error that names the epoch, the step and the loss terms.
    case stop
    /// Restore the state from the start of the epoch (for a run resumed inside an epoch, from
    /// where it resumed), scale the learning rate by `factor` and go on, at most `retries`
    /// times in the run.
    case rollback(factor: Float, retries: Int)
}

/// How the `Trainer` trains: length, batches, optimizer, schedule, guards, checkpoints.
/// Every default comes from `TrainingDefaults`.
public struct TrainerConfiguration {
    public var epochs = TrainingDefaults.epochs
    /// When set, training stops after this many optimizer steps (the schedule spans them) and
    /// `epochs` is ignored: transfer runs count steps.
    public var steps: Int?
    public var batchSize = TrainingDefaults.batchSize
    public var learningRate = TrainingDefaults.learningRate
    public var seed: UInt64 = 0
    /// Weight of the hard-label cross-entropy (1 − α with KD).
    public var crossEntropyWeight: Float = 1
    public var labelSmoothing: Float = 0
    /// Weights of the classes in the hard-label cross-entropy (nil: all 1), one per class of
    /// the training set, each positive and finite: Σᵢ w[yᵢ]·ceᵢ / Σᵢ w[yᵢ], as PyTorch's
    /// `CrossEntropyLoss(weight: w)`. Distillation terms and auxiliary tasks are not weighted.
    /// `ClassWeights.balanced` gives scikit-learn's "balanced" weights, n / (C · n_c).
    public var classWeights: [Float]?
    public var optimizer = TrainingDefaults.optimizer
    public var weightDecay = TrainingDefaults.weightDecay
    public var schedule = TrainingDefaults.schedule
    /// Learning rates relative to the base rate for parameters under a module path, such as
    /// `["backbone": 0.1]` (the longest matching prefix wins; others get 1).
    public var learningRateScales: [String: Float] = [:]
    /// Gradient clipping by global norm (nil: off).
    public var clipNorm: Float? = TrainingDefaults.clipNorm
    /// Linear warm-up steps before the schedule, capped at a tenth of the run (0: none).
    public var warmupSteps = TrainingDefaults.warmupSteps
    public var nonFinite = TrainingDefaults.nonFinite
    /// The arithmetic of the matrix products in each training step (the forward and backward
    /// passes, an online teacher's forward pass too): bfloat16 rounds their operands and sums
    /// in float32, as PyTorch's bfloat16 autocast. Validation, the teacher cache and the saved
    /// weights stay float32.
    public var matmulPrecision = TrainingDefaults.matmulPrecision
    public var augmentation = Augmentation()
    /// Cache teacher outputs when the pipeline is deterministic (no augmentation).
    public var cacheTeacher = true
    /// Largest cache of tapped teacher features kept in memory; above it the teacher runs online.
    public var featureCacheBytes = 1 << 30
    /// Where cached teacher outputs persist between runs (nil: memory only).
    public var cacheDirectory: String?
    /// The run folder: checkpoint, metrics, TensorBoard events, best model (nil: nothing is written).
    public var runDirectory: String?
    /// Also checkpoint every this many steps inside an epoch (nil: at the end of each epoch only).
    public var checkpointEvery: Int?
    /// Stop when validation accuracy has not improved for this many epochs (nil: never).
    public var patience: Int?
    /// Drop training examples whose image file cannot be decoded (counted per epoch in
    /// `EpochRecord.skippedFiles`, each reported as `TrainingEvent.skippedFile`) instead of
    /// stopping with an error that names the file.
    public var skipBadFiles = false
    /// Data-parallel runs: batch norm normalises with the statistics of the whole global
    /// batch, summed over the processes (synchronised batch norm), so that N processes train
    /// as one would on the same global batch. Off, each process uses its own shard's.
    public var synchronizeBatchNorm = true
    /// The processes the run is spread over (data parallelism): each takes its part of every
    /// global batch of `batchSize`, gradients are averaged over all of them (in buckets,
    /// started while backward runs), and only rank 0 writes the run folder.
    /// `SingleProcess()` (the default): one process.
    public var communicator: any Communicator = SingleProcess()
    /// Data-parallel runs: gradients are summed over the processes in buckets of this many
    /// bytes. 1 MiB (PyTorch's first bucket; its later ones are 25 MiB) starts the first sum
    /// early in backward, and docs/distributed.md's model of step time says where larger
    /// buckets pay.
    public var allReduceBucketBytes = 1 << 20
    /// Data-parallel runs: start each bucket's sum as soon as backward has completed its
    /// gradients (the default); false waits for the end of backward (to measure what the
    /// overlap hides).
    public var overlapAllReduce = true
    /// Deterministic data parallelism (nil: off): the global batch is cut into this many
    /// parts, each part's gradient computed alone and the parts added in order, so that any
    /// number of processes dividing it gives the same weights bit for bit (at the same
    /// threads per process); batch norm then uses each part's statistics. See
    /// Trainer+Deterministic.swift.
    public var deterministicParts: Int?
    /// Text data: batch texts of similar lengths together (`DataLoader`'s `lengthBuckets`),
    /// so that batches padded to their longest text carry little padding.
    public var lengthBuckets = false

    public init() {}

    /// The warm-up actually used for a run of `totalSteps`.
    func warmup(totalSteps: Int) -> Int { min(warmupSteps, totalSteps / 10) }

    /// The settings that decide a run's numbers, by name: a checkpoint records them, and
    /// resuming with different ones is refused with the names that differ.
    var fingerprint: [String: String] {
        var result = ["epochs": String(epochs), "batchSize": String(batchSize), "learningRate": String(learningRate),
                      "seed": String(seed), "crossEntropyWeight": String(crossEntropyWeight), "labelSmoothing": String(labelSmoothing),
                      "optimizer": optimizer.rawValue, "weightDecay": String(weightDecay), "schedule": schedule.rawValue,
                      "clipNorm": clipNorm.map { String($0) } ?? "off", "warmupSteps": String(warmupSteps),
                      "augmentation": String(describing: augmentation), "patience": patience.map(String.init) ?? "off",
                      "learningRateScales": learningRateScales.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")]
        if let steps { result["steps"] = String(steps) }
        if !synchronizeBatchNorm { result["synchronizeBatchNorm"] = "off" }
        if let deterministicParts { result["deterministicParts"] = String(deterministicParts) }
        if lengthBuckets { result["lengthBuckets"] = "on" }
        if let classWeights { result["classWeights"] = classWeights.map { String($0) }.joined(separator: ",") }
        if case let .rollback(factor, retries) = nonFinite { result["nonFinite"] = "rollback \(factor) \(retries)" } else { result["nonFinite"] = "stop" }
        return result
    }
}
