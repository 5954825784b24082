/// The decode path of `attentionForward`: a few query rows per group (a decoder's new tokens)
/// against a long key axis (its cache). Work items are (group, chunk of `DecodeTile.keys`
/// keys); an item walks its chunk in tiles of 2 SIMD vectors of keys, with the query heads
/// that share a key/value head together, so each key and value row is read from memory once
/// per call, in memory order, and reused from L1 by every query row that attends to it.
/// Every row (query head × query row) keeps an `OnlineSoftmax` and its unnormalised output
/// over the chunk; the chunks' states are then merged in chunk order (`OnlineSoftmax.merge`),
/// so the result depends on the fixed chunking, never on the thread count. Tiles past every
/// row's band are not read: a causal step over a cache reads only its filled part. Masks,
/// bias, dropout and fully masked rows follow the kernel core (`MaskPolicy`,
/// `AttentionJob.keep`, `Row.fullyMaskedStreaming`).
enum DecodeTile {
    /// Query rows per group up to which the path is taken.
    static let maxQueryRows = 8
    /// The most rows (query heads × query rows) of a group an item carries.
    static let maxRows = 1024
    /// Keys per work item.
    static let keys = 256
    /// The largest state buffer (elements) the path takes; beyond it the other paths run.
    static let maxStateElements = 1 << 24
}

extension AttentionJob {
    /// Elements of state the decode path needs, or nil when it does not apply.
    var decodeStateElements: Int? {
        guard scores == nil, case .dot = score, shape.queryLength <= DecodeTile.maxQueryRows,
              shape.heads * shape.queryLength <= DecodeTile.maxRows else { return nil }
        let chunks = (shape.keyLength + DecodeTile.keys - 1) / DecodeTile.keys
        var count = shape.valueDim + 2
        for factor in [shape.groups, chunks, shape.heads, shape.queryLength] {
            let (product, overflow) = count.multipliedReportingOverflow(by: factor)
            guard !overflow else { return nil }
            count = product
        }
        return count <= DecodeTile.maxStateElements ? count : nil
    }

    /// Runs the decode path with `state` holding decodeStateElements elements.
    func decode(state: UnsafeMutablePointer<T>) {
        let chunks = (shape.keyLength + DecodeTile.keys - 1) / DecodeTile.keys
        let states = DecodeStates(base: state, chunks: chunks, rows: shape.heads * shape.queryLength,
                                  stride: shape.valueDim + 2)
        parallelFor(shape.groups * chunks) { decodeChunk($0, states) }
        parallelFor(shape.groups * states.rows) { mergeChunks($0, states) }
    }

    /// One chunk of keys of one group, for every row of the group: each tile's logits (key by
    /// key, heads in turn), then per row the bias, the mask and the softmax step, then the
    /// values (a key/value head's four keys in registers for every row sharing it). The rows'
    /// states end in the chunk's slots: [o…, shift, sum].
    private func decodeChunk(_ item: Int, _ states: DecodeStates<T>) {
        let g = item / states.chunks, c = item % states.chunks
        let lanes = T.Vector.scalarCount, width = 2 * lanes
        let tq = shape.queryLength, rows = states.rows, hv = shape.valueDim
        let padded = (hv + lanes - 1) / lanes * lanes
        let chunk = (c * DecodeTile.keys)..<min((c + 1) * DecodeTile.keys, shape.keyLength)
        // The keys any row may see: no key outside them is read.
        var lo = chunk.upperBound, hi = chunk.lowerBound
        for i in 0..<tq {
            let band = mask.band(g, i, keyLength: shape.keyLength)
            lo = min(lo, max(band.lowerBound, chunk.lowerBound))
            hi = max(hi, min(band.upperBound, chunk.upperBound))
        }
        let elements = rows * (width + padded)
        withUnsafeTemporaryAllocation(byteCount: elements * MemoryLayout<T>.stride, alignment: 64) { raw in
            withUnsafeTemporaryAllocation(of: OnlineSoftmax<T>.self, capacity: rows) { softmaxBuffer in
                withUnsafeTemporaryAllocation(of: Bool.self, capacity: rows + width) { flags in
                    guard let base = raw.baseAddress, let softmax = softmaxBuffer.baseAddress,
                          let active = flags.baseAddress else { return }
                    let logits = base.bindMemory(to: T.self, capacity: elements), acc = logits + rows * width
                    let kept = active + rows
                    acc.update(repeating: 0, count: rows * padded)
                    softmax.initialize(repeating: OnlineSoftmax(), count: rows)
                    var j0 = lo
                    while j0 < hi {
                        let count = min(width, hi - j0)
                        tileLogits(g, j0, count, into: logits)
                        for n in 0..<shape.heads {
                            let row = Row(job: self, g: g, n: n, logits: logits, acc: acc, kept: kept)
                            for i in 0..<tq {
                                let r = n * tq + i, x = logits + r * width
                                active[r] = decodeStep(row, i, j0, count, x, &softmax[r], acc + r * padded)
                            }
                        }
                        accumulateValues(g, j0, count, logits, into: acc, padded, active: active)
                        j0 += count
                    }
                    for r in 0..<rows {
                        let s = states.slot(g, c, r)
                        s.update(from: acc + r * padded, count: hv)
                        s[hv] = softmax[r].shift; s[hv + 1] = softmax[r].sum
                    }
                }
            }
        }
    }

