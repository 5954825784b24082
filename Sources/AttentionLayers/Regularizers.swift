import AttentionKernels

/// Keras's weight and activity regularisers (keras.regularizers): a penalty added to the loss.
/// A layer reports them as `losses` and adds their gradients in `backward` on request.
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
        values.withUnsafeBufferPointer { $0.baseAddress.map { penalty(of: $0, values.count) } ?? 0 }
    }

    private static func check(_ factor: Double, _ name: String) throws(AttentionError) {
        guard factor.isFinite, factor >= 0 else {
            throw .invalid("regularizer \(name) must be a finite number >= 0, got \(name)=\(factor)")
        }
    }

    /// dx += ∂penalty/∂x · factor for `count` elements: l1·sign(x) + 2·l2·x.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func addGradient<T: KernelScalar>(of x: UnsafePointer<T>, _ count: Int, factor: Double, into dx: UnsafeMutablePointer<T>) {
        let (l1, l2): (Double, Double) = switch self {
        case .l1(let l1): (l1, 0)
        case .l2(let l2): (0, l2)
        case .l1l2(let l1, let l2): (l1, l2)
        }
        let a = T(l1 * factor), b = T(2 * l2 * factor)
        for e in 0..<count {
            let sign: T = x[e] > 0 ? 1 : x[e] < 0 ? -1 : 0
            dx[e] += a * sign + b * x[e]
        }
    }

    /// The penalty of `count` elements, accumulated in Double; as Keras, a factor of 0
    /// leaves its term out of l1_l2.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func penalty<T: KernelScalar>(of x: UnsafePointer<T>, _ count: Int) -> Double {
        var l1Sum = 0.0, l2Sum = 0.0
        for e in 0..<count {
            let v = Double(x[e])
            l1Sum += abs(v)
            l2Sum += v * v
        }
        return switch self {
        case .l1(let l1): l1 * l1Sum
        case .l2(let l2): l2 * l2Sum
        case .l1l2(let l1, let l2): (l1 != 0 ? l1 * l1Sum : 0) + (l2 != 0 ? l2 * l2Sum : 0)
        }
    }
}
