import AttentionKernels

/// The call shared by `Attention` and `AdditiveAttention` (Keras's dense attention):
/// scores (B, Tq, Tv) from a score function of query rows and key rows; value-masked and
/// (when causal) future positions get −1e9 added; softmax over Tv; dropout on the weights
/// when training; output = weights · value; query-masked output rows are set to 0.
struct DenseAttention {
    let layerName: String

    /// (B, Tq, Dv) and (B, Tq, Tv) for query (B, Tq, D), value (B, Tv, Dv), key (B, Tv, D).
    func shapes(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) -> (output: [Int], scores: [Int]) {
        let key = key ?? value
        for (name, dims) in [("query", query), ("value", value), ("key", key)] {
            guard dims.count == 3 else {
                throw .shape("\(layerName) needs rank-3 inputs (batch, time, dim); \(name) has shape \(dims)")
            }
            _ = try elementCount(dims, name)
        }
        guard query[0] == value[0], key[0] == value[0] else {
            throw .shape("\(layerName): batch sizes differ: query \(query[0]), value \(value[0]), key \(key[0])")
        }
        guard key[1] == value[1] else {
            throw .shape("\(layerName): key length \(key[1]) differs from value length \(value[1]) (shapes \(key) and \(value))")
        }
        guard query[2] == key[2] else {
            throw .shape("\(layerName): query last dim \(query[2]) differs from key last dim \(key[2]); the score needs them equal")
        }
        let scores = [query[0], query[1], value[1]]
        _ = try checkedProduct(scores, "the scores tensor")
        return ([query[0], query[1], value[2]], scores)
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
        let (b, tq, d) = (a.query.dims[0], a.query.dims[1], a.query.dims[2])
        let (tv, dv) = (a.value.dims[1], a.value.dims[2])
        let q = try a.query.elements(of: T.self, "query")
        let v = try a.value.elements(of: T.self, "value")
        let k = try key.elements(of: T.self, "key")
        let (out, scores) = try a.results(T.self, output: outputShape, scores: scoresShape)
        var views: [MaskView] = []
        if let m = a.valueMask {
            try m.expect([b, tv], "value_mask", "batch, Tv")
            views.append(MaskView(base: try m.mask("value_mask"), group: tv, head: 0, row: 0, column: 1))
        }
        var queryMask: UnsafePointer<UInt8>?
        if let m = a.queryMask {
            try m.expect([b, tq], "query_mask", "batch, Tq")
            queryMask = try m.mask("query_mask")
        }
        let shape = AttentionShape(groups: b, heads: 1, keyValueHeads: 1, queryLength: tq, keyLength: tv,
                                   keyDim: d, valueDim: dv)
        let layouts = (query: RowLayout(group: tq * d, head: 0, row: d), key: RowLayout(group: tv * d, head: 0, row: d),
                       value: RowLayout(group: tv * dv, head: 0, row: dv), output: RowLayout(group: tq * dv, head: 0, row: dv))
        let operands = AttentionOperands<T>(query: q, queryLayout: layouts.query, key: k, keyLayout: layouts.key,
                                            value: v, valueLayout: layouts.value, output: out, outputLayout: layouts.output)
        let mask = AttentionMask(views: views, causal: causal || a.useCausalMask, fullyMaskedRow: .subtractLarge)
        let workspace = Workspace<T>()
        let score = try withTanhTables(score, query: q, key: k, queries: b * tq * d, keys: b * tv * d, workspace)
        let dropout = a.training && dropoutRate > 0
            ? AttentionDropout(mask: DropoutMask(rate: dropoutRate, seed: a.dropoutSeed, stream: a.dropoutStream),
                               scoresAfterDropout: true)
            : nil
        let logSumExp = gradients == nil ? nil : try workspace.buffer(b * tq, "the log-sum-exp rows")
        withExtendedLifetime(workspace) {
            attentionForward(shape: shape, operands: operands, score: score, mask: mask, bias: nil,
                             dropout: dropout, scores: scores, logSumExp: logSumExp)
        }
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
        withExtendedLifetime(workspace) {
            attentionBackward(plan: plan, shape: shape, operands: operands, score: score, mask: mask, bias: nil, dropout: dropout,
                              logSumExp: UnsafePointer(logSumExp),
                              gradients: AttentionGradients(
                                output: UnsafePointer(dO), outputLayout: layouts.output, query: dq, queryLayout: layouts.query,
                                key: dk, keyLayout: layouts.key, value: dvBuffer, valueLayout: layouts.value,
                                scores: grads.scores,
                                scoreWeights: weightGradients),
                              scratch: scratch)
        }
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
