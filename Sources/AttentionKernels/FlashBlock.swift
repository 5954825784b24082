/// The hot path of `attentionForward` when no scores are returned: a block of query rows
/// against tiles of 16 SIMD vectors of keys (32 for `wide` jobs). K (for concat/additive
/// scores, its e^{2c·k} table) is packed transposed (head dim × keys) once per key tile for
/// every block of the worker's run that reads it (`PackedKeyTiles`); then for each
/// micro-block of `microRows` rows (the register tile's: 8, or 6 on the avx2 kernels), on the
/// keys its last row's band reaches (one vector when they fit)
///   1. logits (microRows × tile): Q·Kᵀ in registers (microRows × 2 vectors of
///      accumulators), or the concat/additive sums of `Row.tanhLogits`,
///   2. the rows' tile maxima (masked keys at −∞ first), then the online softmax step per
///      row on whole vectors (running shift m, sum l),
///   3. O (microRows × valueDim) = O·e^(m_old − m) + P·V, microRows × 2 vectors at a time
///      (then 1).
/// Tiles a causal band or sliding window empties for every row of the block are skipped.
/// Rows whose keys are all masked fall back to `Row.fullyMaskedStreaming`.
enum FlashTile {
    /// Query rows per register micro-block.
    static let microRows = registerTileRows
    /// SIMD vectors of keys per tile (256 float32): Q·Kᵀ takes them two at a time on the
    /// register tile, the softmax and P·V all at once. A row's softmax step costs per tile, so
    /// wider tiles pay it less often: 8 vectors (with K packed again for every block) were 4%
    /// slower; 32 gain 1.5% more on unmasked dot scores but lose 2% causal and 5% on
    /// additive scores, so only jobs without masks, bias or tanh scores take them (`wide`).
    static let keyVectors = 16
    static let wideKeyVectors = 32
    /// Keys per tile (per wide tile).
    @inline(__always) static func keys<T: KernelScalar>(_: T.Type, wide: Bool = false) -> Int {
        (wide ? wideKeyVectors : keyVectors) * T.Vector.scalarCount
    }
}

extension Row {
    /// Rows `rows` of this (group, head), scores not returned; key tiles packed in `keyTiles`.
    /// `ahead` is prefetched while the block computes.
    func flashBlock(_ rows: Range<Int>, scratch: UnsafeMutablePointer<T>, keys keyTiles: PackedKeyTiles<T>,
                    prefetching ahead: inout ItemPrefetch) {
        let width = job.flashKeys
        let hv = shape.valueDim, count = rows.count
        // Scratch: logits (microRows × width), O (rows × hv).
        let logits = scratch, out = logits + FlashTile.microRows * width
        out.update(repeating: 0, count: count * hv)
        // Dot scores multiply the packed keys, concat/additive ones read their packed table
        // (without tables they take tanh directly and read neither).
        var packs = tanhTables != nil
        if case .dot = job.score { packs = true }

        let span = keySpan(rows), lo = span.lowerBound, hi = span.upperBound
        let micros = (count + FlashTile.microRows - 1) / FlashTile.microRows
        ahead.spread(over: micros * FlashTile.microRows * ((span.count + width - 1) / width))
        // Per row its softmax state; per row of a micro-block its tile maximum (nil: the row
        // keeps none of the tile's keys).
        withUnsafeTemporaryAllocation(of: OnlineSoftmax<T>.self, capacity: count) { states in
        withUnsafeTemporaryAllocation(of: T?.self, capacity: FlashTile.microRows) { maximaBuffer in
            guard let softmax = states.baseAddress, let maxima = maximaBuffer.baseAddress else { return }
            softmax.initialize(repeating: OnlineSoftmax(), count: count)
            var j0 = lo
            while j0 < hi {
                let keys = min(width, hi - j0)
                let packed = packs ? keyTiles.tile(self, j0, keys) : keyTiles.base
                var r0 = 0
                while r0 < count {
                    let micro = min(FlashTile.microRows, count - r0), i0 = rows.lowerBound + r0
                    defer { r0 += micro }
                    if bandsMiss(i0..<i0 + micro, j0..<j0 + keys) { continue }
                    // Keys past the last row's band are masked for every row: on a causal
                    // diagonal (or a short tile) the micro-block works on the first `active`
                    // only, one vector of them when they fit.
                    let active = min(keys, band(i0 + micro - 1).upperBound - j0)
                    tileLogits(i0, micro, j0, active, packed, into: logits)
                    // The rows' maxima before their steps: their reduction trees overlap
                    // rather than each waiting behind the e^x of the row before.
                    for r in 0..<micro {
                        (maxima + r).initialize(to: maskedMaximum(i0 + r, j0, active, logits + r * width))
                    }
                    for r in 0..<micro {
                        ahead.step()
                        softmaxUpdate(i0 + r, j0, active, logits + r * width, maximum: maxima[r], &softmax[r0 + r],
                                      out: out + (r0 + r) * hv)
                    }
                    accumulateValues(micro, j0, active, logits, out: out + r0 * hv)
                }
                j0 += keys
            }
            for r in 0..<count {
                let i = rows.lowerBound + r
                if softmax[r].keptNone {
                    fullyMaskedStreaming(i)
                } else {
                    recordLogSumExp(i, softmax[r])
                    let factor = dropoutScale / softmax[r].sum
                    let o = outputRow(i), src = out + r * hv
                    for d in 0..<hv { o[d] = src[d] * factor }
                }
            }
        }
        }
    }

