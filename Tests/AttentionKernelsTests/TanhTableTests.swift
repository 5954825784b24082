import Testing
@testable import AttentionKernels
#if canImport(Glibc)
import Glibc
#endif

/// Concat/additive logits from the e^{2c·x} tables against Σ tanh(c·(q + k)) in float64, on
/// values that saturate tanh, cancel (x ≈ −y, both large), overflow the products of the
/// exponentials and leave the tables' range (|c·x| > 43.6: the direct fallback).
@Suite struct TanhTableTests {
    static let values: [Double] = [0, 1e-6, -1e-6, 0.3, -0.7, 2, -3, 9, -9, 9.2, -9.1, 20, -20.5, 60, -60, 60.25]

    /// The attention weights of query rows q against key rows k: the scores the kernel returns
    /// or, with `returnScores` false, its output for values = the identity (the fused path).
    func weights(_ score: (TanhRows<Float>) -> ScoreFunction<Float>, returnScores: Bool, c: Float,
                 q: [Float], k: [Float], dim: Int) -> [Float] {
        let t = q.count / dim, s = k.count / dim
        var scores = [Float](repeating: .nan, count: t * s), out = [Float](repeating: .nan, count: t * s)
        var qe = q, ke = k
        let v = (0..<s * s).map { Float($0 / s == $0 % s ? 1 : 0) }
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
            qe.withUnsafeMutableBufferPointer { qep in ke.withUnsafeMutableBufferPointer { kep in
                scores.withUnsafeMutableBufferPointer { sp in out.withUnsafeMutableBufferPointer { op in
                    tanhExponentials(qp.baseAddress!, c, q.count, into: qep.baseAddress!)
                    tanhExponentials(kp.baseAddress!, c, k.count, into: kep.baseAddress!)
                    let tables = TanhRows<Float>(queryExponential: qep.baseAddress!, keyExponential: kep.baseAddress!)
                    attentionForward(
                        shape: AttentionShape(groups: 1, heads: 1, keyValueHeads: 1, queryLength: t, keyLength: s,
                                              keyDim: dim, valueDim: s),
                        operands: AttentionOperands(query: qp.baseAddress!, queryLayout: RowLayout(group: 0, head: 0, row: dim),
                                                    key: kp.baseAddress!, keyLayout: RowLayout(group: 0, head: 0, row: dim),
                                                    value: vp.baseAddress!, valueLayout: RowLayout(group: 0, head: 0, row: s),
                                                    output: op.baseAddress!, outputLayout: RowLayout(group: 0, head: 0, row: s)),
                        score: score(tables), mask: AttentionMask(fullyMaskedRow: .zero),
                        bias: nil, dropout: nil, scores: returnScores ? sp.baseAddress! : nil)
                } }
            } }
        } } }
        return returnScores ? scores : out
    }

    /// dim 19: one vector and a scalar tail; 71: four vectors (one shared division) and a tail;
    /// 83: four vectors, one more and a tail.
    @Test(arguments: [Float(1), Float(0.37), Float(2.5)], [19, 71, 83])
    func tablesMatchFloat64(c: Float, dim: Int) {
        var rng = SplitMix(seed: 7)
        func row() -> [Float] { (0..<dim).map { _ in Float(Self.values[Int(rng.next() % UInt64(Self.values.count))]) } }
        let q = (0..<12).flatMap { _ in row() }, k = (0..<9).flatMap { _ in row() }
        let weight: Float = 0.3
        let scale = (0..<dim).map { _ in Float(rng.uniform() * 2 - 1) }
        for additive in [false, true] {
            // Softmax over float64 logits.
            let expected = (0..<12).flatMap { i in
                let logits = (0..<9).map { j in
                    (0..<dim).reduce(0.0) { acc, d in
                        let inner = additive ? 1 : Double(c)
                        let th = Glibc.tanh(inner * (Double(q[i * dim + d]) + Double(k[j * dim + d])))
                        return acc + (additive ? Double(scale[d]) : 1) * th
                    } * (additive ? 1 : Double(weight))
                }
                let m = logits.max()!
                let e = logits.map { Glibc.exp($0 - m) }, total = e.reduce(0, +)
                return e.map { $0 / total }
            }
            for returnScores in [false, true] {
                let got = scale.withUnsafeBufferPointer { sp in
                    weights({ additive ? .additive(scale: sp.baseAddress!, tanh: $0) : .concat(scale: c, weight: weight, tanh: $0) },
                            returnScores: returnScores, c: additive ? 1 : c, q: q, k: k, dim: dim)
                }
                for (index, (x, y)) in zip(got, expected).enumerated() {
                    #expect(abs(Double(x) - y) < 2e-5,
                            "additive=\(additive) returnScores=\(returnScores) row \(index / 9) key \(index % 9)")
                }
            }
        }
    }
}
