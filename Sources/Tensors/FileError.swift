/// A problem with a file Distill reads or writes: which file, and what is wrong with it.
/// Every module's file errors are this type (`DatasetError` and `ModelFormatError` name it in
/// their modules), so a caller catches one type and prints "file: problem".
public struct FileError: Error, CustomStringConvertible, Equatable, Sendable {
    public let file: String
    public let problem: String

    public init(file: String, _ problem: String) {
        self.file = file
        self.problem = problem
    }

    public var description: String { "\(file): \(problem)" }
}
