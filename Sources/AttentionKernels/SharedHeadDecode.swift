/// A decoder's step over its key/value cache: a few query rows per group (the new tokens of
/// a sequence) against a long key axis, the query heads that share a key/value head taken
/// together, so each key and value row is read from memory once per step and reused from L1
/// by every query row that attends to it.
///
/// Work items are (group, chunk of `chunkKeys` keys); an item walks its chunk in tiles of 2
/// SIMD vectors of keys, the key/value heads in turn within a tile, and keeps for each row
/// (query head × query row) the online-softmax state (max m, sum l, unnormalised
/// output o) of the FlashAttention recurrence:
///     logits of the tile (dot products, masked keys −∞),  m' = max(m, tile max),
///     l' = l·e^(m − m') + Σ e^(x − m'),  o' = o·e^(m − m') + Σ e^(x − m')·v   (e^x on vectors).
/// The chunks' states are then merged in chunk order,
///     M = max_c m_c,  L = Σ_c l_c·e^(m_c − M),  output = Σ_c o_c·e^(m_c − M) / L,
/// so the result depends on the chunking (fixed) and never on the thread count.
///
/// Masks: the causal band and sliding window with per-group positions (`AttentionMask`), and
/// mask views. Tiles outside every row's band are not read, so a causal step over a cache
/// reads only the filled part of it. Dot-product scores only; no dropout, no bias, no scores
/// returned (`attentionForward` does those). A row whose every key is masked is 0, or with
/// `FullyMaskedRow.uniform` the mean of all values of its key/value head.
public enum SharedHeadDecode {
    /// Keys per work item.
    public static let chunkKeys = 256
    /// The most rows (query heads × query rows of a group) a work item carries.
    public static let maxRows = 1024
    /// The largest state buffer (elements) the path takes.
    public static let maxStateElements = 1 << 24
}

/// Whether `sharedHeadDecodeForward` applies to a problem, and the state it needs.
public struct SharedHeadDecodePlan: Sendable {
    /// Key chunks per group.
    public let chunks: Int
    /// Elements of the state buffer the call needs.
    public let stateCount: Int

    /// nil when the path does not apply: more than `maxRows` rows per group, a
    /// fully masked row policy other than zero or uniform, or a state past `maxStateElements`.
    public init?(shape: AttentionShape, mask: AttentionMask) {
        guard mask.fullyMaskedRow != .subtractLarge, shape.keyValueHeads >= 1, shape.heads >= 1,
              shape.heads % shape.keyValueHeads == 0, shape.groups >= 0, shape.queryLength >= 0,
              shape.keyLength >= 0, shape.valueDim >= 0 else { return nil }
        let (rows, o1) = shape.heads.multipliedReportingOverflow(by: shape.queryLength)
        guard !o1, rows <= SharedHeadDecode.maxRows else { return nil }
        chunks = (shape.keyLength + SharedHeadDecode.chunkKeys - 1) / SharedHeadDecode.chunkKeys
        var count = shape.valueDim + 2
        for factor in [shape.groups, chunks, shape.heads, shape.queryLength] {
            let (c, overflow) = count.multipliedReportingOverflow(by: factor)
            guard !overflow else { return nil }
            count = c
        }
        guard count <= SharedHeadDecode.maxStateElements else { return nil }
        stateCount = count
    }
}

/// Attention for every (group, head, query row) of `shape` by the shared-head decode path;
/// `state` holds plan.stateCount elements. Any size may be 0 (no keys: every output row 0).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func sharedHeadDecodeForward<T: KernelScalar>(_ plan: SharedHeadDecodePlan, shape: AttentionShape,
                                                    operands: AttentionOperands<T>, scale: T, mask: AttentionMask,
                                                    state: UnsafeMutablePointer<T>) {
    if shape.keyLength == 0 {
        zeroQueryRows(shape, operands.output, operands.outputLayout, width: shape.valueDim)
        return
    }
    let job = SharedHeadDecodeJob(shape: shape, operands: operands, scale: scale, mask: mask, state: state,
                                  chunks: plan.chunks)
    parallelFor(shape.groups * plan.chunks) { job.chunk($0) }
    parallelFor(shape.groups * shape.heads * shape.queryLength) { job.merge($0) }
}

