import AttentionKernels

/// `keras.layers.MultiHeadAttention`'s constructor arguments.
public struct MultiHeadAttentionConfig: Sendable, Equatable {
    public var numHeads: Int
    public var keyDim: Int
    /// nil: keyDim.
    public var valueDim: Int?
    public var dropout = 0.0
    public var useBias = true
    /// nil: the query's last dim.
    public var outputShape: [Int]?
    /// nil: every axis but batch and features.
    public var attentionAxes: [Int]?
    /// nil: none; else keep |i − j| < slidingWindow.
    public var slidingWindow: Int?
    public var useGate = false
    /// Seeds the weight initialisation.
    public var seed: UInt64 = 0
    public var weightOptions = WeightOptions()

    public init(numHeads: Int, keyDim: Int, valueDim: Int? = nil) {
        self.numHeads = numHeads; self.keyDim = keyDim; self.valueDim = valueDim
    }

    /// Throws for values Keras refuses, and for values that cannot work.
    public func validate() throws(AttentionError) {
        guard numHeads >= 1 else { throw .invalid("num_heads must be a positive integer; got \(numHeads)") }
        guard keyDim >= 1 else { throw .invalid("key_dim must be a positive integer; got \(keyDim)") }
        if let valueDim, valueDim < 1 {
            throw .invalid("value_dim must be a positive integer or None; got \(valueDim)")
        }
        try validateDropout(dropout)
        if let outputShape {
            guard !outputShape.isEmpty, outputShape.allSatisfy({ $0 >= 1 }) else {
                throw .invalid("output_shape must be positive dims; got \(outputShape)")
            }
        }
        if let slidingWindow, slidingWindow < 1 {
            throw .invalid("sliding_window must be None or a positive integer; got \(slidingWindow)")
        }
        try weightOptions.validate()
    }
}

/// Multi-head attention (`keras.layers.MultiHeadAttention`) over inputs of any rank ≥ 3:
///   Q = query·Wq + bq, K = key·Wk + bk, V = value·Wv + bv (per head, EinsumDense kernels),
///   A = softmax(Q·Kᵀ/√key_dim, masked) over the key attention axes jointly,
///   O = (A·V [⊙ sigmoid(query·Wg + bg)])·Wo + bo.
/// With fewer key/value heads than query heads (GroupQueryAttention), query head n reads
/// key/value head n / (heads / keyValueHeads), shared in place, never copied.
public final class MultiHeadAttention<T: KernelScalar>: StoresWeights, @unchecked Sendable {
    public let config: MultiHeadAttentionConfig
    private(set) var store: WeightStore<T>?
    private var built: Built?
    let layerName: String
    let keyValueHeads: Int
    /// Whether the activity regularizer also penalizes the layer's own outputs (the output
    /// and returned scores), as Keras's GroupQueryAttention does on top of its projections.
    let penalizesOwnOutputs: Bool

    /// What build fixed: the axes, the inputs' feature dims and the weights' places.
    struct Built {
        var inputs: BuiltInputs
        var query: Projection, key: Projection, gate: Projection?, value: Projection, output: Projection
    }

    public convenience init(_ config: MultiHeadAttentionConfig) throws(AttentionError) {
        try self.init(config, keyValueHeads: config.numHeads, layerName: "MultiHeadAttention", penalizesOwnOutputs: false)
    }

    /// A layer whose key and value have `keyValueHeads` heads (dividing config.numHeads).
    init(_ config: MultiHeadAttentionConfig, keyValueHeads: Int, layerName: String,
         penalizesOwnOutputs: Bool) throws(AttentionError) {
        try config.validate()
        self.config = config
        self.keyValueHeads = keyValueHeads
        self.layerName = layerName
        self.penalizesOwnOutputs = penalizesOwnOutputs
    }

    var heads: Int { config.numHeads }
    var valueWidth: Int { config.valueDim ?? config.keyDim }

    public func build(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) {
        let inputs = try BuiltInputs(query: query, value: value, key: key ?? value, axes: config.attentionAxes,
                                     outputShape: config.outputShape, layerName: layerName)
        let (dq, dk, dv, outputShape) = (inputs.queryDim, inputs.keyDim, inputs.valueDim, inputs.outputShape)
        let (hk, hv, kv) = (config.keyDim, valueWidth, keyValueHeads)
        var plan = WeightPlan(options: config.weightOptions)
        let bias = config.useBias
        let q = plan.projection("query", kernel: [dq, heads, hk], inputAxes: 1, biasShape: [heads, hk], bias: bias)
        let k = plan.projection("key", kernel: [dk, kv, hk], inputAxes: 1, biasShape: [kv, hk], bias: bias)
        let gate = config.useGate
            ? plan.projection("gate", kernel: [dq, heads, hv], inputAxes: 1, biasShape: [heads, hv], bias: bias) : nil
        let v = plan.projection("value", kernel: [dv, kv, hv], inputAxes: 1, biasShape: [kv, hv], bias: bias)
        let o = plan.projection("attention_output", kernel: [heads, hv] + outputShape, inputAxes: 2,
                                biasShape: outputShape, bias: bias)
        store = try plan.store(seed: config.seed)
        built = Built(inputs: inputs, query: q, key: k, gate: gate, value: v, output: o)
    }