    /// packed[d · packedStride + t] = key[j0 + t][d] — for concat/additive scores with tables,
    /// the key's row of e^{2c·k} — zero beyond `keys` up to a whole pair of vectors (what the
    /// register tile reads).
    func packTransposedKeys(_ j0: Int, _ keys: Int, into packed: UnsafeMutablePointer<T>) {
        let lanes = T.Vector.scalarCount, stride = job.packedStride, h = shape.keyDim
        let padded = min(job.flashKeys, (keys + 2 * lanes - 1) / (2 * lanes) * (2 * lanes))
        if keys < padded {  // whole zero vectors (one or two) from the one holding the last key
            let c = keys / lanes * lanes, two = c + lanes < padded
            for d in 0..<h {  // (straight stores: a loop here compiles to a memset call per d)
                packed.store(T.Vector(), at: d * stride + c)
                if two { packed.store(T.Vector(), at: d * stride + c + lanes) }
            }
        }
        let rows = tanhTables?.keyExponential ?? job.operands.key
        transpose(count: keys, width: h, rows: rows + job.operands.keyLayout.offset(g, kvHead, j0),
                  rowStride: job.operands.keyLayout.row, into: packed, stride: stride)
    }

    /// logits[r · width + t] = the logit (bias added) of query row i0 + r and key j0 + t, for
    /// r < micro and t < keys; dot scores from the packed keys.
    private func tileLogits(_ i0: Int, _ micro: Int, _ j0: Int, _ keys: Int, _ packed: UnsafeMutablePointer<T>,
                            into logits: UnsafeMutablePointer<T>) {
        let lanes = T.Vector.scalarCount, width = job.flashKeys
        guard case .dot(let scale) = job.score else {
            for r in 0..<micro {
                tanhLogits(i0 + r, j0, keys, packed, into: logits + r * width)
                addBias(i0 + r, j0, keys, to: logits + r * width)
            }
            return
        }
        func q(_ r: Int) -> UnsafePointer<T> { queryRow(i0 + min(r, micro - 1)) }
        let s = T.Vector(repeating: scale)
        var c = 0
        while c < keys {
            var tile = RegisterTile<T>()
            tile.accumulate(q, aStep: 1, UnsafePointer(packed + c), bStep: job.packedStride, depth: shape.keyDim,
                            columns: keys - c)
            for r in 0..<FlashTile.microRows {
                let (x0, x1) = tile.row(r)
                logits.store(x0 * s, at: r * width + c)
                logits.store(x1 * s, at: r * width + c + lanes)
            }
            c += 2 * lanes
        }
        if job.bias != nil {
            for r in 0..<micro { addBias(i0 + r, j0, keys, to: logits + r * width) }
        }
    }

    /// The logits in `x` of row i and keys j0 ..< j0 + keys with the masked ones set to −∞,
    /// and their largest; nil when the row keeps none of these keys. Only the first vector of
    /// x is read and written when keys fit in it.
    private func maskedMaximum(_ i: Int, _ j0: Int, _ keys: Int, _ x: UnsafeMutablePointer<T>) -> T? {
        let lanes = T.Vector.scalarCount, vectors = (keys + lanes - 1) / lanes
        let kept = keptKeys(i, j0, keys)
        if case .none = kept { return nil }
        exclude(kept, keys, x, width: vectors * lanes)
        return T.maximum(UnsafePointer(x), vectors: vectors)
    }

