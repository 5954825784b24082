import Testing
@testable import AttentionKernels

/// The fused kernel against a float64 softmax written out in full, one row at a time.
@Suite struct FusedAttentionTests {
    struct Case: CustomTestStringConvertible, Sendable, ContiguousProblem {
        var groups = 2, heads = 3, kvHeads = 3, t = 5, s = 7, h = 4, hv = 3
        var causal = false, window = 0, padding = false, scores = false
        var policy = FullyMaskedRow.zero
        var dropout = 0.0
        var bias = false
        /// Group g's query row 0 stands at key position (7g + 3) mod (s − t + 1), as a
        /// decoder's new tokens after its cache.
        var positions = false
        var testDescription: String {
            "g\(groups) n\(heads)/\(kvHeads) t\(t) s\(s) h\(h) hv\(hv) causal=\(causal) window=\(window) padding=\(padding) scores=\(scores) \(policy) dropout=\(dropout) bias=\(bias) positions=\(positions)"
        }
        func position(_ g: Int) -> Int { positions ? (7 * g + 3) % (s - t + 1) : 0 }
    }

    static let cases: [Case] = [
        Case(),
        Case(t: 300, s: 270, h: 20, hv: 17),
        Case(heads: 4, kvHeads: 2),
        Case(heads: 4, kvHeads: 1, scores: true),
        Case(t: 9, s: 9, causal: true),
        Case(t: 40, s: 300, causal: true, policy: .uniform),
        Case(t: 200, s: 200, window: 3),
        Case(padding: true, policy: .zero),
        Case(padding: true, policy: .uniform),
        Case(padding: true, policy: .subtractLarge),
        Case(padding: true, scores: true, policy: .subtractLarge),
        Case(padding: true, scores: true, policy: .uniform),
        Case(t: 150, s: 140, causal: true, padding: true, dropout: 0.25),
        Case(t: 150, s: 140, causal: true, padding: true, scores: true, dropout: 0.25),
        // Odd sizes in every dim, through the decode (t ≤ 4), row and tiled block paths.
        Case(groups: 1, heads: 1, kvHeads: 1, t: 1, s: 127, h: 65, hv: 63, padding: true),
        Case(groups: 3, heads: 2, kvHeads: 1, t: 3, s: 300, h: 17, hv: 1, causal: true, dropout: 0.3),
        Case(groups: 1, heads: 3, kvHeads: 3, t: 4, s: 65, h: 1, hv: 17, window: 2, bias: true),
        Case(groups: 1, heads: 2, kvHeads: 2, t: 17, s: 65, h: 17, hv: 3, window: 5, policy: .uniform),
        Case(groups: 2, heads: 4, kvHeads: 1, t: 63, s: 127, h: 63, hv: 65, causal: true, padding: true,
             policy: .subtractLarge, bias: true),
        Case(groups: 1, heads: 1, kvHeads: 1, t: 127, s: 1, h: 3, hv: 127, padding: true, policy: .uniform),
        Case(groups: 1, heads: 2, kvHeads: 2, t: 65, s: 63, h: 127, hv: 17, causal: true, dropout: 0.5, bias: true),
        Case(groups: 1, heads: 1, kvHeads: 1, t: 2, s: 63, h: 3, hv: 3, padding: true, policy: .subtractLarge),
        // A window that passes the last key: later rows see no key at all.
        Case(groups: 1, heads: 2, kvHeads: 2, t: 40, s: 3, h: 5, hv: 4, window: 2, policy: .uniform),
        // Query rows placed after cached keys (per group): decode, row and block paths.
        Case(groups: 3, heads: 2, kvHeads: 1, t: 1, s: 300, h: 16, hv: 8, causal: true, positions: true),
        Case(groups: 3, heads: 4, kvHeads: 2, t: 4, s: 70, h: 9, hv: 5, causal: true, padding: true, positions: true),
        Case(groups: 2, heads: 2, kvHeads: 2, t: 37, s: 300, h: 19, hv: 7, causal: true, scores: true, dropout: 0.2,
             positions: true),
        Case(groups: 4, heads: 2, kvHeads: 2, t: 70, s: 200, h: 32, hv: 32, causal: true, positions: true),
        Case(groups: 3, heads: 1, kvHeads: 1, t: 9, s: 40, h: 5, hv: 3, window: 4, policy: .uniform, positions: true),
    ]

