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
    private let keyValueHeads: Int

    /// What build fixed: the axes, the inputs' feature dims and the weights' places.
    private struct Built {
        var inputs: BuiltInputs
        var query: Projection, key: Projection, gate: Projection?, value: Projection, output: Projection
    }

    public convenience init(_ config: MultiHeadAttentionConfig) throws(AttentionError) {
        try self.init(config, keyValueHeads: config.numHeads, layerName: "MultiHeadAttention")
    }

    /// A layer whose key and value have `keyValueHeads` heads (dividing config.numHeads).
    init(_ config: MultiHeadAttentionConfig, keyValueHeads: Int, layerName: String) throws(AttentionError) {
        try config.validate()
        self.config = config
        self.keyValueHeads = keyValueHeads
        self.layerName = layerName
    }

    private var heads: Int { config.numHeads }
    private var valueWidth: Int { config.valueDim ?? config.keyDim }

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
    private func state() throws(AttentionError) -> (Built, WeightStore<T>) {
        guard let built, let store else {
            throw AttentionError(.notBuilt, "the \(layerName) layer is not built: build it first")
        }
        return (built, store)
    }

    public func outputShapes(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) -> (output: [Int], scores: [Int]) {
        try state().0.inputs.shapes(query: query, value: value, key: key ?? value, heads: heads)
    }

    public func call(_ a: CallArguments) throws(AttentionError) {
        let (b, w) = try state()
        if a.reuseAttentionScores != nil {
            throw .invalid("\(layerName) takes no reuse_attention_scores")
        }
        let key = a.key ?? a.value
        let (outputShape, scoresShape) = try outputShapes(query: a.query.dims, value: a.value.dims, key: key.dims)
        let (output, scores) = try a.results(T.self, output: outputShape, scores: scoresShape)
        let projector = Projector(weights: w, workspace: Workspace<T>())
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
        let attended = try projector.attend(a, group, b.inputs.axes, mask: mask, bias: nil, dropout: dropout, scores: scores)
        let queryRows = try checkedProduct(Array(a.query.dims.dropLast()), "the query rows")
        if let gate = b.gate {
            let query = try a.query.elements(of: T.self, "query")
            multiplyBySigmoid(attended, try projector.project(query, rows: queryRows, gate, "the gate"),
                              queryRows * heads * valueWidth)
        }
        try projector.project(attended, rows: queryRows, b.output, into: output, accumulate: false, inputAxes: 2)
    }
}
