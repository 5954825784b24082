/// Concat and additive logits, Σ_d w_d · tanh(c·(q_d + k_d)), without a tanh per pair: from
/// the e^{2c·x} tables of `TanhRows`, tanh(c·(q + k)) = 1 − 2/D with D = 1 + E_q·E_k, so a
/// logit is 2·Σ_d w_d·(1/2 − 1/D_d), and four quotients share one division:
///     w₁/D₁ + w₂/D₂ + w₃/D₃ + w₄/D₄ = ((w₁D₂ + w₂D₁)·D₃D₄ + (w₃D₄ + w₄D₃)·D₁D₂) / (D₁D₂·D₃D₄),
/// each D capped at 2^(E/4) (E: the largest finite exponent) so the products stay finite (the
/// capped quotient is below an ulp of 1, as the exact one). The lanes run over keys: the key
/// table is packed transposed, 2 vectors of keys per tile, as the dot path packs K.

extension Row {
    /// The tables of concat/additive scores, nil for dot scores or when the caller gave none.
    var tanhTables: TanhRows<T>? {
        switch job.score {
        case .dot: nil
        case .concat(_, _, let tables), .additive(_, let tables): tables
        }
    }

    /// out(i)[t] = the concat/additive logit of query row i and key j0 + t for i in `rows`,
    /// t < count (no bias); each tile of keys is packed once for all the rows (when it fits
    /// AttentionTile.maxPackedScratch; wider heads take tanh directly).
    func tanhLogits(_ rows: Range<Int>, _ j0: Int, _ count: Int, into out: (Int) -> UnsafeMutablePointer<T>) {
        let width = job.flashKeys, size = shape.keyDim * job.packedStride
        guard tanhTables != nil, size <= AttentionTile.maxPackedScratch else {
            for i in rows { for t in 0..<count { out(i)[t] = directTanhLogit(i, j0 + t) } }
            return
        }
        withUnsafeTemporaryAllocation(of: T.self, capacity: size) { buffer in
            guard let packed = buffer.baseAddress else { return }
            var c = 0
            while c < count {
                let keys = min(width, count - c)
                packTransposedKeys(j0 + c, keys, into: packed)
                for i in rows { tanhLogits(i, j0 + c, keys, packed, into: out(i) + c) }
                c += keys
            }
        }
    }

    /// out[t] for t < keys ≤ one tile: the logits of query row i and keys j0 ..< j0 + keys
    /// from `packed`, their table rows transposed (`packTransposedKeys`), 2 vectors at a time.
    func tanhLogits(_ i: Int, _ j0: Int, _ keys: Int, _ packed: UnsafePointer<T>, into out: UnsafeMutablePointer<T>) {
        guard tanhTables != nil else {
            for t in 0..<keys { out[t] = directTanhLogit(i, j0 + t) }
            return
        }
        let pair = 2 * T.Vector.scalarCount
        var c = 0
        while c < keys {
            tanhLogitPair(i, j0 + c, min(pair, keys - c), packed + c, into: out + c)
            c += pair
        }
    }

