import Tensors

/// A problem with a model or checkpoint file: which file, and what is wrong with it.
public typealias ModelFormatError = FileError
