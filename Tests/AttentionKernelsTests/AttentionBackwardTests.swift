import Testing
@testable import AttentionKernels

/// `attentionBackward` against central finite differences of `attentionForward` in float64:
/// L = Σ O·dO (+ Σ scores·dΣ), with respect to Q, K, V, the relative-position table and
/// the score function's weights (every element, or an even sample of ~48 per tensor).
@Suite struct AttentionBackwardTests {
    enum Score: Sendable { case dot, concat, additive }

    struct Case: CustomTestStringConvertible, Sendable, ContiguousProblem {
        var groups = 2, heads = 2, kvHeads = 2, t = 5, s = 7, h = 4, hv = 3
        var score = Score.dot
        var causal = false, window = 0, padding = false, scores = false
        var policy = FullyMaskedRow.zero
        var dropout = 0.0, scoresAfterDropout = false
        var relative = false
        /// Whether the score weights' gradient is asked for (without it, dot scores take the
        /// backward's register-tile epilogues on blocks only a band masks).
        var weightGradients = true
        var testDescription: String {
            "g\(groups) n\(heads)/\(kvHeads) t\(t) s\(s) h\(h) hv\(hv) \(score) causal=\(causal) window=\(window) "
                + "padding=\(padding) scores=\(scores) \(policy) dropout=\(dropout) relative=\(relative) "
                + "weightGradients=\(weightGradients)"
        }
    }

    static let cases: [Case] = [
        Case(),
        Case(groups: 1, heads: 1, kvHeads: 1, t: 70, s: 131, h: 5, hv: 33),  // key chunks, block edges
        Case(heads: 4, kvHeads: 2, causal: true),
        Case(groups: 1, heads: 3, kvHeads: 1, t: 66, s: 66, h: 3, hv: 2, window: 4),
        Case(padding: true, policy: .zero),
        Case(padding: true, policy: .uniform, dropout: 0.3),
        Case(padding: true, scores: true, policy: .subtractLarge, dropout: 0.3, scoresAfterDropout: true),
        Case(t: 9, s: 4, window: 2, policy: .uniform),
        Case(causal: true, scores: true, dropout: 0.4),
        Case(groups: 1, t: 6, s: 9, relative: true),
        Case(score: .concat, padding: true, scores: true, policy: .subtractLarge),
        Case(t: 3, s: 70, h: 19, score: .additive, causal: true, dropout: 0.2, scoresAfterDropout: true),
        Case(score: .dot, padding: true, policy: .subtractLarge),
        // Several query blocks (of 256 rows), partial key blocks (of 128), band edges, without
        // the weights' gradient.
        Case(groups: 1, heads: 1, kvHeads: 1, t: 300, s: 270, h: 5, hv: 33, weightGradients: false),
        Case(groups: 1, heads: 2, kvHeads: 1, t: 300, s: 300, h: 17, hv: 40, causal: true, weightGradients: false),
        Case(groups: 1, heads: 1, kvHeads: 1, t: 300, s: 300, h: 3, hv: 2, window: 19, weightGradients: false),
    ]

    /// Inputs of one case; `weights` are the score function's (dot: scale; concat: scale,
    /// weight; additive: h scales), `table` a relative-position table of 2·3 − 1 per head.
    struct Inputs {
        var q: [Double], k: [Double], v: [Double], weights: [Double], table: [Double]
    }

    static let maxDistance = 3

    /// Random inputs of case c: entries in [−1, 1), score weights in [0.5, 2.5).
    static func inputs(_ c: Case, _ rng: inout SplitMix) -> Inputs {
        func random(_ n: Int) -> [Double] { (0..<n).map { _ in rng.uniform() * 2 - 1 } }
        let weightCount = c.score == .dot ? 1 : c.score == .concat ? 2 : c.h
        return Inputs(q: random(c.groups * c.heads * c.t * c.h), k: random(c.groups * c.kvHeads * c.s * c.h),
                      v: random(c.groups * c.kvHeads * c.s * c.hv), weights: random(weightCount).map { $0 + 1.5 },
                      table: random(c.heads * (2 * maxDistance - 1)))
    }

