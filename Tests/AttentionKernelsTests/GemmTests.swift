import Testing
@testable import AttentionKernels

@Suite struct GemmTests {
    /// C = A·B + bias against a float64 triple loop, over shapes that exercise every tail.
    @Test(arguments: [(1, 1, 1), (3, 5, 7), (4, 32, 16), (7, 33, 300), (13, 70, 257), (64, 48, 96),
                      (200, 1100, 520), (97, 31, 1)])
    func matchesNaive(_ dims: (Int, Int, Int)) {
        let (m, n, k) = dims
        var rng = SplitMix(seed: UInt64(m * 1000 + n * 10 + k))
        let a = (0..<(m * k)).map { _ in Float(rng.uniform() * 2 - 1) }
        let b = (0..<(k * n)).map { _ in Float(rng.uniform() * 2 - 1) }
        let bias = (0..<n).map { _ in Float(rng.uniform()) }
        var c = [Float](repeating: .nan, count: m * n)
        let plan = GemmPlan<Float>(m: m, n: n, k: k)
        var scratch = [Float](repeating: .nan, count: plan.scratchCount)
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in bias.withUnsafeBufferPointer { biasp in
            c.withUnsafeMutableBufferPointer { cp in scratch.withUnsafeMutableBufferPointer { sp in
                gemm(plan, GemmOperands(a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: n,
                                                     c: cp.baseAddress!, ldc: n, bias: biasp.baseAddress!),
                     scratch: sp.baseAddress!)
            } }
        } } }
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var s = Double(bias[j])
                for p in 0..<k { s += Double(a[i * k + p]) * Double(b[p * n + j]) }
                worst = max(worst, abs(s - Double(c[i * n + j])))
            }
        }
        #expect(worst < 1e-4 * Double(max(1, k / 16)))
    }
}

/// A small deterministic generator for test data.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }
}
