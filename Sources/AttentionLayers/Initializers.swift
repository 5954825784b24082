import AttentionKernels

/// Keras's weight initialisers (keras.initializers), by name and with Keras's formulas.
/// Random values come from Philox-4x32-10 keyed by `seed`; draw `d` of stream `s` is the block
/// at counter (d, d >> 32, s, s >> 32), so a weight's values depend only on (shape, seed, stream).
///
/// The variance-scaling family draws with scale/mode/distribution as Keras does, with
/// n = fan_in, fan_out or (fan_in + fan_out) / 2, floored at 1 (fans as in `fans(_:)`):
///   uniform on [−limit, limit), limit = √(3·scale/n);
///   truncated normal with σ = √(scale/n) / 0.87962566103423978 (the standard deviation of a
///   unit normal cut at ±2), so the values' own standard deviation is √(scale/n).
/// | name          | scale | mode    | distribution     |
/// | glorotUniform | 1     | fan_avg | uniform          |
/// | glorotNormal  | 1     | fan_avg | truncated normal |
/// | heUniform     | 2     | fan_in  | uniform          |
/// | heNormal      | 2     | fan_in  | truncated normal |
/// | lecunUniform  | 1     | fan_in  | uniform          |
/// | lecunNormal   | 1     | fan_in  | truncated normal |
public enum Initializer: Sendable, Equatable {
    case glorotUniform, glorotNormal, heUniform, heNormal, lecunUniform, lecunNormal
    /// mean + stddev·z, z a unit normal.
    case randomNormal(mean: Double, stddev: Double)
    /// min + (max − min)·u, u uniform on [0, 1).
    case randomUniform(min: Double, max: Double)
    /// mean + stddev·z, z a unit normal redrawn until |z| <= 2.
    case truncatedNormal(mean: Double, stddev: Double)
    case zeros, ones
    case constant(Double)
    /// gain·Q, Q with orthonormal columns (or rows, when the weight has fewer rows than
    /// columns) from the QR factorisation of a unit-normal matrix; rows = product of all dims
    /// but the last, columns = the last dim.
    case orthogonal(gain: Double)

    /// Refuses parameters Keras would turn into NaN, infinities or an empty range.
    public func validate() throws(AttentionError) {
        switch self {
        case .randomNormal(let mean, let stddev), .truncatedNormal(let mean, let stddev):
            guard mean.isFinite else { throw .invalid("\(name) mean must be finite, got \(mean)") }
            guard stddev.isFinite, stddev >= 0 else {
                throw .invalid("\(name) stddev must be finite and >= 0, got \(stddev)")
            }
        case .randomUniform(let min, let max):
            guard min.isFinite else { throw .invalid("\(name) min must be finite, got \(min)") }
            guard max.isFinite else { throw .invalid("\(name) max must be finite, got \(max)") }
            guard min <= max else { throw .invalid("\(name) min (\(min)) must be <= max (\(max))") }
            guard (max - min).isFinite else {
                throw .invalid("\(name) range max - min overflows (min \(min), max \(max))")
            }
        case .constant(let value):
            guard value.isFinite else { throw .invalid("\(name) value must be finite, got \(value)") }
        case .orthogonal(let gain):
            guard gain.isFinite else { throw .invalid("\(name) gain must be finite, got \(gain)") }
        case .glorotUniform, .glorotNormal, .heUniform, .heNormal, .lecunUniform, .lecunNormal, .zeros, .ones:
            break
        }
    }

    /// `validate()`, and whether `shape` can be initialised: dims >= 1, an element count that
    /// fits, and (as Keras) rank >= 2 for `orthogonal`.
    public func validate(shape: [Int]) throws(AttentionError) {
        try validate()
        _ = try elementCount(shape, minimumDim: 1, "a weight initialised by \(name),")
        if case .orthogonal = self, shape.count < 2 {
            throw .invalid("orthogonal initializer needs a weight of rank >= 2, got shape \(shape) of rank \(shape.count)")
        }
    }

    /// The initial values of a weight of `shape`, row-major: `fill`'s values in one array.
    public func values(shape: [Int], seed: UInt64, stream: UInt64, inputAxes: Int? = nil) -> [Double] {
        var out: [Double] = []
        fill(shape: shape, seed: seed, stream: stream, inputAxes: inputAxes) { _, v in out.append(v) }
        return out
    }

