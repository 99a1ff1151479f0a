import CHTTP
import Foundation

extension ServedTeacher {
    /// GET (no body) or POST `body` to `target`: retries timeouts, connection errors and HTTP
    /// 429/500/502/503/504 (waiting `Retry-After` when given, else an exponential back-off
    /// with jitter), and throws a one-line error naming the URL once the retries are spent.
    /// A refused certificate, an unreadable CA file and a body above `maximumBodyBytes` are
    /// not transient: they stop at once.
    func send(_ target: URL, body: Data?) throws -> Data {
        var headers = ["Expect:"]  // curl would otherwise wait for a "100 Continue" before sending a large body.
        if body != nil { headers.append("Content-Type: application/json") }
        if let token, target.host == url.host { headers.append("Authorization: Bearer " + token) }
        var attempt = 0
        while true {
            var wait: Double?
            let problem: String
            switch Self.exchange(target, headers: headers, body: body, timeout: timeout, caFile: caFile, limit: maximumBodyBytes) {
            case let .failure(failure):
                switch failure {
                case let .transient(message): problem = message
                case let .certificate(message):
                    throw DistillationError("\(target): the server's certificate is refused (\(message))\(caFile == nil ? "; give --teacher-ca-file for a private certificate authority" : "")")
                case let .caFile(message): throw DistillationError("--teacher-ca-file \(caFile ?? ""): not a readable file of PEM certificates (\(message))")
                case .tooLarge: throw DistillationError("\(target): the answer is above the limit of \(maximumBodyBytes) bytes (reading stopped there)")
                case let .other(message): throw DistillationError("\(target): \(message)")
                }
            case let .success((status, headers, data)):
                if (200..<300).contains(status) { return data }
                guard [429, 500, 502, 503, 504].contains(status) else {
                    throw DistillationError("\(target): HTTP \(status) \(String(decoding: data.prefix(200), as: UTF8.self).replacingOccurrences(of: "\n", with: " "))")
                }
                problem = "HTTP \(status)"
                wait = headers["retry-after"].flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }.map { min(max($0, 0), 60) }
            }
            guard attempt < retries else { throw DistillationError("\(target): \(problem) after \(retries + 1) attempts") }
            let delay = wait ?? backoff * pow(2, Double(attempt)) * Double.random(in: 1...1.5)
            Thread.sleep(forTimeInterval: delay)
            attempt += 1
        }
    }

    /// Why an exchange gave no answer.
    enum TransportFailure: Error {
        /// A timeout, a refused or reset connection: retried.
        case transient(String)
        case certificate(String), caFile(String), tooLarge, other(String)
    }

    /// One request on a pooled libcurl handle: (status, lower-cased headers, body), or why not.
    static func exchange(_ target: URL, headers: [String], body: Data?, timeout: Double, caFile: String?,
                         limit: Int) -> Result<(Int, [String: String], Data), TransportFailure> {
        guard let handle = handles.take() else { return .failure(.other("libcurl could not make a handle")) }
        defer { handles.give(handle) }
        var response = distill_http_response()
        defer { distill_http_response_free(&response) }
        let cHeaders = headers.map { strdup($0) }
        defer { cHeaders.forEach { free($0) } }
        let timeoutMilliseconds = Int(max(1, (timeout * 1000).rounded()))
        let failure = cHeaders.map { UnsafePointer($0) }.withUnsafeBufferPointer { lines in
            (body ?? Data()).withUnsafeBytes { bytes in
                distill_http_exchange(handle, target.absoluteString, lines.baseAddress, lines.count, body == nil ? nil : (bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)),
                                      bytes.count, timeoutMilliseconds, caFile, max(0, limit), &response)
            }
        }
        let message = withUnsafeBytes(of: &response.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        switch distill_http_failure(rawValue: UInt32(failure)) {
        case DISTILL_HTTP_OK: break
        case DISTILL_HTTP_TRANSIENT: return .failure(.transient(message))
        case DISTILL_HTTP_CERTIFICATE: return .failure(.certificate(message))
        case DISTILL_HTTP_CA_FILE: return .failure(.caFile(message))
        case DISTILL_HTTP_TOO_LARGE: return .failure(.tooLarge)
        default: return .failure(.other(message))
        }
        let data = response.body.map { Data(bytes: $0, count: response.body_length) } ?? Data()
        var fields: [String: String] = [:]
        if let lines = response.headers {
            for line in String(decoding: UnsafeRawBufferPointer(start: lines, count: response.headers_length), as: UTF8.self).split(whereSeparator: \.isNewline) {
                guard let colon = line.firstIndex(of: ":") else { continue }
                fields[line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return .success((response.status, fields, data))
    }

    static let handles = HTTPHandles()
}

/// libcurl handles kept between requests (each keeps its connections alive), one per thread
/// at a time.
final class HTTPHandles: @unchecked Sendable {
    private let lock = NSLock()
    private var idle: [OpaquePointer] = []

    func take() -> OpaquePointer? {
        if let handle = lock.withLock({ idle.popLast() }) { return handle }
        return distill_http_create()
    }

    func give(_ handle: OpaquePointer) { lock.withLock { idle.append(handle) } }
}
