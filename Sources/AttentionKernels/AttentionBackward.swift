/// The backward of `attentionForward`, as FlashAttention-2 computes it. With x_ij the
/// logits, lse_i the forward's log-sum-exp, dO the gradient of the output and dΣ that of
/// the returned scores:
///
///     P_ij  = e^(x_ij − lse_i)                       (0 where masked)
///     dP_ij = dO_i·v_j · κ_ij + dΣ_ij · (κ_ij if the scores show dropout, else 1)
///     D_i   = dO_i·O_i + Σ_j Σ_ij·dΣ_ij  (= Σ_j P_ij·dP_ij)
///     dS_ij = P_ij · (dP_ij − D_i)
///     dV_j += Σ_i P_ij·κ_ij · dO_i,   and dS flows into q_i, k_j (and the score's weights
///     and the logit bias) through ∂x_ij,
///
/// κ_ij being dropout's keep_ij / (1 − rate) (1 without dropout). Score tiles are
/// recomputed from Q, K and lse, so memory stays O(T·d) plus per-worker tiles. Work is split
/// over tasks (group, key/value head, key chunk): a task owns its keys' dK and dV rows and
/// its query heads' dQ rows (per chunk, summed after, when there are few (group, head)
/// pairs); for each block of query rows it walks the key blocks, with the block products on
/// the register tile of the forward's flash path: P and dS a micro-block of rows at a time
/// (made in the tile's epilogues where only a band masks: `plainScoreGradients`), then
/// dV, dQ and dK over the whole block.
///
/// The decomposition never depends on the thread count, so every thread count gives the
/// same bits: the chunks are a function of the shape, the tasks fall into fixed reduction
/// slots whose weight-gradient sums run over their tasks in order, and the slots and the dQ
/// partials are summed in order at the end. Workers take whole slots.

/// Query rows and keys of one backward block, and the fixed decomposition of the work.
/// dV and dK are read and written once per block (their products' depth is the block's
/// rows), dQ once per block of keys: 256 × 128 blocks were 2–4% faster than 128 × 128 (sdpa
/// T512, T2048, causal T4096; causal T512 the same), and those 2% faster than 128 × 64.
public enum BackwardTile {
    public static let queryRows = 256
    public static let keys = 128
    /// Fewer (group, key/value head) pairs than this split their keys into chunks, to give
    /// about this many tasks.
    static let tasks = 16
    /// The most reduction slots, and the most elements their weight-gradient sums may take.
    static let slots = 256
    static let slotElements = 1 << 20
}

/// Where the backward writes: dQ, dK, dV laid out as the query, key and value operands
/// (overwritten); the gradient of the output in the output's layout; optionally the
/// gradient of the returned scores with the forward's scores (both laid out as `scores`
/// of `attentionForward`, at the same placement); optionally accumulators (added to) for
/// the gradient of a relative-position bias table (its layout) and of the score function's
/// weights (`.dot`: [scale]; `.concat`: [scale, weight]; `.additive`: the keyDim scales).
public struct AttentionGradients<T: KernelScalar>: @unchecked Sendable {
    public var output: UnsafePointer<T>, outputLayout: RowLayout
    public var query: UnsafeMutablePointer<T>, queryLayout: RowLayout
    public var key: UnsafeMutablePointer<T>, keyLayout: RowLayout
    public var value: UnsafeMutablePointer<T>, valueLayout: RowLayout
    public var scores: (gradient: UnsafePointer<T>, forward: UnsafePointer<T>)?
    public var bias: UnsafeMutablePointer<T>?
    public var scoreWeights: UnsafeMutablePointer<T>?
    public init(output: UnsafePointer<T>, outputLayout: RowLayout, query: UnsafeMutablePointer<T>, queryLayout: RowLayout,
                key: UnsafeMutablePointer<T>, keyLayout: RowLayout, value: UnsafeMutablePointer<T>, valueLayout: RowLayout,
                scores: (gradient: UnsafePointer<T>, forward: UnsafePointer<T>)? = nil,
                bias: UnsafeMutablePointer<T>? = nil, scoreWeights: UnsafeMutablePointer<T>? = nil) {
        self.output = output; self.outputLayout = outputLayout
        self.query = query; self.queryLayout = queryLayout
        self.key = key; self.keyLayout = keyLayout
        self.value = value; self.valueLayout = valueLayout
        self.scores = scores; self.bias = bias; self.scoreWeights = scoreWeights
    }
}

/// How the backward splits its work and its scratch, made once per call: the work's
/// decomposition depends on the problem only; `workers` (the thread count read when the plan
/// is made) sizes the per-worker scratch the call then uses.
public struct BackwardPlan<T: KernelScalar>: Sendable {
    /// Key chunks per pair: parts of the key blocks; the longest chunk's keys, padded.
    let chunks: Int, keyBlocks: Int, chunkLength: Int, chunkPadded: Int
    let tasks: Int, slots: Int, workers: Int
    let keyPadded: Int, valuePadded: Int, tileWidth: Int
    let parameters: Int, biasEntries: Int
    let packs: Bool
    /// Elements of one worker's scratch; of the dQ partials (chunks > 1).
    let perWorker: Int, partials: Int

