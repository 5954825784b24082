/// The dot-product hot path of `attentionForward` when no scores are returned: a block of
/// query rows against tiles of 2 SIMD vectors of keys. Per key tile, K is packed transposed
/// (head dim × keys) once for the whole block; then for each micro-block of 8 rows
///   1. logits (8 × tile) = Q·Kᵀ in registers (8 × 2 vectors of accumulators),
///   2. the online softmax update per row on whole vectors (running max m, sum l),
///   3. O (8 × valueDim) = O·e^(m_old − m) + P·V, 4 rows × 2 vectors at a time.
/// Tiles a causal band or sliding window empties for every row of the block are skipped.
/// Rows whose keys are all masked fall back to `Row.fullyMaskedStreaming`.
enum FlashTile {
    /// Query rows per register micro-block.
    static let microRows = 8
}

extension Row {
    /// Rows `rows` of this (group, head), scores not returned, score function `.dot(scale)`.
    func flashBlock(_ rows: Range<Int>, scale: T, scratch: UnsafeMutablePointer<T>) {
        let lanes = T.Vector.scalarCount, width = 2 * lanes
        let h = shape.keyDim, hv = shape.valueDim, count = rows.count
        // Scratch: packed Kᵀ (h × width), logits (8 × width), per-row m and l, O (rows × hv).
        let packed = scratch, logits = packed + h * width, maxes = logits + FlashTile.microRows * width
        let sums = maxes + count, out = sums + count
        for r in 0..<count { maxes[r] = -T.infinity; sums[r] = 0 }
        out.update(repeating: 0, count: count * hv)

        // The keys any row of the block may see.
        var lo = shape.keyLength, hi = 0
        for i in rows {
            let b = band(i)
            lo = min(lo, b.lowerBound); hi = max(hi, b.upperBound)
        }
        var j0 = lo
        while j0 < hi {
            let keys = min(width, hi - j0)
            packTransposedKeys(j0, keys, into: packed)
            var r0 = 0
            while r0 < count {
                let micro = min(FlashTile.microRows, count - r0)
                // Skip a micro-block whose rows' bands all miss this tile.
                let first = band(rows.lowerBound + r0), last = band(rows.lowerBound + r0 + micro - 1)
                if j0 >= max(first.upperBound, last.upperBound) || j0 + keys <= min(first.lowerBound, last.lowerBound) {
                    r0 += micro
                    continue
                }
                tileLogits(rows.lowerBound + r0, micro, j0, keys, packed, scale: scale, into: logits)
                for r in 0..<micro {
                    softmaxUpdate(rows.lowerBound + r0 + r, j0, keys, logits + r * width,
                                  max: maxes + r0 + r, sum: sums + r0 + r, out: out + (r0 + r) * hv)
                }
                accumulateValues(micro, j0, keys, logits, out: out + r0 * hv)
                r0 += micro
            }
            j0 += keys
        }
        for r in 0..<count {
            let i = rows.lowerBound + r
            if sums[r] == 0 && !maxes[r].isNaN {
                fullyMaskedStreaming(i)
            } else {
                let factor = dropoutScale / sums[r]
                let o = outputRow(i), src = out + r * hv
                for d in 0..<hv { o[d] = src[d] * factor }
            }
        }
    }

    /// packed[d · width + t] = key[j0 + t][d], zero beyond `keys`.
    private func packTransposedKeys(_ j0: Int, _ keys: Int, into packed: UnsafeMutablePointer<T>) {
        let width = 2 * T.Vector.scalarCount, h = shape.keyDim
        if keys < width {
            for d in 0..<h { (packed + d * width + keys).update(repeating: 0, count: width - keys) }
        }
        for t in 0..<keys {
            let k = keyRow(j0 + t)
            for d in 0..<h { packed[d * width + t] = k[d] }
        }
    }