    /// `tanhLogits` for keys ≤ 2 vectors, the first of `packed`'s tile rows.
    private func tanhLogitPair(_ i: Int, _ j0: Int, _ keys: Int, _ packed: UnsafePointer<T>,
                               into out: UnsafeMutablePointer<T>) {
        guard let tables = tanhTables else { return }
        let weights: UnsafePointer<T>?, factor: T
        switch job.score {
        case .concat(_, let weight, _): (weights, factor) = (nil, weight)
        case .additive(let scale, _): (weights, factor) = (scale, 1)
        case .dot: return
        }
        let lanes = T.Vector.scalarCount, stride = job.packedStride, dim = shape.keyDim
        let e = tables.queryExponential + job.operands.queryLayout.offset(g, n, i)
        // Σ_d w_d·tanh_d = 2·Σ_d w_d·(1/2 − 1/D_d), accumulated per group of four from
        // (w₁ + w₂ + w₃ + w₄)/2 − Σ w/D: centred, the sums stay as small as the logit (Σ_d w_d/D_d
        // itself grows to Σ w/2, where float32's ulp is ~30× coarser at dim 128).
        var acc0 = T.Vector(), acc1 = T.Vector()
        var d = 0
        while d + 4 <= dim {
            let p = packed + d * stride, w = weights.map { $0 + d }
            let centre = T.Vector(repeating: w.map { ($0[0] + $0[1] + $0[2] + $0[3]) / 2 } ?? 2)
            acc0 += centre - fourQuotients(e + d, p, stride, w)
            acc1 += centre - fourQuotients(e + d, p + lanes, stride, w)
            d += 4
        }
        while d < dim {
            let w = weights?[d] ?? 1
            acc0 += T.Vector(repeating: w / 2) - T.Vector(repeating: w) / denominator(e[d], packed + d * stride)
            acc1 += T.Vector(repeating: w / 2) - T.Vector(repeating: w) / denominator(e[d], packed + d * stride + lanes)
            d += 1
        }
        let f = T.Vector(repeating: 2 * factor)
        let x0 = f * acc0, x1 = f * acc1
        for t in 0..<keys {
            let x = t < lanes ? x0[t] : x1[t - lanes]
            out[t] = x.isFinite ? x : directTanhLogit(i, j0 + t)
        }
    }

    /// The concat/additive logit of query row i and key j by tanh itself, SIMD across d: for
    /// calls without tables and pairs the tables cannot give (see `TanhRows`).
    func directTanhLogit(_ i: Int, _ j: Int) -> T {
        let inner: T, outer: UnsafePointer<T>?, factor: T
        switch job.score {
        case .concat(let scale, let weight, _): (inner, outer, factor) = (scale, nil, weight)
        case .additive(let scale, _): (inner, outer, factor) = (1, scale, 1)
        case .dot: return .nan
        }
        let q = queryRow(i), k = keyRow(j), dim = shape.keyDim
        let lanes = T.Vector.scalarCount
        let c = T.Vector(repeating: inner)
        var acc = T.Vector()
        var d = 0
        while d + lanes <= dim {
            let th = T.tanh(c * (q.vector(at: d) + k.vector(at: d)))
            acc = outer.map { acc.plusProduct($0.vector(at: d), th) } ?? acc + th
            d += lanes
        }
        var s = T.sum(acc)
        while d < dim {
            s += (outer?[d] ?? 1) * T.tanh(inner * (q[d] + k[d]))
            d += 1
        }
        return factor * s
    }
}

/// 2^(E/4), E the largest finite exponent of T: four capped denominators multiply finitely.
@_transparent
private func quotientCap<T: KernelScalar>(_: T.Type) -> T {
    T(sign: .plus, exponent: T.greatestFiniteMagnitude.exponent / 4, significand: 1)
}

/// min(1 + e·p[lanes], cap), NaN where e or a p lane is NaN.
@_transparent
private func denominator<T: KernelScalar>(_ e: T, _ p: UnsafePointer<T>) -> T.Vector {
    T.minimum(T.Vector(repeating: 1).plusProduct(T.Vector(repeating: e), p.vector(at: 0)), quotientCap(T.self))
}

/// Σ_{m<4} w[m]/D_m lane by lane, D_m = min(1 + e[m]·p[m·stride ..< + lanes], cap) (w nil:
/// all ones), with one division.
@_transparent
private func fourQuotients<T: KernelScalar>(_ e: UnsafePointer<T>, _ p: UnsafePointer<T>, _ stride: Int,
                                            _ w: UnsafePointer<T>?) -> T.Vector {
    let d1 = denominator(e[0], p), d2 = denominator(e[1], p + stride)
    let d3 = denominator(e[2], p + 2 * stride), d4 = denominator(e[3], p + 3 * stride)
    let d12 = d1 * d2, d34 = d3 * d4
    let first: T.Vector, second: T.Vector  // w₁D₂ + w₂D₁ and w₃D₄ + w₄D₃
    if let w {
        first = (d2 * w[0]).plusProduct(d1, T.Vector(repeating: w[1]))
        second = (d4 * w[2]).plusProduct(d3, T.Vector(repeating: w[3]))
    } else {
        first = d1 + d2
        second = d3 + d4
    }
    return (first * d34).plusProduct(second, d12) / (d12 * d34)
}
