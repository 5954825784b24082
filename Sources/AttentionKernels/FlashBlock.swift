/// The hot path of `attentionForward` when no scores are returned: a block of query rows
/// against tiles of 2 SIMD vectors of keys. K (for concat/additive scores, its e^{2c·k} table)
/// is packed transposed (head dim × keys) once per key tile for the whole block; then for each
/// micro-block of 8 rows, on the keys its last row's band reaches (one vector when they fit)
///   1. logits (8 × tile): Q·Kᵀ in registers (8 × 2 vectors of accumulators), or the
///      concat/additive sums of `Row.tanhLogits`,
///   2. the online softmax update per row on whole vectors (running max m, sum l),
///   3. O (8 × valueDim) = O·e^(m_old − m) + P·V, 8 rows × 2 vectors at a time (then 1).
/// Tiles a causal band or sliding window empties for every row of the block are skipped.
/// Rows whose keys are all masked fall back to `Row.fullyMaskedStreaming`.
enum FlashTile {
    /// Query rows per register micro-block.
    static let microRows = 8
}

extension Row {
    /// Rows `rows` of this (group, head), scores not returned.
    func flashBlock(_ rows: Range<Int>, scratch: UnsafeMutablePointer<T>) {
        let lanes = T.Vector.scalarCount, width = 2 * lanes
        let h = shape.keyDim, hv = shape.valueDim, count = rows.count
        // Scratch: packed Kᵀ (h × width), logits (8 × width), per-row m and l, O (rows × hv).
        let packed = scratch, logits = packed + h * width, maxes = logits + FlashTile.microRows * width
        let sums = maxes + count, out = sums + count
        for r in 0..<count { maxes[r] = -T.infinity; sums[r] = 0 }
        out.update(repeating: 0, count: count * hv)
        // Dot scores multiply the packed keys, concat/additive ones read their packed table
        // (without tables they take tanh directly and read neither).
        var packs = tanhTables != nil
        if case .dot = job.score { packs = true }

        // The keys any row of the block may see.
        var lo = shape.keyLength, hi = 0
        for i in rows {
            let b = band(i)
            lo = min(lo, b.lowerBound); hi = max(hi, b.upperBound)
        }
        var j0 = lo
        while j0 < hi {
            let keys = min(width, hi - j0)
            if packs { packTransposedKeys(j0, keys, into: packed) }
            var r0 = 0
            while r0 < count {
                let micro = min(FlashTile.microRows, count - r0)
                // Skip a micro-block whose rows' bands all miss this tile.
                let first = band(rows.lowerBound + r0), last = band(rows.lowerBound + r0 + micro - 1)
                if j0 >= max(first.upperBound, last.upperBound) || j0 + keys <= min(first.lowerBound, last.lowerBound) {
                    r0 += micro
                    continue
                }
                // Keys past the last row's band are masked for every row: on a causal
                // diagonal (or a short tile) the micro-block works on the first `active` only,
                // one vector of them when they fit.
                let active = min(keys, last.upperBound - j0)
                tileLogits(rows.lowerBound + r0, micro, j0, active, packed, into: logits)
                for r in 0..<micro {
                    softmaxUpdate(rows.lowerBound + r0 + r, j0, active, logits + r * width,
                                  max: maxes + r0 + r, sum: sums + r0 + r, out: out + (r0 + r) * hv)
                }
                accumulateValues(micro, j0, active, logits, out: out + r0 * hv)
                r0 += micro
            }
            j0 += keys
        }
        for r in 0..<count {
            let i = rows.lowerBound + r
            if sums[r] == 0 && !maxes[r].isNaN {
                fullyMaskedStreaming(i)
            } else {
                recordLogSumExp(i, max: maxes[r], sum: sums[r])
                let factor = dropoutScale / sums[r]
                let o = outputRow(i), src = out + r * hv
                for d in 0..<hv { o[d] = src[d] * factor }
            }
        }
    }