    func run(_ c: Case, _ x: Inputs, keep: [UInt8], lse: UnsafeMutablePointer<Double>?,
             output: UnsafeMutablePointer<Double>, scores: UnsafeMutablePointer<Double>?,
             backward: (AttentionShape, AttentionOperands<Double>, ScoreFunction<Double>, AttentionMask,
                        LogitBias<Double>?, AttentionDropout?) -> Void = { _, _, _, _, _, _ in }) {
        x.q.withUnsafeBufferPointer { qp in x.k.withUnsafeBufferPointer { kp in x.v.withUnsafeBufferPointer { vp in
            x.weights.withUnsafeBufferPointer { wp in x.table.withUnsafeBufferPointer { tp in
                keep.withUnsafeBufferPointer { mp in
                    let shape = c.shape
                    let operands = c.operands(query: qp.baseAddress!, key: kp.baseAddress!, value: vp.baseAddress!,
                                              output: output)
                    let score: ScoreFunction<Double> = switch c.score {
                    case .dot: .dot(scale: wp[0])
                    case .concat: .concat(scale: wp[0], weight: wp[1])
                    case .additive: .additive(scale: wp.baseAddress!)
                    }
                    let views = c.padding
                        ? [MaskView(base: mp.baseAddress!, group: c.t * c.s, head: 0, row: c.s, column: 1)] : []
                    let mask = AttentionMask(views: views, causal: c.causal, window: c.window, fullyMaskedRow: c.policy)
                    let bias: LogitBias<Double>? = c.relative
                        ? .relativePosition(table: tp.baseAddress!, headStride: 2 * Self.maxDistance - 1,
                                            maxDistance: Self.maxDistance) : nil
                    let dropout = c.dropout > 0
                        ? AttentionDropout(mask: DropoutMask(rate: c.dropout, seed: 11, stream: 3),
                                           scoresAfterDropout: c.scoresAfterDropout) : nil
                    attentionForward(shape: shape, operands: operands, score: score, mask: mask, bias: bias,
                                     dropout: dropout, scores: scores, logSumExp: lse)
                    backward(shape, operands, score, mask, bias, dropout)
                }
            } }
        } } }
    }

    @Test(arguments: cases)
    func matchesFiniteDifferences(_ c: Case) {
        var rng = SplitMix(seed: 7)
        func random(_ n: Int) -> [Double] { (0..<n).map { _ in rng.uniform() * 2 - 1 } }
        let x = Self.inputs(c, &rng)
        var keep = [UInt8](repeating: 1, count: c.groups * c.t * c.s)
        if c.padding {
            for g in 0..<c.groups {
                for i in 0..<c.t {
                    for j in 0..<c.s where rng.uniform() < 0.3 || (g == 0 && i == c.t - 1) {
                        keep[(g * c.t + i) * c.s + j] = 0
                    }
                }
            }
        }
        let outCount = c.groups * c.heads * c.t * c.hv, scoresCount = c.groups * c.heads * c.t * c.s
        let dO = random(outCount), dSigma = random(scoresCount)
        func loss(_ x: Inputs) -> Double {
            var out = [Double](repeating: 0, count: outCount), sc = [Double](repeating: 0, count: scoresCount)
            out.withUnsafeMutableBufferPointer { op in sc.withUnsafeMutableBufferPointer { sp in
                run(c, x, keep: keep, lse: nil, output: op.baseAddress!, scores: c.scores ? sp.baseAddress! : nil)
            } }
            var total = zip(out, dO).reduce(0) { $0 + $1.0 * $1.1 }
            if c.scores { total += zip(sc, dSigma).reduce(0) { $0 + $1.0 * $1.1 } }
            return total
        }
        let grads = analytic(c, x, keep: keep, dO: dO, dSigma: dSigma)
        let (dq, dk, dv, dw, dt) = (grads[0], grads[1], grads[2], grads[3], grads[4])
        func check(_ name: String, _ analytic: [Double], _ path: WritableKeyPath<Inputs, [Double]>) {
            // Logits − 1e9 keep only ~7 digits in float64: a coarser step and bound there.
            let coarse = c.padding && c.policy == .subtractLarge
            let step = coarse ? 1e-3 : 1e-6, bound = coarse ? 1e-3 : 1e-6
            var worst = 0.0, largest = 1e-3
            // Every element of small tensors, an even sample of large ones.
            let stride = max(1, analytic.count / 48)
            for e in Swift.stride(from: analytic.count - 1, through: 0, by: -stride) {
                var plus = x, minus = x
                plus[keyPath: path][e] += step
                minus[keyPath: path][e] -= step
                let numeric = (loss(plus) - loss(minus)) / (2 * step)
                worst = max(worst, abs(numeric - analytic[e]))
                largest = max(largest, abs(numeric))
            }
            #expect(worst <= bound * largest, "\(name): max error \(worst), largest gradient \(largest)")
        }
        check("dQ", dq, \.q)
        check("dK", dk, \.k)
        check("dV", dv, \.v)
        if c.weightGradients { check("score weights", dw, \.weights) }
        if c.relative { check("table", dt, \.table) }
    }