    /// The online softmax step of row i over keys j0 ..< j0 + keys whose logits (masked) and
    /// largest are `x` and `maximum` (`maskedMaximum`): x becomes the weights e^(x − shift)
    /// (times the dropout keep), O is rescaled when the shift moves.
    private func softmaxUpdate(_ i: Int, _ j0: Int, _ keys: Int, _ x: UnsafeMutablePointer<T>, maximum: T?,
                               _ softmax: inout OnlineSoftmax<T>, out: UnsafeMutablePointer<T>) {
        let lanes = T.Vector.scalarCount, vectors = (keys + lanes - 1) / lanes
        guard let maximum else {
            x.update(repeating: 0, count: vectors * lanes)
            return
        }
        let factor = softmax.absorb(x, vectors: vectors, maximum: maximum)
        if factor != 1 { scale(factor, out, shape.valueDim) }
        if job.dropout != nil {
            for t in 0..<keys { x[t] *= keep(i, j0 + t) }
        }
    }

    /// out[r] += Σ_t weights[r · width + t] · v[j0 + t] for the micro-block's rows: microRows ×
    /// 2 vectors of value columns in registers per pass over the tile's keys (then microRows
    /// × 1 vector, then scalars, for the columns left).
    private func accumulateValues(_ micro: Int, _ j0: Int, _ keys: Int, _ weights: UnsafeMutablePointer<T>,
                                  out: UnsafeMutablePointer<T>) {
        let lanes = T.Vector.scalarCount, width = job.flashKeys, hv = shape.valueDim
        func o(_ r: Int) -> UnsafeMutablePointer<T> { out + min(r, micro - 1) * hv }
        func w(_ r: Int) -> UnsafePointer<T> { UnsafePointer(weights + min(r, micro - 1) * width) }
        let values = job.operands.value + job.operands.valueLayout.offset(g, kvHead, j0)
        let valueStride = job.operands.valueLayout.row
        var c = 0
        while c + 2 * lanes <= hv {
            var tile = RegisterTile<T>(loading: { UnsafePointer(o($0) + c) })
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
            var tile = RegisterTile<T>()
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

/// The packed Kᵀ tiles (`Row.packTransposedKeys`) of a worker's run of query blocks, kept so
/// that the blocks of one head, and the heads of one key/value head, pack each key tile once:
/// tile j0 lives in slot (j0 / width) mod slots, whose tag (group, key/value head, j0, keys)
/// names what it holds. With as many slots as a head has tiles nothing is packed twice.
struct PackedKeyTiles<T: KernelScalar> {
    let base: UnsafeMutablePointer<T>
    let slots: Int, tileElements: Int
    private let tags: UnsafeMutablePointer<Int>  // 4 per slot

    /// Slots over `base` (slots × tileElements) and `tags` (4 × slots), all empty.
    init(base: UnsafeMutablePointer<T>, slots: Int, tileElements: Int, tags: UnsafeMutablePointer<Int>) {
        (self.base, self.slots, self.tileElements, self.tags) = (base, slots, tileElements, tags)
        tags.update(repeating: -1, count: 4 * slots)
    }

    /// Slots for a job: one per key tile of a head, within 2^20 elements (at least one).
    static func slots(_ job: AttentionJob<T>) -> Int {
        let shape = job.shape, width = job.flashKeys, tile = max(1, shape.keyDim) * job.packedStride
        let tiles = (shape.keyLength + width - 1) / width
        return max(1, min(tiles, (1 << 20) / tile))
    }

    /// The packed tile of keys j0 ..< j0 + keys of `row`'s key/value head, packed now unless
    /// its slot holds it.
    func tile(_ row: Row<T>, _ j0: Int, _ keys: Int) -> UnsafeMutablePointer<T> {
        let slot = j0 / row.job.flashKeys % slots
        let tag = tags + 4 * slot, packed = base + slot * tileElements
        if tag[0] != row.g || tag[1] != row.kvHead || tag[2] != j0 || tag[3] != keys {
            row.packTransposedKeys(j0, keys, into: packed)
            (tag[0], tag[1], tag[2], tag[3]) = (row.g, row.kvHead, j0, keys)
        }
        return packed
    }
}
