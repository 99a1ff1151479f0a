import Datasets
import DistillInference
import Foundation
import Tensors

/// A teacher behind an inference server that speaks the Open Inference Protocol (KServe v2)
/// over HTTP with JSON tensors: Seldon MLServer, KServe, Triton.
///
/// Before training, `logits(for:)` asks it for the logits of every training example — in
/// batches of `queryBatch`, with up to `concurrency` requests in flight, at most
/// `requestsPerSecond` — keeping every answer in a `ServedAnswers` log, so that a run
/// restarted after a kill asks only for what was not yet answered. The result is an
/// ordinary `.outputs` teacher: there is one training loop.
///
/// The transport is libcurl (the `CHTTP` target): URLSession on Linux cannot be given a
/// certificate authority, nor stop reading a body at a limit.
public struct ServedTeacher: Sendable {
    /// `http(s)://HOST:PORT/v2/models/NAME`.
    public var url: URL
    /// Examples per request.
    public var queryBatch = defaultQueryBatch
    /// Requests in flight at once.
    public var concurrency = defaultConcurrency
    /// Requests started per second at most; 0: unlimited.
    public var requestsPerSecond: Double = 0
    /// Examples the run may ask about at most (answers already kept cost nothing); nil: no limit.
    public var maxQueries: Int?
    /// Seconds one request may take before it counts as failed (and is retried).
    public var timeout = defaultTimeout
    /// Retries of one request (timeouts, connection errors, HTTP 429/500/502/503/504) before the run stops.
    public var retries = 5
    /// Seconds of the first retry's back-off; each retry doubles it, with up to 50% jitter.
    public var backoff: Double = 0.2
    /// The largest response body accepted, in bytes: reading stops there (or before, when
    /// `Content-Length` says more), so a server cannot make the client hold more.
    public var maximumBodyBytes = 64 << 20
    /// Asked before each batch: true stops querying (a signal), keeping every answer so far.
    public var shouldStop: (@Sendable () -> Bool)?
    /// Sent as `Authorization: Bearer TOKEN`, to the teacher's host only (redirects are not followed).
    public var token: String?
    /// A file of PEM certificates: the only authorities trusted for an https teacher (nil: the
    /// system's certificate store). A certificate they do not vouch for stops the run.
    public var caFile: String?
    /// What the server answers (logits, probabilities, top-k, labels); nil: implied by the
    /// model's metadata (an integer or BYTES output of one value per example is a label, else logits).
    public var answers: ServedAnswerKind?
    /// Whether to use Triton's binary tensor extension when the server offers it (`GET /v2` lists
    /// `binary_tensor_data`): inputs sent as raw FP32 bytes, logits and probabilities answered so.
    public var binaryTensors = true

    /// The defaults of `queryBatch`, `concurrency` and `timeout`.
    public static let defaultQueryBatch = 64, defaultConcurrency = 4, defaultTimeout = 30.0

    /// What the server says about the model (`GET /v2/models/NAME`).
    public struct Metadata: Sendable, Equatable {
        /// The input tensor's name, shape (-1: any size) and datatype.
        public var inputName: String
        public var inputShape: [Int]
        public var inputDatatype: String
        /// The output tensor's name, shape (for logits, probabilities and top-k its last size
        /// is the class count) and datatype.
        public var outputName: String
        public var outputShape: [Int]
        public var outputDatatype: String
        /// The model version the answers are keyed by ("" when the server names none).
        public var version: String
        /// What the answers are: `answers`, or what the output implies.
        public var answers: ServedAnswerKind
        /// The server's protocol extensions (`GET /v2`), e.g. `binary_tensor_data`, `classification`.
        public var extensions: [String]

        /// Whether requests use the binary tensor extension.
        var binary: Bool { extensions.contains("binary_tensor_data") }
    }

    /// A teacher at `url` (`http(s)://HOST:PORT/v2/models/NAME`); an address of another form is an error naming it.
    public init(url text: String) throws {
        guard let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil,
              url.pathComponents.count >= 4, url.pathComponents[1] == "v2", url.pathComponents[2] == "models" else {
            throw DistillationError("--teacher \(text): a served teacher's address is http(s)://HOST:PORT/v2/models/NAME")
        }
        guard url.user == nil, url.password == nil else {
            throw DistillationError("--teacher: a served teacher's address must not hold credentials (they would be written to config.yaml); give --teacher-token-env or --teacher-token-file")
        }
        self.url = url
    }

    /// The server's root (`http://HOST:PORT`).
    var root: URL {
        var components = URLComponents(url: url, resolvingAgainstBaseURL: false)!
        components.path = ""
        return components.url!
    }

