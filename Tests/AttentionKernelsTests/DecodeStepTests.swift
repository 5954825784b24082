import Testing
@testable import AttentionKernels

/// The kernels of a decoder's step: `attentionForward`'s decode path against a float64 softmax written
/// out in full (over a key/value cache's layout and over contiguous tensors), and `gemv`
/// against a naive product and against `gemm`'s bits.
@Suite struct DecodeStepTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var groups = 2, heads = 4, kvHeads = 2, t = 1, s = 300, h = 16, hv = 16
        var causal = false, window = 0, padding = false, policy = FullyMaskedRow.zero
        /// Group g's query row 0 at key position (37g + 11) mod (s − t + 1); with causal, keys
        /// past its last row's position hold NaN (a cache's unfilled part, never read).
        var positions = false
        /// K and V in one (groups, 2, s, kvHeads, h) cache (hv == h), else contiguous tensors.
        var cacheLayout = true
        var testDescription: String {
            "g\(groups) n\(heads)/\(kvHeads) t\(t) s\(s) h\(h) hv\(hv) causal=\(causal) window=\(window) "
                + "padding=\(padding) \(policy) positions=\(positions) cache=\(cacheLayout)"
        }
        func position(_ g: Int) -> Int { positions ? (37 * g + 11) % (s - t + 1) : 0 }
    }

    static let cases: [Case] = [
        Case(),
        Case(causal: true, positions: true),
        Case(groups: 3, heads: 8, kvHeads: 8, t: 1, s: 2048, h: 64, hv: 64, causal: true, positions: true),
        Case(groups: 1, heads: 32, kvHeads: 8, t: 1, s: 700, h: 128, hv: 128, causal: true, positions: true),
        Case(groups: 2, heads: 6, kvHeads: 1, t: 3, s: 513, h: 17, hv: 17, causal: true, padding: true, positions: true),
        Case(groups: 2, heads: 3, kvHeads: 3, t: 4, s: 260, h: 5, hv: 5, causal: true, window: 7, positions: true),
        Case(groups: 1, heads: 2, kvHeads: 2, t: 2, s: 90, h: 33, hv: 33, window: 5, positions: true),
        Case(groups: 2, heads: 4, kvHeads: 2, t: 1, s: 300, h: 16, hv: 16, padding: true, policy: .uniform),
        Case(groups: 2, heads: 4, kvHeads: 4, t: 2, s: 257, h: 3, hv: 3, padding: true, policy: .zero),
        Case(groups: 3, heads: 2, kvHeads: 1, t: 8, s: 40, h: 9, hv: 9, causal: true, padding: true, positions: true),
        Case(groups: 2, heads: 4, kvHeads: 2, t: 2, s: 300, h: 12, hv: 20, causal: true, positions: true,
             cacheLayout: false),
        Case(groups: 1, heads: 1, kvHeads: 1, t: 1, s: 1, h: 1, hv: 1),
        Case(groups: 2, heads: 2, kvHeads: 1, t: 1, s: 255, h: 48, hv: 7, padding: true, policy: .uniform,
             cacheLayout: false),
        // A causal row at position 0 of a padded sequence sees no key: zero, nothing past it read.
        Case(groups: 2, heads: 2, kvHeads: 2, t: 1, s: 64, h: 8, hv: 8, causal: true, padding: true, positions: false),
    ]

    @Test(arguments: cases)
    func matchesNaive(_ c: Case) {
        var rng = SplitMix(seed: 17)
        let hv = c.cacheLayout ? c.h : c.hv
        let q = (0..<(c.groups * c.heads * c.t * c.h)).map { _ in rng.uniform() * 2 - 1 }
        // K[g][n][j][d] and V[g][n][j][d] in the layout chosen, NaN where a causal row never looks.
        let plane = c.s * c.kvHeads * c.h
        var storage = [Double](repeating: 0, count: c.cacheLayout ? c.groups * 2 * plane
                                                                   : c.groups * c.kvHeads * c.s * (c.h + hv))
        func keyIndex(_ g: Int, _ n: Int, _ j: Int, _ d: Int) -> Int {
            c.cacheLayout ? g * 2 * plane + (j * c.kvHeads + n) * c.h + d : ((g * c.kvHeads + n) * c.s + j) * c.h + d
        }
        func valueIndex(_ g: Int, _ n: Int, _ j: Int, _ d: Int) -> Int {
            c.cacheLayout ? g * 2 * plane + plane + (j * c.kvHeads + n) * c.h + d
                          : c.groups * c.kvHeads * c.s * c.h + ((g * c.kvHeads + n) * c.s + j) * hv + d
        }
        for g in 0..<c.groups {
            for n in 0..<c.kvHeads {
                for j in 0..<c.s {
                    let unfilled = c.causal && j > c.position(g) + c.t - 1
                    for d in 0..<c.h { storage[keyIndex(g, n, j, d)] = unfilled ? .nan : rng.uniform() * 2 - 1 }
                    for d in 0..<hv { storage[valueIndex(g, n, j, d)] = unfilled ? .nan : rng.uniform() * 2 - 1 }
                }
            }
        }
        var keep = [UInt8](repeating: 1, count: c.groups * c.t * c.s)
        if c.padding {
            for g in 0..<c.groups {
                for i in 0..<c.t {
                    for j in 0..<c.s where rng.uniform() < 0.3 || (g == 0 && i == 0) { keep[(g * c.t + i) * c.s + j] = 0 }
                }
            }
        }
        let scale = 0.3
        let positions = (0..<c.groups).map(c.position)
        var results: [[Double]] = []
        let before = Threads.current
        defer { Threads.set(before) }
        for threads in [1, 2, 3, 7] {
            Threads.set(threads)
            var out = [Double](repeating: .nan, count: c.groups * c.heads * c.t * hv)
            positions.withUnsafeBufferPointer { pp in q.withUnsafeBufferPointer { qp in
                storage.withUnsafeBufferPointer { sp in keep.withUnsafeBufferPointer { mp in
                    out.withUnsafeMutableBufferPointer { op in
                        let base = sp.baseAddress!
                        let shape = AttentionShape(groups: c.groups, heads: c.heads, keyValueHeads: c.kvHeads,
                                                   queryLength: c.t, keyLength: c.s, keyDim: c.h, valueDim: hv)
                        let keyLayout = c.cacheLayout ? RowLayout(group: 2 * plane, head: c.h, row: c.kvHeads * c.h)
                                                      : RowLayout(group: c.kvHeads * c.s * c.h, head: c.s * c.h, row: c.h)
                        let valueLayout = c.cacheLayout ? keyLayout
                                                        : RowLayout(group: c.kvHeads * c.s * hv, head: c.s * hv, row: hv)
                        let operands = AttentionOperands(
                            query: qp.baseAddress!, queryLayout: RowLayout(group: c.heads * c.t * c.h, head: c.t * c.h,
                                                                           row: c.h),
                            key: base, keyLayout: keyLayout,
                            value: base + (c.cacheLayout ? plane : c.groups * c.kvHeads * c.s * c.h),
                            valueLayout: valueLayout,
                            output: op.baseAddress!, outputLayout: RowLayout(group: c.heads * c.t * hv, head: hv,
                                                                             row: c.heads * hv))
                        let views = c.padding ? [MaskView(base: mp.baseAddress!, group: c.t * c.s, head: 0, row: c.s, column: 1)] : []
                        let mask = AttentionMask(views: views, causal: c.causal, window: c.window,
                                                 positions: c.positions ? pp.baseAddress! : nil, fullyMaskedRow: c.policy)
                        let job = AttentionJob(shape: shape, operands: operands, score: .dot(scale: scale), mask: mask,
                                               bias: nil, dropout: nil, scores: nil,
                                               placement: ScoresPlacement(heads: c.heads, firstHead: 0))
                        #expect(job.decodeStateElements != nil, "the decode path applies")
                        attentionForward(shape: shape, operands: operands, score: .dot(scale: scale), mask: mask,
                                         bias: nil, dropout: nil, scores: nil)
                    }
                } }
            } }
            results.append(out)
        }
        for r in results.dropFirst() { #expect(r == results[0], "results depend on the thread count") }
        let out = results[0]
        var worst = 0.0
        for g in 0..<c.groups {
            for n in 0..<c.heads {
                let kvn = n / (c.heads / c.kvHeads)
                for i in 0..<c.t {
                    var kept = [Bool](repeating: true, count: c.s), logits = [Double](repeating: 0, count: c.s)
                    for j in 0..<c.s {
                        let p = (c.positions ? c.position(g) : 0) + i
                        if c.causal && j > p { kept[j] = false }
                        if c.window > 0 && abs(p - j) >= c.window { kept[j] = false }
                        if keep[(g * c.t + i) * c.s + j] == 0 { kept[j] = false }
                        guard kept[j] else { continue }
                        var d = 0.0
                        for e in 0..<c.h { d += q[((g * c.heads + n) * c.t + i) * c.h + e] * storage[keyIndex(g, kvn, j, e)] }
                        logits[j] = d * scale
                    }
                    var weights = [Double](repeating: 0, count: c.s)
                    if kept.contains(true) {
                        let m = zip(logits, kept).filter(\.1).map(\.0).max()!
                        for j in 0..<c.s where kept[j] { weights[j] = naiveExp(logits[j] - m) }
                    } else if c.policy == .uniform {
                        weights = weights.map { _ in 1 }
                    }
                    let total = weights.reduce(0, +)
                    if total > 0 { weights = weights.map { $0 / total } }
                    for e in 0..<hv {
                        var o = 0.0
                        for j in 0..<c.s where weights[j] != 0 { o += weights[j] * storage[valueIndex(g, kvn, j, e)] }
                        let got = out[((g * c.t + i) * c.heads + n) * hv + e]
                        worst = max(worst, got.isNaN ? .infinity : abs(o - got))
                    }
                }
            }
        }
        #expect(worst < 1e-12)
    }

    /// The path applies to a decoder's step and nothing larger: up to DecodeTile.maxQueryRows
    /// rows, dot scores, no scores returned, a state that fits.
    @Test func takesTheDecodePathForSteps() {
        let q = [Float](repeating: 0, count: 1)
        q.withUnsafeBufferPointer { qp in
            var out = [Float](repeating: 0, count: 1)
            out.withUnsafeMutableBufferPointer { op in
                let layout = RowLayout(group: 0, head: 0, row: 0)
                let operands = AttentionOperands(query: qp.baseAddress!, queryLayout: layout, key: qp.baseAddress!,
                                                 keyLayout: layout, value: qp.baseAddress!, valueLayout: layout,
                                                 output: op.baseAddress!, outputLayout: layout)
                func applies(_ t: Int, _ s: Int, heads: Int = 4, score: ScoreFunction<Float> = .dot(scale: 1),
                             scores: UnsafeMutablePointer<Float>? = nil) -> Bool {
                    let shape = AttentionShape(groups: 1, heads: heads, keyValueHeads: 2, queryLength: t, keyLength: s,
                                               keyDim: 4, valueDim: 4)
                    return AttentionJob(shape: shape, operands: operands, score: score,
                                        mask: AttentionMask(fullyMaskedRow: .subtractLarge), bias: nil, dropout: nil,
                                        scores: scores, placement: ScoresPlacement(heads: heads, firstHead: 0))
                        .decodeStateElements != nil
                }
                #expect(applies(1, 10) && applies(DecodeTile.maxQueryRows, 4096))
                #expect(!applies(DecodeTile.maxQueryRows + 1, 4096))
                #expect(!applies(1, 10, score: .concat(scale: 1, weight: 1)))
                #expect(!applies(1, 10, scores: op.baseAddress!))
                #expect(!applies(1, Int.max / 2))
                #expect(!applies(8, 10, heads: DecodeTile.maxRows))
            }
        }
    }

    /// One-row products: the naive sum within float32 rounding, and the same bits as `gemm`
    /// (bias, accumulate, column tails, K across several depth panels, several products).
    @Test(arguments: [(1, 1), (3, 17), (37, 129), (300, 1031), (513, 64), (1024, 1536)])
    func gemvMatchesGemm(_ size: (k: Int, n: Int)) {
        var rng = SplitMix(seed: UInt64(size.k * 7 + size.n))
        let (k, n) = size
        let a = (0..<k).map { _ in Float(rng.uniform() * 2 - 1) }
        let b = (0..<(k * n)).map { _ in Float(rng.uniform() * 2 - 1) }
        let bias = (0..<n).map { _ in Float(rng.uniform()) }
        let start = (0..<n).map { _ in Float(rng.uniform()) }
        for (useBias, accumulate) in [(false, false), (true, false), (false, true)] {
            var viaGemm = start, viaGemv = start, other = [Float](repeating: 0, count: 5)
            let plan = GemmPlan<Float>(m: 1, n: n, k: k)
            var scratch = [Float](repeating: 0, count: plan.scratchCount)
            a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in bias.withUnsafeBufferPointer { biasp in
                let biasPointer = useBias ? biasp.baseAddress : nil
                viaGemm.withUnsafeMutableBufferPointer { cp in scratch.withUnsafeMutableBufferPointer { sp in
                    gemm(plan, GemmOperands(a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: n, c: cp.baseAddress!,
                                            ldc: n, bias: biasPointer, accumulate: accumulate), scratch: sp.baseAddress!)
                } }
                viaGemv.withUnsafeMutableBufferPointer { cp in other.withUnsafeMutableBufferPointer { op in
                    // A second, unrelated product in the same pass.
                    gemv([GemvProduct(x: ap.baseAddress!, b: bp.baseAddress!, ldb: n, y: cp.baseAddress!,
                                      bias: biasPointer, accumulate: accumulate, n: n, k: k),
                          GemvProduct(x: ap.baseAddress!, b: bp.baseAddress!, ldb: n, y: op.baseAddress!,
                                      n: min(5, n), k: k)])
                } }
            } } }
            #expect(viaGemv == viaGemm)
            var worst = 0.0
            for j in 0..<n {
                var sum = accumulate ? Double(start[j]) : useBias ? Double(bias[j]) : 0
                for p in 0..<k { sum += Double(a[p]) * Double(b[p * n + j]) }
                worst = max(worst, abs(sum - Double(viaGemv[j])))
            }
            #expect(worst < 1e-4 * Double(k).squareRoot())
            for j in 0..<min(5, n) {
                var sum = 0.0
                for p in 0..<k { sum += Double(a[p]) * Double(b[p * n + j]) }
                #expect(abs(sum - Double(other[j])) < 1e-4 * Double(k).squareRoot())
            }
        }
    }
}