    /// The plan of `attentionBackward` for these arguments, or nil when its scratch count
    /// overflows.
    public init?(_ shape: AttentionShape, score: ScoreFunction<T>, bias: LogitBias<T>?) {
        let width = 2 * T.Vector.scalarCount
        func padded(_ n: Int) -> Int { (n + width - 1) / width * width }
        let pairs = shape.groups * shape.keyValueHeads
        keyBlocks = (shape.keyLength + BackwardTile.keys - 1) / BackwardTile.keys
        chunks = max(1, pairs >= BackwardTile.tasks ? 1 : min(keyBlocks, (BackwardTile.tasks + pairs - 1) / max(1, pairs)))
        chunkLength = (keyBlocks + chunks - 1) / chunks * BackwardTile.keys
        chunkPadded = padded(chunkLength) + width
        tasks = pairs * chunks
        keyPadded = padded(shape.keyDim); valuePadded = padded(shape.valueDim); tileWidth = padded(BackwardTile.keys)
        switch score {
        case .dot: parameters = 1; packs = true
        case .concat: parameters = 2; packs = false
        case .additive(let scale, _): parameters = scale == nil ? 0 : shape.keyDim; packs = false
        }
        if case .relativePosition(_, let headStride, let p) = bias {
            biasEntries = (shape.heads - 1) * headStride + 2 * p - 1
        } else {
            biasEntries = 0
        }
        let rows = BackwardTile.queryRows, accumulators = parameters + biasEntries
        slots = min(tasks, BackwardTile.slots, max(1, BackwardTile.slotElements / max(1, accumulators)))
        workers = Partition(items: slots, parts: min(Threads.current, WorkerPool.maximumThreads)).parts
        guard let perWorker = sumOfProducts([
                  [packs ? 1 : 0, chunkLength, keyPadded], [packs ? 1 : 0, shape.keyDim, chunkPadded],
                  [shape.valueDim, chunkPadded], [rows, 2 * keyPadded + valuePadded], [4, rows, tileWidth], [rows]]),
              let partials = chunks == 1 ? 0
                  : sumOfProducts([[chunks, shape.groups, shape.heads, shape.queryLength, shape.keyDim]]),
              let scratchCount = sumOfProducts([[workers, perWorker], [partials], [slots, accumulators]])
        else { return nil }
        (self.perWorker, self.partials, self.scratchCount) = (perWorker, partials, scratchCount)
    }

    /// Elements of scratch the call needs.
    public let scratchCount: Int
}

/// Σ_t Π term_t, or nil when a product or the sum overflows.
private func sumOfProducts(_ terms: [[Int]]) -> Int? {
    var total = 0
    for term in terms {
        var product = 1
        for factor in term {
            let (p, overflow) = product.multipliedReportingOverflow(by: factor)
            guard !overflow else { return nil }
            product = p
        }
        let (sum, overflow) = total.addingReportingOverflow(product)
        guard !overflow else { return nil }
        total = sum
    }
    return total
}

/// The gradients of `attentionForward(shape:operands:score:mask:bias:dropout:scores:placement:)`
/// given its output (in `operands.output`) and `logSumExp`, split as `plan` (made for the same
/// shape, score and bias) says. `scratch` holds plan.scratchCount elements.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func attentionBackward<T: KernelScalar>(
    plan: BackwardPlan<T>, shape: AttentionShape, operands: AttentionOperands<T>, score: ScoreFunction<T>,
    mask: AttentionMask, bias: LogitBias<T>?, dropout: AttentionDropout?, placement: ScoresPlacement? = nil,
    logSumExp: UnsafePointer<T>, gradients: AttentionGradients<T>, scratch: UnsafeMutablePointer<T>
) {
    if shape.keyLength == 0 {  // the output is 0 whatever the query: dQ = 0, nothing else
        zeroQueryRows(shape, gradients.query, gradients.queryLayout, width: shape.keyDim)
        return
    }
    let job = AttentionJob(shape: shape, operands: operands, score: score, mask: mask, bias: bias, dropout: dropout,
                           scores: nil, placement: placement ?? ScoresPlacement(heads: shape.heads, firstHead: 0))
    let backward = Backward(job: job, plan: plan, lse: logSumExp, grads: gradients, scratch: scratch)
    let slots = Partition(items: plan.slots, parts: plan.workers), tasks = Partition(items: plan.tasks, parts: plan.slots)
    parallelFor(slots.parts) { w in
        for slot in slots.range(w) {
            let sums = backward.slotSums(slot)
            sums.update(repeating: 0, count: plan.parameters + plan.biasEntries)
            for task in tasks.range(slot) { backward.run(task: task, worker: w, sums: sums) }
        }
    }
    backward.reduce()
}