    /// Row i of `row`'s head over keys j0 ..< j0 + count, logits in x (2 vectors): bias, mask,
    /// the softmax step (o rescaled when the shift moves), x ← the weights (with dropout's
    /// keep). Returns whether the row keeps a key of the tile (else x is not a weight).
    @inline(__always)
    private func decodeStep(_ row: Row<T>, _ i: Int, _ j0: Int, _ count: Int, _ x: UnsafeMutablePointer<T>,
                            _ softmax: inout OnlineSoftmax<T>, _ o: UnsafeMutablePointer<T>) -> Bool {
        let kept = row.keptKeys(i, j0, count)
        if case .none = kept { return false }
        if bias != nil { row.addBias(i, j0, count, to: x) }
        row.exclude(kept, count, x, width: 2 * T.Vector.scalarCount)
        let factor = softmax.absorb(x, vectors: 2)
        if factor != 1 { scale(factor, o, shape.valueDim) }
        if dropout != nil {
            for t in 0..<count { x[t] *= keep(row.g, row.n, i, j0 + t) }
        }
        return true
    }

    /// logits[r · width + t] = q_r · k[j0 + t] · scale for every row r = n·tq + i whose band
    /// meets the tile (the others are not read after): four keys at a time, and for them
    /// every row in turn (K read in memory order, each query vector loaded once for the four
    /// keys, a key/value head's keys from L1 for the query rows after its first).
    @inline(__always)
    private func tileLogits(_ g: Int, _ j0: Int, _ count: Int, into logits: UnsafeMutablePointer<T>) {
        guard case .dot(let scale) = score else { return }
        let ops = operands, h = shape.keyDim, tq = shape.queryLength, width = 2 * T.Vector.scalarCount
        let keyRow = ops.keyLayout.row, keyHead = ops.keyLayout.head, sharing = headsPerKeyValueHead
        let base = ops.key + ops.keyLayout.offset(g, 0, j0)
        // Bit i: query row i's band meets the tile (tq ≤ DecodeTile.maxQueryRows), found once.
        var meets = 0
        for i in 0..<tq {
            let band = mask.band(g, i, keyLength: shape.keyLength)
            if band.lowerBound < j0 + count && band.upperBound > j0 { meets |= 1 << i }
        }
        var t = 0
        while t < count {
            let block = min(4, count - t)
            for n in 0..<shape.heads {
                let k = base + t * keyRow + (n / sharing) * keyHead
                for i in 0..<tq {
                    guard meets & (1 << i) != 0 else { continue }
                    let q = ops.query + ops.queryLayout.offset(g, n, i)
                    let out = logits + (n * tq + i) * width + t
                    if block == 4 {
                        let (d0, d1, d2, d3) = dots4(q, k, keyRow, h)
                        out[0] = d0 * scale; out[1] = d1 * scale; out[2] = d2 * scale; out[3] = d3 * scale
                    } else {
                        for u in 0..<block { out[u] = dot(q, k + u * keyRow, h) * scale }
                    }
                }
            }
            t += block
        }
    }