private struct SharedHeadDecodeJob<T: KernelScalar>: @unchecked Sendable {
    let shape: AttentionShape
    let operands: AttentionOperands<T>
    let scale: T
    let mask: AttentionMask
    let state: UnsafeMutablePointer<T>
    let chunks: Int
    /// Whether any mask view applies (read once: the views array is not touched per key).
    let hasViews: Bool

    init(shape: AttentionShape, operands: AttentionOperands<T>, scale: T, mask: AttentionMask,
         state: UnsafeMutablePointer<T>, chunks: Int) {
        self.shape = shape; self.operands = operands; self.scale = scale; self.mask = mask
        self.state = state; self.chunks = chunks
        hasViews = !mask.views.isEmpty
    }

    var sharing: Int { shape.heads / shape.keyValueHeads }
    var stride: Int { shape.valueDim + 2 }
    var tile: Int { 2 * T.Vector.scalarCount }

    /// State [o…, m, l] of (group, chunk, head, query row).
    func slot(_ g: Int, _ c: Int, _ n: Int, _ i: Int) -> UnsafeMutablePointer<T> {
        state + (((g * chunks + c) * shape.heads + n) * shape.queryLength + i) * stride
    }

    /// The keys row i of group g may see by the causal band and sliding window (as
    /// `Row.band`): row i stands at key position p + i, p = positions?[g] ?? 0.
    func band(_ g: Int, _ i: Int) -> Range<Int> {
        let position = i + (mask.positions?[g] ?? 0)
        var lo = 0, hi = shape.keyLength
        if mask.causal { hi = min(hi, position + 1) }
        if mask.window > 0 {
            lo = max(lo, position - mask.window + 1)
            hi = min(hi, position + min(mask.window, hi))
        }
        return min(lo, hi)..<hi
    }

    /// Work item: one chunk of keys of one group, for every row of the group (all heads).
    /// Each tile of keys is visited in three passes — logits, the softmax update, values —
    /// that walk the tile key by key and, for a key, its heads in turn: K and V are read in
    /// memory order (the prefetcher streams them), and a key/value head's row is read once
    /// for every query row that shares it. The rows' m, l and o live in 64-byte aligned
    /// scratch while the item runs (o vectors are loaded and stored per key), then go to the
    /// item's state slots.
    func chunk(_ item: Int) {
        let g = item / chunks, chunk = item % chunks
        let lanes = T.Vector.scalarCount
        let tq = shape.queryLength, rows = shape.heads * tq, hv = shape.valueDim
        let paddedWidth = (hv + lanes - 1) / lanes * lanes
        let keys = (chunk * SharedHeadDecode.chunkKeys)..<min((chunk + 1) * SharedHeadDecode.chunkKeys, shape.keyLength)
        let first = slot(g, chunk, 0, 0)  // the item's rows are consecutive slots: row r = n·tq + i
        // The keys any row may see: no key outside them is read.
        var lo = keys.upperBound, hi = keys.lowerBound
        for i in 0..<tq {
            let b = band(g, i)
            lo = min(lo, max(b.lowerBound, keys.lowerBound))
            hi = max(hi, min(b.upperBound, keys.upperBound))
        }
        guard lo < hi else {
            for r in 0..<rows { first[r * stride + hv] = -T.infinity; first[r * stride + hv + 1] = 0 }
            return
        }
        let width = tile, elements = rows * (width + paddedWidth + 2)
        withUnsafeTemporaryAllocation(byteCount: elements * MemoryLayout<T>.stride, alignment: 64) { raw in
            withUnsafeTemporaryAllocation(of: Range<Int>.self, capacity: tq) { bandBuffer in
                withUnsafeTemporaryAllocation(of: Bool.self, capacity: rows) { activeBuffer in
                    guard let base = raw.baseAddress, let bands = bandBuffer.baseAddress,
                          let active = activeBuffer.baseAddress else { return }
                    let logits = base.bindMemory(to: T.self, capacity: elements)
                    let acc = logits + rows * width, maxes = acc + rows * paddedWidth, sums = maxes + rows
                    acc.update(repeating: 0, count: rows * paddedWidth)
                    maxes.update(repeating: -T.infinity, count: rows)
                    sums.update(repeating: 0, count: rows)
                    for i in 0..<tq { (bands + i).initialize(to: band(g, i)) }
                    var j0 = lo
                    while j0 < hi {
                        let count = min(width, hi - j0)
                        tileLogits(g, j0, count, bands, into: logits)
                        var whole = !hasViews  // every row keeps every key of the tile
                        var r = 0
                        for n in 0..<shape.heads {
                            for i in 0..<tq {
                                let b = bands[i]
                                whole = whole && b.lowerBound <= j0 && b.upperBound >= j0 + count
                                active[r] = maskTile(g, n: n, i: i, j0, count, b, logits + r * width)
                                if active[r] {
                                    update(maxes + r, sums + r, acc + r * paddedWidth, logits + r * width, count)
                                }
                                r += 1
                            }
                        }
                        accumulateValues(g, j0, count, logits, into: acc, paddedWidth, bands: whole ? nil : bands,
                                         active: active)
                        j0 += count
                    }
                    for r in 0..<rows {
                        let s = first + r * stride
                        s.update(from: acc + r * paddedWidth, count: hv)
                        s[hv] = maxes[r]; s[hv + 1] = sums[r]
                    }
                }
            }
        }
    }

