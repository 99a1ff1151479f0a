import DistillInference
import Foundation

extension SavedModel {
    /// The ONNX model file `path` stands for, or nil when it is a zoo model: `path` itself when
    /// it ends in `.onnx`, or a run folder's `model.onnx` when the folder has no
    /// `model.safetensors` (the model file of a transfer from an imported ONNX graph, which no
    /// zoo name rebuilds: the graph with its trained initializers and the new head).
    public static func onnxFile(at path: String) -> String? {
        if path.lowercased().hasSuffix(".onnx") { return path }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { return nil }
        let onnx = (path as NSString).appendingPathComponent("model.onnx")
        let native = (path as NSString).appendingPathComponent("model.safetensors")
        return FileManager.default.fileExists(atPath: onnx) && !FileManager.default.fileExists(atPath: native) ? onnx : nil
    }
}
