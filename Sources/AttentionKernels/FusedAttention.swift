/// Scaled dot-product (and additive/concat) attention, fused: for each query row, the logits
/// of a tile of keys, the mask, an online softmax (running max m and sum l) and the weighted
/// sum of values, in one pass over the keys — the FlashAttention recurrence:
///
///     m' = max(m, max_j x_j),  l' = l·e^(m−m') + Σ_j e^(x_j−m'),  o' = o·e^(m−m') + Σ_j e^(x_j−m')·v_j
///
/// and finally o/l. Working memory is one tile per worker, never T × S, unless the caller
/// asks for the scores: then each row's weights are written straight into the caller's buffer.

/// Keys per logits tile, and query rows per unit of parallel work.
public enum AttentionTile {
    public static let keys = 128
    public static let queryRows = 256
    /// Elements of packed tiles a worker may allocate; wider heads (key_dim above 2^17 in
    /// float32) take the row-by-row path, so scratch stays O(tile + valueDim) per worker
    /// whatever the caller's sizes (a failed allocation would abort the process).
    public static let maxPackedScratch = 1 << 22
}

/// Runs attention for every (group, head, query row) of `shape`.
/// - Parameter scores: when non-nil, a contiguous (groups, placement.heads, queryLength,
///   keyLength) buffer that receives the attention weights (after dropout iff
///   `dropout.scoresAfterDropout`) of heads placement.firstHead ..< + shape.heads.
/// - Parameter placement: where the heads sit in the scores tensor (default: all of it).
/// - Parameter logSumExp: when non-nil, (groups, heads, queryLength) entries that receive
///   each row's log Σ_j e^(x_j) over its kept keys — what `attentionBackward` recomputes the
///   weights from (unspecified for a row whose every key is masked).
/// Any size may be 0; with no keys every output row is 0 (the empty sum) and its
/// log-sum-exp −∞.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func attentionForward<T: KernelScalar>(
    shape: AttentionShape, operands: AttentionOperands<T>, score: ScoreFunction<T>,
    mask: AttentionMask, bias: LogitBias<T>?, dropout: AttentionDropout?,
    scores: UnsafeMutablePointer<T>?, placement: ScoresPlacement? = nil,
    logSumExp: UnsafeMutablePointer<T>? = nil
) {
    if shape.keyLength == 0 {  // a softmax over no keys has no entries: each output is the empty sum, 0
        zeroQueryRows(shape, operands.output, operands.outputLayout, width: shape.valueDim)
        logSumExp?.update(repeating: -T.infinity, count: shape.groups * shape.heads * shape.queryLength)
        return
    }
    let job = AttentionJob(shape: shape, operands: operands, score: score, mask: mask, bias: bias,
                           dropout: dropout, scores: scores,
                           placement: placement ?? ScoresPlacement(heads: shape.heads, firstHead: 0),
                           logSumExp: logSumExp)
    if logSumExp == nil, let count = job.decodeStateElements {
        withUnsafeTemporaryAllocation(of: T.self, capacity: count) { state in
            if let base = state.baseAddress { job.decode(state: base) }
        }
        return
    }
    parallelFor(job.workItems) { job.run($0) }
}

/// `width` zeros at every (g, n, i) query row of `x`, laid out by `layout`.
func zeroQueryRows<T: KernelScalar>(_ shape: AttentionShape, _ x: UnsafeMutablePointer<T>, _ layout: RowLayout, width: Int) {
    for g in 0..<shape.groups {
        for n in 0..<shape.heads {
            for i in 0..<shape.queryLength { (x + layout.offset(g, n, i)).update(repeating: 0, count: width) }
        }
    }
}

struct AttentionJob<T: KernelScalar>: @unchecked Sendable {
    let shape: AttentionShape
    let operands: AttentionOperands<T>
    let score: ScoreFunction<T>
    let mask: AttentionMask
    let bias: LogitBias<T>?
    let dropout: AttentionDropout?
    let scores: UnsafeMutablePointer<T>?
    let placement: ScoresPlacement
    let logSumExp: UnsafeMutablePointer<T>?
    let queryBlocks: Int
    let headsPerKeyValueHead: Int

    init(shape: AttentionShape, operands: AttentionOperands<T>, score: ScoreFunction<T>,
         mask: AttentionMask, bias: LogitBias<T>?, dropout: AttentionDropout?,
         scores: UnsafeMutablePointer<T>?, placement: ScoresPlacement, logSumExp: UnsafeMutablePointer<T>? = nil) {
        self.shape = shape; self.operands = operands; self.score = score; self.mask = mask
        self.bias = bias; self.dropout = dropout; self.scores = scores; self.placement = placement
        self.logSumExp = logSumExp
        queryBlocks = (shape.queryLength + AttentionTile.queryRows - 1) / AttentionTile.queryRows
        headsPerKeyValueHead = max(1, shape.heads / max(1, shape.keyValueHeads))
    }