    /// logits[r · tile + t] = q_r · k[j0 + t] · scale for every row r = n·tq + i whose band
    /// meets the tile (others are left as they are), key by key, heads in turn.
    @inline(__always)
    func tileLogits(_ g: Int, _ j0: Int, _ count: Int, _ bands: UnsafeMutablePointer<Range<Int>>,
                    into logits: UnsafeMutablePointer<T>) {
        let ops = operands, h = shape.keyDim, tq = shape.queryLength, width = tile, scale = scale
        let kv = shape.keyValueHeads, sharing = sharing, keyRow = ops.keyLayout.row, keyHead = ops.keyLayout.head
        let queryHead = ops.queryLayout.head, queryRow = ops.queryLayout.row
        for i in 0..<tq where bands[i].lowerBound < j0 + count && bands[i].upperBound > j0 {
            let query = ops.query + ops.queryLayout.offset(g, 0, i)
            var k = ops.key + ops.keyLayout.offset(g, 0, j0)
            var out = logits + i * width
            for _ in 0..<count {
                var q = query, o = out, kh = k
                for _ in 0..<kv {
                    for _ in 0..<sharing {
                        o[0] = rowDot(q, kh, h) * scale
                        q += queryHead
                        o += tq * width
                    }
                    kh += keyHead
                }
                k += keyRow
                out += 1
            }
            _ = queryRow
        }
    }

    /// Masks row (g, n, i)'s logits of the tile (keys outside its band or refused by a mask
    /// view, and the padding past `count`, become −∞); returns whether any key is kept.
    @inline(__always)
    func maskTile(_ g: Int, n: Int, i: Int, _ j0: Int, _ count: Int, _ b: Range<Int>,
              _ out: UnsafeMutablePointer<T>) -> Bool {
        guard b.lowerBound < j0 + count, b.upperBound > j0 else { return false }
        for t in count..<tile { out[t] = -T.infinity }
        if b.lowerBound <= j0 && b.upperBound >= j0 + count && !hasViews { return true }
        var any = false
        for t in 0..<count {
            var kept = b.contains(j0 + t)
            for view in mask.views where kept {
                kept = view.base[g * view.group + n * view.head + i * view.row + (j0 + t) * view.column] != 0
            }
            if kept { any = true } else { out[t] = -T.infinity }
        }
        return any
    }

    /// Σ_d a[d]·b[d] (as `dot`, kept inline in the tile loop).
    @inline(__always)
    func rowDot(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ n: Int) -> T {
        let lanes = T.Vector.scalarCount
        var s0 = T.Vector(), s1 = T.Vector()
        var d = 0
        while d + 2 * lanes <= n {
            s0 = s0.plusProduct(a.vector(at: d), b.vector(at: d))
            s1 = s1.plusProduct(a.vector(at: d + lanes), b.vector(at: d + lanes))
            d += 2 * lanes
        }
        if d + lanes <= n {
            s0 = s0.plusProduct(a.vector(at: d), b.vector(at: d))
            d += lanes
        }
        var s = T.sum(s0 + s1)
        while d < n { s += a[d] * b[d]; d += 1 }
        return s
    }

