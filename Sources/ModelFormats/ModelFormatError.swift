/// A problem with a model or checkpoint file: which file, and what is wrong with it.
public struct ModelFormatError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let problem: String

    public init(file: String, _ problem: String) {
        self.file = file
        self.problem = problem
    }

    public var description: String { "\(file): \(problem)" }
}
