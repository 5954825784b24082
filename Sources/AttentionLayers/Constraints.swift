/// Keras's weight constraints (keras.constraints), applied to a weight after an update.
/// A layer applies them on request (`applyConstraints`), as Keras's optimizer does.
///
/// The norm constraints take the Euclidean norm ‖w‖ of each vector along `axis` (negative:
/// counted from the end) and scale that vector, with ε = 1e-7 (Keras's backend epsilon):
///   maxNorm:    w · (clip(‖w‖, 0, maxValue) / (ε + ‖w‖))
///   unitNorm:   w / (ε + ‖w‖)
///   minMaxNorm: w · ((rate·clip(‖w‖, minValue, maxValue) + (1 − rate)·‖w‖) / (ε + ‖w‖))
public enum Constraint: Sendable, Equatable {
    case maxNorm(maxValue: Double, axis: Int)
    /// max(w, 0) elementwise.
    case nonNeg
    case unitNorm(axis: Int)
    case minMaxNorm(minValue: Double, maxValue: Double, rate: Double, axis: Int)

    /// Keras's backend epsilon, added to every norm before dividing by it.
    static let epsilon = 1e-7

    /// Refuses non-finite values, maxValue < 0, minValue > maxValue, rate outside [0, 1], and,
    /// when `rank` is given, an axis outside [−rank, rank).
    public func validate(rank: Int?) throws(AttentionError) {
        switch self {
        case .nonNeg:
            return
        case .maxNorm(let maxValue, _):
            try Self.checkMax(maxValue, "max_norm")
        case .unitNorm:
            break
        case .minMaxNorm(let minValue, let maxValue, let rate, _):
            guard minValue.isFinite else { throw .invalid("min_max_norm min_value must be finite, got \(minValue)") }
            try Self.checkMax(maxValue, "min_max_norm")
            guard minValue <= maxValue else {
                throw .invalid("min_max_norm min_value (\(minValue)) must be <= max_value (\(maxValue))")
            }
            guard rate >= 0, rate <= 1 else { throw .invalid("min_max_norm rate must be in [0, 1], got \(rate)") }
        }
        if let rank { _ = try normalizedAxis(rank: rank) }
    }

    /// Applies the constraint in place to `values`, a row-major weight of `shape`.
    public func apply(_ values: inout [Double], shape: [Int]) throws(AttentionError) {
        try validate(rank: shape.count)
        let count = try elementCount(shape, "\(name) constraint weight")
        guard values.count == count else {
            throw .shape("\(name) constraint got \(values.count) values for shape \(shape) (\(count) elements)")
        }
        let eps = Self.epsilon
        switch self {
        case .nonNeg:
            for i in values.indices { values[i] = max(values[i], 0) }
        case .maxNorm(let maxValue, _):
            try scaleVectors(&values, shape) { w, norm in w * (min(max(norm, 0), maxValue) / (eps + norm)) }
        case .unitNorm:
            try scaleVectors(&values, shape) { w, norm in w / (eps + norm) }
        case .minMaxNorm(let minValue, let maxValue, let rate, _):
            try scaleVectors(&values, shape) { w, norm in
                w * ((rate * min(max(norm, minValue), maxValue) + (1 - rate) * norm) / (eps + norm))
            }
        }
    }

    /// Keras's name for the constraint, for messages.
    public var name: String {
        switch self {
        case .maxNorm: "max_norm"
        case .nonNeg: "non_neg"
        case .unitNorm: "unit_norm"
        case .minMaxNorm: "min_max_norm"
        }
    }

    private var axis: Int? {
        switch self {
        case .maxNorm(_, let axis), .unitNorm(let axis), .minMaxNorm(_, _, _, let axis): axis
        case .nonNeg: nil
        }
    }

    /// The axis in [0, rank) (0 for nonNeg, which has none).
    private func normalizedAxis(rank: Int) throws(AttentionError) -> Int {
        guard let axis else { return 0 }
        guard axis >= -rank, axis < rank else {
            throw .invalid("\(name) axis \(axis) is out of range for a weight of rank \(rank) (valid: \(-rank) ..< \(rank))")
        }
        return axis < 0 ? axis + rank : axis
    }

    private static func checkMax(_ maxValue: Double, _ name: String) throws(AttentionError) {
        guard maxValue.isFinite, maxValue >= 0 else {
            throw .invalid("\(name) max_value must be finite and >= 0, got \(maxValue)")
        }
    }

    /// Replaces each element w of every vector along the axis by `rule(w, ‖vector‖)`.
    private func scaleVectors(_ values: inout [Double], _ shape: [Int],
                              _ rule: (Double, Double) -> Double) throws(AttentionError) {
        let axis = try normalizedAxis(rank: shape.count)
        let length = shape[axis]
        let inner = shape[(axis + 1)...].reduce(1, *)  // <= the element count, checked by the caller
        let outer = values.count / (length * inner)
        for o in 0..<outer {
            for i in 0..<inner {
                let base = o * length * inner + i
                var sumOfSquares = 0.0
                for k in 0..<length { sumOfSquares += values[base + k * inner] * values[base + k * inner] }
                let norm = sumOfSquares.squareRoot()
                for k in 0..<length { values[base + k * inner] = rule(values[base + k * inner], norm) }
            }
        }
    }
}