    /// The backward's dQ, dK, dV, score-weight and table gradients of case c at inputs x.
    func analytic(_ c: Case, _ x: Inputs, keep: [UInt8], dO: [Double], dSigma: [Double]) -> [[Double]] {
        let weightCount = x.weights.count
        let outCount = dO.count, scoresCount = dSigma.count
        var dq = [Double](repeating: .nan, count: x.q.count), dk = [Double](repeating: .nan, count: x.k.count)
        var dv = [Double](repeating: .nan, count: x.v.count)
        var dw = [Double](repeating: 0, count: weightCount), dt = [Double](repeating: 0, count: x.table.count)
        var out = [Double](repeating: 0, count: outCount), sc = [Double](repeating: 0, count: scoresCount)
        var lse = [Double](repeating: 0, count: c.groups * c.heads * c.t)
        out.withUnsafeMutableBufferPointer { op in sc.withUnsafeMutableBufferPointer { sp in
            lse.withUnsafeMutableBufferPointer { lp in dO.withUnsafeBufferPointer { gp in
                dSigma.withUnsafeBufferPointer { sgp in dq.withUnsafeMutableBufferPointer { dqp in
                    dk.withUnsafeMutableBufferPointer { dkp in dv.withUnsafeMutableBufferPointer { dvp in
                        dw.withUnsafeMutableBufferPointer { dwp in dt.withUnsafeMutableBufferPointer { dtp in
                            run(c, x, keep: keep, lse: lp.baseAddress!, output: op.baseAddress!,
                                scores: c.scores ? sp.baseAddress! : nil) { shape, operands, score, mask, bias, dropout in
                                let grads = AttentionGradients(
                                    output: gp.baseAddress!, outputLayout: operands.outputLayout,
                                    query: dqp.baseAddress!, queryLayout: operands.queryLayout,
                                    key: dkp.baseAddress!, keyLayout: operands.keyLayout,
                                    value: dvp.baseAddress!, valueLayout: operands.valueLayout,
                                    scores: c.scores ? (sgp.baseAddress!, UnsafePointer(sp.baseAddress!)) : nil,
                                    bias: c.relative ? dtp.baseAddress! : nil,
                                    scoreWeights: c.weightGradients ? dwp.baseAddress! : nil)
                                let plan = BackwardPlan(shape, score: score, bias: bias)!
                                let scratch = UnsafeMutablePointer<Double>.allocate(capacity: plan.scratchCount)
                                defer { scratch.deallocate() }
                                attentionBackward(plan: plan, shape: shape, operands: operands, score: score, mask: mask, bias: bias,
                                                  dropout: dropout, logSumExp: UnsafePointer(lp.baseAddress!),
                                                  gradients: grads, scratch: scratch)
                            }
                        } }
                    } }
                } }
            } }
        } }
        return [dq, dk, dv, dw, dt]
    }

    /// Every thread count gives the same bits: the backward's decomposition (key chunks,
    /// reduction slots) depends on the problem only. Cases with few (group, head) pairs split
    /// their keys into chunks whose dQ partials are summed; additive/concat and the table
    /// sum weight gradients over slots.
    @Test(arguments: [cases[1], cases[3], cases[9], cases[10], cases[11], cases[14],
                      Case(groups: 3, heads: 2, kvHeads: 1, t: 67, s: 300, h: 13, hv: 7, score: .additive, padding: true),
                      Case(groups: 1, heads: 2, kvHeads: 2, t: 33, s: 257, h: 9, hv: 5, score: .concat, causal: true),
                      Case(groups: 2, heads: 2, kvHeads: 2, t: 9, s: 257, h: 5, hv: 3, score: .concat)])
    func sameBitsForEveryThreadCount(_ c: Case) {
        var rng = SplitMix(seed: 5)
        func random(_ n: Int) -> [Double] { (0..<n).map { _ in rng.uniform() * 2 - 1 } }
        let x = Self.inputs(c, &rng)
        let keep = (0..<(c.groups * c.t * c.s)).map { _ in UInt8(rng.uniform() < 0.8 ? 1 : 0) }
        let dO = random(c.groups * c.heads * c.t * c.hv), dSigma = random(c.groups * c.heads * c.t * c.s)
        let before = Threads.current
        defer { Threads.set(before) }
        Threads.set(1)
        let expected = analytic(c, x, keep: keep, dO: dO, dSigma: dSigma)
        for threads in [2, 3, 5, 7, 16, 64, 256] {
            Threads.set(threads)
            let got = analytic(c, x, keep: keep, dO: dO, dSigma: dSigma)
            for (name, (e, g)) in zip(["dQ", "dK", "dV", "score weights", "table"], zip(expected, got)) {
                #expect(e.map(\.bitPattern) == g.map(\.bitPattern), "\(name) at \(threads) threads")
            }
        }
    }
}
