import AttentionKernels
import Testing
@testable import AttentionLayers

/// Sample mean, standard deviation (divisor N), minimum and maximum.
private func statistics(_ x: [Double]) -> (mean: Double, std: Double, min: Double, max: Double) {
    let mean = x.reduce(0, +) / Double(x.count)
    let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(x.count)
    return (mean, variance.squareRoot(), x.min() ?? .nan, x.max() ?? .nan)
}

/// Row-major (m×k)·(k×n), with `transposeA` reading a as (k×m).
private func matmul(_ a: [Double], _ b: [Double], m: Int, k: Int, n: Int, transposeA: Bool = false) -> [Double] {
    var c = [Double](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var s = 0.0
            for p in 0..<k { s += (transposeA ? a[p * m + i] : a[i * k + p]) * b[p * n + j] }
            c[i * n + j] = s
        }
    }
    return c
}

private func transpose(_ a: [Double], rows: Int, cols: Int) -> [Double] {
    var t = [Double](repeating: 0, count: a.count)
    for i in 0..<rows { for j in 0..<cols { t[j * rows + i] = a[i * cols + j] } }
    return t
}

/// The largest |a_ij − gain²·δ_ij| of a square n×n matrix.
private func distanceFromScaledIdentity(_ a: [Double], n: Int, gain: Double) -> Double {
    var worst = 0.0
    for i in 0..<n { for j in 0..<n { worst = max(worst, abs(a[i * n + j] - (i == j ? gain * gain : 0))) } }
    return worst
}

