/// Keras's weight and activity regularisers (keras.regularizers): a penalty added to the loss.
/// Kept with the layer's configuration; they take effect only when training.
public enum Regularizer: Sendable, Equatable {
    /// l1·Σ|x|.
    case l1(Double)
    /// l2·Σx².
    case l2(Double)
    /// l1·Σ|x| + l2·Σx²; as Keras, a factor of 0 leaves its term out.
    case l1l2(l1: Double, l2: Double)

    /// Each factor must be finite and >= 0 (Keras's validate_float_arg).
    public func validate() throws(AttentionError) {
        switch self {
        case .l1(let l1): try Self.check(l1, "l1")
        case .l2(let l2): try Self.check(l2, "l2")
        case .l1l2(let l1, let l2):
            try Self.check(l1, "l1")
            try Self.check(l2, "l2")
        }
    }

    /// The penalty for `values`.
    public func penalty(_ values: [Double]) -> Double {
        switch self {
        case .l1(let l1): return l1 * Self.sumOfMagnitudes(values)
        case .l2(let l2): return l2 * Self.sumOfSquares(values)
        case .l1l2(let l1, let l2):
            var total = 0.0
            if l1 != 0 { total += l1 * Self.sumOfMagnitudes(values) }
            if l2 != 0 { total += l2 * Self.sumOfSquares(values) }
            return total
        }
    }

    private static func check(_ factor: Double, _ name: String) throws(AttentionError) {
        guard factor.isFinite, factor >= 0 else {
            throw .invalid("regularizer \(name) must be a finite number >= 0, got \(name)=\(factor)")
        }
    }

    private static func sumOfMagnitudes(_ values: [Double]) -> Double { values.reduce(0) { $0 + abs($1) } }
    private static func sumOfSquares(_ values: [Double]) -> Double { values.reduce(0) { $0 + $1 * $1 } }
}