    /// packed[d · width + t] = key[j0 + t][d] — for concat/additive scores with tables, the
    /// key's row of e^{2c·k} — zero beyond `keys`.
    func packTransposedKeys(_ j0: Int, _ keys: Int, into packed: UnsafeMutablePointer<T>) {
        let lanes = T.Vector.scalarCount, width = 2 * lanes, h = shape.keyDim
        if keys < width {
            for d in 0..<h {
                packed.store(T.Vector(), at: d * width)
                packed.store(T.Vector(), at: d * width + lanes)
            }
        }
        let rows = tanhTables?.keyExponential ?? job.operands.key
        func key(_ t: Int) -> UnsafePointer<T> { rows + job.operands.keyLayout.offset(g, kvHead, j0 + t) }
        // Eight keys at a time: one 8-lane store per row of packed.
        var t = 0
        while t + 8 <= keys {
            let (k0, k1, k2, k3) = (key(t), key(t + 1), key(t + 2), key(t + 3))
            let (k4, k5, k6, k7) = (key(t + 4), key(t + 5), key(t + 6), key(t + 7))
            for d in 0..<h {
                UnsafeMutableRawPointer(packed + d * width + t).storeBytes(
                    of: SIMD8(k0[d], k1[d], k2[d], k3[d], k4[d], k5[d], k6[d], k7[d]), as: SIMD8<T>.self)
            }
            t += 8
        }
        while t < keys {
            let k = key(t)
            for d in 0..<h { packed[d * width + t] = k[d] }
            t += 1
        }
    }

    /// logits[r · width + t] = the logit (bias added) of query row i0 + r and key j0 + t, for
    /// r < micro and t < keys; dot scores from the packed keys.
    private func tileLogits(_ i0: Int, _ micro: Int, _ j0: Int, _ keys: Int, _ packed: UnsafeMutablePointer<T>,
                            into logits: UnsafeMutablePointer<T>) {
        let lanes = T.Vector.scalarCount, width = 2 * lanes
        guard case .dot(let scale) = job.score else {
            for r in 0..<micro {
                tanhLogits(i0 + r, j0, keys, packed, into: logits + r * width)
                addBias(i0 + r, j0, keys, to: logits + r * width)
            }
            return
        }
        func q(_ r: Int) -> UnsafePointer<T> { queryRow(i0 + min(r, micro - 1)) }
        var tile = Tile8x2<T>()
        if keys > lanes {
            tile.accumulate(q, aStep: 1, UnsafePointer(packed), bStep: width, depth: shape.keyDim)
        } else {
            tile.accumulateFirstVector(q, aStep: 1, UnsafePointer(packed), bStep: width, depth: shape.keyDim)
        }
        let s = T.Vector(repeating: scale)
        func put(_ r: Int, _ a: T.Vector, _ b: T.Vector) {
            logits.store(a * s, at: r * width)
            logits.store(b * s, at: r * width + lanes)
        }
        for r in 0..<FlashTile.microRows {
            let (a, b) = tile.row(r)
            put(r, a, b)
        }
        if job.bias != nil {
            for r in 0..<micro { addBias(i0 + r, j0, keys, to: logits + r * width) }
        }
    }