    var workItems: Int { shape.groups * shape.heads * queryBlocks }

    /// The flat index of score (g, n, i, j) in the scores tensor, as dropout counts it.
    @inline(__always)
    func flatIndex(_ g: Int, _ n: Int, _ i: Int, _ j: Int) -> Int {
        ((g * placement.heads + placement.firstHead + n) * shape.queryLength + i) * shape.keyLength + j
    }

    func run(_ item: Int) {
        let block = item % queryBlocks
        let n = (item / queryBlocks) % shape.heads
        let g = item / (queryBlocks * shape.heads)
        let rows = (block * AttentionTile.queryRows)..<min((block + 1) * AttentionTile.queryRows, shape.queryLength)
        let tile = AttentionTile.keys
        let width = 2 * T.Vector.scalarCount
        let flashScratch = (shape.keyDim + FlashTile.microRows) * width + rows.count * (2 + shape.valueDim)
        let flash = scores == nil && rows.count >= FlashTile.microRows / 2
            && flashScratch <= AttentionTile.maxPackedScratch
        withUnsafeTemporaryAllocation(of: T.self, capacity: tile + shape.valueDim + (flash ? flashScratch : 0)) { buffer in
            withUnsafeTemporaryAllocation(of: Bool.self, capacity: tile) { keptBuffer in
                guard let logits = buffer.baseAddress, let kept = keptBuffer.baseAddress else { return }
                let row = Row(job: self, g: g, n: n, logits: logits, acc: logits + tile, kept: kept)
                if flash {
                    row.flashBlock(rows, scratch: logits + tile + shape.valueDim)
                    return
                }
                for i in rows {
                    if let scores {
                        row.materialized(i, scores + flatIndex(g, n, i, 0))
                    } else {
                        row.streaming(i)
                    }
                }
            }
        }
    }
}

/// One (group, head) pair's rows, with a worker's scratch buffers.
struct Row<T: KernelScalar> {
    let job: AttentionJob<T>
    let g: Int, n: Int
    let logits: UnsafeMutablePointer<T>   // one tile of logits
    let acc: UnsafeMutablePointer<T>      // valueDim accumulators
    let kept: UnsafeMutablePointer<Bool>  // one tile of mask flags

    var shape: AttentionShape { job.shape }
    var kvHead: Int { n / job.headsPerKeyValueHead }

    func queryRow(_ i: Int) -> UnsafePointer<T> {
        job.operands.query + job.operands.queryLayout.offset(g, n, i)
    }
    func keyRow(_ j: Int) -> UnsafePointer<T> {
        job.operands.key + job.operands.keyLayout.offset(g, kvHead, j)
    }
    func valueRow(_ j: Int) -> UnsafePointer<T> {
        job.operands.value + job.operands.valueLayout.offset(g, kvHead, j)
    }
    func outputRow(_ i: Int) -> UnsafeMutablePointer<T> {
        job.operands.output + job.operands.outputLayout.offset(g, n, i)
    }

    /// Keys j in this range may be kept by the causal band and the sliding window, for row i
    /// at key position p + i. A window wider than the key axis reaches its end (so
    /// p + i + window cannot overflow).
    func band(_ i: Int) -> Range<Int> {
        let position = i + (job.mask.positions?[g] ?? 0)
        var lo = 0, hi = shape.keyLength
        if job.mask.causal { hi = min(hi, position + 1) }
        if job.mask.window > 0 {
            lo = max(lo, position - job.mask.window + 1)
            hi = min(hi, position + min(job.mask.window, hi))
        }
        return min(lo, hi)..<hi
    }

    /// out[0 ..< count] = logits of query row i against keys j0 ..< j0 + count, bias added.
    func computeLogits(_ i: Int, _ j0: Int, _ count: Int, into out: UnsafeMutablePointer<T>) {
        let q = queryRow(i)
        let h = shape.keyDim
        switch job.score {
        case .dot(let scale):
            for t in 0..<count { out[t] = dot(q, keyRow(j0 + t), h) * scale }
        case .concat, .additive:
            tanhLogits(i..<i + 1, j0, count) { _ in out }
        }
        addBias(i, j0, count, to: out)
    }