    /// The built state, or a `notBuilt` error.
    func state() throws(AttentionError) -> (Built, WeightStore<T>) {
        guard let built, let store else {
            throw AttentionError(.notBuilt, "the \(layerName) layer is not built: build it first")
        }
        return (built, store)
    }

    public func outputShapes(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) -> (output: [Int], scores: [Int]) {
        try state().0.inputs.shapes(query: query, value: value, key: key ?? value, heads: heads)
    }

    public func call(_ a: CallArguments) throws(AttentionError) {
        if a.usesCache {  // a decoder's step over its key/value cache (KeyValueCache.swift)
            _ = try cachedForward(a, Workspace<T>())
            return
        }
        _ = try forward(a, Workspace<T>(), keep: false)
    }

    /// What one forward pass computed, for the backward and the activity losses.
    private struct Pass {
        var heads: AttendedHeads<T>
        var group: HeadGroup
        var mask: AttentionMask
        var dropout: AttentionDropout?
        var queryRows: Int
        /// The gate σ(query·Wg + bg) and the gated attention output (kept passes).
        var gate: UnsafeMutablePointer<T>?, gated: UnsafeMutablePointer<T>?
        var output: UnsafeMutablePointer<T>, scores: UnsafeMutablePointer<T>?
        var outputShape: [Int], scoresShape: [Int]
    }

