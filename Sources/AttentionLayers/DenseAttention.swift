import AttentionKernels

/// The call shared by `Attention` and `AdditiveAttention` (Keras's dense attention), for
/// inputs of one rank r ≥ 2 whose leading r − 2 axes L are batch axes (flattened into the
/// kernel's groups): scores (L…, Tq, Tv) from a score function of query rows and key rows;
/// value-masked and (when causal) future positions get −1e9 added; softmax over Tv; dropout
/// on the weights when training; output = weights · value; query-masked output rows are 0.
struct DenseAttention {
    let layerName: String

    /// Output (L…, Tq, Dv) and scores (L…, Tq, Tv) for query (L…, Tq, D), value (L…, Tv, Dv)
    /// and key (L…, Tv, D) (nil: the value). Any axis but the feature axes may be 0.
    func shapes(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) -> (output: [Int], scores: [Int]) {
        let key = key ?? value
        for (name, dims) in [("query", query), ("value", value), ("key", key)] {
            guard dims.count >= 2 else {
                throw .shape("\(layerName) needs inputs of rank >= 2 (batch axes..., time, dim); \(name) has shape \(dims)")
            }
            _ = try elementCount(dims, name)
        }
        guard query.count == value.count, key.count == value.count else {
            throw .shape("\(layerName): query \(query), value \(value) and key \(key) must have one rank")
        }
        let r = query.count
        guard query.prefix(r - 2) == value.prefix(r - 2), key.prefix(r - 2) == value.prefix(r - 2) else {
            throw .shape("\(layerName): the batch axes (all but the last two) differ: query \(query), value \(value), key \(key)")
        }
        guard key[r - 2] == value[r - 2] else {
            throw .shape("\(layerName): key length \(key[r - 2]) differs from value length \(value[r - 2]) (shapes \(key) and \(value))")
        }
        try requireFeatures([("query", query), ("value", value), ("key", key)], layerName)
        guard query[r - 1] == key[r - 1] else {
            throw .shape("\(layerName): query last dim \(query[r - 1]) differs from key last dim \(key[r - 1]); the score needs them equal")
        }
        let scores = Array(query.dropLast()) + [value[r - 2]]
        _ = try checkedProduct(scores, "the scores tensor")
        return (Array(query.dropLast()) + [value[r - 1]], scores)
    }

    /// The kernel view of a value_mask m for scores (L…, Tq, Tv). Of rank < r, m is a padding
    /// mask of the value's positions: it broadcasts to (L…, Tv) and keep[…, i, j] = m[…, j]
    /// (Keras expands it at −2). Of rank r, m is a mask of the scores and broadcasts to
    /// (L…, Tq, Tv) (Keras's meaning of a (B, Tq, Tv) value_mask without causal masking).
    func valueMaskView(_ m: RawTensor, scores: [Int], _ workspace: Workspace<some KernelScalar>) throws(AttentionError) -> MaskView {
        let r = scores.count
        var dims = m.dims
        if dims.count < r {
            _ = try broadcastStrides(dims, to: Array(scores.prefix(r - 2)) + [scores[r - 1]],
                                     "value_mask (a padding mask of the value's positions)")
            dims = Array(repeating: 1, count: r - 1 - dims.count) + dims
            dims.insert(1, at: r - 2)
        }
        return try maskView(try m.mask("value_mask"), dims: dims, scores: scores, groups: Array(0..<(r - 2)), head: nil,
                            rows: [r - 2], columns: [r - 1], "value_mask of shape \(m.dims)", workspace)
    }

    /// query_mask broadcast to the query rows (L…, Tq), as one byte per row.
    func queryRowMask(_ m: RawTensor, rows: [Int], _ workspace: Workspace<some KernelScalar>) throws(AttentionError) -> UnsafePointer<UInt8> {
        let strides = try broadcastStrides(m.dims, to: rows, "query_mask (a mask of the query's positions)")
        let data = try m.mask("query_mask")
        let keep = try workspace.bytes(try checkedProduct(rows, "the query rows"), "the query mask")
        var k = 0
        forEachOffset(rows, strides) { offset in
            keep[k] = data[offset]
            k += 1
        }
        return UnsafePointer(keep)
    }

