import FastCGI

extension HTTPResponse {
    /// Names the job this response is about in `X-Request-Id`: read back for workfcgi's access line, and
    /// logged by nginx ($upstream_http_x_request_id). A header like any other, so the transport knows no jobs.
    mutating func tag(requestID id: String) { headers.append(("X-Request-Id", id)) }

    var requestID: String? { headers.first { $0.name == "X-Request-Id" }?.value }
}