    /// The forward; `keep` keeps what the backward needs: the log-sum-exp rows, the gate
    /// and the output before and after gating.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    private func forward(_ a: CallArguments, _ workspace: Workspace<T>, keep: Bool) throws(AttentionError) -> Pass {
        let (b, w) = try state()
        if a.reuseAttentionScores != nil {
            throw .invalid("\(layerName) takes no reuse_attention_scores")
        }
        let key = a.key ?? a.value
        let (outputShape, scoresShape) = try outputShapes(query: a.query.dims, value: a.value.dims, key: key.dims)
        let (output, scores) = try a.results(T.self, output: outputShape, scores: scoresShape)
        let projector = Projector(weights: w, workspace: workspace)
        let fusedPath = b.inputs.axes.rank == 3 && scores == nil && config.dropout == 0
        let mask = try MultiHeadMask(axes: b.inputs.axes, query: a.query.dims, value: a.value.dims, scoresShape: scoresShape)
            .build(a, window: config.slidingWindow ?? 0, fullyMaskedRow: fusedPath ? .uniform : .zero,
                   workspace: projector.workspace)
        let dropout = a.training && config.dropout > 0
            ? AttentionDropout(mask: DropoutMask(rate: config.dropout, seed: a.dropoutSeed, stream: a.dropoutStream),
                               scoresAfterDropout: false)
            : nil
        let group = HeadGroup(query: b.query, key: b.key, value: b.value, heads: heads, keyValueHeads: keyValueHeads,
                              keyDim: config.keyDim, valueDim: valueWidth)
        let attended = try projector.attend(a, group, b.inputs.axes, mask: mask, bias: nil, dropout: dropout,
                                            scores: scores, keepLogSumExp: keep)
        let queryRows = try checkedProduct(Array(a.query.dims.dropLast()), "the query rows")
        let width = queryRows * heads * valueWidth
        var pass = Pass(heads: attended, group: group, mask: mask, dropout: dropout, queryRows: queryRows,
                        output: output, scores: scores, outputShape: outputShape, scoresShape: scoresShape)
        if let gate = b.gate {
            let query = try a.query.elements(of: T.self, "query")
            let g = try projector.project(query, rows: queryRows, gate, "the gate")
            if keep {
                // The kernel's output stays as it is (the backward reads it).
                for e in 0..<width { g[e] = T.sigmoid(g[e]) }
                let gated = try workspace.buffer(width, "the gated attention output")
                for e in 0..<width { gated[e] = attended.attended[e] * g[e] }
                (pass.gate, pass.gated) = (g, gated)
            } else {
                multiplyBySigmoid(attended.attended, g, width)
            }
        }
        try projector.project(pass.gated ?? attended.attended, rows: queryRows, b.output, into: output,
                              accumulate: false, inputAxes: 2)
        return pass
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func backward(_ a: CallArguments, _ g: GradientArguments) throws(AttentionError) {
        let (b, w) = try state()
        if a.usesCache { throw .invalid(KeyValueCacheMessage.noGradients) }
        let workspace = Workspace<T>()
        let pass = try forward(a, workspace, keep: true)
        let (grads, dOut) = try Gradients<T>.prepare(g, a, specs: w.specs, output: pass.outputShape,
                                                     scores: pass.scoresShape)
        let projector = Projector(weights: w, workspace: workspace)
        let activity = g.regularization ? config.weightOptions.activityRegularizer : nil
        let outputCount = try elementCount(pass.outputShape, "the output")
        var dOutput = UnsafePointer(dOut)
        if let activity {
            let total = try workspace.buffer(outputCount, "the output's gradient")
            total.update(from: dOut, count: outputCount)
            let times = penalizesOwnOutputs ? 2.0 : 1.0  // output projection (and the layer's own output)
            activity.addGradient(of: pass.output, outputCount, factor: times / Double(a.query.dims[0]), into: total)
            dOutput = UnsafePointer(total)
        }
        var scoresGradient = grads.scores
        if let activity, penalizesOwnOutputs, let scores = pass.scores {
            let count = try elementCount(pass.scoresShape, "the scores")
            let total = try workspace.zeros(count, "the scores' gradient")
            if let given = grads.scores { total.update(from: given.gradient, count: count) }
            activity.addGradient(of: scores, count, factor: 1 / Double(a.query.dims[0]), into: total)
            scoresGradient = (UnsafePointer(total), UnsafePointer(scores))
        }
        let width = pass.queryRows * heads * valueWidth
        let dAttended = try workspace.zeros(width, "the attention output's gradient")
        try projector.backProject(dOutput, input: pass.gated ?? pass.heads.attended, rows: pass.queryRows, b.output,
                                  inputAxes: 2, grads, input: dAttended)
        if let gateProjection = b.gate, let gate = pass.gate {
            let ungated = pass.heads.attended
            // out = u ⊙ σ: ∂u = ∂out ⊙ σ, ∂(pre-activation) = (∂out ⊙ u + activity'(σ)) ⊙ σ(1 − σ).
            let dGate = try workspace.buffer(width, "the gate's gradient")
            for e in 0..<width { dGate[e] = dAttended[e] * ungated[e] }
            activity?.addGradient(of: gate, width, factor: 1 / Double(a.query.dims[0]), into: dGate)
            for e in 0..<width {
                dGate[e] *= gate[e] * (1 - gate[e])
                dAttended[e] *= gate[e]
            }
            try projector.backProject(dGate, input: try a.query.elements(of: T.self, "query"), rows: pass.queryRows,
                                      gateProjection, grads, input: grads.query)
        }
        try projector.attendBackward(pass.heads, a, pass.group, b.inputs.axes, mask: pass.mask, bias: nil,
                                     dropout: pass.dropout, dAttended: dAttended, scores: scoresGradient,
                                     biasGradient: nil, activity: activity, grads)
        if g.regularization { w.addPenaltyGradients(config.weightOptions, grads) }
    }

    public func losses(_ a: CallArguments?) throws(AttentionError) -> [Double] {
        let (_, w) = try state()
        var result = w.penalties(config.weightOptions)
        guard let a, let activity = config.weightOptions.activityRegularizer else { return result }
        if a.usesCache { return result + (try cachedActivityPenalties(a, activity)) }
        let workspace = Workspace<T>()  // holds the pass's buffers until the penalties are read
        let pass = try forward(a, workspace, keep: true)
        defer { withExtendedLifetime(workspace) {} }
        // Keras divides each activity penalty by its tensor's batch size; an empty batch's is 0.
        let h = pass.heads, batch = Double(max(1, a.query.dims[0])), keyBatch = Double(max(1, a.value.dims[0]))
        let keyRows = try checkedProduct(Array(a.value.dims.dropLast()), "the key rows")
        result.append(activity.penalty(of: h.query, pass.queryRows * heads * config.keyDim) / batch)
        result.append(activity.penalty(of: h.key, keyRows * keyValueHeads * config.keyDim) / keyBatch)
        if let gate = pass.gate { result.append(activity.penalty(of: gate, pass.queryRows * heads * valueWidth) / batch) }
        result.append(activity.penalty(of: h.value, keyRows * keyValueHeads * valueWidth) / keyBatch)
        let output = activity.penalty(of: pass.output, try elementCount(pass.outputShape, "the output")) / batch
        result.append(output)
        if penalizesOwnOutputs {
            result.append(output)
            if let scores = pass.scores {
                result.append(activity.penalty(of: scores, try elementCount(pass.scoresShape, "the scores")) / batch)
            }
        }
        return result
    }

    public func applyConstraints() throws(AttentionError) {
        try state().1.applyConstraints(config.weightOptions)
    }
}
