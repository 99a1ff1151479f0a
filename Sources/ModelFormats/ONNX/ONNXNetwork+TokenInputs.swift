import NeuralNet
import Tensors

/// The token inputs of an imported text model: the graph reads `input_ids` and, when it has
/// them, `attention_mask` and `token_type_ids`, each integer [batch, sequence] (int64 as
/// PyTorch and Hugging Face export them, or int32). The network takes one packed
/// `TokenBatch` [batch, 3, length] (ids, mask, types: what text datasets give) and feeds each
/// graph input its row by name, so an exported BERT runs wherever a `Module` does.
public struct ONNXTokenInputs: Equatable, Sendable {
    /// The graph input names Distill feeds from a packed token batch, in its row order.
    public static let names = ["input_ids", "attention_mask", "token_type_ids"]

    /// The graph inputs, in the graph's order: a subset of `names` holding `input_ids`.
    public let inputs: [String]
    /// The sequence length the graph fixes, or nil when its sequence axis is open (dynamic).
    public let length: Int?

    /// The values fed to the graph for `batch`: each input's row of the packed batch.
    func values(for batch: TokenBatch) -> [(String, ONNXNetwork.Value)] {
        let dims = [batch.batchSize, batch.length]
        return inputs.map { name in
            switch name {
            case "attention_mask": return (name, .ints(batch.attentionMask, dims: dims))
            case "token_type_ids": return (name, .ints(batch.tokenTypes, dims: dims))
            default: return (name, .ints(batch.ids, dims: dims))
            }
        }
    }

    /// A batch of one sequence of `length` tokens (id 0, every token kept, type 0), packed:
    /// the trial input loading runs.
    static func trialBatch(length: Int) -> Tensor {
        TokenBatch(ids: [Int](repeating: 0, count: length), batchSize: 1, length: length).packed()
    }

    /// A TensorProto element type by name, for messages.
    static func typeName(_ type: Int) -> String {
        [ONNXTensor.float: "float", ONNXTensor.uint8: "uint8", ONNXTensor.int8: "int8", ONNXTensor.int32: "int32",
         ONNXTensor.int64: "int64", ONNXTensor.bool: "bool", ONNXTensor.double: "double"][type] ?? "type \(type)"
    }
}

extension ONNXNetwork {
    /// The inputs the network feeds: the single float input an image model reads, or token
    /// inputs (`ONNXTokenInputs`). Errors name the input that cannot be fed and say what can.
    static func graphInputs(_ feedable: [ONNXValueInfo], given: [Int]?, fail: (String) -> ModelFormatError) throws
        -> (name: String, shape: [Int], tokens: ONNXTokenInputs?) {
        guard let first = feedable.first else { throw fail("has no graph input") }
        let isText = feedable.contains { ONNXTokenInputs.names.contains($0.name) || $0.elementType != ONNXTensor.float }
        guard isText else {
            guard feedable.count == 1 else {
                throw fail("has \(feedable.count) float graph inputs (\(feedable.map(\.name).joined(separator: ", "))); Distill feeds one, "
                    + "an image batch, or token inputs named \(ONNXTokenInputs.names.joined(separator: ", "))")
            }
            return (first.name, try exampleShape(of: first, given: given, fail: fail), nil)
        }
        for input in feedable {
            guard ONNXTokenInputs.names.contains(input.name) else {
                throw fail("has graph input '\(input.name)' (\(ONNXTokenInputs.typeName(input.elementType))), which Distill cannot feed: "
                    + "it feeds one float input (an image batch), or token inputs named \(ONNXTokenInputs.names.joined(separator: ", "))")
            }
            guard input.elementType == ONNXTensor.int64 || input.elementType == ONNXTensor.int32 else {
                throw fail("input '\(input.name)' has element type \(ONNXTokenInputs.typeName(input.elementType)); token inputs are int64 or int32")
            }
            guard input.dims.isEmpty || input.dims.count == 2 else {
                throw fail("input '\(input.name)' has \(input.dims.count) axes; token inputs are [batch, sequence]")
            }
        }
        guard let ids = feedable.first(where: { $0.name == "input_ids" }) else {
            throw fail("has token inputs \(feedable.map(\.name).joined(separator: ", ")) but no input_ids")
        }
        let fixed = Set(feedable.compactMap { $0.dims.count == 2 ? $0.dims[1].flatMap { $0 > 0 ? $0 : nil } : nil })
        guard fixed.count <= 1 else { throw fail("token inputs fix different sequence lengths \(fixed.sorted())") }
        let length: Int
        if let given {
            guard given.count == 2, given[0] == 3, given[1] > 0 else {
                throw fail("is a text model: it takes examples [3, length] (token ids, attention mask, token types), not \(given)")
            }
            if let required = fixed.first, required != given[1] {
                throw fail("input '\(ids.name)' takes sequences of exactly \(required) tokens, not \(given[1])")
            }
            length = given[1]
        } else {
            length = fixed.first ?? 8
        }
        return (ids.name, [3, length], ONNXTokenInputs(inputs: feedable.map(\.name), length: fixed.first))
    }

    /// Reads a packed token batch [batch, 3, length] (or ids alone, [batch, length]) for the
    /// graph's token inputs; a batch of another length than the graph fixes is an error.
    func tokenValues(_ input: Tensor, _ tokens: ONNXTokenInputs) throws -> [(String, Value)] {
        let batch: TokenBatch
        do { batch = try TokenBatch(packed: input) } catch let error as TextModelError {
            throw ModelFormatError(file: file, "token inputs: \(error)")
        }
        if let length = tokens.length, batch.length != length {
            throw ModelFormatError(file: file, "input '\(inputName)' takes sequences of exactly \(length) tokens, got a batch of \(batch.length)")
        }
        return tokens.values(for: batch)
    }
}
