import DistillInference
import Foundation
import Tensors

/// Writing safetensors files (the reader is DistillInference's `SafeTensors`, which the
/// inference-only library ships without this).
extension SafeTensors {
    /// The bytes of a safetensors file holding `tensors` as F32 (in the given order) and `metadata`.
    public static func encode(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:]) throws -> Data {
        try encode(raw: tensors.map { ($0.name, float32($0.tensor)) }, metadata: metadata)
    }

    /// `tensor` as an F32 tensor of the file.
    public static func float32(_ tensor: Tensor) -> RawTensor {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4 * tensor.count)
        tensor.withUnsafeBufferPointer { buffer in
            for value in buffer { withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        }
        return RawTensor(dtype: "F32", shape: tensor.shape.dimensions, bytes: bytes)
    }

    /// The bytes of a safetensors file holding `tensors` as stored (in the given order) and `metadata`.
    public static func encode(raw tensors: [(name: String, tensor: RawTensor)], metadata: [String: String] = [:]) throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for (name, tensor) in tensors {
            guard name != "__metadata__", header[name] == nil else {
                throw ModelFormatError(file: name, "tensor name is reserved or used twice")
            }
            guard let size = elementSizes[tensor.dtype], tensor.shape.reduce(1, *) * size == tensor.bytes.count else {
                throw ModelFormatError(file: name, "\(tensor.bytes.count) bytes do not hold a \(tensor.dtype) tensor of shape \(tensor.shape)")
            }
            header[name] = ["dtype": tensor.dtype, "shape": tensor.shape, "data_offsets": [offset, offset + tensor.bytes.count]]
            offset += tensor.bytes.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so the data starts 8-byte aligned, as the format recommends.
        while json.count % 8 != 0 { json.append(0x20) }
        var data = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        for (_, tensor) in tensors { data.append(contentsOf: tensor.bytes) }
        return data
    }

    /// Writes `tensors` and `metadata` to `path` atomically.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to path: String) throws {
        try AtomicFile.write(encode(tensors, metadata: metadata), to: path)
    }
}
