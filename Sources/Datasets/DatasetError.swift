import Tensors

/// A problem with a data file: which file, and what is wrong with it.
public typealias DatasetError = FileError
