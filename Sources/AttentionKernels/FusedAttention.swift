/// Scaled dot-product (and additive/concat) attention, fused: for each query row, the logits
/// of a tile of keys, the mask, an online softmax and the weighted sum of values, in one pass
/// over the keys. Working memory is a few tiles per worker, never T × S, unless the caller
/// asks for the scores: then each row's weights are written straight into the caller's buffer.
///
/// The kernel core, one concept per file: `OnlineSoftmax` (the recurrence), `MaskPolicy`
/// (kept keys, the tile-skip test, fully masked rows), `AttentionJob.keep` (the dropout
/// index); built on them, the paths: `FlashBlock` (blocks of rows, scores not returned),
/// `DecodeAttention` (a few rows against many keys, split by keys), `StreamingRows` (row
/// by row, and materialized scores) and `AttentionBackward`.

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
    parallelForParts(job.workItems) { job.run($0) }
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
    /// Keys per flash tile: wide tiles for dot scores without masks or bias (`FlashTile`).
    let flashKeys: Int
    /// Row stride of a packed Kᵀ tile (`Row.packTransposedKeys`): a vector more than its
    /// keys, so that its rows fall in different cache sets (at a power-of-two stride the 64
    /// rows of a 64-wide head shared 4 of L1's 64 sets, and packing wrote each line twice
    /// through L2).
    var packedStride: Int { flashKeys + T.Vector.scalarCount }

    init(shape: AttentionShape, operands: AttentionOperands<T>, score: ScoreFunction<T>,
         mask: AttentionMask, bias: LogitBias<T>?, dropout: AttentionDropout?,
         scores: UnsafeMutablePointer<T>?, placement: ScoresPlacement, logSumExp: UnsafeMutablePointer<T>? = nil) {
        self.shape = shape; self.operands = operands; self.score = score; self.mask = mask
        self.bias = bias; self.dropout = dropout; self.scores = scores; self.placement = placement
        self.logSumExp = logSumExp
        queryBlocks = (shape.queryLength + AttentionTile.queryRows - 1) / AttentionTile.queryRows
        headsPerKeyValueHead = max(1, shape.heads / max(1, shape.keyValueHeads))
        var dot = false
        if case .dot = score { dot = true }
        flashKeys = FlashTile.keys(T.self, wide: dot && mask.isEmpty && bias == nil)
    }

    var workItems: Int { shape.groups * shape.heads * queryBlocks }

    /// The flat index of score (g, n, i, j) in the scores tensor, as dropout counts it.
    @inline(__always)
    func flatIndex(_ g: Int, _ n: Int, _ i: Int, _ j: Int) -> Int {
        ((g * placement.heads + placement.firstHead + n) * shape.queryLength + i) * shape.keyLength + j
    }

    /// The dropout multiplier of score (g, n, i, j): 0 if dropped, else 1 (every path's).
    @inline(__always)
    func keep(_ g: Int, _ n: Int, _ i: Int, _ j: Int) -> T {
        guard let dropout else { return 1 }
        return dropout.mask.keeps(flatIndex(g, n, i, j)) ? 1 : 0
    }

    /// Runs work items `items` (a worker's contiguous share) in one scratch allocation: a
    /// tile of logits, valueDim accumulators, mask flags and, for the flash block, its tiles
    /// and the packed key tiles it keeps from one query block to the next.
    func run(_ items: Range<Int>) {
        let tile = AttentionTile.keys
        let width = flashKeys
        let keyTiles = PackedKeyTiles<T>.slots(self), packedCount = keyTiles * shape.keyDim * packedStride
        let flashScratch = FlashTile.microRows * width + AttentionTile.queryRows * shape.valueDim + packedCount
        let flashes = scores == nil && flashScratch <= AttentionTile.maxPackedScratch
        let count = tile + shape.valueDim + (flashes ? flashScratch : 0)
        withScratch(of: T.self, count) { logits in
            withScratch(of: Bool.self, max(tile, width)) { kept in  // a streaming tile's or a flash tile's flags
                withScratch(of: Int.self, flashes ? 4 * keyTiles : 0) { tags in
                    // Scratch: logits, accumulators, then the flash block's tiles, its packed keys last.
                    let packed = flashes ? PackedKeyTiles(base: logits + count - packedCount, slots: keyTiles,
                                                          tileElements: shape.keyDim * packedStride, tags: tags) : nil
                    func work(_ item: Int) -> (Row<T>, Range<Int>) {
                        let block = item % queryBlocks
                        let n = (item / queryBlocks) % shape.heads
                        let g = item / (queryBlocks * shape.heads)
                        let rows = (block * AttentionTile.queryRows)..<min((block + 1) * AttentionTile.queryRows,
                                                                           shape.queryLength)
                        return (Row(job: self, g: g, n: n, logits: logits, acc: logits + tile, kept: kept), rows)
                    }
                    for item in items {
                        let (row, rows) = work(item)
                        if let packed, rows.count >= FlashTile.microRows / 2 {
                            var ahead = ItemPrefetch()
                            if item + 1 < items.upperBound {
                                let (next, nextRows) = work(item + 1)
                                var keys = next.keySpan(nextRows)
                                if next.g == row.g && next.kvHead == row.kvHead {  // only the keys this block leaves
                                    keys = min(max(keys.lowerBound, row.keySpan(rows).upperBound), keys.upperBound)
                                        ..< keys.upperBound
                                }
                                next.prefetch(keys: keys, into: &ahead)
                                next.prefetch(rows: nextRows, into: &ahead)
                            }
                            row.flashBlock(rows, scratch: logits + tile + shape.valueDim, keys: packed, prefetching: &ahead)
                            continue
                        }
                        for i in rows {
                            if let scores {
                                row.materialized(i, scores + flatIndex(row.g, row.n, i, 0))
                            } else {
                                row.streaming(i)
                            }
                        }
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

    /// The dropout multiplier of score (i, j): 0 if dropped, else 1.
    @inline(__always)
    func keep(_ i: Int, _ j: Int) -> T { job.keep(g, n, i, j) }

    /// 1 / (1 − rate), or 1 without dropout.
    var dropoutScale: T {
        guard let dropout = job.dropout else { return 1 }
        return 1 / T(1 - dropout.mask.rate)
    }

    /// Records row i's log-sum-exp, when the caller asked for them.
    @inline(__always)
    func recordLogSumExp(_ i: Int, _ softmax: OnlineSoftmax<T>) {
        guard let lse = job.logSumExp else { return }
        lse[(g * shape.heads + n) * shape.queryLength + i] = softmax.logSumExp
    }

    func clearAccumulator() {
        for d in 0..<shape.valueDim { acc[d] = 0 }
    }

    /// Writes acc · factor to the output row i.
    func writeOutput(_ i: Int, _ factor: T) {
        let out = outputRow(i)
        for d in 0..<shape.valueDim { out[d] = acc[d] * factor }
    }

    /// Calls body(j0, count) with `logits` holding keys j0 ..< j0 + count (unless
    /// `computing` is false), over `keys` (all keys by default).
    func forEachLogitTile(_ i: Int, over keys: Range<Int>? = nil, computing: Bool = true, _ body: (Int, Int) -> Void) {
        let keys = keys ?? 0..<shape.keyLength
        var j0 = keys.lowerBound
        while j0 < keys.upperBound {
            let count = min(AttentionTile.keys, keys.upperBound - j0)
            if computing { computeLogits(i, j0, count, into: logits) }
            body(j0, count)
            j0 += count
        }
    }
}