/// One backward computation: its job, plan and buffers.
struct Backward<T: KernelScalar>: @unchecked Sendable {
    let job: AttentionJob<T>
    let plan: BackwardPlan<T>
    let lse: UnsafePointer<T>
    let grads: AttentionGradients<T>
    let scratch: UnsafeMutablePointer<T>

    var shape: AttentionShape { job.shape }
    /// Whether blocks take `plainScoreGradients`: dot scores without mask views, bias,
    /// dropout, returned scores or the scale's gradient.
    var plainBlocks: Bool {
        plan.packs && job.mask.views.isEmpty && job.bias == nil && job.dropout == nil && grads.scores == nil
            && grads.scoreWeights == nil
    }
    var partials: UnsafeMutablePointer<T> { scratch + plan.workers * plan.perWorker }
    /// Reduction slot s's sums of the score weights' and bias table's gradients.
    func slotSums(_ s: Int) -> UnsafeMutablePointer<T> {
        partials + plan.partials + s * (plan.parameters + plan.biasEntries)
    }
    /// The layout of chunk c's dQ partial.
    var partialLayout: RowLayout {
        RowLayout(group: shape.heads * shape.queryLength * shape.keyDim, head: shape.queryLength * shape.keyDim,
                  row: shape.keyDim)
    }

    /// One worker's buffers, with the weight-gradient sums of the slot it works on.
    struct Buffers {
        var keys, keysTransposed, valuesTransposed, queries, outputGradients, queryGradients: UnsafeMutablePointer<T>
        var logits, raw, dP, dS: UnsafeMutablePointer<T>
        var delta, parameters: UnsafeMutablePointer<T>

        /// The row buffers (queries, output and query gradients, tiles, deltas) from block
        /// row r on.
        func offset(rows r: Int, _ plan: BackwardPlan<T>) -> Buffers {
            var b = self
            let (ld, key, value) = (plan.tileWidth * r, plan.keyPadded * r, plan.valuePadded * r)
            (b.queries, b.queryGradients, b.outputGradients) = (queries + key, queryGradients + key, outputGradients + value)
            (b.logits, b.raw, b.dP, b.dS) = (logits + ld, raw + ld, dP + ld, dS + ld)
            b.delta = delta + r
            return b
        }
    }

    func buffers(_ worker: Int, sums: UnsafeMutablePointer<T>) -> Buffers {
        let p = plan, rows = BackwardTile.queryRows, tile = rows * p.tileWidth
        let keys = scratch + worker * p.perWorker
        let keysTransposed = keys + (p.packs ? p.chunkLength * p.keyPadded : 0)
        let valuesTransposed = keysTransposed + (p.packs ? shape.keyDim * p.chunkPadded : 0)
        let queries = valuesTransposed + shape.valueDim * p.chunkPadded
        let outputGradients = queries + rows * p.keyPadded
        let queryGradients = outputGradients + rows * p.valuePadded
        let logits = queryGradients + rows * p.keyPadded
        let delta = logits + 4 * tile
        return Buffers(keys: keys, keysTransposed: keysTransposed, valuesTransposed: valuesTransposed, queries: queries,
                       outputGradients: outputGradients, queryGradients: queryGradients,
                       logits: logits, raw: logits + tile, dP: logits + 2 * tile, dS: logits + 3 * tile,
                       delta: delta, parameters: sums)
    }

    func keyGradientRow(_ g: Int, _ h: Int, _ j: Int) -> UnsafeMutablePointer<T> {
        grads.key + grads.keyLayout.offset(g, h, j)
    }
    func valueGradientRow(_ g: Int, _ h: Int, _ j: Int) -> UnsafeMutablePointer<T> {
        grads.value + grads.valueLayout.offset(g, h, j)
    }
    func outputGradientRow(_ g: Int, _ n: Int, _ i: Int) -> UnsafePointer<T> {
        grads.output + grads.outputLayout.offset(g, n, i)
    }

    /// The keys of (group, key/value head, chunk) `task`: dK and dV of those keys, and dQ of
    /// the head's query heads (or chunk partials).
    func run(task: Int, worker: Int, sums: UnsafeMutablePointer<T>) {
        let c = task % plan.chunks, h = (task / plan.chunks) % shape.keyValueHeads
        let g = task / (plan.chunks * shape.keyValueHeads)
        let blocks = Partition(items: plan.keyBlocks, parts: plan.chunks).range(c)
        let keys = min(blocks.lowerBound * BackwardTile.keys, shape.keyLength)
            ..< min(blocks.upperBound * BackwardTile.keys, shape.keyLength)
        let b = buffers(worker, sums: sums)
        for j in keys {
            keyGradientRow(g, h, j).update(repeating: 0, count: shape.keyDim)
            valueGradientRow(g, h, j).update(repeating: 0, count: shape.valueDim)
        }
        guard !keys.isEmpty else { return }
        pack(g, h, keys, b)
        withUnsafeTemporaryAllocation(of: Bool.self, capacity: BackwardTile.keys) { keptBuffer in
            guard let kept = keptBuffer.baseAddress else { return }
            let group = job.headsPerKeyValueHead
            for n in (h * group)..<((h + 1) * group) {
                let row = Row(job: job, g: g, n: n, logits: b.logits, acc: b.dP, kept: kept)
                var i0 = 0
                while i0 < shape.queryLength {
                    let rows = i0..<min(i0 + BackwardTile.queryRows, shape.queryLength)
                    queryBlock(row, rows, keys, chunk: c, b)
                    i0 += BackwardTile.queryRows
                }
            }
        }
    }

