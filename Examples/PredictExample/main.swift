// An app's use of the inference-only library: load a student (run folder, float or int8
// .safetensors) and predict for raw examples. It depends on DistillInference alone, and its
// binary is what docs/quantization.md measures ("Shipping the student").
//
//   distill-predict-example MODEL INPUT.f32
//
// INPUT.f32 holds one or more raw examples as little-endian float32 values one after another
// (images: planar RGB or gray values in [0, 1] at the model's size; tables: the raw features).
// Prints a line per example: its index, class, probability and every class's probability.
import DistillInference
import Foundation

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    exit(1)
}

let arguments = CommandLine.arguments
guard arguments.count == 3 else { fail("usage: distill-predict-example MODEL INPUT.f32") }
do {
    let model = try InferenceModel(contentsOf: URL(fileURLWithPath: arguments[1]))
    guard let data = FileManager.default.contents(atPath: arguments[2]) else { fail("\(arguments[2]): cannot be read") }
    guard data.count % 4 == 0 else { fail("\(arguments[2]): \(data.count) bytes are not whole float32 values") }
    let values = data.withUnsafeBytes { raw in
        (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
    }
    for (index, prediction) in try model.predict(batch: values).enumerated() {
        let name = prediction.className ?? String(prediction.classIndex)
        print("\(index)\t\(name)\t\(prediction.probability)\t\(prediction.probabilities.map { "\($0)" }.joined(separator: " "))")
    }
} catch {
    fail("\(error)")
}
