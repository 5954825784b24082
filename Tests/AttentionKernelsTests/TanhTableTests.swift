import Testing
@testable import AttentionKernels
#if canImport(Glibc)
import Glibc
#endif

/// Concat/additive logits from the tanh sign/complement tables against Σ tanh(c·(q + k)) in
/// float64, on values that saturate tanh, cancel (x ≈ −y, both large) and underflow the
/// complements (|x| > 50: the direct fallback).
@Suite struct TanhTableTests {
    static let values: [Double] = [0, 1e-6, -1e-6, 0.3, -0.7, 2, -3, 9, -9, 9.2, -9.1, 20, -20.5, 60, -60, 60.25]

    /// The attention weights (scores) of query rows q against key rows k.
    func weights(_ score: (TanhRows<Float>?) -> ScoreFunction<Float>, useTables: Bool, c: Float,
                q: [Float], k: [Float], dim: Int) -> [Float] {
        let t = q.count / dim, s = k.count / dim
        var out = [Float](repeating: .nan, count: t * s)
        var qs = q, qg = q, ks = k, kg = k
        let v = [Float](repeating: 1, count: s)
        var o = [Float](repeating: 0, count: t)
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            qs.withUnsafeMutableBufferPointer { qsp in qg.withUnsafeMutableBufferPointer { qgp in
                ks.withUnsafeMutableBufferPointer { ksp in kg.withUnsafeMutableBufferPointer { kgp in
                    out.withUnsafeMutableBufferPointer { sp in o.withUnsafeMutableBufferPointer { op in
                        tanhSignAndComplement(qp.baseAddress!, c, q.count, sign: qsp.baseAddress!, complement: qgp.baseAddress!)
                        tanhSignAndComplement(kp.baseAddress!, c, k.count, sign: ksp.baseAddress!, complement: kgp.baseAddress!)
                        let tables = TanhRows<Float>(querySign: qsp.baseAddress!, queryComplement: qgp.baseAddress!,
                                                     keySign: ksp.baseAddress!, keyComplement: kgp.baseAddress!)
                        // The scores are the softmax of the logits, a smooth function of them.
                        attentionForward(
                            shape: AttentionShape(groups: 1, heads: 1, keyValueHeads: 1, queryLength: t, keyLength: s,
                                                  keyDim: dim, valueDim: 1),
                            operands: AttentionOperands(query: qp.baseAddress!, queryLayout: RowLayout(group: 0, head: 0, row: dim),
                                                        key: kp.baseAddress!, keyLayout: RowLayout(group: 0, head: 0, row: dim),
                                                        value: vp.baseAddress!, valueLayout: RowLayout(group: 0, head: 0, row: 1),
                                                        output: op.baseAddress!, outputLayout: RowLayout(group: 0, head: 0, row: 1)),
                            score: score(useTables ? tables : nil), mask: AttentionMask(fullyMaskedRow: .zero),
                            bias: nil, dropout: nil, scores: sp.baseAddress!)
                    } }
                } }
            } }
        } } }
        return out
    }

    @Test(arguments: [Float(1), Float(0.37), Float(2.5)])
    func tablesMatchFloat64(c: Float) {
        let dim = 19  // one SIMD16 chunk and a scalar tail
        var rng = SplitMix(seed: 7)
        func row() -> [Float] { (0..<dim).map { _ in Float(Self.values[Int(rng.next() % UInt64(Self.values.count))]) } }
        let q = (0..<12).flatMap { _ in row() }, k = (0..<9).flatMap { _ in row() }
        let weight: Float = 0.3
        let scale = (0..<dim).map { _ in Float(rng.uniform() * 2 - 1) }
        for additive in [false, true] {
            let got = scale.withUnsafeBufferPointer { sp in
                weights({ additive ? .additive(scale: sp.baseAddress!, tanh: $0) : .concat(scale: c, weight: weight, tanh: $0) },
                       useTables: true, c: additive ? 1 : c, q: q, k: k, dim: dim)
            }
            // Softmax over float64 logits.
            for i in 0..<12 {
                let logits = (0..<9).map { j in
                    (0..<dim).reduce(0.0) { acc, d in
                        let inner = additive ? 1 : Double(c)
                        let th = Glibc.tanh(inner * (Double(q[i * dim + d]) + Double(k[j * dim + d])))
                        return acc + (additive ? Double(scale[d]) : 1) * th
                    } * (additive ? 1 : Double(weight))
                }
                let m = logits.max()!
                let e = logits.map { Glibc.exp($0 - m) }, total = e.reduce(0, +)
                for j in 0..<9 {
                    #expect(abs(Double(got[i * 9 + j]) - e[j] / total) < 2e-5,
                            "additive=\(additive) c=\(c) row \(i) key \(j)")
                }
            }
        }
    }
}
