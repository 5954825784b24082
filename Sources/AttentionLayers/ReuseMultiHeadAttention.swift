import AttentionKernels

/// TF Model Garden's `ReuseMultiHeadAttention` constructor arguments.
public struct ReuseMultiHeadAttentionConfig: Sendable, Equatable {
    public var numHeads: Int
    public var keyDim: Int
    public var valueDim: Int?
    public var dropout = 0.0
    /// Heads whose scores come from an earlier layer: 0...numHeads, or −1 for all.
    public var reuseAttention = 0
    public var useRelativePE = false
    public var peMaxSeqLength = 512
    public var useBias = true
    public var outputShape: [Int]?
    public var attentionAxes: [Int]?
    public var seed: UInt64 = 0
    public var weightOptions = WeightOptions()

    public init(numHeads: Int, keyDim: Int, valueDim: Int? = nil) {
        self.numHeads = numHeads; self.keyDim = keyDim; self.valueDim = valueDim
    }

    /// The multi-head settings the two layers share, for their common validation.
    var multiHead: MultiHeadAttentionConfig {
        var m = MultiHeadAttentionConfig(numHeads: numHeads, keyDim: keyDim, valueDim: valueDim)
        m.dropout = dropout; m.useBias = useBias; m.outputShape = outputShape; m.attentionAxes = attentionAxes
        m.seed = seed; m.weightOptions = weightOptions
        return m
    }

    public func validate() throws(AttentionError) {
        try multiHead.validate()
        guard reuseAttention >= -1, reuseAttention <= numHeads else {
            throw .invalid("reuse_attention should be between -1 and \(numHeads) (num_heads); got \(reuseAttention)")
        }
        guard peMaxSeqLength >= 1 else {
            throw .invalid("pe_max_seq_length must be a positive integer; got \(peMaxSeqLength)")
        }
    }

    /// Reused heads r (−1 resolved) and new heads n = numHeads − r.
    var reused: Int { reuseAttention == -1 ? numHeads : reuseAttention }
    var fresh: Int { numHeads - reused }
}

/// Multi-head attention that reuses the first r heads' attention weights from an earlier
/// layer (TF Model Garden's `ReuseMultiHeadAttention`). The n = N − r new heads compute
///   A_new = softmax(Q·Kᵀ/√key_dim + relative position bias, masked by adding −1e9),
/// the reused heads take A_reuse = reuse_attention_scores[:, :r]; the output is
///   (A_reuse·V_reuse)·W_out_reuse + b + (A_new·V_new)·W_out_new [+ b only when r = 0],
/// and the scores are [A_new, A_reuse] along the head axis (full reuse: the input as given).
public final class ReuseMultiHeadAttention<T: KernelScalar>: StoresWeights, @unchecked Sendable {
    public let config: ReuseMultiHeadAttentionConfig
    private(set) var store: WeightStore<T>?
    private var built: Built?
    let layerName = "ReuseMultiHeadAttention"

    private struct Built {
        var inputs: BuiltInputs
        var positionEmbeddings: Int?
        var query: Projection?, key: Projection?, valueReuse: Projection?, valueNew: Projection?
        var outputReuse: Projection?, outputNew: Projection?
    }

    public init(_ config: ReuseMultiHeadAttentionConfig) throws(AttentionError) {
        try config.validate()
        self.config = config
    }

    private var heads: Int { config.numHeads }
    private var valueWidth: Int { config.valueDim ?? config.keyDim }