    /// Calls `write(k, value)` with the initial value of element k of a weight of `shape`
    /// (row-major), for k = 0, 1, … in order. Deterministic: the same (self, shape, seed,
    /// stream) always gives the same values. A shape refused by `validate(shape:)` for its
    /// dims writes nothing; `orthogonal` of rank < 2 treats the shape as one row (rank 1) or
    /// one element (rank 0). `inputAxes`, when given, makes the fans those of an EinsumDense
    /// kernel (as Keras 3 does): fan_in = product of the first `inputAxes` dims (the
    /// contracted ones), fan_out = product of the rest. Only `orthogonal` holds the whole
    /// weight (and more: `scratchBytes`); the others compute each element on its own.
    public func fill(shape: [Int], seed: UInt64, stream: UInt64, inputAxes: Int? = nil,
                     _ write: (_ index: Int, _ value: Double) -> Void) {
        guard let count = try? elementCount(shape, minimumDim: 1, "initializer shape") else { return }
        let draws = Draws(generator: Philox4x32(seed: seed), stream: stream)
        let element: (Int) -> Double
        switch self {
        case .glorotUniform: element = Self.varianceScaling(shape, inputAxes, count, draws, scale: 1, mode: .fanAvg, uniform: true)
        case .glorotNormal: element = Self.varianceScaling(shape, inputAxes, count, draws, scale: 1, mode: .fanAvg, uniform: false)
        case .heUniform: element = Self.varianceScaling(shape, inputAxes, count, draws, scale: 2, mode: .fanIn, uniform: true)
        case .heNormal: element = Self.varianceScaling(shape, inputAxes, count, draws, scale: 2, mode: .fanIn, uniform: false)
        case .lecunUniform: element = Self.varianceScaling(shape, inputAxes, count, draws, scale: 1, mode: .fanIn, uniform: true)
        case .lecunNormal: element = Self.varianceScaling(shape, inputAxes, count, draws, scale: 1, mode: .fanIn, uniform: false)
        case .randomNormal(let mean, let stddev): element = { mean + stddev * draws.normal(UInt64($0)) }
        case .randomUniform(let min, let max): element = { min + (max - min) * draws.uniform(UInt64($0)) }
        case .truncatedNormal(let mean, let stddev): element = { mean + stddev * draws.truncatedNormal($0, of: count) }
        case .zeros: element = { _ in 0 }
        case .ones: element = { _ in 1 }
        case .constant(let value): element = { _ in value }
        case .orthogonal(let gain):
            let q = Self.orthogonal(shape, count, draws, gain: gain)
            element = { q[$0] }
        }
        for k in 0..<count { write(k, element(k)) }
    }

    /// The bytes `fill` allocates for a weight of `count` elements beyond the weight itself:
    /// `orthogonal` holds its matrix, the QR's reflectors and Q, and the result (at most 5
    /// arrays of `count` Doubles at once); the others nothing. Saturates instead of overflowing.
    public func scratchBytes(count: Int) -> Int {
        guard case .orthogonal = self else { return 0 }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: 5 * MemoryLayout<Double>.stride)
        return overflow ? Int.max : bytes
    }

    /// Keras's name for the initializer, for messages.
    public var name: String {
        switch self {
        case .glorotUniform: "glorot_uniform"
        case .glorotNormal: "glorot_normal"
        case .heUniform: "he_uniform"
        case .heNormal: "he_normal"
        case .lecunUniform: "lecun_uniform"
        case .lecunNormal: "lecun_normal"
        case .randomNormal: "random_normal"
        case .randomUniform: "random_uniform"
        case .truncatedNormal: "truncated_normal"
        case .zeros: "zeros"
        case .ones: "ones"
        case .constant: "constant"
        case .orthogonal: "orthogonal"
        }
    }

    /// Keras's compute_fans: rank 0 → (1, 1); rank 1 (n) → (n, n); rank 2 → (shape[0], shape[1]);
    /// rank r > 2 → receptive field ρ = product of the first r − 2 dims, fan_in = shape[r−2]·ρ,
    /// fan_out = shape[r−1]·ρ. In Double, so no product can overflow.
    static func fans(_ shape: [Int]) -> (fanIn: Double, fanOut: Double) {
        switch shape.count {
        case 0: return (1, 1)
        case 1: return (Double(shape[0]), Double(shape[0]))
        default:
            let receptive = shape.dropLast(2).reduce(1.0) { $0 * Double($1) }
            return (Double(shape[shape.count - 2]) * receptive, Double(shape[shape.count - 1]) * receptive)
        }
    }

    /// Fans of an EinsumDense kernel: the first `inputAxes` dims are contracted with the
    /// input (fan_in), the rest make the output (fan_out).
    static func einsumFans(_ shape: [Int], inputAxes: Int) -> (fanIn: Double, fanOut: Double) {
        let split = Swift.min(Swift.max(0, inputAxes), shape.count)
        return (shape.prefix(split).reduce(1.0) { $0 * Double($1) },
                shape.dropFirst(split).reduce(1.0) { $0 * Double($1) })
    }

    enum FanMode { case fanIn, fanOut, fanAvg }

    private static func varianceScaling(_ shape: [Int], _ inputAxes: Int?, _ count: Int, _ draws: Draws,
                                        scale: Double, mode: FanMode, uniform: Bool) -> (Int) -> Double {
        let (fanIn, fanOut) = inputAxes.map { einsumFans(shape, inputAxes: $0) } ?? fans(shape)
        let n = switch mode {
        case .fanIn: fanIn
        case .fanOut: fanOut
        case .fanAvg: (fanIn + fanOut) / 2
        }
        let variance = scale / Swift.max(1, n)
        if uniform {
            let limit = (3 * variance).squareRoot()
            return { -limit + 2 * limit * draws.uniform(UInt64($0)) }
        }
        let stddev = variance.squareRoot() / 0.87962566103423978
        return { stddev * draws.truncatedNormal($0, of: count) }
    }

    /// Keras's Orthogonal: a unit-normal matrix A of shape (max(r, c), min(r, c)) (draw i =
    /// row-major element i), Q of its QR with columns times sign(R_jj), transposed when r < c.
    private static func orthogonal(_ shape: [Int], _ count: Int, _ draws: Draws, gain: Double) -> [Double] {
        let cols = shape.last ?? 1
        let rows = count / cols
        let (m, n) = (Swift.max(rows, cols), Swift.min(rows, cols))
        let q = orthonormalFactor((0..<count).map { draws.normal(UInt64($0)) }, rows: m, cols: n)
        guard rows < cols else { return q.map { gain * $0 } }
        var out = [Double](repeating: 0, count: count)
        for i in 0..<rows {
            for j in 0..<cols { out[i * cols + j] = gain * q[j * n + i] }
        }
        return out
    }
}