    /// q · k_0 … q · k_3 for the four key rows k, k + stride, … (four multiply-add chains).
    @inline(__always)
    private func dots4(_ q: UnsafePointer<T>, _ k: UnsafePointer<T>, _ stride: Int, _ n: Int) -> (T, T, T, T) {
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

    /// o_r += Σ_t p_r[t] · v[j0 + t] for the active rows (o_r at acc + r · padded): four keys
    /// at a time, a key/value head at a time, two vectors of columns at a time — the four
    /// keys' values in registers for every query row sharing the head, each o_r block loaded
    /// and stored once for the four keys. V is read once, in memory order. Keys of weight 0
    /// (masked) are left out, so a masked value that is not finite does not reach the output.
    @inline(__always)
    private func accumulateValues(_ g: Int, _ j0: Int, _ count: Int, _ logits: UnsafeMutablePointer<T>,
                                  into acc: UnsafeMutablePointer<T>, _ padded: Int, active: UnsafeMutablePointer<Bool>) {
        let lanes = T.Vector.scalarCount, hv = shape.valueDim, width = 2 * lanes
        let rowStride = operands.valueLayout.row, tq = shape.queryLength, sharing = headsPerKeyValueHead
        let base = operands.value + operands.valueLayout.offset(g, 0, j0)
        // The rows of key/value head c: its query heads c·sharing ..< (c + 1)·sharing that exist
        // (a problem may have fewer query heads than key/value heads, e.g. Reuse's new heads).
        let readers = min(shape.keyValueHeads, (shape.heads + sharing - 1) / sharing)
        func rows(_ c: Int) -> Range<Int> { (c * sharing * tq)..<(min((c + 1) * sharing, shape.heads) * tq) }
        var t = 0
        while t + 4 <= count {
            for c in 0..<readers {
                let v = base + t * rowStride + c * operands.valueLayout.head
                var col = 0
                while col + 2 * lanes <= hv {
                    let v00 = v.vector(at: col), v01 = v.vector(at: col + lanes)
                    let v10 = (v + rowStride).vector(at: col), v11 = (v + rowStride).vector(at: col + lanes)
                    let v20 = (v + 2 * rowStride).vector(at: col), v21 = (v + 2 * rowStride).vector(at: col + lanes)
                    let v30 = (v + 3 * rowStride).vector(at: col), v31 = (v + 3 * rowStride).vector(at: col + lanes)
                    for r in rows(c) where active[r] {
                        let p = logits + r * width + t, o = acc + r * padded + col
                        let p0 = T.Vector(repeating: p[0]), p1 = T.Vector(repeating: p[1])
                        let p2 = T.Vector(repeating: p[2]), p3 = T.Vector(repeating: p[3])
                        var a0 = UnsafePointer(o).vector(at: 0), a1 = UnsafePointer(o).vector(at: lanes)
                        if p[0] != 0 { a0 = a0.plusProduct(p0, v00); a1 = a1.plusProduct(p0, v01) }
                        if p[1] != 0 { a0 = a0.plusProduct(p1, v10); a1 = a1.plusProduct(p1, v11) }
                        if p[2] != 0 { a0 = a0.plusProduct(p2, v20); a1 = a1.plusProduct(p2, v21) }
                        if p[3] != 0 { a0 = a0.plusProduct(p3, v30); a1 = a1.plusProduct(p3, v31) }
                        o.store(a0, at: 0); o.store(a1, at: lanes)
                    }
                    col += 2 * lanes
                }
                if col < hv {
                    for r in rows(c) where active[r] {
                        let p = logits + r * width + t, o = acc + r * padded
                        for u in 0..<4 where p[u] != 0 { axpy(p[u], v + u * rowStride + col, o + col, hv - col) }
                    }
                }
            }
            t += 4
        }
        while t < count {
            for c in 0..<readers {
                let v = base + t * rowStride + c * operands.valueLayout.head
                for r in rows(c) where active[r] && logits[r * width + t] != 0 {
                    axpy(logits[r * width + t], v, acc + r * padded, hv)
                }
            }
            t += 1
        }
    }

    /// Output row (g, n, i), item (g · heads + n) · tq + i: the chunks' states merged in chunk
    /// order; a row no chunk kept a key of takes its policy's weights over all keys.
    private func mergeChunks(_ item: Int, _ states: DecodeStates<T>) {
        let g = item / states.rows, r = item % states.rows
        let n = r / shape.queryLength, i = r % shape.queryLength, hv = shape.valueDim
        withUnsafeTemporaryAllocation(of: T.self, capacity: AttentionTile.keys + hv) { buffer in
            withUnsafeTemporaryAllocation(of: Bool.self, capacity: AttentionTile.keys) { keptBuffer in
                guard let base = buffer.baseAddress, let kept = keptBuffer.baseAddress else { return }
                let row = Row(job: self, g: g, n: n, logits: base, acc: base + AttentionTile.keys, kept: kept)
                var softmax = OnlineSoftmax<T>()
                row.clearAccumulator()
                for c in 0..<states.chunks {
                    let s = states.slot(g, c, r)
                    let (mine, theirs) = softmax.merge(OnlineSoftmax(shift: s[hv], sum: s[hv + 1]))
                    if mine != 1 { scale(mine, row.acc, hv) }
                    if theirs != 0 { axpy(theirs, s, row.acc, hv) }
                }
                if softmax.keptNone {
                    row.fullyMaskedStreaming(i)
                } else {
                    row.writeOutput(i, row.dropoutScale / softmax.sum)
                }
            }
        }
    }
}

/// Partial states of the decode path: [o…, shift, sum] per (group, chunk, row), row =
/// query head × query rows + query row.
struct DecodeStates<T>: @unchecked Sendable {
    let base: UnsafeMutablePointer<T>
    let chunks: Int, rows: Int, stride: Int

    func slot(_ g: Int, _ c: Int, _ r: Int) -> UnsafeMutablePointer<T> {
        base + ((g * chunks + c) * rows + r) * stride
    }
}
