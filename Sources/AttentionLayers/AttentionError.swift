/// Why a layer refused a request. The message names the argument and the value at fault,
/// so a person can act on it; `kind` maps to the C API's status codes.
public struct AttentionError: Error, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// A configuration or argument value out of range, or unknown.
        case invalidArgument
        /// Ranks or dims that do not fit, or a size product that overflows.
        case shape
        /// A tensor of the wrong element type.
        case dtype
        /// Weights asked for before the layer was built.
        case notBuilt
        /// A working buffer could not be allocated.
        case outOfMemory
        /// A file could not be opened, read or written (LayerFile).
        case io
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    static func invalid(_ message: String) -> AttentionError { AttentionError(.invalidArgument, message) }
    static func shape(_ message: String) -> AttentionError { AttentionError(.shape, message) }
}
