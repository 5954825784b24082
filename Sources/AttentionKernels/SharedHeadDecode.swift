/// A decoder's step over its key/value cache: a few query rows per group (the new tokens of
/// a sequence) against a long key axis, the query heads that share a key/value head taken
/// together, so each key and value row is read from memory once per step (in memory order)
/// and reused from registers or L1 by every query row that attends to it.
///
/// Work items are (group, chunk of `chunkKeys` keys). An item walks the keys of its chunk that
/// any of its rows may see, in tiles of 2 SIMD vectors of keys, and keeps for each row
/// (query head × query row) the online-softmax state (max m, sum l, unnormalised output o)
/// of the FlashAttention recurrence, in three passes per tile:
///     logits: four keys at a time, every row in turn (dot products; masked keys −∞);
///     softmax: m' = max(m, tile max) (lazily, as FlashBlock: only when the tile's weights
///              would pass e^20), l' = l·e^(m − m') + Σ e^(x − m'), e^x on vectors;
///     values: o' = o·e^(m − m') + Σ e^(x − m')·v, four keys × two vectors of values in
///             registers for every row sharing the key/value head.
/// The chunks' states are then merged in chunk order,
///     M = max_c m_c,  L = Σ_c l_c·e^(m_c − M),  output = Σ_c o_c·e^(m_c − M) / L,
/// so the result depends on the chunking (fixed) and never on the thread count.
///
/// Masks: the causal band and sliding window with per-group positions (`AttentionMask`), and
/// mask views. Keys outside every row's band are not read at all, so a causal step over a
/// cache reads only its filled part (the keys up to the group's last query position). Keys
/// inside the band of some row but masked for another get weight 0 there (their values are
/// multiplied by 0: they must be finite, as the filled part of a cache is). Dot-product scores
/// only; no dropout, no bias, no scores returned (`attentionForward` does those). A row whose
/// every key is masked is 0, or with `FullyMaskedRow.uniform` the mean of all values of its
/// key/value head.
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

    /// The keys row i of group g may see by the causal band and sliding window
    /// (`AttentionMask.band`: row i stands at key position p + i, p = positions?[g] ?? 0).
    func band(_ g: Int, _ i: Int) -> Range<Int> { mask.band(g, i, keyLength: shape.keyLength) }

    /// Work item: one chunk of keys of one group, for every row of the group (all heads):
    /// each tile of keys in three passes (logits, softmax, values; see the top of the file),
    /// only over the keys some row's band reaches. The rows' m, l and o live in 64-byte
    /// aligned scratch while the item runs, then go to the item's state slots.
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
                        var r = 0
                        for n in 0..<shape.heads {
                            for i in 0..<tq {
                                let b = bands[i]
                                active[r] = maskTile(g, n: n, i: i, j0, count, b, logits + r * width)
                                if active[r] {
                                    update(maxes + r, sums + r, acc + r * paddedWidth, logits + r * width, count)
                                }
                                r += 1
                            }
                        }
                        accumulateValues(g, j0, count, logits, into: acc, paddedWidth, active: active)
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
    /// meets the tile (others are left as they are): four keys at a time, and for them every
    /// row in turn (K read in memory order, each query vector loaded once for the four keys, a
    /// key/value head's keys from L1 for the query rows after its first).
    @inline(__always)
    func tileLogits(_ g: Int, _ j0: Int, _ count: Int, _ bands: UnsafeMutablePointer<Range<Int>>,
                    into logits: UnsafeMutablePointer<T>) {
        let ops = operands, h = shape.keyDim, tq = shape.queryLength, width = tile, scale = scale
        let keyRow = ops.keyLayout.row, keyHead = ops.keyLayout.head, sharing = sharing
        let base = ops.key + ops.keyLayout.offset(g, 0, j0)
        var t = 0
        while t < count {
            let block = min(4, count - t)
            var r = 0
            for n in 0..<shape.heads {
                let k = base + t * keyRow + (n / sharing) * keyHead
                for i in 0..<tq {
                    defer { r += 1 }
                    guard bands[i].lowerBound < j0 + count && bands[i].upperBound > j0 else { continue }
                    let q = ops.query + ops.queryLayout.offset(g, n, i)
                    let out = logits + r * width + t
                    if block == 4 {
                        let (d0, d1, d2, d3) = dots4(q, k, keyRow, h)
                        out[0] = d0 * scale; out[1] = d1 * scale; out[2] = d2 * scale; out[3] = d3 * scale
                    } else {
                        for u in 0..<block { out[u] = rowDot(q, k + u * keyRow, h) * scale }
                    }
                }
            }
            t += block
        }
    }

    /// q · k_0 … q · k_3 for the four key rows k, k + stride, … (four multiply-add chains).
    @inline(__always)
    func dots4(_ q: UnsafePointer<T>, _ k: UnsafePointer<T>, _ stride: Int, _ n: Int) -> (T, T, T, T) {
        let lanes = T.Vector.scalarCount
        let k1 = k + stride, k2 = k1 + stride, k3 = k2 + stride
        var a0 = T.Vector(), a1 = T.Vector(), a2 = T.Vector(), a3 = T.Vector()
        var d = 0
        while d + lanes <= n {
            let x = q.vector(at: d)
            a0 = a0.plusProduct(x, k.vector(at: d)); a1 = a1.plusProduct(x, k1.vector(at: d))
            a2 = a2.plusProduct(x, k2.vector(at: d)); a3 = a3.plusProduct(x, k3.vector(at: d))
            d += lanes
        }
        var (s0, s1, s2, s3) = (T.sum(a0), T.sum(a1), T.sum(a2), T.sum(a3))
        while d < n {
            s0 += q[d] * k[d]; s1 += q[d] * k1[d]; s2 += q[d] * k2[d]; s3 += q[d] * k3[d]
            d += 1
        }
        return (s0, s1, s2, s3)
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

    /// The online softmax step of one row over a masked tile (−∞ at masked keys and past
    /// `count`): l and o rescaled when the shift m moves, logits ← e^(x − m), l += their sum.
    /// Lazy rescaling, as in FlashBlock: m stays the shift while the tile's weights stay below
    /// e^20 (exact up to rounding whatever the tile's own max); a NaN logit, which the vector
    /// max may pass over, makes the sum NaN.
    @inline(__always)
    func update(_ m: UnsafeMutablePointer<T>, _ l: UnsafeMutablePointer<T>, _ o: UnsafeMutablePointer<T>,
                _ logits: UnsafeMutablePointer<T>, _ count: Int) {
        let lanes = T.Vector.scalarCount
        let tileMax = T.maximum(UnsafePointer(logits).vector(at: 0), UnsafePointer(logits).vector(at: lanes))
        if !(m.pointee > -T.infinity && tileMax <= m.pointee + 20) {
            let newMax = maxPropagatingNaN(m.pointee, tileMax)
            if newMax != m.pointee && l.pointee != 0 {
                let correction = T.exp(m.pointee - newMax)
                l.pointee *= correction
                AttentionKernels.scale(correction, o, shape.valueDim)
            }
            m.pointee = newMax
        }
        l.pointee += T.exponentiate(logits, vectors: tile / lanes, minus: m.pointee)
    }

    /// o_r += Σ_t p_r[t] · v[j0 + t] for the active rows (o_r at acc + r · paddedWidth): four
    /// keys at a time, a key/value head at a time, two vectors of columns at a time — the four
    /// keys' values in registers for every query row sharing the head, each o_r block loaded
    /// and stored once for the four keys. V is read once, in memory order. Every key of the
    /// tile lies in [lo, hi) of `chunk` (the filled part of a cache): a masked key's weight is
    /// 0 and its value finite.
    @inline(__always)
    func accumulateValues(_ g: Int, _ j0: Int, _ count: Int, _ logits: UnsafeMutablePointer<T>,
                          into acc: UnsafeMutablePointer<T>, _ paddedWidth: Int, active: UnsafeMutablePointer<Bool>) {
        let lanes = T.Vector.scalarCount, tq = shape.queryLength, hv = shape.valueDim, width = tile
        let rowStride = operands.valueLayout.row, rows = sharing * tq
        let base = operands.value + operands.valueLayout.offset(g, 0, j0)
        var t = 0
        while t + 4 <= count {
            for c in 0..<shape.keyValueHeads {
                let v = base + t * rowStride + c * operands.valueLayout.head
                let first = c * rows
                var col = 0
                while col + 2 * lanes <= hv {
                    let v00 = v.vector(at: col), v01 = v.vector(at: col + lanes)
                    let v10 = (v + rowStride).vector(at: col), v11 = (v + rowStride).vector(at: col + lanes)
                    let v20 = (v + 2 * rowStride).vector(at: col), v21 = (v + 2 * rowStride).vector(at: col + lanes)
                    let v30 = (v + 3 * rowStride).vector(at: col), v31 = (v + 3 * rowStride).vector(at: col + lanes)
                    for r in first..<(first + rows) where active[r] {
                        let p = logits + r * width + t, o = acc + r * paddedWidth + col
                        let p0 = T.Vector(repeating: p[0]), p1 = T.Vector(repeating: p[1])
                        let p2 = T.Vector(repeating: p[2]), p3 = T.Vector(repeating: p[3])
                        var a0 = UnsafePointer(o).vector(at: 0), a1 = UnsafePointer(o).vector(at: lanes)
                        a0 = a0.plusProduct(p0, v00); a1 = a1.plusProduct(p0, v01)
                        a0 = a0.plusProduct(p1, v10); a1 = a1.plusProduct(p1, v11)
                        a0 = a0.plusProduct(p2, v20); a1 = a1.plusProduct(p2, v21)
                        a0 = a0.plusProduct(p3, v30); a1 = a1.plusProduct(p3, v31)
                        o.store(a0, at: 0); o.store(a1, at: lanes)
                    }
                    col += 2 * lanes
                }
                if col < hv {
                    for r in first..<(first + rows) where active[r] {
                        let p = logits + r * width + t, o = acc + r * paddedWidth
                        for u in 0..<4 { axpy(p[u], v + u * rowStride + col, o + col, hv - col) }
                    }
                }
            }
            t += 4
        }
        while t < count {
            for c in 0..<shape.keyValueHeads {
                let v = base + t * rowStride + c * operands.valueLayout.head
                for r in (c * rows)..<((c + 1) * rows) where active[r] {
                    axpy(logits[r * width + t], v, acc + r * paddedWidth, hv)
                }
            }
            t += 1
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