    /// logits[r · width + t] = scale · q[i0 + r] · k[j0 + t] (+ bias) for r < micro.
    private func tileLogits(_ i0: Int, _ micro: Int, _ j0: Int, _ keys: Int, _ packed: UnsafeMutablePointer<T>,
                            scale: T, into logits: UnsafeMutablePointer<T>) {
        let lanes = T.Vector.scalarCount, width = 2 * lanes
        func q(_ r: Int) -> UnsafePointer<T> { queryRow(i0 + min(r, micro - 1)) }
        let (r0, r1, r2, r3, r4, r5, r6, r7) = (q(0), q(1), q(2), q(3), q(4), q(5), q(6), q(7))
        var x00 = T.Vector(), x01 = T.Vector(), x10 = T.Vector(), x11 = T.Vector()
        var x20 = T.Vector(), x21 = T.Vector(), x30 = T.Vector(), x31 = T.Vector()
        var x40 = T.Vector(), x41 = T.Vector(), x50 = T.Vector(), x51 = T.Vector()
        var x60 = T.Vector(), x61 = T.Vector(), x70 = T.Vector(), x71 = T.Vector()
        var kp = UnsafePointer(packed)
        for d in 0..<shape.keyDim {
            let k0 = kp.vector(at: 0), k1 = kp.vector(at: lanes)
            var v = T.Vector(repeating: r0[d]); x00 = x00.addingProduct(v, k0); x01 = x01.addingProduct(v, k1)
            v = T.Vector(repeating: r1[d]); x10 = x10.addingProduct(v, k0); x11 = x11.addingProduct(v, k1)
            v = T.Vector(repeating: r2[d]); x20 = x20.addingProduct(v, k0); x21 = x21.addingProduct(v, k1)
            v = T.Vector(repeating: r3[d]); x30 = x30.addingProduct(v, k0); x31 = x31.addingProduct(v, k1)
            v = T.Vector(repeating: r4[d]); x40 = x40.addingProduct(v, k0); x41 = x41.addingProduct(v, k1)
            v = T.Vector(repeating: r5[d]); x50 = x50.addingProduct(v, k0); x51 = x51.addingProduct(v, k1)
            v = T.Vector(repeating: r6[d]); x60 = x60.addingProduct(v, k0); x61 = x61.addingProduct(v, k1)
            v = T.Vector(repeating: r7[d]); x70 = x70.addingProduct(v, k0); x71 = x71.addingProduct(v, k1)
            kp += width
        }
        let s = T.Vector(repeating: scale)
        func put(_ r: Int, _ a: T.Vector, _ b: T.Vector) {
            logits.store(a * s, at: r * width)
            logits.store(b * s, at: r * width + lanes)
        }
        put(0, x00, x01); put(1, x10, x11); put(2, x20, x21); put(3, x30, x31)
        put(4, x40, x41); put(5, x50, x51); put(6, x60, x61); put(7, x70, x71)
        if job.bias != nil {
            for r in 0..<micro { addBias(i0 + r, j0, keys, to: logits + r * width) }
        }
    }

    /// The online softmax step of row i over keys j0 ..< j0 + keys whose logits are in `x`:
    /// x becomes the weights e^(x − m) (times the dropout keep), l and O are rescaled.
    private func softmaxUpdate(_ i: Int, _ j0: Int, _ keys: Int, _ x: UnsafeMutablePointer<T>,
                               max m: UnsafeMutablePointer<T>, sum l: UnsafeMutablePointer<T>,
                               out: UnsafeMutablePointer<T>) {
        let lanes = T.Vector.scalarCount, width = 2 * lanes
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
        let x0 = UnsafePointer(x).vector(at: 0), x1 = UnsafePointer(x).vector(at: lanes)
        // Lazy rescaling: with the running max m as the shift, the weights e^(x − m) are
        // exact up to rounding whatever the tile's own max, as long as they stay moderate;
        // only a tile that raises them past e^20 pays for a new max and a rescale.
        if m.pointee > -T.infinity {
            let shift = T.Vector(repeating: m.pointee)
            let p0 = T.exp(x0 - shift), p1 = T.exp(x1 - shift)
            let total = T.sum(p0 + p1)
            if total < 4.8e8 {
                l.pointee += total
                x.store(p0, at: 0)
                x.store(p1, at: lanes)
                if job.dropout != nil {
                    for t in 0..<keys { x[t] *= keep(i, j0 + t) }
                }
                return
            }
        }
        var tileMax = -T.infinity
        for t in 0..<width { tileMax = maxPropagatingNaN(tileMax, x[t]) }
        let newMax = maxPropagatingNaN(m.pointee, tileMax)
        if newMax != m.pointee && l.pointee != 0 {
            let correction = T.exp(m.pointee - newMax)
            l.pointee *= correction
            scale(correction, out, shape.valueDim)
        }
        m.pointee = newMax
        let shift = T.Vector(repeating: newMax)
        // Excluded keys hold −∞, so e^(x − m) = 0 for them (m is finite once a key is kept).
        let p0 = T.exp(x0 - shift), p1 = T.exp(x1 - shift)
        l.pointee += T.sum(p0 + p1)
        x.store(p0, at: 0)
        x.store(p1, at: lanes)
        if job.dropout != nil {
            for t in 0..<keys { x[t] *= keep(i, j0 + t) }
        }
    }