    /// The online softmax step of row i over keys j0 ..< j0 + keys whose logits are in `x`:
    /// x becomes the weights e^(x − m) (times the dropout keep), l and O are rescaled. Only
    /// the first vector of x is read and written when keys fit in it.
    private func softmaxUpdate(_ i: Int, _ j0: Int, _ keys: Int, _ x: UnsafeMutablePointer<T>,
                               max m: UnsafeMutablePointer<T>, sum l: UnsafeMutablePointer<T>,
                               out: UnsafeMutablePointer<T>) {
        let lanes = T.Vector.scalarCount, both = keys > lanes, width = both ? 2 * lanes : lanes
        let band = band(i)
        if job.mask.views.isEmpty {
            // Only the band masks: keep the tile's keys inside it, one run of lanes.
            let first = max(band.lowerBound - j0, 0), end = min(band.upperBound - j0, keys)
            guard first < end else {
                x.update(repeating: 0, count: width)
                return
            }
            for t in 0..<first { x[t] = -T.infinity }
            for t in end..<width { x[t] = -T.infinity }
        } else {
            guard computeKept(i, j0, keys) else {
                x.update(repeating: 0, count: width)
                return
            }
            for t in 0..<width where t >= keys || !kept[t] { x[t] = -T.infinity }
        }
        // Lazy rescaling: the running max m stays the shift while the tile's weights
        // e^(x − m) stay below e^20, exact up to rounding whatever the tile's own max; only a
        // tile that raises them past that takes a new max and rescales l and O.
        let x0 = UnsafePointer(x).vector(at: 0)
        let tileMax = T.maximum(x0, both ? UnsafePointer(x).vector(at: lanes) : x0)
        if !(m.pointee > -T.infinity && tileMax <= m.pointee + 20) {
            let newMax = maxPropagatingNaN(m.pointee, tileMax)
            if newMax != m.pointee && l.pointee != 0 {
                let correction = T.exp(m.pointee - newMax)
                l.pointee *= correction
                scale(correction, out, shape.valueDim)
            }
            m.pointee = newMax
        }
        // Excluded keys hold −∞, so e^(x − m) = 0 for them (m is finite once a key is kept;
        // a NaN logit, which the max may pass over, makes the sum NaN).
        l.pointee += T.exponentiate(x, vectors: both ? 2 : 1, minus: m.pointee)
        if job.dropout != nil {
            for t in 0..<keys { x[t] *= keep(i, j0 + t) }
        }
    }

    /// out[r] += Σ_t weights[r · width + t] · v[j0 + t] for the micro-block's rows: 8 rows ×
    /// 2 vectors of value columns in registers per pass over the tile's keys (then 8 × 1
    /// vector, then scalars, for the columns left).
    private func accumulateValues(_ micro: Int, _ j0: Int, _ keys: Int, _ weights: UnsafeMutablePointer<T>,
                                  out: UnsafeMutablePointer<T>) {
        let lanes = T.Vector.scalarCount, width = 2 * lanes, hv = shape.valueDim
        func o(_ r: Int) -> UnsafeMutablePointer<T> { out + min(r, micro - 1) * hv }
        func w(_ r: Int) -> UnsafePointer<T> { UnsafePointer(weights + min(r, micro - 1) * width) }
        let values = job.operands.value + job.operands.valueLayout.offset(g, kvHead, j0)
        let valueStride = job.operands.valueLayout.row
        var c = 0
        while c + 2 * lanes <= hv {
            var tile = Tile8x2<T>(loading: { UnsafePointer(o($0) + c) })
            tile.accumulate(w, aStep: 1, values + c, bStep: valueStride, depth: keys)
            // Rows past `micro` alias the last real row: store only the real rows.
            for r in 0..<micro {
                let (x0, x1) = tile.row(r)
                o(r).store(x0, at: c)
                o(r).store(x1, at: c + lanes)
            }
            c += 2 * lanes
        }
        if c + lanes <= hv {
            var tile = Tile8x2<T>()
            tile.accumulateFirstVector(w, aStep: 1, values + c, bStep: valueStride, depth: keys)
            for r in 0..<micro { o(r).store(UnsafePointer(o(r)).vector(at: c) + tile.row(r).0, at: c) }
            c += lanes
        }
        for r in 0..<micro where c < hv {
            let wr = weights + r * width
            for t in 0..<keys { axpyTail(wr[t], valueRow(j0 + t) + c, out + r * hv + c, hv - c) }
        }
    }

    @inline(__always)
    private func axpyTail(_ a: T, _ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) {
        for d in 0..<n { y[d] += a * x[d] }
    }
}