    @Test(arguments: cases)
    func matchesNaive(_ c: Case) {
        var rng = SplitMix(seed: 99)
        let q = (0..<(c.groups * c.heads * c.t * c.h)).map { _ in rng.uniform() * 2 - 1 }
        let k = (0..<(c.groups * c.kvHeads * c.s * c.h)).map { _ in rng.uniform() * 2 - 1 }
        let v = (0..<(c.groups * c.kvHeads * c.s * c.hv)).map { _ in rng.uniform() * 2 - 1 }
        // A bias broadcast over groups: (heads, t, s).
        let bias = (0..<(c.heads * c.t * c.s)).map { _ in c.bias ? rng.uniform() * 4 - 2 : 0 }
        // Padding masks out a random set of keys per group, and every key of group 0 for rows ≥ t−1.
        var keep = [UInt8](repeating: 1, count: c.groups * c.t * c.s)
        if c.padding {
            for g in 0..<c.groups {
                for i in 0..<c.t {
                    for j in 0..<c.s where (rng.uniform() < 0.3 || (g == 0 && i >= c.t - 1)) {
                        keep[(g * c.t + i) * c.s + j] = 0
                    }
                }
            }
        }
        let dropout = c.dropout > 0 ? AttentionDropout(mask: DropoutMask(rate: c.dropout, seed: 5, stream: 1),
                                                       scoresAfterDropout: true) : nil
        var out = [Double](repeating: .nan, count: c.groups * c.heads * c.t * c.hv)
        var scores = [Double](repeating: .nan, count: c.groups * c.heads * c.t * c.s)
        let scale = 0.7
        let positions = (0..<c.groups).map(c.position)
        positions.withUnsafeBufferPointer { pp in
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
          bias.withUnsafeBufferPointer { bp in
            keep.withUnsafeBufferPointer { mp in out.withUnsafeMutableBufferPointer { op in
                scores.withUnsafeMutableBufferPointer { sp in
                    let shape = c.shape
                    let operands = c.operands(query: qp.baseAddress!, key: kp.baseAddress!, value: vp.baseAddress!,
                                              output: op.baseAddress!)
                    let views = c.padding ? [MaskView(base: mp.baseAddress!, group: c.t * c.s, head: 0, row: c.s, column: 1)] : []
                    attentionForward(shape: shape, operands: operands, score: .dot(scale: scale),
                                     mask: AttentionMask(views: views, causal: c.causal, window: c.window,
                                                         positions: c.positions ? pp.baseAddress! : nil,
                                                         fullyMaskedRow: c.policy),
                                     bias: c.bias ? .strided(BiasView(base: bp.baseAddress!, group: 0, head: c.t * c.s, row: c.s, column: 1)) : nil,
                                     dropout: dropout, scores: c.scores ? sp.baseAddress! : nil)
                }
            } }
          }
        } } }
        }
        var worst = 0.0
        for g in 0..<c.groups {
            for n in 0..<c.heads {
                let kvn = n / (c.heads / c.kvHeads)
                for i in 0..<c.t {
                    var logits = [Double](repeating: 0, count: c.s)
                    var kept = [Bool](repeating: true, count: c.s)
                    for j in 0..<c.s {
                        var d = 0.0
                        for e in 0..<c.h { d += q[((g * c.heads + n) * c.t + i) * c.h + e] * k[((g * c.kvHeads + kvn) * c.s + j) * c.h + e] }
                        logits[j] = d * scale + bias[(n * c.t + i) * c.s + j]
                        if c.causal && j > c.position(g) + i { kept[j] = false }
                        if c.window > 0 && abs(c.position(g) + i - j) >= c.window { kept[j] = false }
                        if keep[(g * c.t + i) * c.s + j] == 0 { kept[j] = false }
                    }
                    var weights = [Double](repeating: 0, count: c.s)
                    if kept.contains(true) {
                        let m = zip(logits, kept).filter(\.1).map(\.0).max()!
                        for j in 0..<c.s where kept[j] { weights[j] = naiveExp(logits[j] - m) }
                    } else {
                        switch c.policy {
                        case .zero: break
                        case .uniform: weights = weights.map { _ in 1 }
                        case .subtractLarge:
                            let shifted = logits.map { $0 - 1e9 }
                            let m = shifted.max()!
                            weights = shifted.map { naiveExp($0 - m) }
                        }
                    }
                    let total = weights.reduce(0, +)
                    if total > 0 { weights = weights.map { $0 / total } }
                    for j in 0..<c.s {
                        let f = ((g * c.heads + n) * c.t + i) * c.s + j
                        if let dropout { weights[j] = dropout.mask.keeps(f) ? weights[j] / (1 - c.dropout) : 0 }
                        if c.scores { worst = max(worst, abs(weights[j] - scores[f])) }
                    }
                    for e in 0..<c.hv {
                        var o = 0.0
                        for j in 0..<c.s { o += weights[j] * v[((g * c.kvHeads + kvn) * c.s + j) * c.hv + e] }
                        worst = max(worst, abs(o - out[((g * c.heads + n) * c.t + i) * c.hv + e]))
                    }
                }
            }
        }
        #expect(worst < 1e-12)
    }
}

#if canImport(Glibc)
import Glibc
func naiveExp(_ x: Double) -> Double { Glibc.exp(x) }
#endif