    public func build(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) {
        let inputs = try BuiltInputs(query: query, value: value, key: key ?? value, axes: config.attentionAxes,
                                     negativeBase: query.count + 1, outputShape: config.outputShape,
                                     layerName: layerName)
        let (axes, dq, dk, dv, outputShape) = (inputs.axes, inputs.queryDim, inputs.keyDim, inputs.valueDim, inputs.outputShape)
        let (r, n) = (config.reused, config.fresh)
        let usePE = config.useRelativePE && n > 0
        if usePE, axes.attention != [1] {
            throw .invalid("use_relative_pe needs attention over axis 1 only; attention_axes resolve to \(axes.attention)")
        }
        let (hk, hv, p) = (config.keyDim, valueWidth, config.peMaxSeqLength)
        var plan = WeightPlan(options: config.weightOptions)
        let bias = config.useBias
        var b = Built(inputs: inputs)
        if usePE {
            _ = try checkedProduct([2, p], "2 x pe_max_seq_length")
            b.positionEmbeddings = plan.add(WeightSpec(name: "relative_position_embeddings", shape: [1, n, 2 * p - 1]),
                                            .truncatedNormal(mean: 0, stddev: 0.2))
        }
        if n > 0 {
            b.query = plan.projection("query", kernel: [dq, n, hk], inputAxes: 1, biasShape: [n, hk], bias: bias)
            b.key = plan.projection("key", kernel: [dk, n, hk], inputAxes: 1, biasShape: [n, hk], bias: bias)
        }
        if r > 0 {
            b.valueReuse = plan.projection("value_reuse", kernel: [dv, r, hv], inputAxes: 1, biasShape: [r, hv], bias: bias)
        }
        if n > 0 {
            b.valueNew = plan.projection("value_new", kernel: [dv, n, hv], inputAxes: 1, biasShape: [n, hv], bias: bias)
        }
        if r > 0 {
            b.outputReuse = plan.projection("attention_output_reuse", kernel: [r, hv] + outputShape, inputAxes: 2,
                                            biasShape: outputShape, bias: bias)
        }
        if n > 0 {
            b.outputNew = plan.projection("attention_output_new", kernel: [n, hv] + outputShape, inputAxes: 2,
                                          biasShape: outputShape, bias: bias && r == 0)
        }
        store = try plan.store(seed: config.seed)
        built = b
    }

    private func state() throws(AttentionError) -> (Built, WeightStore<T>) {
        guard let built, let store else {
            throw AttentionError(.notBuilt, "the ReuseMultiHeadAttention layer is not built: build it first")
        }
        return (built, store)
    }

    public func outputShapes(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) -> (output: [Int], scores: [Int]) {
        try state().0.inputs.shapes(query: query, value: value, key: key ?? value, heads: heads)
    }

    public func call(_ a: CallArguments) throws(AttentionError) {
        _ = try forward(a, Workspace<T>(), keep: false)
    }

    /// What one forward pass computed, for the backward.
    private struct Pass {
        var output: UnsafeMutablePointer<T>, scores: UnsafeMutablePointer<T>?
        var outputShape: [Int], scoresShape: [Int]
        var queryRows: Int, keyRows: Int
        var dropout: AttentionDropout?
        /// Reused heads: the given scores, their head count, the projected values' kernel
        /// view, the attention output.
        var reuse: UnsafeMutablePointer<T>?, reuseHeads = 0
        var reusedValueOperand: ProjectedOperand<T>?, reusedAttended: UnsafeMutablePointer<T>?
        var reusedShape: AttentionShape?
        /// New heads: the fused pass, its mask and bias.
        var fresh: AttendedHeads<T>?, group: HeadGroup?, mask: AttentionMask?, bias: LogitBias<T>?
    }

    /// The forward; `keep` keeps what the backward needs.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    private func forward(_ a: CallArguments, _ ws: Workspace<T>, keep: Bool) throws(AttentionError) -> Pass {
        let (b, w) = try state()
        for (given, name) in [(a.queryMask, "query_mask"), (a.valueMask, "value_mask"), (a.keyMask, "key_mask")] where given != nil {
            throw .invalid("ReuseMultiHeadAttention takes no \(name); pass an attention_mask")
        }
        if a.useCausalMask { throw .invalid("ReuseMultiHeadAttention has no causal mask; pass an attention_mask") }
        if a.usesCache { throw .invalid("ReuseMultiHeadAttention takes no cache (\(KeyValueCacheMessage.layers))") }
        let key = a.key ?? a.value
        let (outputShape, scoresShape) = try outputShapes(query: a.query.dims, value: a.value.dims, key: key.dims)
        let (output, scores) = try a.results(T.self, output: outputShape, scores: scoresShape)
        let (r, n) = (config.reused, config.fresh)
        let (hk, hv) = (config.keyDim, valueWidth)
        let nb = b.inputs.axes.batch.count
        var reuse: UnsafeMutablePointer<T>?
        var reuseHeads = heads
        if r > 0 {
            guard let given = a.reuseAttentionScores else {
                throw .invalid("reuse_attention_scores cannot be None when reuse_attention is \(config.reuseAttention)")
            }
            guard r == heads || nb == 1 else {
                throw .invalid("partial reuse takes heads [:, :\(r)] of the scores, which needs the heads at axis 1 (attention over every non-batch axis)")
            }
            // Partial reuse reads the first r heads of scores that may hold more.
            var wanted = scoresShape
            if r < heads, given.dims.count == wanted.count, given.dims[nb] >= r { wanted[nb] = given.dims[nb] }
            try given.expect(wanted, "reuse_attention_scores", r < heads ? "the scores' shape, with at least \(r) heads" : "the scores' shape")
            reuseHeads = wanted[nb]
            reuse = try given.elements(of: T.self, "reuse_attention_scores")
        }