    /// out[t] += bias of logit (i, j0 + t) for t < count.
    func addBias(_ i: Int, _ j0: Int, _ count: Int, to out: UnsafeMutablePointer<T>) {
        switch job.bias {
        case .strided(let bias):
            let base = bias.base + g * bias.group + n * bias.head + i * bias.row + j0 * bias.column
            for t in 0..<count { out[t] += base[t * bias.column] }
        case .relativePosition(let table, let headStride, let p):
            let row = table + n * headStride
            for t in 0..<count { out[t] += row[min(max(j0 + t - i + p - 1, 0), 2 * p - 2)] }
        case nil:
            break
        }
    }

    /// kept[t] for keys j0 ..< j0 + count of row i (band included); returns whether any is kept.
    func computeKept(_ i: Int, _ j0: Int, _ count: Int) -> Bool {
        let band = band(i)
        for t in 0..<count { kept[t] = band.contains(j0 + t) }
        for view in job.mask.views {
            let base = view.base + g * view.group + n * view.head + i * view.row + j0 * view.column
            for t in 0..<count where base[t * view.column] == 0 { kept[t] = false }
        }
        for t in 0..<count where kept[t] { return true }
        return false
    }

    /// The dropout multiplier of score (i, j): 0 if dropped, else 1.
    @inline(__always)
    func keep(_ i: Int, _ j: Int) -> T {
        guard let dropout = job.dropout else { return 1 }
        return dropout.mask.keeps(job.flatIndex(g, n, i, j)) ? 1 : 0
    }

    /// 1 / (1 − rate), or 1 without dropout.
    var dropoutScale: T {
        guard let dropout = job.dropout else { return 1 }
        return 1 / T(1 - dropout.mask.rate)
    }

    /// Records row i's log-sum-exp m + log l, when the caller asked for them.
    @inline(__always)
    func recordLogSumExp(_ i: Int, max m: T, sum l: T) {
        guard let lse = job.logSumExp else { return }
        lse[(g * shape.heads + n) * shape.queryLength + i] = m + T.log(l)
    }

    func clearAccumulator() {
        for d in 0..<shape.valueDim { acc[d] = 0 }
    }

    /// Writes acc · factor to the output row i.
    func writeOutput(_ i: Int, _ factor: T) {
        let out = outputRow(i)
        for d in 0..<shape.valueDim { out[d] = acc[d] * factor }
    }

    /// One query row, online softmax over the band's key tiles.
    func streaming(_ i: Int) {
        clearAccumulator()
        var m = -T.infinity, l = T.zero, anyKept = false
        let band = band(i)
        var j0 = band.lowerBound
        while j0 < band.upperBound {
            let count = min(AttentionTile.keys, band.upperBound - j0)
            defer { j0 += count }
            guard computeKept(i, j0, count) else { continue }
            anyKept = true
            computeLogits(i, j0, count, into: logits)
            var tileMax = -T.infinity
            for t in 0..<count where kept[t] { tileMax = maxPropagatingNaN(tileMax, logits[t]) }
            let newMax = maxPropagatingNaN(m, tileMax)
            if newMax != m && l != 0 {
                let correction = T.exp(m - newMax)
                l *= correction
                scale(correction, acc, shape.valueDim)
            }
            m = newMax
            l += exponentiate(count, shift: m)
            if job.dropout != nil {
                for t in 0..<count { logits[t] *= keep(i, j0 + t) }
            }
            accumulateTile(j0, count)
        }
        if anyKept {
            recordLogSumExp(i, max: m, sum: l)
            writeOutput(i, dropoutScale / l)
        } else {
            fullyMaskedStreaming(i)
        }
    }

    /// logits[t] = e^(logits[t] − shift) for the tile's kept keys, 0 for the others (SIMD;
    /// the tile buffer holds a whole number of vectors); returns their sum.
    func exponentiate(_ count: Int, shift: T) -> T {
        let lanes = T.Vector.scalarCount
        let padded = (count + lanes - 1) / lanes * lanes
        for t in 0..<padded where t >= count || !kept[t] { logits[t] = -T.infinity }
        return T.exponentiate(logits, vectors: padded / lanes, minus: shift)
    }