    func checkLayerTakesNo(_ arguments: CallArguments) throws(AttentionError) {
        if arguments.keyMask != nil {
            throw .invalid("\(layerName) takes no key_mask (its mask is [query_mask, value_mask])")
        }
        if arguments.attentionMask != nil {
            throw .invalid("\(layerName) takes no attention_mask (its mask is [query_mask, value_mask])")
        }
        if arguments.reuseAttentionScores != nil {
            throw .invalid("\(layerName) takes no reuse_attention_scores")
        }
        if arguments.usesCache {
            throw .invalid("\(layerName) takes no cache (\(KeyValueCacheMessage.layers))")
        }
    }

    /// The forward call; with `gradients`, also the backward of L = Σ output·dO (+ Σ scores·dΣ).
    /// `scoreWeights` maps the score function's parameters to weight indices (dot: [scale];
    /// concat: [scale, concat_score_weight]; additive: [scale]; nil where the layer has none).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func call<T: KernelScalar>(_ a: CallArguments, _: T.Type, score: ScoreFunction<T>, causal: Bool,
                               dropoutRate: Double, gradients: (GradientArguments, specs: [WeightSpec], scoreWeights: [Int?])? = nil)
        throws(AttentionError) {
        try checkLayerTakesNo(a)
        let key = a.key ?? a.value
        let (outputShape, scoresShape) = try shapes(query: a.query.dims, value: a.value.dims, key: key.dims)
        let rank = a.query.dims.count
        let (tq, d) = (a.query.dims[rank - 2], a.query.dims[rank - 1])
        let (tv, dv) = (a.value.dims[rank - 2], a.value.dims[rank - 1])
        let b = try checkedProduct(Array(a.query.dims.prefix(rank - 2)), "the batch axes")  // the kernel's groups
        let q = try a.query.elements(of: T.self, "query")
        let v = try a.value.elements(of: T.self, "value")
        let k = try key.elements(of: T.self, "key")
        let (out, scores) = try a.results(T.self, output: outputShape, scores: scoresShape)
        let workspace = Workspace<T>()
        defer { withExtendedLifetime(workspace) {} }  // (its buffers are read up to the end)
        let views = try a.valueMask.map { m throws(AttentionError) in [try valueMaskView(m, scores: scoresShape, workspace)] } ?? []
        let queryMask = try a.queryMask.map { m throws(AttentionError) in
            try queryRowMask(m, rows: Array(a.query.dims.dropLast()), workspace)
        }
        let shape = AttentionShape(groups: b, heads: 1, keyValueHeads: 1, queryLength: tq, keyLength: tv,
                                   keyDim: d, valueDim: dv)
        let layouts = (query: RowLayout(group: tq * d, head: 0, row: d), key: RowLayout(group: tv * d, head: 0, row: d),
                       value: RowLayout(group: tv * dv, head: 0, row: dv), output: RowLayout(group: tq * dv, head: 0, row: dv))
        let operands = AttentionOperands<T>(query: q, queryLayout: layouts.query, key: k, keyLayout: layouts.key,
                                            value: v, valueLayout: layouts.value, output: out, outputLayout: layouts.output)
        let mask = AttentionMask(views: views, causal: causal || a.useCausalMask, fullyMaskedRow: .subtractLarge)
        let score = try withTanhTables(score, query: q, key: k, queries: b * tq * d, keys: b * tv * d, workspace)
        let dropout = a.training && dropoutRate > 0
            ? AttentionDropout(mask: DropoutMask(rate: dropoutRate, seed: a.dropoutSeed, stream: a.dropoutStream),
                               scoresAfterDropout: true)
            : nil
        let logSumExp = gradients == nil ? nil : try workspace.buffer(b * tq, "the log-sum-exp rows")
        attentionForward(shape: shape, operands: operands, score: score, mask: mask, bias: nil,
                         dropout: dropout, scores: scores, logSumExp: logSumExp)
        // The output of a masked query row is 0 (after the backward has read it).
        func zeroMaskedRows(_ x: UnsafeMutablePointer<T>) {
            guard let queryMask else { return }
            for row in 0..<(b * tq) where queryMask[row] == 0 { (x + row * dv).update(repeating: 0, count: dv) }
        }
        guard let (g, specs, scoreWeights) = gradients, let logSumExp else {
            zeroMaskedRows(out)
            return
        }
        let (grads, dOut) = try Gradients<T>.prepare(g, a, specs: specs, output: outputShape, scores: scoresShape)
        let dO = try workspace.buffer(b * tq * dv, "the output gradient")
        dO.update(from: dOut, count: b * tq * dv)
        zeroMaskedRows(dO)
        func buffer(_ given: UnsafeMutablePointer<T>?, _ count: Int, _ what: String) throws(AttentionError) -> UnsafeMutablePointer<T> {
            if let given { return given }
            return try workspace.buffer(count, what)
        }
        let dq = try buffer(grads.query, b * tq * d, "the query gradient")
        let dk = try buffer(a.key == nil ? nil : grads.key, b * tv * d, "the key gradient")
        let dvBuffer = try buffer(grads.value, b * tv * dv, "the value gradient")
        // dot: [scale]; concat: [scale, weight]; additive: d scales.
        let slots = max(2, d)
        let weightGradients = try workspace.zeros(slots, "the score weights' gradients")
        let (plan, scratch) = try workspace.backwardPlan(shape, score: score, bias: nil)
        attentionBackward(plan: plan, shape: shape, operands: operands, score: score, mask: mask, bias: nil, dropout: dropout,
                          logSumExp: UnsafePointer(logSumExp),
                          gradients: AttentionGradients(
                            output: UnsafePointer(dO), outputLayout: layouts.output, query: dq, queryLayout: layouts.query,
                            key: dk, keyLayout: layouts.key, value: dvBuffer, valueLayout: layouts.value,
                            scores: grads.scores,
                            scoreWeights: weightGradients),
                          scratch: scratch)
        zeroMaskedRows(out)
        if a.key == nil, let dValue = grads.value { axpy(1, dk, dValue, b * tv * d) }
        // Slot s of the kernel's weight gradients starts at s (only additive's one slot is a vector).
        for (slot, index) in scoreWeights.enumerated() {
            guard let index, let dw = grads.weights[index] else { continue }
            dw.update(from: weightGradients + slot, count: specs[index].count)
        }
    }
}

