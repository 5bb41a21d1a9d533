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
        for path in paths.keys.sorted() {
            for (method, operation) in (paths[path]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
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
                    html += "<p>Request body (application/json):</p><pre>\(HTML.escape(body.text))</pre>"
                }
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
            html += "<h3 id=\"schema-\(HTML.escape(name))\">\(HTML.escape(name))</h3><pre>\(HTML.escape(schema.text))</pre>"
        }
        return html + "</body></html>\n"
    }

    /// A `{"$ref": "#/components/..."}` replaced by what it names (the document's own references only).
    static func resolve(_ value: JSONValue, in doc: JSONValue) -> JSONValue {
        guard let ref = value["$ref"]?.stringValue, ref.hasPrefix("#/") else { return value }
        var target: JSONValue? = doc
        for key in ref.dropFirst(2).split(separator: "/") { target = target?[String(key)] }
        return target ?? value
    }
}
