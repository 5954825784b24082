/// A small JSON (RFC 8259) reader and writer for layer files, without Foundation.
///
/// Reading is hardened for untrusted input: nesting deeper than `JSON.maxDepth` and number
/// literals longer than `JSON.maxNumberLength` are refused, strings must be valid UTF-8 with
/// valid escapes (no lone surrogates), an object may not repeat a key, and nothing may follow
/// the value but whitespace. Every problem is an `invalidArgument` error naming the byte
/// offset; nothing traps. Numbers keep their source text and are converted on request
/// (`int`, `uint64`, `double`), so a value too large for the type asked for is an error,
/// never a silent rounding.
public enum JSON: Sendable {
    case null
    case bool(Bool)
    /// The literal as written (valid JSON number grammar).
    case number(String)
    case string(String)
    case array([JSON])
    /// Members in document order (keys unique).
    case object([(key: String, value: JSON)])

    /// The deepest nesting of arrays and objects the reader accepts.
    public static let maxDepth = 64
    /// The longest number literal the reader accepts, in bytes.
    public static let maxNumberLength = 64

    /// Parses one JSON document from UTF-8 bytes; `what` names it in error messages.
    public static func parse(_ bytes: [UInt8], _ what: String) throws(AttentionError) -> JSON {
        var parser = JSONParser(bytes: bytes, what: what)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.position == bytes.count else { throw parser.error("unexpected data after the JSON value") }
        return value
    }

    /// Parses a JSON document held in a string.
    public static func parse(_ text: String, _ what: String) throws(AttentionError) -> JSON {
        try parse(Array(text.utf8), what)
    }
}

// MARK: - Reading values

extension JSON {
    /// A short name of the value's type, for messages.
    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    var isNull: Bool { if case .null = self { true } else { false } }

    func string(_ what: String) throws(AttentionError) -> String {
        guard case .string(let s) = self else { throw .invalid("\(what) must be a string, got \(typeName)") }
        return s
    }

    func bool(_ what: String) throws(AttentionError) -> Bool {
        guard case .bool(let b) = self else { throw .invalid("\(what) must be true or false, got \(typeName)") }
        return b
    }

    func array(_ what: String) throws(AttentionError) -> [JSON] {
        guard case .array(let a) = self else { throw .invalid("\(what) must be an array, got \(typeName)") }
        return a
    }

    func object(_ what: String) throws(AttentionError) -> [(key: String, value: JSON)] {
        guard case .object(let o) = self else { throw .invalid("\(what) must be an object, got \(typeName)") }
        return o
    }

    /// An integer literal (no fraction or exponent) that fits Int.
    func int(_ what: String) throws(AttentionError) -> Int {
        guard case .number(let text) = self else { throw .invalid("\(what) must be an integer, got \(typeName)") }
        guard let v = Int(text) else { throw .invalid("\(what) must be an integer that fits 64 bits, got \(text)") }
        return v
    }

    /// An integer literal in 0 ... 2^64 − 1.
    func uint64(_ what: String) throws(AttentionError) -> UInt64 {
        guard case .number(let text) = self else { throw .invalid("\(what) must be an integer, got \(typeName)") }
        guard let v = UInt64(text) else { throw .invalid("\(what) must be an integer in [0, 2**64), got \(text)") }
        return v
    }

    /// Any number literal that is finite as a Double.
    func double(_ what: String) throws(AttentionError) -> Double {
        guard case .number(let text) = self else { throw .invalid("\(what) must be a number, got \(typeName)") }
        guard let v = Double(text), v.isFinite else { throw .invalid("\(what) \(text) is beyond the float64 range") }
        return v
    }
}

// MARK: - Writing

extension JSON {
    /// A number value from an integer.
    static func integer<I: BinaryInteger>(_ v: I) -> JSON { .number(String(v)) }

    /// A number value from a finite Double (shortest round-trip form).
    static func real(_ v: Double) -> JSON { .number(v.description) }

    /// Compact JSON text (", " and ": " separators, as Python's json.dumps).
    public var text: String {
        var out = ""
        write(into: &out)
        return out
    }

    private func write(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n
        case .string(let s): JSON.quote(s, into: &out)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += ", " }
                item.write(into: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, member) in members.enumerated() {
                if i > 0 { out += ", " }
                JSON.quote(member.key, into: &out)
                out += ": "
                member.value.write(into: &out)
            }
            out += "}"
        }
    }

    private static func quote(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}

// MARK: - The parser

/// Recursive descent over bytes, depth-limited by JSON.maxDepth.
private struct JSONParser {
    let bytes: [UInt8]
    let what: String
    var position = 0