    /// Kᵀ, Vᵀ (feature × key, zero-padded) and, for dot scores, scale·K (key × padded
    /// feature) of the chunk.
    func pack(_ g: Int, _ h: Int, _ keys: Range<Int>, _ b: Buffers) {
        let (d, dv, stride) = (shape.keyDim, shape.valueDim, plan.chunkPadded)
        let ops = job.operands, scale = job.score.dotScale
        let first = keys.lowerBound
        func key(_ t: Int) -> UnsafePointer<T> { ops.key + ops.keyLayout.offset(g, h, first + t) }
        func zeroPadding(_ transposed: UnsafeMutablePointer<T>, rows: Int) {  // past the chunk's keys
            for e in 0..<rows { (transposed + e * stride + keys.count).update(repeating: 0, count: stride - keys.count) }
        }
        transpose(count: keys.count, width: dv, rows: ops.value + ops.valueLayout.offset(g, h, first),
                  rowStride: ops.valueLayout.row, into: b.valuesTransposed, stride: stride)
        zeroPadding(b.valuesTransposed, rows: dv)
        guard plan.packs else { return }
        transpose(count: keys.count, width: d, rows: key(0), rowStride: ops.keyLayout.row, into: b.keysTransposed,
                  stride: stride)
        zeroPadding(b.keysTransposed, rows: d)
        for t in 0..<keys.count {
            let k = key(t), padded = b.keys + t * plan.keyPadded
            for e in 0..<d { padded[e] = scale * k[e] }
            (padded + d).update(repeating: 0, count: plan.keyPadded - d)
        }
    }

    /// D_i = dO_i·O_i + Σ_j scores_ij·dΣ_ij.
    func delta(_ row: Row<T>, _ i: Int) -> T {
        var d = dot(outputGradientRow(row.g, row.n, i), UnsafePointer(row.outputRow(i)), shape.valueDim)
        if let (gradient, forward) = grads.scores {
            let base = job.flatIndex(row.g, row.n, i, 0)
            d += dot(gradient + base, forward + base, shape.keyLength)
        }
        return d
    }

    /// Rows `rows` of head row.n against the chunk's keys.
    func queryBlock(_ row: Row<T>, _ rows: Range<Int>, _ keys: Range<Int>, chunk: Int, _ b: Buffers) {
        let (g, n, d, dv) = (row.g, row.n, shape.keyDim, shape.valueDim)
        let count = rows.count, i0 = rows.lowerBound
        let dq = b.queryGradients
        dq.update(repeating: 0, count: count * plan.keyPadded)
        var lo = keys.upperBound, hi = keys.lowerBound
        withUnsafeTemporaryAllocation(of: Bool.self, capacity: count) { maskedBuffer in
            guard let fullyMasked = maskedBuffer.baseAddress else { return }
            for r in 0..<count {
                let i = i0 + r
                fullyMasked[r] = !row.keepsAnyKey(i, tile: BackwardTile.keys)
                b.delta[r] = delta(row, i)
                let band = row.band(i)
                if !fullyMasked[r] {
                    lo = min(lo, max(band.lowerBound, keys.lowerBound)); hi = max(hi, min(band.upperBound, keys.upperBound))
                }
                let o = b.outputGradients + r * plan.valuePadded
                o.update(from: outputGradientRow(g, n, i), count: dv)
                (o + dv).update(repeating: 0, count: plan.valuePadded - dv)
                if plan.packs {
                    let q = b.queries + r * plan.keyPadded
                    let query = row.queryRow(i), scale = job.score.dotScale
                    for e in 0..<d { q[e] = scale * query[e] }
                    (q + d).update(repeating: 0, count: plan.keyPadded - d)
                }
            }
            var j0 = lo
            while j0 < hi {
                let width = min(BackwardTile.keys, hi - j0)
                keyBlock(row, rows, j0, width, keys.lowerBound, fullyMasked, b)
                j0 += width
            }
            for r in 0..<count where fullyMasked[r] {
                fullyMaskedRow(row, i0 + r, keys, b.delta[r], dq + r * plan.keyPadded, b)
            }
        }
        let target = plan.chunks == 1 ? grads.query : partials + chunk * shape.groups * partialLayout.group
        let layout = plan.chunks == 1 ? grads.queryLayout : partialLayout
        for r in 0..<count {
            (target + layout.offset(g, n, i0 + r)).update(from: dq + r * plan.keyPadded, count: d)
        }
    }