    /// acc += Σ_t logits[t] · v[j0 + t] (excluded keys carry weight 0): two vectors of the
    /// accumulator stay in registers while the tile's keys stream past.
    func accumulateTile(_ j0: Int, _ count: Int) {
        let lanes = T.Vector.scalarCount, hv = shape.valueDim
        let values = job.operands.value + job.operands.valueLayout.offset(g, kvHead, j0)
        let stride = job.operands.valueLayout.row
        var c = 0
        while c + 2 * lanes <= hv {
            var a0 = UnsafePointer(acc).vector(at: c), a1 = UnsafePointer(acc).vector(at: c + lanes)
            var v = values + c
            for t in 0..<count {
                let p = T.Vector(repeating: logits[t])
                a0 = a0.plusProduct(p, v.vector(at: 0))
                a1 = a1.plusProduct(p, v.vector(at: lanes))
                v += stride
            }
            acc.store(a0, at: c)
            acc.store(a1, at: c + lanes)
            c += 2 * lanes
        }
        if c < hv {
            for t in 0..<count { axpy(logits[t], values + t * stride + c, acc + c, hv - c) }
        }
    }

    /// A row with no kept key, by the mask's policy, over all keys.
    func fullyMaskedStreaming(_ i: Int) {
        clearAccumulator()
        switch job.mask.fullyMaskedRow {
        case .zero:
            writeOutput(i, 0)
        case .uniform:
            for j in 0..<shape.keyLength { axpy(keep(i, j), valueRow(j), acc, shape.valueDim) }
            writeOutput(i, dropoutScale / T(shape.keyLength))
        case .subtractLarge:
            var m = -T.infinity
            forEachLogitTile(i) { j0, count in
                for t in 0..<count { m = maxPropagatingNaN(m, logits[t] - largeMaskOffset) }
            }
            var l = T.zero
            forEachLogitTile(i) { j0, count in
                for t in 0..<count {
                    let p = T.exp(logits[t] - largeMaskOffset - m)
                    l += p
                    axpy(p * keep(i, j0 + t), valueRow(j0 + t), acc, shape.valueDim)
                }
            }
            writeOutput(i, dropoutScale / l)
        }
    }

    /// What Keras's Attention subtracts from masked logits.
    var largeMaskOffset: T { 1e9 }

    /// Calls body(j0, count) with `logits` holding keys j0 ..< j0 + count, over `keys` (all
    /// keys by default).
    func forEachLogitTile(_ i: Int, over keys: Range<Int>? = nil, _ body: (Int, Int) -> Void) {
        let keys = keys ?? 0..<shape.keyLength
        var j0 = keys.lowerBound
        while j0 < keys.upperBound {
            let count = min(AttentionTile.keys, keys.upperBound - j0)
            computeLogits(i, j0, count, into: logits)
            body(j0, count)
            j0 += count
        }
    }

    /// One query row whose weights go to `weights` (keyLength entries of the scores tensor).
    func materialized(_ i: Int, _ weights: UnsafeMutablePointer<T>) {
        let s = shape.keyLength
        var m = -T.infinity, anyKept = false
        var j0 = 0
        while j0 < s {
            let count = min(AttentionTile.keys, s - j0)
            computeLogits(i, j0, count, into: weights + j0)
            if computeKept(i, j0, count) {
                anyKept = true
                for t in 0..<count where kept[t] { m = maxPropagatingNaN(m, weights[j0 + t]) }
            }
            j0 += count
        }
        if anyKept {
            var l = T.zero
            j0 = 0
            while j0 < s {
                let count = min(AttentionTile.keys, s - j0)
                _ = computeKept(i, j0, count)
                for t in 0..<count {
                    let p = kept[t] ? T.exp(weights[j0 + t] - m) : 0
                    weights[j0 + t] = p
                    l += p
                }
                j0 += count
            }
            recordLogSumExp(i, max: m, sum: l)
            scale(1 / l, weights, s)
        } else {
            switch job.mask.fullyMaskedRow {
            case .zero:
                for j in 0..<s { weights[j] = 0 }
            case .uniform:
                for j in 0..<s { weights[j] = 1 / T(s) }
            case .subtractLarge:
                m = -T.infinity
                for j in 0..<s {
                    weights[j] -= largeMaskOffset
                    m = maxPropagatingNaN(m, weights[j])
                }
                var l = T.zero
                for j in 0..<s {
                    weights[j] = T.exp(weights[j] - m)
                    l += weights[j]
                }
                scale(1 / l, weights, s)
            }
        }
        clearAccumulator()
        if let dropout = job.dropout, dropout.scoresAfterDropout {
            let keepProbability = T(1 - dropout.mask.rate)
            for j in 0..<s {
                weights[j] = keep(i, j) == 0 ? 0 : weights[j] / keepProbability
                axpy(weights[j], valueRow(j), acc, shape.valueDim)
            }
            writeOutput(i, 1)
        } else {
            for j in 0..<s { axpy(weights[j] * keep(i, j), valueRow(j), acc, shape.valueDim) }
            writeOutput(i, dropoutScale)
        }
    }
}
