import Datasets
import Foundation

/// Progress reports while training.
public enum TrainingEvent {
    case cachingTeacher(done: Int, total: Int)
    /// After optimizer step `globalStep` (from 1), batch `step` of `of` in `epoch` (from 0).
    case step(epoch: Int, step: Int, of: Int, globalStep: Int, loss: Float, examplesPerSecond: Double)
    case rolledBack(epoch: Int, step: Int, learningRateFactor: Float)
    /// A checkpoint at `globalStep` is about to be written (`written` false), or is on disk.
    case checkpoint(globalStep: Int, written: Bool)
    /// An epoch ended; `isBest` when it is the best so far on the validation split.
    case epochFinished(EpochRecord, isBest: Bool)
    /// Validation accuracy did not improve for `patience` epochs.
    case stoppedEarly(epoch: Int)
    /// A file that could not be decoded was dropped from its batch (`skipBadFiles`); the error
    /// names it and says what is wrong.
    case skippedFile(epoch: Int, DatasetError)
}

/// One epoch's numbers.
public struct EpochRecord: Codable, Equatable, Sendable {
    public var epoch: Int
    public var loss: Float
    /// Mean of each weighted term ("ce", "kd", ...).
    public var terms: [String: Float]
    public var seconds: Double
    public var learningRate: Float
    /// Accuracy on the validation split (never the test set).
    public var validationAccuracy: Double?
    /// Files skipped in the epoch because they could not be decoded (nil: none).
    public var skippedFiles: Int?
    /// Data-parallel runs: seconds this process waited after backward for the gradients'
    /// sums over the processes (the communication backward did not hide), in this epoch
    /// (since the resume, for an epoch resumed inside).
    public var allReduceWaitSeconds: Double?

    public init(epoch: Int, loss: Float, terms: [String: Float], seconds: Double, learningRate: Float, validationAccuracy: Double? = nil) {
        self.epoch = epoch
        self.loss = loss
        self.terms = terms
        self.seconds = seconds
        self.learningRate = learningRate
        self.validationAccuracy = validationAccuracy
    }
}

/// What a finished `fit` did.
public struct TrainingResult: Sendable {
    /// Every epoch of the run, resumed parts included.
    public var history: [EpochRecord]
    /// The epoch (from 0) whose model was selected on the validation split, if there was one.
    public var bestEpoch: Int?
    public var bestValidationAccuracy: Double?
    public var stoppedEarly: Bool
    public var steps: Int
}

/// Training stopped on request (SIGINT or SIGTERM) after writing a checkpoint.
public struct TrainingInterrupted: Error, CustomStringConvertible {
    public let step: Int
    public let checkpoint: String?
    public var description: String {
        "interrupted at step \(step)" + (checkpoint.map { "; checkpoint written to \($0), continue with --resume" } ?? "")
    }
}