/// Concat and additive scores with e^{2c·q} and e^{2c·k} precomputed for every element (see
/// `TanhRows`; the workspace keeps them alive as long as the caller keeps it).
func withTanhTables<T: KernelScalar>(_ score: ScoreFunction<T>, query: UnsafePointer<T>, key: UnsafePointer<T>,
                                     queries: Int, keys: Int, _ workspace: Workspace<T>) throws(AttentionError) -> ScoreFunction<T> {
    func tables(_ c: T) throws(AttentionError) -> TanhRows<T> {
        let qe = try workspace.buffer(queries, "e^(2c·query)"), ke = try workspace.buffer(keys, "e^(2c·key)")
        tanhExponentials(query, c, queries, into: qe)
        tanhExponentials(key, c, keys, into: ke)
        return TanhRows(queryExponential: qe, keyExponential: ke)
    }
    switch score {
    case .dot: return score
    case .concat(let scale, let weight, _): return .concat(scale: scale, weight: weight, tanh: try tables(scale))
    case .additive(let scale, _): return .additive(scale: scale, tanh: try tables(1))
    }
}

/// Throws unless 0 ≤ rate < 1.
func validateDropout(_ rate: Double) throws(AttentionError) {
    guard rate >= 0, rate < 1 else {
        throw .invalid("dropout must be in [0, 1); got \(rate)")
    }
}