    /// One block: rows × keys j0 ..< j0 + width (chunk starting at `first`).
    func keyBlock(_ row: Row<T>, _ rows: Range<Int>, _ j0: Int, _ width: Int, _ first: Int,
                  _ fullyMasked: UnsafeMutablePointer<Bool>, _ b: Buffers) {
        let (g, h, d, dv) = (row.g, row.kvHead, shape.keyDim, shape.valueDim)
        let count = rows.count, i0 = rows.lowerBound, ld = plan.tileWidth
        if row.bandsMiss(rows, j0..<j0 + width) { return }
        let t0 = j0 - first
        // On a band's edge (a causal diagonal, a window's end) the products skip what the
        // band masks: a micro-block of rows takes only the keys its rows' bands reach, one of
        // keys only the rows whose bands reach it.
        let inside = row.bandsCover(rows, j0..<j0 + width)
        func keysOf(_ r0: Int, _ micro: Int) -> Range<Int> {  // of rows r0 ..< r0 + micro, block-relative
            let lo = min(max(row.band(i0 + r0).lowerBound - j0, 0), width)
            return lo..<max(lo, min(row.band(i0 + r0 + micro - 1).upperBound - j0, width))
        }
        // Of keys t ..< t + micro: bands move forward with the row, so the rows whose band
        // ends past the keys' start, less those whose band starts past their end, hold every
        // row that reaches them (two binary searches).
        func rowsOf(_ t: Int, _ micro: Int) -> Range<Int> {
            func first(_ predicate: (Range<Int>) -> Bool) -> Int {  // of rows 0 ..< count, predicate false then true
                var (lo, hi) = (0, count)
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if predicate(row.band(i0 + mid)) { hi = mid } else { lo = mid + 1 }
                }
                return lo
            }
            let lo = first { $0.upperBound > j0 + t }
            return lo..<max(lo, first { $0.lowerBound >= j0 + t + micro })
        }
        typealias Span = (Int, Int) -> (columns: Range<Int>, depth: Range<Int>)
        let all = 0..<Int.max
        let rowTerms: Span? = inside ? nil : { (all, keysOf($0, $1)) }
        let keyTerms: Span? = inside ? nil : { (all, rowsOf($0, $1)) }
        // P and dS a micro-block of rows at a time, while its tiles' rows are in L1; in
        // registers when nothing but the scores touches them. A plain micro-block whose bands
        // miss the block is left as it is: the products' spans never reach its rows.
        var r0 = 0
        while r0 < count {
            let micro = min(FlashTile.microRows, count - r0)
            if plainBlocks && !(r0..<r0 + micro).contains(where: { fullyMasked[$0] }) {
                let keys = inside ? 0..<width : keysOf(r0, micro)
                if !keys.isEmpty {
                    plainScoreGradients(row, i0 + r0, micro, j0, width, t0, keys: keys, b.offset(rows: r0, plan))
                }
            } else {
                let columns: Span? = inside ? nil : { [r0] in (keysOf(r0 + $0, $1), all) }
                scoreGradients(row, i0 + r0, micro, j0, width, t0, fullyMasked + r0, columns, b.offset(rows: r0, plan))
            }
            r0 += micro
        }
        // dV += (P·κ)ᵀ·dO: with dropout P·κ is in `raw`.
        let weights = job.dropout == nil ? b.logits : b.raw
        multiply(m: width, n: dv, depth: count, a: { UnsafePointer(weights + $0) }, aStep: ld,
                 b: UnsafePointer(b.outputGradients), bStep: plan.valuePadded,
                 c: { valueGradientRow(g, h, j0 + $0) }, span: keyTerms)
        if case .dot = job.score {  // (the packed K and Q hold scale·k, scale·q)
            multiply(m: count, n: d, depth: width, a: { UnsafePointer(b.dS + $0 * ld) }, aStep: 1,
                     b: UnsafePointer(b.keys + t0 * plan.keyPadded), bStep: plan.keyPadded,
                     c: { b.queryGradients + $0 * plan.keyPadded }, span: rowTerms)
            multiply(m: width, n: d, depth: count, a: { UnsafePointer(b.dS + $0) }, aStep: ld,
                     b: UnsafePointer(b.queries), bStep: plan.keyPadded, c: { keyGradientRow(g, h, j0 + $0) },
                     span: keyTerms)
        } else {
            for r in 0..<count {
                let ds = b.dS + r * ld
                for t in 0..<width where ds[t] != 0 {
                    pairGradient(row, i0 + r, j0 + t, ds[t], query: b.queryGradients + r * plan.keyPadded, b)
                }
            }
        }
        if grads.bias != nil {
            for r in 0..<count { addBiasGradient(row, i0 + r, j0, width, b.dS + r * ld, b) }
        }
    }

    /// `scoreGradients` for dot scores that only a band masks (no mask views, bias, dropout,
    /// returned scores, scale gradient, or fully masked row): on the vectors of keys around
    /// `keys` (block-relative; the rows' bands are within them) the logits less lse
    /// leave the register tile into `logits`, the band's masked keys are set to −∞, they are
    /// exponentiated, and dS = P·(dP − D) leaves the tile of dP; P and dS are 0 on the other
    /// vectors, which no e^x is spent on. (They are read: dV's and dK's products take keys in
    /// groups of a micro-block's rows, which a row's vectors need not cover when the rows
    /// are 6 — the avx2 kernels.)
    private func plainScoreGradients(_ row: Row<T>, _ i0: Int, _ micro: Int, _ j0: Int, _ width: Int, _ t0: Int,
                                     keys: Range<Int>, _ b: Buffers) {
        let lanes = T.Vector.scalarCount, strip = 2 * lanes, ld = plan.tileWidth
        let scale = T.Vector(repeating: job.score.dotScale)
        let lse = self.lse + (row.g * shape.heads + row.n) * shape.queryLength + i0
        func query(_ r: Int) -> UnsafePointer<T> { row.queryRow(i0 + min(r, micro - 1)) }
        func outputGradient(_ r: Int) -> UnsafePointer<T> {
            UnsafePointer(b.outputGradients + min(r, micro - 1) * plan.valuePadded)
        }
        // The vectors of keys around `keys`, two at a time (the last one alone when odd).
        let computed = keys.lowerBound / lanes * lanes ..< min(ld, (keys.upperBound + lanes - 1) / lanes * lanes)
        func both(_ c: Int) -> Bool { computed.upperBound - c > lanes }
        for c in stride(from: computed.lowerBound, to: computed.upperBound, by: strip) {
            var s = RegisterTile<T>()
            s.accumulate(query, aStep: 1, UnsafePointer(b.keysTransposed + t0 + c), bStep: plan.chunkPadded,
                         depth: shape.keyDim, columns: computed.upperBound - c)
            for r in 0..<FlashTile.microRows where r < micro {
                let (x0, x1) = s.row(r), shift = T.Vector(repeating: -lse[r]), x = b.logits + r * ld + c
                x.store(shift.plusProduct(x0, scale), at: 0)
                if both(c) { x.store(shift.plusProduct(x1, scale), at: lanes) }
            }
        }
        let (c0, c1) = (computed.lowerBound, computed.upperBound)
        func zeroAroundComputed(_ tileRow: UnsafeMutablePointer<T>) {
            tileRow.update(repeating: 0, count: c0)
            (tileRow + c1).update(repeating: 0, count: ld - c1)
        }
        for r in 0..<micro {  // P = e^(x − lse) on `computed` (masked keys at −∞ first); P and dS 0 around it
            let x = b.logits + r * ld
            row.exclude(row.keptKeys(i0 + r, j0 + c0, min(width, c1) - c0), 0, x + c0, width: computed.count)
            if computed.count < ld { _ = T.exponentiate(x + c0, vectors: computed.count / lanes, minus: 0) }
            zeroAroundComputed(x)
            zeroAroundComputed(b.dS + r * ld)
        }
        if computed.count == ld { _ = T.exponentiate(b.logits, vectors: micro * ld / lanes, minus: 0) }  // rows are contiguous
        for c in stride(from: computed.lowerBound, to: computed.upperBound, by: strip) {
            var dp = RegisterTile<T>()
            dp.accumulate(outputGradient, aStep: 1, UnsafePointer(b.valuesTransposed + t0 + c), bStep: plan.chunkPadded,
                          depth: shape.valueDim, columns: computed.upperBound - c)
            for r in 0..<FlashTile.microRows where r < micro {
                let (y0, y1) = dp.row(r), delta = T.Vector(repeating: b.delta[r])
                let p = UnsafePointer(b.logits + r * ld + c), ds = b.dS + r * ld + c
                ds.store(p.vector(at: 0) * (y0 - delta), at: 0)
                if both(c) { ds.store(p.vector(at: lanes) * (y1 - delta), at: lanes) }
            }
        }
    }

    /// For rows i0 ..< i0 + micro and keys j0 ..< j0 + width (t0 into the packed chunk), in
    /// the tiles of `b` (offset to these rows): P in `logits` (0 where masked and on fully
    /// masked rows), dS = P·(dP − D) in `dS`, P·κ in `raw` with dropout; with the scale's
    /// gradient wanted, Σ dS·(q·k) into the slot's sums. `columns` bounds the products.
    private func scoreGradients(_ row: Row<T>, _ i0: Int, _ micro: Int, _ j0: Int, _ width: Int, _ t0: Int,
                                _ fullyMasked: UnsafeMutablePointer<Bool>,
                                _ columns: ((Int, Int) -> (columns: Range<Int>, depth: Range<Int>))?, _ b: Buffers) {
        let (g, n, d, dv) = (row.g, row.n, shape.keyDim, shape.valueDim)
        let ld = plan.tileWidth, rows = i0..<i0 + micro
        let wantsRaw = plan.packs && grads.scoreWeights != nil
        // Logits; for the scale's gradient, Q·Kᵀ unscaled in dS until dS is made.
        if case .dot(let scale) = job.score {
            let target = wantsRaw ? b.dS : b.logits
            multiply(m: micro, n: width, depth: d, a: { row.queryRow(i0 + $0) }, aStep: 1,
                     b: UnsafePointer(b.keysTransposed + t0), bStep: plan.chunkPadded, c: { target + $0 * ld },
                     .overwriting(scale: wantsRaw ? 1 : scale), span: columns)
            for r in 0..<micro {
                let x = b.logits + r * ld, raw = b.dS + r * ld
                if wantsRaw { for t in 0..<width { x[t] = raw[t] * scale } }
                row.addBias(i0 + r, j0, width, to: x)
            }
        } else {
            row.tanhLogits(rows, j0, width) { b.logits + ($0 - i0) * ld }
            for r in 0..<micro { row.addBias(i0 + r, j0, width, to: b.logits + r * ld) }
        }
        // P, with masked positions (at −∞ first) and fully masked rows at 0.
        for r in 0..<micro {
            let i = i0 + r, x = b.logits + r * ld
            let kept = fullyMasked[r] ? .none : row.keptKeys(i, j0, width)
            if case .none = kept {
                x.update(repeating: 0, count: ld)
                continue
            }
            row.exclude(kept, width, x, width: ld)
            _ = T.exponentiate(x, vectors: ld / T.Vector.scalarCount,
                               minus: lse[(g * shape.heads + n) * shape.queryLength + i])
        }
        // dP = dO·Vᵀ, then dropout and the scores' gradient; dS.
        multiply(m: micro, n: width, depth: dv, a: { UnsafePointer(b.outputGradients + $0 * plan.valuePadded) },
                 aStep: 1, b: UnsafePointer(b.valuesTransposed + t0), bStep: plan.chunkPadded,
                 c: { b.dP + $0 * ld }, .overwriting(scale: 1), span: columns)
        let scale = row.dropoutScale, afterDropout = job.dropout?.scoresAfterDropout ?? false
        for r in 0..<micro {
            let i = i0 + r, p = b.logits + r * ld, dp = b.dP + r * ld, ds = b.dS + r * ld
            if job.dropout != nil {
                let pk = b.raw + r * ld
                for t in 0..<width {
                    let keep = row.keep(i, j0 + t) * scale
                    pk[t] = p[t] * keep
                    dp[t] *= keep
                }
                (pk + width).update(repeating: 0, count: ld - width)
            }
            if let (gradient, _) = grads.scores {
                let base = gradient + job.flatIndex(g, n, i, j0)
                for t in 0..<width { dp[t] += base[t] * (afterDropout ? row.keep(i, j0 + t) * scale : 1) }
            }
            let delta = b.delta[r]
            if wantsRaw {
                var sum = T.zero
                for t in 0..<width {
                    let dst = p[t] * (dp[t] - delta)
                    sum += dst * ds[t]
                    ds[t] = dst
                }
                b.parameters[0] += sum
            } else {
                for t in 0..<width { ds[t] = p[t] * (dp[t] - delta) }
            }
        }
    }

    /// dS_ij's share of dq_i (into `query`), dk_j, and the score weights, through ∂x_ij —
    /// for pairs outside the block products: non-dot scores, and fully masked rows.
    func pairGradient(_ row: Row<T>, _ i: Int, _ j: Int, _ ds: T, query dq: UnsafeMutablePointer<T>, _ b: Buffers) {
        let q = row.queryRow(i), k = row.keyRow(j), dk = keyGradientRow(row.g, row.kvHead, j)
        let dim = shape.keyDim, lanes = T.Vector.scalarCount
        switch job.score {
        case .dot(let scale):
            axpy(ds * scale, k, dq, dim)
            axpy(ds * scale, q, dk, dim)
            if grads.scoreWeights != nil { b.parameters[0] += ds * dot(q, k, dim) }
        case .concat(let scale, let weight, _):
            // x = w·Σ tanh(c·(q + k)): ∂q = ∂k = w·c·(1 − t²), ∂c = w·Σ(1 − t²)(q + k), ∂w = Σ t.
            var dScale = T.Vector(), dWeight = T.Vector()
            let c = T.Vector(repeating: scale), factor = T.Vector(repeating: ds * weight * scale)
            let one = T.Vector(repeating: 1)
            var e = 0
            while e + lanes <= dim {
                let s = q.vector(at: e) + k.vector(at: e), t = T.tanh(c * s), slope = one - t * t
                dq.store(UnsafePointer(dq).vector(at: e).plusProduct(factor, slope), at: e)
                dk.store(UnsafePointer(dk).vector(at: e).plusProduct(factor, slope), at: e)
                dScale = dScale.plusProduct(slope, s)
                dWeight += t
                e += lanes
            }
            var sScale = T.sum(dScale), sWeight = T.sum(dWeight)
            while e < dim {
                let s = q[e] + k[e], t = T.tanh(scale * s), slope = 1 - t * t
                dq[e] += ds * weight * scale * slope
                dk[e] += ds * weight * scale * slope
                sScale += slope * s
                sWeight += t
                e += 1
            }
            if grads.scoreWeights != nil {
                b.parameters[0] += ds * weight * sScale
                b.parameters[1] += ds * sWeight
            }
        case .additive(let scales, _):
            // x = Σ s_d·tanh(q_d + k_d): ∂q_d = ∂k_d = s_d·(1 − t²), ∂s_d = t.
            let dsv = T.Vector(repeating: ds), one = T.Vector(repeating: 1)
            var e = 0
            while e + lanes <= dim {
                let t = T.tanh(q.vector(at: e) + k.vector(at: e))
                let slope = (one - t * t) * (scales.map { $0.vector(at: e) } ?? one) * dsv
                dq.store(UnsafePointer(dq).vector(at: e) + slope, at: e)
                dk.store(UnsafePointer(dk).vector(at: e) + slope, at: e)
                if scales != nil {
                    b.parameters.store(UnsafePointer(b.parameters).vector(at: e).plusProduct(dsv, t), at: e)
                }
                e += lanes
            }
            while e < dim {
                let t = T.tanh(q[e] + k[e]), slope = (1 - t * t) * (scales?[e] ?? 1) * ds
                dq[e] += slope
                dk[e] += slope
                if scales != nil { b.parameters[e] += ds * t }
                e += 1
            }
        }
    }

    /// The relative-position table's gradient: dS of logits (i, j0 + t) into its entries.
    func addBiasGradient(_ row: Row<T>, _ i: Int, _ j0: Int, _ width: Int, _ ds: UnsafePointer<T>, _ b: Buffers) {
        guard case .relativePosition(_, let headStride, let p) = job.bias else { return }
        let table = b.parameters + plan.parameters + row.n * headStride
        for t in 0..<width where ds[t] != 0 {
            table[min(max(j0 + t - i + p - 1, 0), 2 * p - 2)] += ds[t]
        }
    }

    /// A row with no kept key, over the chunk's keys, by the mask's policy
    /// (`FullyMaskedWeights`): zero weights give nothing; uniform ones (constant, so no logit
    /// gradient) only dV; softmax(x − 1e9) the full gradient, every key included.
    func fullyMaskedRow(_ row: Row<T>, _ i: Int, _ keys: Range<Int>, _ delta: T, _ dq: UnsafeMutablePointer<T>, _ b: Buffers) {
        let (g, n, h, dv) = (row.g, row.n, row.kvHead, shape.valueDim)
        let weights = FullyMaskedWeights(row, i)
        guard weights.policy != .zero else { return }
        let dO = outputGradientRow(g, n, i), scale = row.dropoutScale
        let afterDropout = job.dropout?.scoresAfterDropout ?? false
        row.forEachLogitTile(i, over: keys, computing: weights.readsLogits) { j0, count in
            for t in 0..<count {
                let j = j0 + t
                let p = weights.weight(row.logits[t]), keep = row.keep(i, j) * scale
                axpy(p * keep, dO, valueGradientRow(g, h, j), dv)
                guard weights.hasLogitGradient else { continue }
                var dp = dot(dO, row.valueRow(j), dv) * keep
                if let (gradient, _) = grads.scores {
                    dp += gradient[job.flatIndex(g, n, i, j)] * (afterDropout ? keep : 1)
                }
                let ds = p * (dp - delta)
                if ds != 0 {
                    pairGradient(row, i, j, ds, query: dq, b)
                    if grads.bias != nil { addBiasGradient(row, i, j, 1, [ds], b) }
                }
            }
        }
    }

    /// Sums the slots' weight gradients into the caller's accumulators, and the chunks' dQ
    /// partials into dQ, in order.
    func reduce() {
        for s in 0..<plan.slots {
            let p = slotSums(s)
            if let weights = grads.scoreWeights {
                for e in 0..<plan.parameters { weights[e] += p[e] }
            }
            if let bias = grads.bias {
                for e in 0..<plan.biasEntries { bias[e] += p[plan.parameters + e] }
            }
        }
        guard plan.chunks > 1 else { return }
        let d = shape.keyDim, layout = partialLayout, stride = shape.groups * layout.group
        for g in 0..<shape.groups {
            for n in 0..<shape.heads {
                for i in 0..<shape.queryLength {
                    let out = grads.query + grads.queryLayout.offset(g, n, i), offset = layout.offset(g, n, i)
                    out.update(from: partials + offset, count: d)
                    for c in 1..<plan.chunks { axpy(1, partials + c * stride + offset, out, d) }
                }
            }
        }
    }
}
