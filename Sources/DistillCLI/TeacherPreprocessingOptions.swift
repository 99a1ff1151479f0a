import ArgumentParser
import Datasets
import DistillInference

/// How teachers that record no preprocessing (ONNX files from other projects) expect their
/// inputs: declared once, for `distill` and `evaluate`.
struct TeacherPreprocessingOptions: ParsableArguments {
    @Option(name: Spec.teacherInputSize.long, help: Spec.teacherInputSize.help) var teacherInputSize: [String] = []
    @Option(name: Spec.teacherMean.long, help: Spec.teacherMean.help) var teacherMean: [String] = []
    @Option(name: Spec.teacherStd.long, help: Spec.teacherStd.help) var teacherStd: [String] = []
    @Option(name: Spec.teacherChannelOrder.long, help: Spec.teacherChannelOrder.help) var teacherChannelOrder: [String] = []

    var values: [(String, OptionValue?)] {
        [("teacher-input-size", teacherInputSize.isEmpty ? nil : .list(teacherInputSize)), ("teacher-mean", teacherMean.isEmpty ? nil : .list(teacherMean)),
         ("teacher-std", teacherStd.isEmpty ? nil : .list(teacherStd)), ("teacher-channel-order", teacherChannelOrder.isEmpty ? nil : .list(teacherChannelOrder))]
    }

    /// The --teacher-* preprocessing options, parsed and checked: one entry per `--teacher`.
    /// Each option is given once (for every teacher) or once per teacher, in order.
    func overrides(teachers count: Int) throws -> [TeacherPreprocessing] {
        func perTeacher(_ values: [String], _ flag: String) throws -> [String?] {
            switch values.count {
            case 0: return Array(repeating: nil, count: count)
            case 1: return Array(repeating: values[0], count: count)
            case count: return values
            default: throw UserError("--\(flag) is given \(values.count) times for \(count) teachers: give it once (for all) or once per --teacher, in order")
            }
        }
        func floats(_ text: String?, _ flag: String, positive: Bool) throws -> [Float]? {
            guard let text else { return nil }
            let items = text.split(separator: ",", omittingEmptySubsequences: false).map { Float($0.trimmingCharacters(in: .whitespaces)) }
            guard (1...3).contains(items.count), items.allSatisfy({ $0.map { $0.isFinite && (positive ? $0 > 0 && $0 <= 1e3 : abs($0) <= 1e3) } ?? false }) else {
                throw UserError("--\(flag) '\(text)' must be 1 to 3 comma-separated \(positive ? "positive numbers up to 1000" : "numbers from -1000 to 1000")")
            }
            return items.map { $0! }
        }
        let orders = try perTeacher(teacherChannelOrder, "teacher-channel-order").map { text -> Preprocessing.ChannelOrder? in
            guard let text else { return nil }
            guard let order = Preprocessing.ChannelOrder(rawValue: text) else { throw UserError("--teacher-channel-order '\(text)' is not one of rgb, bgr") }
            return order
        }
        let sizes = try perTeacher(teacherInputSize, "teacher-input-size"), means = try perTeacher(teacherMean, "teacher-mean")
        let deviations = try perTeacher(teacherStd, "teacher-std")
        return try (0..<count).map { i in
            TeacherPreprocessing(size: try sizes[i].map { try parseImageSize($0, flag: "teacher-input-size") },
                                 mean: try floats(means[i], "teacher-mean", positive: false),
                                 standardDeviation: try floats(deviations[i], "teacher-std", positive: true), channelOrder: orders[i])
        }
    }
}

/// What `--teacher-input-size`, `--teacher-mean`, `--teacher-std` and `--teacher-channel-order`
/// say about teachers that carry no preprocessing of their own (ONNX files from other projects).
struct TeacherPreprocessing {
    var size: (height: Int, width: Int)?
    var mean: [Float]?
    var standardDeviation: [Float]?
    var channelOrder: Preprocessing.ChannelOrder?

    /// The student's preprocessing with these changes.
    func applied(to student: Preprocessing) throws -> Preprocessing {
        var result = student
        if let size { (result.height, result.width) = size }
        let channels = student.normalization.mean.count
        func expand(_ values: [Float]?, _ flag: String) throws -> [Float]? {
            guard let values else { return nil }
            if values.count == channels { return values }
            if values.count == 1 { return Array(repeating: values[0], count: channels) }
            throw UserError("--\(flag) has \(values.count) values for \(channels) channels")
        }
        if let mean = try expand(mean, "teacher-mean") { result.normalization.mean = mean }
        if let std = try expand(standardDeviation, "teacher-std") { result.normalization.standardDeviation = std }
        if let channelOrder { result.channelOrder = channelOrder }
        return result
    }

    /// The per-example input shape ONNX teachers' symbolic axes are fixed to.
    func inputShape(for student: Preprocessing) -> [Int] {
        guard student.kind == .images, let size else { return student.exampleShape }
        return [student.channels, size.height, size.width]
    }
}
