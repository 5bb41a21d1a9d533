/// Why a request body was refused. `code` is stable and machine-readable; `message` is for people.
public struct ValidationError: Error, Sendable, Equatable {
    public enum Code: String, Sendable {
        case badJSON = "bad_json"
        case invalidBody = "invalid_body"
        case missingField = "missing_field"
        case invalidType = "invalid_type"
        case outOfRange = "out_of_range"
        case unknownField = "unknown_field"
        case unknownOp = "unknown_op"
        case ambiguousOp = "ambiguous_op"
        case useAsync = "use_async"
    }

    public var code: Code
    public var message: String
    public var field: String?

    public init(_ code: Code, _ message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
    }
}