private func expectError(_ kind: AttentionError.Kind, mentioning words: [String],
                         _ body: () throws(AttentionError) -> Void) {
    do {
        try body()
        Issue.record("expected an error mentioning \(words)")
    } catch {
        #expect(error.kind == kind)
        for word in words { #expect(error.message.contains(word), "message: \(error.message)") }
    }
}

struct VarianceScalingCase: Sendable, CustomStringConvertible {
    let initializer: Initializer
    let shape: [Int]
    /// √(scale / n) with n from the case's mode and fans: the values' standard deviation.
    let targetStd: Double
    let uniform: Bool
    var description: String { "\(initializer.name) \(shape)" }
}

@Suite struct InitializerTests {
    static let large = [300, 200]  // fan_in 300, fan_out 200, fan_avg 250

    static let varianceScalingCases: [VarianceScalingCase] = [
        .init(initializer: .glorotUniform, shape: large, targetStd: (1.0 / 250).squareRoot(), uniform: true),
        .init(initializer: .glorotNormal, shape: large, targetStd: (1.0 / 250).squareRoot(), uniform: false),
        .init(initializer: .heUniform, shape: large, targetStd: (2.0 / 300).squareRoot(), uniform: true),
        .init(initializer: .heNormal, shape: large, targetStd: (2.0 / 300).squareRoot(), uniform: false),
        .init(initializer: .lecunUniform, shape: large, targetStd: (1.0 / 300).squareRoot(), uniform: true),
        .init(initializer: .lecunNormal, shape: large, targetStd: (1.0 / 300).squareRoot(), uniform: false),
        // rank 4: receptive field 3·3 = 9, fan_in 9·64 = 576, fan_out 9·32 = 288
        .init(initializer: .heUniform, shape: [3, 3, 64, 32], targetStd: (2.0 / 576).squareRoot(), uniform: true),
        .init(initializer: .glorotNormal, shape: [3, 3, 64, 32], targetStd: (1.0 / 432).squareRoot(), uniform: false),
    ]

    /// Uniform: all in [−L, L) with L = √3·std, extremes near ±L, mean 0, std L/√3.
    /// Truncated normal: all within 2σ with σ = std / 0.8796…, values near ±2σ, std as targeted.
    /// Tolerances: 6 standard errors (uniform std: 0.45/√N relative; truncated: ≤ 0.71/√N).
    @Test(arguments: varianceScalingCases)
    func varianceScalingStatistics(_ c: VarianceScalingCase) throws {
        let v = c.initializer.values(shape: c.shape, seed: 1234, stream: 5)
        let n = Double(c.shape.reduce(1, *))
        #expect(v.count == Int(n))
        let s = statistics(v)
        #expect(abs(s.mean) < 6 * c.targetStd / n.squareRoot())
        if c.uniform {
            let limit = 3.0.squareRoot() * c.targetStd
            #expect(s.min >= -limit && s.max < limit)
            #expect(s.min < -limit * (1 - 40 / n) && s.max > limit * (1 - 40 / n))
            #expect(abs(s.std / c.targetStd - 1) < 6 * 0.45 / n.squareRoot())
        } else {
            let sigma = c.targetStd / 0.87962566103423978
            #expect(s.min >= -2 * sigma && s.max <= 2 * sigma)
            #expect(s.min < -1.95 * sigma && s.max > 1.95 * sigma)
            #expect(abs(s.std / c.targetStd - 1) < 6 * 0.71 / n.squareRoot())
        }
    }

    /// Exactly Keras's parameters: uniform(−L, L) with L = √3·std, or truncated_normal(0, σ) with
    /// σ = std / 0.87962566103423978, drawing the same Philox draws element by element.
    @Test(arguments: varianceScalingCases)
    func varianceScalingIsTheNamedDistribution(_ c: VarianceScalingCase) {
        let v = c.initializer.values(shape: c.shape, seed: 99, stream: 6)
        let reference: Initializer = c.uniform
            ? .randomUniform(min: -3.0.squareRoot() * c.targetStd, max: 3.0.squareRoot() * c.targetStd)
            : .truncatedNormal(mean: 0, stddev: c.targetStd / 0.87962566103423978)
        let expected = reference.values(shape: c.shape, seed: 99, stream: 6)
        #expect(v.count == expected.count)
        let worst = zip(v, expected).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst < 1e-14 * c.targetStd)
    }

    @Test func fansForRanksZeroToFour() {
        #expect(Initializer.fans([]) == (1, 1))
        #expect(Initializer.fans([7]) == (7, 7))
        #expect(Initializer.fans([3, 5]) == (3, 5))
        #expect(Initializer.fans([16, 2, 8]) == (32, 128))
        #expect(Initializer.fans([2, 3, 4, 5]) == (24, 30))
    }

    /// (16, 2, 8): fan_in 16·2, fan_out 16·8, so limit = √(6 / 160); 256 draws reach 88% of it.
    @Test func glorotUniformLimitOfRankThree() {
        let limit = (6.0 / (16 * 2 + 16 * 8)).squareRoot()
        let v = Initializer.glorotUniform.values(shape: [16, 2, 8], seed: 9, stream: 0)
        #expect(v.count == 256)
        let peak = v.map(abs).max() ?? 0
        #expect(peak < limit && peak > 0.88 * limit)
    }

    /// Rank 0 uses fans (1, 1): limit √3; rank 1 (n) uses (n, n): he_normal σ = √(2/n)/0.8796.
    @Test func lowRanks() {
        let scalar = Initializer.glorotUniform.values(shape: [], seed: 3, stream: 0)
        #expect(scalar.count == 1 && abs(scalar[0]) < 3.0.squareRoot())
        let v = Initializer.heNormal.values(shape: [50_000], seed: 3, stream: 0)
        let s = statistics(v)
        let target = (2.0 / 50_000).squareRoot()
        #expect(abs(s.std / target - 1) < 0.02)
        #expect(s.max <= 2 * target / 0.87962566103423978)
    }

    /// mean 0.5, stddev 2, untruncated: 68.27% within 1σ, 4.55% beyond 2σ.
    @Test func randomNormalStatistics() {
        let v = Initializer.randomNormal(mean: 0.5, stddev: 2).values(shape: [100_000], seed: 77, stream: 1)
        let s = statistics(v)
        #expect(abs(s.mean - 0.5) < 6 * 2 / 100_000.0.squareRoot())
        #expect(abs(s.std - 2) < 2 * 6 * 0.71 / 100_000.0.squareRoot())
        let within1 = Double(v.filter { abs($0 - 0.5) <= 2 }.count) / 1e5
        let beyond2 = Double(v.filter { abs($0 - 0.5) > 4 }.count) / 1e5
        #expect(abs(within1 - 0.682689) < 0.006)
        #expect(abs(beyond2 - 0.045500) < 0.004)
    }

    /// mean −1, stddev 0.5 cut at ±2σ: all in [−2, 0], std 0.8796·0.5.
    @Test func truncatedNormalStatistics() {
        let v = Initializer.truncatedNormal(mean: -1, stddev: 0.5).values(shape: [100_000], seed: 5, stream: 2)
        let s = statistics(v)
        #expect(s.min >= -2 && s.max <= 0)
        #expect(s.min < -1.97 && s.max > -0.03)
        #expect(abs(s.mean + 1) < 6 * 0.5 / 100_000.0.squareRoot())
        #expect(abs(s.std / (0.87962566103423978 * 0.5) - 1) < 6 * 0.71 / 100_000.0.squareRoot())
    }

    /// Uniform on [−1, 3): mean 1, variance 16/12.
    @Test func randomUniformStatistics() {
        let v = Initializer.randomUniform(min: -1, max: 3).values(shape: [100_000], seed: 11, stream: 0)
        let s = statistics(v)
        #expect(s.min >= -1 && s.max < 3)
        #expect(s.min < -0.999 && s.max > 2.999)
        #expect(abs(s.mean - 1) < 6 * (16.0 / 12 / 1e5).squareRoot())
        #expect(abs(s.std / (16.0 / 12).squareRoot() - 1) < 6 * 0.45 / 1e5.squareRoot())
        #expect(Initializer.randomUniform(min: 2, max: 2).values(shape: [4], seed: 1, stream: 0) == [2, 2, 2, 2])
    }

    @Test func constants() {
        #expect(Initializer.zeros.values(shape: [2, 3], seed: 1, stream: 0) == [Double](repeating: 0, count: 6))
        #expect(Initializer.ones.values(shape: [3], seed: 1, stream: 0) == [1, 1, 1])
        #expect(Initializer.constant(-2.5).values(shape: [2, 1, 2], seed: 1, stream: 0) == [-2.5, -2.5, -2.5, -2.5])
        #expect(Initializer.ones.values(shape: [], seed: 1, stream: 0) == [1])
    }

    /// The documented draws: draw d is Philox block (d, d>>32, s, s>>32) with key = seed;
    /// u = (w0·2²¹ + w1>>11)·2⁻⁵³; z = √(−2 ln(1 − u(w0,w1)))·cos(2π·u(w2,w3)).
    @Test func drawsFollowTheDocumentedFormula() {
        let seed: UInt64 = 0x1234_5678_9ABC_DEF0, stream: UInt64 = 0x0000_0003_0000_0007
        let g = Philox4x32(seed: seed)
        func u(_ hi: UInt32, _ lo: UInt32) -> Double { Double(UInt64(hi) << 21 | UInt64(lo) >> 11) / 9007199254740992 }
        let normals = Initializer.randomNormal(mean: 0, stddev: 1).values(shape: [4], seed: seed, stream: stream)
        let uniforms = Initializer.randomUniform(min: 0, max: 1).values(shape: [4], seed: seed, stream: stream)
        for d in 0..<4 {
            let w = g.block(UInt32(d), 0, 7, 3)
            let z = (-2 * Double.log(1 - u(w.0, w.1))).squareRoot() * Double.cos(2 * Double.pi * u(w.2, w.3))
            #expect(normals[d] == z)
            #expect(uniforms[d] == u(w.0, w.1))
        }
    }

    /// Element e of a truncated normal of n elements takes the first of draws e, e + n, e + 2n, …
    /// within ±2 — the same draws random_normal(0, 1) gives at those flat indices.
    @Test func truncationRedrawsFromTheNextBlockOfDraws() {
        let n = 1000
        let draws = Initializer.randomNormal(mean: 0, stddev: 1).values(shape: [3 * n], seed: 21, stream: 4)
        let cut = Initializer.truncatedNormal(mean: 0, stddev: 1).values(shape: [n], seed: 21, stream: 4)
        var redrawn = 0
        for e in 0..<n {
            guard let k = (0..<3).first(where: { abs(draws[e + $0 * n]) <= 2 }) else { continue }
            #expect(cut[e] == draws[e + k * n])
            if k > 0 { redrawn += 1 }
        }
        #expect(redrawn > 20)  // ≈ 4.55% of 1000
    }

    @Test(arguments: [Initializer.glorotUniform, .glorotNormal, .heUniform, .heNormal, .lecunUniform, .lecunNormal,
                      .randomNormal(mean: 0, stddev: 1), .randomUniform(min: 0, max: 1),
                      .truncatedNormal(mean: 0, stddev: 1), .orthogonal(gain: 1)])
    func determinismAndSeedStreamDependence(_ initializer: Initializer) {
        let shape = [6, 5]
        let base = initializer.values(shape: shape, seed: 42, stream: 3)
        #expect(base.count == 30)
        #expect(initializer.values(shape: shape, seed: 42, stream: 3) == base)
        for other in [initializer.values(shape: shape, seed: 43, stream: 3),
                      initializer.values(shape: shape, seed: 42 | 1 << 40, stream: 3),
                      initializer.values(shape: shape, seed: 42, stream: 4),
                      initializer.values(shape: shape, seed: 42, stream: 3 | 1 << 33)] {
            #expect(other.count == 30)
            #expect(zip(other, base).allSatisfy { $0 != $1 })
        }
    }

    /// Tall and square weights: QᵀQ = gain²·I; and Q is the Q of the QR of the same normal
    /// draws with R = QᵀA upper triangular with a positive diagonal (Keras's sign correction).
    @Test(arguments: [([40, 12], 1.0), ([16, 16], 2.0), ([4, 5, 6], 1.5), ([7, 1], 1.0)])
    func orthogonalTall(_ shape: [Int], _ gain: Double) {
        let n = shape.last ?? 1, m = shape.reduce(1, *) / n
        let q = Initializer.orthogonal(gain: gain).values(shape: shape, seed: 8, stream: 2)
        #expect(distanceFromScaledIdentity(matmul(q, q, m: n, k: m, n: n, transposeA: true), n: n, gain: gain) < 1e-12)
        let a = Initializer.randomNormal(mean: 0, stddev: 1).values(shape: [m, n], seed: 8, stream: 2)
        let r = matmul(q.map { $0 / gain }, a, m: n, k: m, n: n, transposeA: true)
        for i in 0..<n {
            #expect(r[i * n + i] > 0)
            for j in 0..<i { #expect(abs(r[i * n + j]) < 1e-12) }
        }
    }

    /// Wide weights (rows < cols): the normal matrix is (cols, rows), the result its Q
    /// transposed: rows orthonormal (Q·Qᵀ = gain²·I), and Q·A upper triangular, positive diagonal.
    @Test(arguments: [([12, 40], 2.0), ([2, 3, 10], 1.0), ([1, 9], 0.5)])
    func orthogonalWide(_ shape: [Int], _ gain: Double) {
        let cols = shape.last ?? 1, rows = shape.reduce(1, *) / cols
        let q = Initializer.orthogonal(gain: gain).values(shape: shape, seed: 8, stream: 2)
        let qt = transpose(q, rows: rows, cols: cols)
        #expect(distanceFromScaledIdentity(matmul(q, qt, m: rows, k: cols, n: rows), n: rows, gain: gain) < 1e-12)
        let a = Initializer.randomNormal(mean: 0, stddev: 1).values(shape: [cols, rows], seed: 8, stream: 2)
        let r = matmul(q.map { $0 / gain }, a, m: rows, k: cols, n: rows)
        for i in 0..<rows {
            #expect(r[i * rows + i] > 0)
            for j in 0..<i { #expect(abs(r[i * rows + j]) < 1e-12) }
        }
    }

    @Test func orthonormalFactorOfAKnownMatrix() {
        // A = [[3, 1], [4, 2], [0, 2]]: q1 = (3, 4, 0)/5, R = [[5, 11/5], [0, √(4/25 + 4)]].
        let q = orthonormalFactor([3, 1, 4, 2, 0, 2], rows: 3, cols: 2)
        let r22 = (4.0 / 25 + 4).squareRoot()
        let expected = [0.6, -0.32 / r22, 0.8, 0.24 / r22, 0, 2 / r22]
        for (x, y) in zip(q, expected) { #expect(abs(x - y) < 1e-14) }
    }

    @Test func initializerValidation() throws {
        let bad: [(Initializer, [String])] = [
            (.randomNormal(mean: .nan, stddev: 1), ["random_normal", "mean", "nan"]),
            (.randomNormal(mean: 0, stddev: -1), ["stddev", "-1.0"]),
            (.truncatedNormal(mean: 0, stddev: .infinity), ["truncated_normal", "stddev", "inf"]),
            (.randomUniform(min: 1, max: 0), ["min (1.0)", "max (0.0)"]),
            (.randomUniform(min: .nan, max: 0), ["min", "nan"]),
            (.randomUniform(min: 0, max: .infinity), ["max", "inf"]),
            (.randomUniform(min: -.greatestFiniteMagnitude, max: .greatestFiniteMagnitude), ["max - min"]),
            (.constant(.infinity), ["constant", "value"]),
            (.orthogonal(gain: .nan), ["orthogonal", "gain"]),
        ]
        for (initializer, words) in bad {
            expectError(.invalidArgument, mentioning: words) { () throws(AttentionError) in try initializer.validate() }
        }
        for good: Initializer in [.glorotUniform, .zeros, .randomNormal(mean: 0, stddev: 0),
                                  .randomUniform(min: 2, max: 2), .orthogonal(gain: 0), .constant(-3)] {
            try good.validate()
            try good.validate(shape: [2, 3])
        }
        expectError(.invalidArgument, mentioning: ["orthogonal", "rank 1"]) { () throws(AttentionError) in
            try Initializer.orthogonal(gain: 1).validate(shape: [5])
        }
        expectError(.shape, mentioning: ["dim 0"]) { () throws(AttentionError) in
            try Initializer.ones.validate(shape: [3, 0])
        }
        #expect(Initializer.ones.values(shape: [3, 0], seed: 0, stream: 0).isEmpty)
        #expect(Initializer.ones.values(shape: [1 << 40, 1 << 40], seed: 0, stream: 0).isEmpty)
    }

    // MARK: Regularizers

    @Test func regularizerPenalties() throws {
        let x: [Double] = [1, -2, 3, -0.5]  // Σ|x| = 6.5, Σx² = 14.25
        #expect(abs(Regularizer.l1(0.1).penalty(x) - 0.65) < 1e-15)
        #expect(Regularizer.l2(0.5).penalty(x) == 7.125)
        #expect(abs(Regularizer.l1l2(l1: 0.1, l2: 0.5).penalty(x) - 7.775) < 1e-14)
        #expect(Regularizer.l2(0.5).penalty([]) == 0)
        // Keras leaves out a zero factor's term, so infinite weights give 0, not 0·∞ = NaN.
        #expect(Regularizer.l1l2(l1: 0, l2: 0).penalty([.infinity]) == 0)
        #expect(Regularizer.l1(0).penalty([.infinity]).isNaN)
        try Regularizer.l1l2(l1: 0, l2: 0).validate()
    }

    @Test func regularizerValidation() {
        let bad: [(Regularizer, [String])] = [
            (.l1(-0.1), ["l1=-0.1"]),
            (.l2(.nan), ["l2=nan"]),
            (.l1l2(l1: 0.01, l2: .infinity), ["l2=inf"]),
            (.l1l2(l1: -1, l2: 0.01), ["l1=-1.0"]),
        ]
        for (regularizer, words) in bad {
            expectError(.invalidArgument, mentioning: words) { () throws(AttentionError) in try regularizer.validate() }
        }
    }

    // MARK: Constraints

    private static func constrained(_ c: Constraint, _ values: [Double], _ shape: [Int]) throws -> [Double] {
        var v = values
        try c.apply(&v, shape: shape)
        return v
    }

    private static func expectClose(_ a: [Double], _ b: [Double]) {
        #expect(a.count == b.count)
        for (x, y) in zip(a, b) { #expect(abs(x - y) <= 1e-15 * max(1, abs(y)), "\(a) vs \(b)") }
    }

    @Test func maxNorm() throws {
        let e = 1e-7
        // W = [[3, 0], [4, 1]]: columns (3, 4) norm 5 → ×2/(5+ε), (0, 1) norm 1 → ×1/(1+ε).
        Self.expectClose(try Self.constrained(.maxNorm(maxValue: 2, axis: 0), [3, 0, 4, 1], [2, 2]),
                         [6 / (5 + e), 0, 8 / (5 + e), 1 / (1 + e)])
        // rows: (3, 0) norm 3 → ×2/(3+ε); (4, 1) norm √17 → ×2/(√17+ε).
        let r17 = 17.0.squareRoot()
        Self.expectClose(try Self.constrained(.maxNorm(maxValue: 2, axis: -1), [3, 0, 4, 1], [2, 2]),
                         [6 / (3 + e), 0, 4 * (2 / (r17 + e)), 2 / (r17 + e)])
    }

    @Test func unitNormAlongAMiddleAxis() throws {
        let e = 1e-7
        // shape (1, 2, 2), axis 1: vectors (3, 4) and (1, 0).
        Self.expectClose(try Self.constrained(.unitNorm(axis: 1), [3, 1, 4, 0], [1, 2, 2]),
                         [3 / (5 + e), 1 / (1 + e), 4 / (5 + e), 0])
        Self.expectClose(try Self.constrained(.unitNorm(axis: 0), [0, 0], [2]), [0, 0])
    }

    @Test func minMaxNorm() throws {
        let e = 1e-7
        // columns (0.3, 0.4) norm 0.5 → desired 0.5·1 + 0.5·0.5 = 0.75; (3, 4) norm 5 → 0.5·2 + 0.5·5 = 3.5.
        let c = Constraint.minMaxNorm(minValue: 1, maxValue: 2, rate: 0.5, axis: 0)
        Self.expectClose(try Self.constrained(c, [0.3, 3, 0.4, 4], [2, 2]),
                         [0.3 * (0.75 / (0.5 + e)), 3 * (3.5 / (5 + e)), 0.4 * (0.75 / (0.5 + e)), 4 * (3.5 / (5 + e))])
        // rate 1: strict; (6, 0, 8) norm 10 → norm 2.
        let strict = try Self.constrained(.minMaxNorm(minValue: 0, maxValue: 2, rate: 1, axis: -1), [6, 0, 8], [3])
        Self.expectClose(strict, [6 * (2 / (10 + e)), 0, 8 * (2 / (10 + e))])
    }

    @Test func nonNeg() throws {
        #expect(try Self.constrained(.nonNeg, [-1, 0, 2.5, -1e-300], [2, 2]) == [0, 0, 2.5, 0])
        #expect(try Self.constrained(.nonNeg, [-4], []) == [0])
    }

    @Test func constraintValidation() throws {
        let bad: [(Constraint, Int?, [String])] = [
            (.maxNorm(maxValue: -1, axis: 0), nil, ["max_norm", "max_value", "-1.0"]),
            (.maxNorm(maxValue: .infinity, axis: 0), nil, ["max_value", "inf"]),
            (.minMaxNorm(minValue: 2, maxValue: 1, rate: 1, axis: 0), nil, ["min_value (2.0)", "max_value (1.0)"]),
            (.minMaxNorm(minValue: .nan, maxValue: 1, rate: 1, axis: 0), nil, ["min_value", "nan"]),
            (.minMaxNorm(minValue: 0, maxValue: 1, rate: 1.5, axis: 0), nil, ["rate", "1.5"]),
            (.minMaxNorm(minValue: 0, maxValue: 1, rate: .nan, axis: 0), nil, ["rate", "nan"]),
            (.unitNorm(axis: 2), 2, ["unit_norm", "axis 2", "rank 2"]),
            (.maxNorm(maxValue: 1, axis: -3), 2, ["axis -3", "rank 2"]),
            (.unitNorm(axis: 0), 0, ["axis 0", "rank 0"]),
        ]
        for (constraint, rank, words) in bad {
            expectError(.invalidArgument, mentioning: words) { () throws(AttentionError) in
                try constraint.validate(rank: rank)
            }
        }
        try Constraint.unitNorm(axis: 99).validate(rank: nil)
        try Constraint.unitNorm(axis: -2).validate(rank: 2)
        try Constraint.nonNeg.validate(rank: 0)
        try Constraint.minMaxNorm(minValue: 0, maxValue: 0, rate: 0, axis: 0).validate(rank: 1)
        expectError(.invalidArgument, mentioning: ["axis 3"]) { () throws(AttentionError) in
            var v: [Double] = [1, 2]
            try Constraint.unitNorm(axis: 3).apply(&v, shape: [2])
        }
        expectError(.shape, mentioning: ["3 values", "[2, 2]"]) { () throws(AttentionError) in
            var v: [Double] = [1, 2, 3]
            try Constraint.nonNeg.apply(&v, shape: [2, 2])
        }
    }
}
