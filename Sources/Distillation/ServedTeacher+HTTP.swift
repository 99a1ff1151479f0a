import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension ServedTeacher {
    /// GET (no body) or POST `body` (with `headers`) to `target`: retries timeouts, connection errors and HTTP
    /// 429/500/502/503/504 (waiting `Retry-After` when given, else an exponential back-off
    /// with jitter), and throws a one-line error naming the URL once the retries are spent.
    func send(_ target: URL, body: Data?, headers: [String: String] = [:]) throws -> Data {
        var request = URLRequest(url: target, timeoutInterval: timeout)
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.httpMethod = body == nil ? "GET" : "POST"
        if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            // curl would otherwise wait for a "100 Continue" before sending a large body.
            request.setValue("", forHTTPHeaderField: "Expect")
        }
        if let token, target.host == url.host { request.setValue("Bearer " + token, forHTTPHeaderField: "Authorization") }
        var attempt = 0
        while true {
            let outcome = Self.fetch(request, timeout: timeout)
            var wait: Double?
            let problem: String
            switch outcome {
            case let .failure(error):
                problem = "\(error.localizedDescription)"
            case let .success((status, headers, data)):
                if (200..<300).contains(status) {
                    guard data.count <= maximumBodyBytes else {
                        throw DistillationError("\(target): the answer is \(data.count) bytes, above the limit of \(maximumBodyBytes)")
                    }
                    return data
                }
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

    /// One request, waited for: (status, lower-cased headers, body), or the transport error.
    static func fetch(_ request: URLRequest, timeout: Double) -> Result<(Int, [String: String], Data), Error> {
        let box = ResponseBox()
        let semaphore = DispatchSemaphore(value: 0)
        sessions.session(timeout: timeout).dataTask(with: request) { data, response, error in
            if let error {
                box.result = .failure(error)
            } else if let response = response as? HTTPURLResponse {
                var headers: [String: String] = [:]
                for (name, value) in response.allHeaderFields { headers["\(name)".lowercased()] = "\(value)" }
                box.result = .success((response.statusCode, headers, data ?? Data()))
            } else {
                box.result = .failure(URLError(.badServerResponse))
            }
            semaphore.signal()
        }.resume()
        semaphore.wait()
        return box.result ?? .failure(URLError(.unknown))
    }

    static let sessions = Sessions()
}

/// One URLSession per request timeout (FoundationNetworking applies the session's timeout,
/// not the request's): no cookies, no cache, no redirects followed (a token must not travel
/// to another host).
final class Sessions: @unchecked Sendable {
    private let lock = NSLock()
    private var byTimeout: [Double: URLSession] = [:]

    func session(timeout: Double) -> URLSession {
        lock.withLock {
            if let session = byTimeout[timeout] { return session }
            let configuration = URLSessionConfiguration.ephemeral
            configuration.httpCookieStorage = nil
            configuration.urlCache = nil
            configuration.httpMaximumConnectionsPerHost = 256
            configuration.timeoutIntervalForRequest = timeout
            let session = URLSession(configuration: configuration, delegate: RefusingRedirects(), delegateQueue: nil)
            byTimeout[timeout] = session
            return session
        }
    }
}

/// A response handed from URLSession's queue to the waiting thread (the semaphore orders them).
private final class ResponseBox: @unchecked Sendable {
    var result: Result<(Int, [String: String], Data), Error>?
}

/// Refuses every redirect: the answer is then the redirect itself, an error.
private final class RefusingRedirects: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        completionHandler(nil)
    }
}