    /// Checks `GET /v2/health/ready`, reads the model's metadata and checks it against
    /// examples of `exampleShape` and `classes` classes: one-line errors naming the URL.
    public func metadata(exampleShape: [Int], classes: Int) throws -> Metadata {
        _ = try send(root.appendingPathComponent("v2/health/ready"), body: nil)
        let body = try send(url, body: nil)
        guard let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any],
              let inputs = object["inputs"] as? [[String: Any]], let input = inputs.first,
              let name = input["name"] as? String, let shape = (input["shape"] as? [Any]).flatMap(Self.integers),
              let datatype = input["datatype"] as? String,
              let outputs = object["outputs"] as? [[String: Any]], let output = outputs.first,
              let outputName = output["name"] as? String, let outputShape = (output["shape"] as? [Any]).flatMap(Self.integers) else {
            throw DistillationError("\(url): the model's metadata is not Open Inference Protocol JSON (inputs and outputs with name, shape, datatype)")
        }
        let versions = (object["versions"] as? [Any])?.map { "\($0)" } ?? []
        let outputDatatype = output["datatype"] as? String ?? "FP32"
        let kind = answers ?? ServedAnswerKind.implied(datatype: outputDatatype, shape: outputShape)
        // The server's extensions; a server without `GET /v2` offers none.
        var extensions = [String]()
        if binaryTensors, let server = try? send(root.appendingPathComponent("v2"), body: nil),
           let object = (try? JSONSerialization.jsonObject(with: server)) as? [String: Any] {
            extensions = (object["extensions"] as? [Any])?.compactMap { $0 as? String } ?? []
        }
        let metadata = Metadata(inputName: name, inputShape: shape, inputDatatype: datatype, outputName: outputName, outputShape: outputShape,
                                outputDatatype: outputDatatype, version: versions.last ?? "", answers: kind, extensions: extensions)
        guard inputs.count == 1 else { throw DistillationError("\(url): the model takes \(inputs.count) inputs; a served teacher must take one") }
        guard datatype == "FP32" else { throw DistillationError("\(url): the model takes \(datatype) inputs; Distill sends FP32") }
        let perExample = Array(shape.dropFirst())
        guard shape.count == exampleShape.count + 1, shape[0] == -1,
              zip(perExample, exampleShape).allSatisfy({ $0 == -1 || $0 == $1 }) else {
            throw DistillationError("\(url): the model takes inputs \(shape), and would be sent [-1, \(exampleShape.map(String.init).joined(separator: ", "))] (give --teacher-input-size)")
        }
        if kind == .label {
            guard outputShape.count == 1 || (outputShape.count == 2 && outputShape[1] == 1) else {
                throw DistillationError("\(url): the model gives outputs \(outputShape), and labels are one value per example ([-1] or [-1, 1])")
            }
            guard outputDatatype == "BYTES" || outputDatatype.hasPrefix("INT") || outputDatatype.hasPrefix("UINT") else {
                throw DistillationError("\(url): the model gives \(outputDatatype) outputs, and labels are class indices (INT64, INT32, ...) or class names (BYTES)")
            }
            return metadata
        }
        guard outputShape.count == 2, outputShape.last == classes else {
            throw DistillationError("\(url): the model gives outputs \(outputShape), and the data has \(classes) classes")
        }
        if case let .topK(k) = kind, k > classes {
            throw DistillationError("\(url): top-\(k) answers asked for, and the data has \(classes) classes")
        }
        return metadata
    }

    /// What querying gave: the logits, and how many examples were asked for now and how
    /// many came from answers kept earlier.
    public struct Outcome {
        /// [N, classes], in the data's order: the logits, or the log-probabilities of the
        /// distributions partial answers give (see `ServedAnswerKind`).
        public var logits: Tensor
        /// What the answers were.
        public var answers: ServedAnswerKind
        public var asked: Int
        public var kept: Int
        /// The answers file.
        public var path: String
    }

    /// The teacher's logits [N, classes] for `data`'s examples, in order: each batch read
    /// from `data`, converted by `conversion` (the teacher's preprocessing) and sent, unless
    /// the answers in `directory` already hold every example of it. `progress` hears
    /// (answered, total) after each batch.
    public func logits(for data: Dataset, conversion: InputConversion?, directory: String,
                       progress: @escaping @Sendable (Int, Int) -> Void = { _, _ in }) throws -> Outcome {
        let exampleShape = conversion?.target.exampleShape ?? data.exampleShape.dimensions
        let metadata = try metadata(exampleShape: exampleShape, classes: data.classCount)
        let classes = data.classCount
        let answers = try ServedAnswers(path: ServedAnswers.path(in: directory, url: url.absoluteString, version: metadata.version, kind: metadata.answers),
                                        url: url.absoluteString, version: metadata.version, classes: classes, kind: metadata.answers)
        let classNames = data.classNames
        // Chunk by chunk (a few rounds of requests), so that only a chunk of converted examples
        // is held at once, and a streamed folder is read once.
        let size = exampleShape.reduce(1, *), chunk = queryBatch * concurrency * 4
        var keys = [UInt64](), missingCount = 0, queued = Set<UInt64>()
        keys.reserveCapacity(data.count)
        let state = QueryState(total: data.count, answered: 0)
        let limit = maxQueries, total = data.count
        for chunkStart in stride(from: 0, to: data.count, by: chunk) {
            let batch = try data.batch(Array(chunkStart..<min(chunkStart + chunk, data.count)))
            let values = (conversion.map { $0(batch) } ?? batch).scalars
            let chunkKeys = (0..<(values.count / size)).map { row in values[(row * size)..<((row + 1) * size)].withUnsafeBytes { ServedAnswers.fnv1a($0) } }
            keys += chunkKeys
            let missing = chunkKeys.indices.filter { answers.answer(chunkKeys[$0]) == nil }
            missingCount += missing.count
            let unique = missing.filter { queued.insert(chunkKeys[$0]).inserted }
            let batches = stride(from: 0, to: unique.count, by: queryBatch).map { Array(unique[$0..<min($0 + queryBatch, unique.count)]) }
            state.startRound()
            // One thread per request in flight: they block on the network, so not
            // DispatchQueue.concurrentPerform, which runs at most one iteration per core at once.
            let lanes = DispatchGroup()
            for _ in 0..<min(concurrency, max(batches.count, 1)) {
                lanes.enter()
                Thread {
                    defer { lanes.leave() }
                    while let index = state.next(batches.count) {
                        let rows = batches[index]
                        do {
                            if shouldStop?() == true { throw DistillationError("\(url): querying stopped on request") }
                            guard state.reserve(rows.count, limit: limit) else {
                                throw DistillationError("\(url): --max-queries \(limit ?? 0) reached (run again to continue)")
                            }
                            try state.waitForSlot(requestsPerSecond)
                            var sent = [Float]()
                            sent.reserveCapacity(rows.count * size)
                            for row in rows { sent += values[(row * size)..<((row + 1) * size)] }
                            let logits = try infer(sent, count: rows.count, exampleShape: exampleShape, metadata: metadata, classes: classes, classNames: classNames)
                            try answers.append(keys: rows.map { chunkKeys[$0] }, logits: logits)
                            progress(state.answered(rows.count), total)
                        } catch {
                            state.fail(error)
                        }
                    }
                }.start()
            }
            lanes.wait()
            if state.error != nil { break }
        }
        if let error = state.error {
            throw DistillationError("\(error); \(answers.count) of \(data.count) examples are answered and kept in \(answers.path)")
        }
        var logits = [Float]()
        logits.reserveCapacity(data.count * classes)
        for key in keys {
            guard let answer = answers.answer(key) else { throw DistillationError("\(url): an example has no answer after querying") }
            logits += answer
        }
        var targets = Tensor(metadata.answers.isDistribution ? TeacherOutputs.logProbabilities(logits) : logits, shape: [data.count, classes])
        if self.answers == nil, metadata.answers == .logits {
            // Implied logits that are all probabilities are taken as such, as for --teacher-outputs.
            targets = try TeacherOutputs.validate(targets, source: url.absoluteString, examples: data.count, classes: classes)
        }
        return Outcome(logits: targets, answers: metadata.answers, asked: state.asked, kept: data.count - missingCount, path: answers.path)
    }

    /// One `POST .../infer` of `count` examples (`values`, row-major), retried on transient
    /// faults; the answer checked (JSON or binary, shape, values, model version) before use and
    /// returned as `count × classes` floats: logits, or distributions for partial answers.
    func infer(_ values: [Float], count: Int, exampleShape: [Int], metadata: Metadata, classes: Int, classNames: [String]) throws -> [Float] {
        let (body, headerLength) = requestBody(values, count: count, exampleShape: exampleShape, metadata: metadata, kind: metadata.answers, binary: metadata.binary)
        let answer = try send(url.appendingPathComponent("infer"), body: body,
                              headers: headerLength.map { ["Inference-Header-Content-Length": String($0)] } ?? [:])
        let output = try firstOutput(answer, metadata: metadata)
        return try interpret(output, count: count, classes: classes, kind: metadata.answers, classNames: classNames)
    }

    /// A JSON array of whole numbers, or nil.
    static func integers(_ values: [Any]) -> [Int]? {
        let result = values.compactMap { ($0 as? NSNumber)?.intValue }
        return result.count == values.count ? result : nil
    }

    /// Appends the numbers of a (possibly nested) JSON array to `result`; false when it holds anything else.
    static func flatten(_ values: [Any], into result: inout [Float]) -> Bool {
        for value in values {
            if let nested = value as? [Any] {
                guard flatten(nested, into: &result) else { return false }
            } else if let number = value as? NSNumber {
                result.append(number.floatValue)
            } else {
                return false
            }
        }
        return true
    }

    /// `text` as a JSON string literal.
    static func quoted(_ text: String) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: [text])) ?? Data("[\"\"]".utf8), as: UTF8.self).dropFirst().dropLast().description
    }
}
