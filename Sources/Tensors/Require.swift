/// Traps with `message` when `condition` is false, in every build configuration.
///
/// Swift's `precondition` drops its message in optimised builds ("precondition failure"),
/// and shape misuse must say which op and which shapes in the release builds people run.
/// Programmer errors (shapes, ranges, arguments that code, not users, gets wrong) use this;
/// errors from files, configs and user input are thrown instead.
@inline(__always)
public func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                    file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { requirementFailed(message(), file: file, line: line) }
}

/// Traps with `message` in every build configuration (see `require`).
public func requirementFailed(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    fatalError(message, file: file, line: line)
}