/// The Q of A = QR (A row-major m×n, m >= n; reduced: Q m×n) by Householder reflections, with
/// column j multiplied by sign(R_jj) (0 when R_jj = 0, as Keras's ops.sign). For A of full rank
/// this is the unique Q whose R has a positive diagonal, whatever QR algorithm computed it.
func orthonormalFactor(_ matrix: [Double], rows m: Int, cols n: Int) -> [Double] {
    var a = matrix
    var reflectors: [[Double]] = []  // v_k over rows k..<m; H_k = I − 2·v·vᵀ / (vᵀv)
    var signs = [Double](repeating: 0, count: n)

    /// x ← H·x on rows k..<m of columns `columns` of the row-major m×n `x`: with w = vᵀx,
    /// x_ij −= (2/vᵀv)·v_i·w_j, both passes walking rows (contiguous in memory).
    func reflect(_ x: inout [Double], _ v: [Double], from k: Int, columns: Range<Int>) {
        let vv = v.reduce(0) { $0 + $1 * $1 }
        guard vv > 0 else { return }
        let first = columns.lowerBound
        var w = [Double](repeating: 0, count: columns.count)
        for i in k..<m where v[i - k] != 0 {
            for c in w.indices { w[c] += v[i - k] * x[i * n + first + c] }
        }
        for i in k..<m where v[i - k] != 0 {
            let f = 2 * v[i - k] / vv
            for c in w.indices { x[i * n + first + c] -= f * w[c] }
        }
    }

    for k in 0..<n {
        var v = (k..<m).map { a[$0 * n + k] }
        let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let rkk = v[0] >= 0 ? -norm : norm  // R_kk; this sign avoids cancellation in v[0]
        v[0] -= rkk
        reflect(&a, v, from: k, columns: k..<n)
        reflectors.append(v)
        signs[k] = rkk > 0 ? 1 : (rkk < 0 ? -1 : 0)
    }
    var q = [Double](repeating: 0, count: m * n)
    for j in 0..<n { q[j * n + j] = 1 }
    for k in stride(from: n - 1, through: 0, by: -1) {
        reflect(&q, reflectors[k], from: k, columns: k..<n)
    }
    for i in 0..<m {
        for j in 0..<n { q[i * n + j] *= signs[j] }
    }
    return q
}

/// Random numbers for initialisers: draw `d` is Philox block (d, d >> 32, stream, stream >> 32).
struct Draws {
    let generator: Philox4x32
    let stream: UInt64

    /// Two uniforms on [0, 1) with 53 bits each: (w0·2²¹ + w1 >> 11)·2⁻⁵³ and the same of (w2, w3).
    func uniformPair(_ draw: UInt64) -> (Double, Double) {
        let (w0, w1, w2, w3) = generator.block(
            UInt32(truncatingIfNeeded: draw), UInt32(truncatingIfNeeded: draw >> 32),
            UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32))
        func u53(_ hi: UInt32, _ lo: UInt32) -> Double {
            Double(UInt64(hi) << 21 | UInt64(lo) >> 11) * 0x1p-53
        }
        return (u53(w0, w1), u53(w2, w3))
    }

    /// A uniform on [0, 1): the first of `uniformPair`.
    func uniform(_ draw: UInt64) -> Double { uniformPair(draw).0 }

    /// A unit normal by Box–Muller: (u1, u2) = uniformPair, z = √(−2·ln(1 − u1))·cos(2π·u2).
    func normal(_ draw: UInt64) -> Double {
        let (u1, u2) = uniformPair(draw)
        return (-2 * Double.log(1 - u1)).squareRoot() * Double.cos(2 * Double.pi * u2)
    }

    /// Element e of `count` unit normals cut at ±2: the normal of draw e + k·count for the
    /// first k = 0, 1, … with |z| <= 2 (as if the whole tensor were redrawn, keeping the good ones).
    func truncatedNormal(_ e: Int, of count: Int) -> Double {
        var draw = UInt64(e)
        var z = normal(draw)
        while Swift.abs(z) > 2 {
            draw &+= UInt64(count)
            z = normal(draw)
        }
        return z
    }
}