    /// The online softmax step of one row over a masked tile: m' = max(m, tile max), l and o
    /// rescaled by e^(m − m'), logits ← e^(x − m') (0 where masked), l += their sum.
    @inline(__always)
    func update(_ m: UnsafeMutablePointer<T>, _ l: UnsafeMutablePointer<T>, _ o: UnsafeMutablePointer<T>,
                _ logits: UnsafeMutablePointer<T>, _ count: Int) {
        var tileMax = -T.infinity
        for t in 0..<count { tileMax = maxPropagatingNaN(tileMax, logits[t]) }
        let newMax = maxPropagatingNaN(m.pointee, tileMax)
        if newMax != m.pointee && l.pointee != 0 {
            let correction = T.exp(m.pointee - newMax)
            l.pointee *= correction
            AttentionKernels.scale(correction, o, shape.valueDim)
        }
        m.pointee = newMax
        l.pointee += T.exponentiate(logits, vectors: tile / T.Vector.scalarCount, minus: newMax)
    }

    /// o_r += Σ_t p_r[t] · v[j0 + t] for the active rows (o_r at acc + r · paddedWidth), key
    /// by key, heads in turn. With `bands`, a row reads only the values of keys in its band
    /// (past it lies, e.g., the unfilled part of a cache, which may hold anything).
    @inline(__always)
    func accumulateValues(_ g: Int, _ j0: Int, _ count: Int, _ logits: UnsafeMutablePointer<T>,
                          into acc: UnsafeMutablePointer<T>, _ paddedWidth: Int,
                          bands: UnsafeMutablePointer<Range<Int>>?, active: UnsafeMutablePointer<Bool>) {
        let ops = operands, tq = shape.queryLength, hv = shape.valueDim, width = tile
        let kv = shape.keyValueHeads, sharing = sharing, valueHead = ops.valueLayout.head
        var row = ops.value + ops.valueLayout.offset(g, 0, j0)
        for t in 0..<count {
            let j = j0 + t
            var v = row, r = 0
            for _ in 0..<kv {
                for _ in 0..<sharing {
                    for i in 0..<tq {
                        if active[r] && (bands == nil || bands.unsafelyUnwrapped[i].contains(j)) {
                            axpy(logits[r * width + t], v, acc + r * paddedWidth, hv)
                        }
                        r += 1
                    }
                }
                v += valueHead
            }
            row += ops.valueLayout.row
        }
    }

    /// Output row (g, n, i) from the chunks' states, in chunk order.
    func merge(_ item: Int) {
        let tq = shape.queryLength, hv = shape.valueDim
        let g = item / (shape.heads * tq), n = (item / tq) % shape.heads, i = item % tq
        var m = -T.infinity
        for c in 0..<chunks where slot(g, c, n, i)[hv + 1] != 0 { m = maxPropagatingNaN(m, slot(g, c, n, i)[hv]) }
        let out = operands.output + operands.outputLayout.offset(g, n, i)
        out.update(repeating: 0, count: hv)
        var l = T.zero
        for c in 0..<chunks {
            let s = slot(g, c, n, i)
            guard s[hv + 1] != 0 else { continue }
            let w = T.exp(s[hv] - m)
            l += s[hv + 1] * w
            axpy(w, s, out, hv)
        }
        if l == 0 && !m.isNaN {
            // No key kept: 0, or (uniform) the mean of every value of the key/value head.
            guard case .uniform = mask.fullyMaskedRow else { return }
            let ops = operands, kvHead = n / sharing
            for j in 0..<shape.keyLength { axpy(1, ops.value + ops.valueLayout.offset(g, kvHead, j), out, hv) }
            AttentionKernels.scale(1 / T(shape.keyLength), out, hv)
        } else {
            AttentionKernels.scale(1 / l, out, hv)
        }
    }
}