        let projector = Projector(weights: w, workspace: ws)
        let queryRows = try checkedProduct(Array(a.query.dims.dropLast()), "the query rows")
        let keyRows = try checkedProduct(Array(a.value.dims.dropLast()), "the key rows")
        let (groups, tq, tk) = try b.inputs.axes.problemSizes(query: a.query.dims, key: key.dims)
        let dropout = a.training && config.dropout > 0
            ? AttentionDropout(mask: DropoutMask(rate: config.dropout, seed: a.dropoutSeed, stream: a.dropoutStream),
                               scoresAfterDropout: false)
            : nil
        let value = try a.value.elements(of: T.self, "value")
        let headSize = tq * tk
        var pass = Pass(output: output, scores: scores, outputShape: outputShape, scoresShape: scoresShape,
                        queryRows: queryRows, keyRows: keyRows, dropout: dropout, reuse: reuse, reuseHeads: reuseHeads)
        if let reuse, let valueReuse = b.valueReuse, let outputReuse = b.outputReuse {
            let v = try projector.project(value, rows: keyRows, valueReuse, "the reused heads' values")
            let attended = try ws.buffer(try checkedProduct([queryRows, r, hv], "the reused heads' output"), "the reused heads' output")
            let vOperand = try projector.operand(v, input: a.value.dims, heads: r, width: hv, b.inputs.axes, gather: true)
            let oOperand = try projector.operand(attended, input: a.query.dims, heads: r, width: hv, b.inputs.axes, gather: false)
            let shape = AttentionShape(groups: groups, heads: r, keyValueHeads: r, queryLength: tq, keyLength: tk,
                                       keyDim: hk, valueDim: hv)
            weightedSum(shape: shape, weights: reuse, weightsLayout: WeightsLayout(group: reuseHeads * headSize, head: headSize, row: tk),
                        value: vOperand.data, valueLayout: vOperand.layout, output: oOperand.data,
                        outputLayout: oOperand.layout, dropout: dropout,
                        placement: ScoresPlacement(heads: heads, firstHead: n))
            oOperand.scatter()
            try projector.project(attended, rows: queryRows, outputReuse, into: output, accumulate: false, inputAxes: 2)
            if let scores {
                for g in 0..<groups {
                    (scores + (g * heads + n) * headSize).update(from: reuse + g * reuseHeads * headSize, count: r * headSize)
                }
            }
            (pass.reusedValueOperand, pass.reusedAttended, pass.reusedShape) = (vOperand, attended, shape)
        }
        guard let queryProjection = b.query, let keyProjection = b.key, let valueNew = b.valueNew,
              let outputNew = b.outputNew else { return pass }
        let mask = try MultiHeadMask(axes: b.inputs.axes, query: a.query.dims, value: a.value.dims, scoresShape: scoresShape)
            .build(a, window: 0, fullyMaskedRow: .subtractLarge, workspace: ws)
        let bias = b.positionEmbeddings.map {
            LogitBias<T>.relativePosition(table: w.values($0), headStride: 2 * config.peMaxSeqLength - 1,
                                          maxDistance: config.peMaxSeqLength)
        }
        let group = HeadGroup(query: queryProjection, key: keyProjection, value: valueNew, heads: n, keyValueHeads: n,
                              keyDim: hk, valueDim: hv)
        let attended = try projector.attend(a, group, b.inputs.axes, mask: mask, bias: bias, dropout: dropout, scores: scores,
                                            placement: ScoresPlacement(heads: heads, firstHead: 0), keepLogSumExp: keep)
        try projector.project(attended.attended, rows: queryRows, outputNew, into: output, accumulate: r > 0, inputAxes: 2)
        (pass.fresh, pass.group, pass.mask, pass.bias) = (attended, group, mask, bias)
        return pass
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func backward(_ a: CallArguments, _ g: GradientArguments) throws(AttentionError) {
        let (b, w) = try state()
        let ws = Workspace<T>()
        let pass = try forward(a, ws, keep: true)
        let (grads, dOut) = try Gradients<T>.prepare(g, a, specs: w.specs, output: pass.outputShape,
                                                     scores: pass.scoresShape)
        let projector = Projector(weights: w, workspace: ws)
        let (r, n, hv) = (config.reused, config.fresh, valueWidth)
        let (groups, tq, tk) = try b.inputs.axes.problemSizes(query: a.query.dims, key: (a.key ?? a.value).dims)
        let headSize = tq * tk
        if let reuse = pass.reuse, let vOperand = pass.reusedValueOperand, let attended = pass.reusedAttended,
           let shape = pass.reusedShape, let valueReuse = b.valueReuse, let outputReuse = b.outputReuse {
            let dAttended = try ws.zeros(pass.queryRows * r * hv, "the reused heads' output gradient")
            try projector.backProject(dOut, input: attended, rows: pass.queryRows, outputReuse, inputAxes: 2, grads,
                                      input: dAttended)
            let dv = try ws.buffer(pass.keyRows * r * hv, "the reused heads' value gradient")
            let dO = try projector.operand(dAttended, input: a.query.dims, heads: r, width: hv, b.inputs.axes, gather: true)
            let dvOperand = try projector.operand(dv, input: a.value.dims, heads: r, width: hv, b.inputs.axes, gather: false)
            let dReuse = grads.reuseAttentionScores
            let layout = WeightsLayout(group: pass.reuseHeads * headSize, head: headSize, row: tk)
            weightedSumBackward(shape: shape, weights: reuse, weightsLayout: layout, value: vOperand.data,
                                valueLayout: vOperand.layout, dropout: pass.dropout,
                                placement: ScoresPlacement(heads: heads, firstHead: n),
                                gradients: WeightedSumGradients(output: dO.data, outputLayout: dO.layout,
                                                                value: dvOperand.data, valueLayout: dvOperand.layout,
                                                                weights: dReuse, weightsLayout: layout))
            dvOperand.scatter()
            // The returned scores of the reused heads are the given ones.
            if let dReuse, let dScores = grads.scores?.gradient {
                for gi in 0..<groups {
                    axpy(1, dScores + (gi * heads + n) * headSize, dReuse + gi * pass.reuseHeads * headSize, r * headSize)
                }
            }
            try projector.backProject(dv, input: try a.value.elements(of: T.self, "value"), rows: pass.keyRows, valueReuse,
                                      grads, input: grads.value)
        } else if grads.reuseAttentionScores != nil {
            throw .invalid("a reuse_attention_scores gradient was asked for but the layer reuses no scores")
        }
        if let fresh = pass.fresh, let group = pass.group, let mask = pass.mask, let outputNew = b.outputNew {
            let dAttended = try ws.zeros(pass.queryRows * n * hv, "the new heads' output gradient")
            try projector.backProject(dOut, input: fresh.attended, rows: pass.queryRows, outputNew, inputAxes: 2, grads,
                                      input: dAttended)
            try projector.attendBackward(fresh, a, group, b.inputs.axes, mask: mask, bias: pass.bias, dropout: pass.dropout,
                                         placement: ScoresPlacement(heads: heads, firstHead: 0), dAttended: dAttended,
                                         scores: grads.scores, biasGradient: b.positionEmbeddings.flatMap { grads.weights[$0] },
                                         activity: nil, grads)
        }
        if g.regularization { w.addPenaltyGradients(config.weightOptions, grads) }
    }

    /// The kernel and bias regularizers' penalties. As TF Model Garden, whose constructor
    /// takes an activity_regularizer but never stores it, no activity is penalized.
    public func losses(_ a: CallArguments?) throws(AttentionError) -> [Double] {
        try state().1.penalties(config.weightOptions)
    }

    public func applyConstraints() throws(AttentionError) {
        try state().1.applyConstraints(config.weightOptions)
    }
}
