import JSON

/// GET /docs: the OpenAPI document as one server-rendered page: no scripts, no external assets.
enum DocsPage {
    static func render(_ doc: JSONValue) -> String {
        let title = doc["info"]?["title"]?.stringValue ?? "API"
        var html = """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><title>\(HTML.escape(title)) API</title>
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
            h2{margin-top:2.5rem;border-top:1px solid #ddd;padding-top:1rem}code,pre{font:13px ui-monospace,monospace}
            pre{background:#f6f6f6;padding:.75rem;overflow-x:auto}.m{font-weight:bold;color:#064}table{border-collapse:collapse}
            td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}</style></head><body>
            <h1>\(HTML.escape(title)) <small>\(HTML.escape(doc["info"]?["version"]?.stringValue ?? ""))</small></h1>
            <p>\(HTML.escape(doc["info"]?["description"]?.stringValue ?? ""))</p>
            <p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>
            """
        let paths = doc["paths"]?.objectValue ?? [:]
        for path in paths.keys.sorted(by: Self.documentOrder) {
            let operations = paths[path]?.objectValue ?? [:]
            for method in Self.methods where operations[method] != nil {
                let operation = operations[method]!
                html += "<h2 id=\"\(HTML.escape(operation["operationId"]?.stringValue ?? path))\"><span class=m>\(method.uppercased())</span> "
                html += "<code>\(HTML.escape(path))</code></h2><p>\(HTML.escape(operation["summary"]?.stringValue ?? ""))</p>"
                if case .array(let parameters)? = operation["parameters"], !parameters.isEmpty {
                    html += "<table><tr><th>parameter</th><th>in</th><th>schema</th><th>about</th></tr>"
                    for parameter in parameters {
                        let p = resolve(parameter, in: doc)
                        html += "<tr><td><code>\(HTML.escape(p["name"]?.stringValue ?? ""))</code></td><td>\(HTML.escape(p["in"]?.stringValue ?? ""))</td>"
                        html += "<td><code>\(HTML.escape(p["schema"]?.text ?? ""))</code></td><td>\(HTML.escape(p["description"]?.stringValue ?? ""))</td></tr>"
                    }
                    html += "</table>"
                }
                if let body = operation["requestBody"]?["content"]?["application/json"]?["schema"] {
                    html += "<p>Request body (application/json):</p><pre>\(HTML.escape(pretty(resolve(body, in: doc))))</pre>"
                }
                if let example = examples["\(method) \(path)"] { html += "<p>Example:</p><pre>\(HTML.escape(example))</pre>" }
                html += "<table><tr><th>status</th><th>meaning</th></tr>"
                for (status, response) in (operation["responses"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
                    let text = response["description"]?.stringValue ?? (status == "default" ? "an error (Error schema)" : "")
                    html += "<tr><td>\(HTML.escape(status))</td><td>\(HTML.escape(text))</td></tr>"
                }
                html += "</table>"
            }
        }
        html += "<h2>Schemas</h2>"
        for (name, schema) in (doc["components"]?["schemas"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
            html += "<h3 id=\"schema-\(HTML.escape(name))\">\(HTML.escape(name))</h3><pre>\(HTML.escape(pretty(schema)))</pre>"
        }
        return html + "</body></html>\n"
    }

    /// Methods in the order a reader expects them; any other is not an operation.
    static let methods = ["get", "put", "post", "patch", "delete"]

    /// The paths in the order `OpenAPIDocument.text` gives them (the client's endpoints first, then the
    /// operators'), not alphabetically: a parsed object keeps no order, so it is read off the text.
    static let pathOrder: [String] = OpenAPIDocument.text.split(separator: "\n").compactMap { line in
        guard line.hasPrefix("  \"/"), let end = line.dropFirst(3).firstIndex(of: "\"") else { return nil }
        return String(line[line.index(line.startIndex, offsetBy: 3)..<end])
    }

    static func documentOrder(_ a: String, _ b: String) -> Bool {
        switch (pathOrder.firstIndex(of: a), pathOrder.firstIndex(of: b)) {
        case let (i?, j?): i < j
        case (_?, nil): true
        case (nil, _?): false
        case (nil, nil): a < b
        }
    }

    /// One command per endpoint a client calls, as the README runs them.
    static let examples = [
        "post /sync": #"curl -s localhost:8080/sync -H 'Content-Type: application/json' -d '{"input_data": "hello", "iterations": 50000}'"#,
        "post /async": #"""
            curl -si localhost:8080/async -H 'Content-Type: application/json' -H 'Idempotency-Key: order-42' \
                 -d '{"records": 20, "report_name": "march", "callback_url": "https://hooks.example.com/cb"}'
            """#,
        "get /requests": "curl -s 'localhost:8080/requests?mode=async&status=failed&limit=20'",
        "get /requests/{id}": "curl -s localhost:8080/requests/01a21618-39e2-7f09-91be-f5faf9af3c21",
        "post /requests/{id}/redeliver": "curl -s -X POST localhost:8080/requests/01a21618-39e2-7f09-91be-f5faf9af3c21/redeliver",
    ]

    /// JSON indented two spaces a level, keys sorted: a schema read, not scrolled.
    static func pretty(_ value: JSONValue, _ indent: String = "") -> String {
        let inner = indent + "  "
        switch value {
        case .object(let members) where !members.isEmpty:
            let lines = members.sorted { $0.key < $1.key }.map { inner + JSONValue.string($0.key).text + ": " + pretty($0.value, inner) }
            return "{\n" + lines.joined(separator: ",\n") + "\n" + indent + "}"
        case .array(let items) where !items.isEmpty:
            if items.allSatisfy({ if case .object = $0 { false } else if case .array = $0 { false } else { true } }) {
                return "[" + items.map(\.text).joined(separator: ", ") + "]"
            }
            return "[\n" + items.map { inner + pretty($0, inner) }.joined(separator: ",\n") + "\n" + indent + "]"
        default:
            return value.text
        }
    }

    /// A `{"$ref": "#/components/..."}` replaced by what it names (the document's own references only).
    static func resolve(_ value: JSONValue, in doc: JSONValue) -> JSONValue {
        guard let ref = value["$ref"]?.stringValue, ref.hasPrefix("#/") else { return value }
        var target: JSONValue? = doc
        for key in ref.dropFirst(2).split(separator: "/") { target = target?[String(key)] }
        return target ?? value
    }
}
