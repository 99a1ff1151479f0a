import Foundation
import Tensors
import XCTest

/// Shape misuse is a programmer error: the process traps, and the message names the op and
/// the shapes. Each case re-runs this test binary as a child process that performs the
/// misuse, and checks the child's exit and standard error.
final class PreconditionMessageTests: XCTestCase {
    static let childVariable = "DISTILL_PRECONDITION_CHILD"

    /// In the child: performs misuse number `index`. In the parent: does nothing.
    func testMisuseInChild() {
        guard let which = ProcessInfo.processInfo.environment[Self.childVariable], let index = Int(which) else { return }
        let misuses: [() -> Void] = [
            { _ = Tensor.zeros([2, 3]) + Tensor.zeros([4]) },
            { _ = Tensor.zeros([2, 3]).matmul(Tensor.zeros([4, 5])) },
            { _ = Tensor.conv2d(Tensor.zeros([1, 3, 8, 8]), weight: Tensor.zeros([4, 2, 3, 3])) },
            { _ = Tensor.zeros([6]).reshaped([4, 2]) },
        ]
        misuses[index]()
    }

    func testShapeMisuseTrapsNamingOpAndShapes() throws {
        guard ProcessInfo.processInfo.environment[Self.childVariable] == nil else { return }
        let expected = [
            "add: shapes [2, 3] and [4] do not broadcast",
            "matmul: inner dimensions differ: [2, 3] · [4, 5]",
            "conv2d: input [1, 3, 8, 8] and weight [4, 2, 3, 3] do not fit groups = 1",
            "reshaped: shape [6] (6 elements) cannot become [4, 2]",
        ]
        let executable = URL(fileURLWithPath: CommandLine.arguments[0])
        for (index, message) in expected.enumerated() {
            let child = Process()
            child.executableURL = executable
            child.arguments = ["TensorsTests.PreconditionMessageTests/testMisuseInChild"]
            child.environment = ProcessInfo.processInfo.environment.merging([Self.childVariable: "\(index)"]) { $1 }
            let errors = Pipe()
            child.standardError = errors
            child.standardOutput = FileHandle.nullDevice
            try child.run()
            let output = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            child.waitUntilExit()
            XCTAssertNotEqual(child.terminationStatus, 0, "misuse \(index) must trap")
            XCTAssertTrue(output.contains(message), "misuse \(index): expected '\(message)' in:\n\(output.prefix(2000))")
        }
    }
}