    init(bytes: [UInt8], what: String) {
        self.bytes = bytes
        self.what = what
    }

    func error(_ message: String) -> AttentionError {
        .invalid("\(what) is not valid JSON: \(message) at byte \(position)")
    }

    private var current: UInt8? { position < bytes.count ? bytes[position] : nil }

    mutating func skipWhitespace() {
        while let c = current, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { position += 1 }
    }

    private mutating func expect(_ literal: String) throws(AttentionError) {
        for byte in literal.utf8 {
            guard current == byte else { throw error("expected \(literal)") }
            position += 1
        }
    }

    mutating func value(depth: Int) throws(AttentionError) -> JSON {
        guard let c = current else { throw error("unexpected end of input") }
        switch c {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw error("unexpected character 0x\(String(c, radix: 16))")
        }
    }

    private func checkDepth(_ depth: Int) throws(AttentionError) {
        guard depth <= JSON.maxDepth else { throw error("nesting deeper than \(JSON.maxDepth) levels") }
    }

    private mutating func array(depth: Int) throws(AttentionError) -> JSON {
        try checkDepth(depth)
        position += 1
        var items: [JSON] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") { position += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try value(depth: depth))
            skipWhitespace()
            guard let c = current else { throw error("unterminated array") }
            position += 1
            if c == UInt8(ascii: "]") { return .array(items) }
            guard c == UInt8(ascii: ",") else { position -= 1; throw error("expected , or ] in an array") }
        }
    }

    private mutating func object(depth: Int) throws(AttentionError) -> JSON {
        try checkDepth(depth)
        position += 1
        var members: [(key: String, value: JSON)] = []
        var keys = Set<String>()
        skipWhitespace()
        if current == UInt8(ascii: "}") { position += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let key = try string()
            guard keys.insert(key).inserted else { throw error("duplicate key \"\(key)\"") }
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw error("expected : after a key") }
            position += 1
            skipWhitespace()
            members.append((key, try value(depth: depth)))
            skipWhitespace()
            guard let c = current else { throw error("unterminated object") }
            position += 1
            if c == UInt8(ascii: "}") { return .object(members) }
            guard c == UInt8(ascii: ",") else { position -= 1; throw error("expected , or } in an object") }
        }
    }

    private mutating func hex4() throws(AttentionError) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let c = current else { throw error("unterminated \\u escape") }
            let digit: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c - UInt8(ascii: "A") + 10
            default: throw error("bad hex digit in a \\u escape")
            }
            v = v << 4 | UInt32(digit)
            position += 1
        }
        return v
    }

    private mutating func string() throws(AttentionError) -> String {
        position += 1
        var utf8: [UInt8] = []
        while true {
            guard let c = current else { throw error("unterminated string") }
            position += 1
            switch c {
            case UInt8(ascii: "\""):
                guard let s = String(validating: utf8, as: UTF8.self) else { throw error("a string is not valid UTF-8") }
                return s
            case UInt8(ascii: "\\"):
                guard let e = current else { throw error("unterminated escape") }
                position += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(e)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code) {
                        guard current == UInt8(ascii: "\\") else { throw error("lone surrogate in a \\u escape") }
                        position += 1
                        guard current == UInt8(ascii: "u") else { throw error("lone surrogate in a \\u escape") }
                        position += 1
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("bad surrogate pair") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(code) {
                        throw error("lone surrogate in a \\u escape")
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw error("bad \\u escape") }
                    utf8.append(contentsOf: String(Character(scalar)).utf8)
                default: throw error("unknown escape \\\(Character(Unicode.Scalar(e)))")
                }
            default:
                guard c >= 0x20 else { position -= 1; throw error("control character in a string") }
                utf8.append(c)
            }
        }
    }

    private mutating func digits() -> Int {
        let start = position
        while let c = current, c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") { position += 1 }
        return position - start
    }

    private mutating func number() throws(AttentionError) -> JSON {
        let start = position
        if current == UInt8(ascii: "-") { position += 1 }
        if current == UInt8(ascii: "0") {
            position += 1
        } else if digits() == 0 {
            throw error("a number needs digits")
        }
        if current == UInt8(ascii: ".") {
            position += 1
            guard digits() > 0 else { throw error("a number needs digits after the decimal point") }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            position += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
            guard digits() > 0 else { throw error("a number needs digits in its exponent") }
        }
        guard position - start <= JSON.maxNumberLength else {
            throw error("a number literal longer than \(JSON.maxNumberLength) characters")
        }
        return .number(String(decoding: bytes[start..<position], as: UTF8.self))
    }
}