    /// out[r] += Σ_t weights[r · width + t] · v[j0 + t] for the micro-block's rows: 8 rows ×
    /// 2 vectors of value columns in registers per pass over the tile's keys.
    private func accumulateValues(_ micro: Int, _ j0: Int, _ keys: Int, _ weights: UnsafeMutablePointer<T>,
                                  out: UnsafeMutablePointer<T>) {
        let lanes = T.Vector.scalarCount, width = 2 * lanes, hv = shape.valueDim
        func o(_ r: Int) -> UnsafeMutablePointer<T> { out + min(r, micro - 1) * hv }
        func w(_ r: Int) -> UnsafePointer<T> { UnsafePointer(weights + min(r, micro - 1) * width) }
        let (o0, o1, o2, o3, o4, o5, o6, o7) = (o(0), o(1), o(2), o(3), o(4), o(5), o(6), o(7))
        let (w0, w1, w2, w3, w4, w5, w6, w7) = (w(0), w(1), w(2), w(3), w(4), w(5), w(6), w(7))
        let values = job.operands.value + job.operands.valueLayout.offset(g, kvHead, j0)
        let valueStride = job.operands.valueLayout.row
        var c = 0
        while c + 2 * lanes <= hv {
            func load(_ p: UnsafeMutablePointer<T>) -> (T.Vector, T.Vector) {
                (UnsafePointer(p).vector(at: c), UnsafePointer(p).vector(at: c + lanes))
            }
            var (a00, a01) = load(o0), (a10, a11) = load(o1), (a20, a21) = load(o2), (a30, a31) = load(o3)
            var (a40, a41) = load(o4), (a50, a51) = load(o5), (a60, a61) = load(o6), (a70, a71) = load(o7)
            var v = values + c
            for t in 0..<keys {
                let v0 = v.vector(at: 0), v1 = v.vector(at: lanes)
                var p = T.Vector(repeating: w0[t]); a00 = a00.addingProduct(p, v0); a01 = a01.addingProduct(p, v1)
                p = T.Vector(repeating: w1[t]); a10 = a10.addingProduct(p, v0); a11 = a11.addingProduct(p, v1)
                p = T.Vector(repeating: w2[t]); a20 = a20.addingProduct(p, v0); a21 = a21.addingProduct(p, v1)
                p = T.Vector(repeating: w3[t]); a30 = a30.addingProduct(p, v0); a31 = a31.addingProduct(p, v1)
                p = T.Vector(repeating: w4[t]); a40 = a40.addingProduct(p, v0); a41 = a41.addingProduct(p, v1)
                p = T.Vector(repeating: w5[t]); a50 = a50.addingProduct(p, v0); a51 = a51.addingProduct(p, v1)
                p = T.Vector(repeating: w6[t]); a60 = a60.addingProduct(p, v0); a61 = a61.addingProduct(p, v1)
                p = T.Vector(repeating: w7[t]); a70 = a70.addingProduct(p, v0); a71 = a71.addingProduct(p, v1)
                v += valueStride
            }
            // Rows past `micro` alias the last real row: store from the last row down, so the
            // real row's own sums are written last.
            func store(_ r: Int, _ p: UnsafeMutablePointer<T>, _ x0: T.Vector, _ x1: T.Vector) {
                guard r < micro else { return }
                p.store(x0, at: c); p.store(x1, at: c + lanes)
            }
            store(7, o7, a70, a71); store(6, o6, a60, a61); store(5, o5, a50, a51); store(4, o4, a40, a41)
            store(3, o3, a30, a31); store(2, o2, a20, a21); store(1, o1, a10, a11); store(0, o0, a00, a01)
            c += 2 * lanes
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
