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
    public var kernelInitializer = Initializer.glorotUniform
    public var biasInitializer = Initializer.zeros
    public var kernelRegularizer: Regularizer?
    public var biasRegularizer: Regularizer?
    public var activityRegularizer: Regularizer?
    public var kernelConstraint: Constraint?
    public var biasConstraint: Constraint?

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
        try kernelInitializer.validate()
        try biasInitializer.validate()
        for (regularizer, slot) in [(kernelRegularizer, "kernel_regularizer"), (biasRegularizer, "bias_regularizer"),
                                    (activityRegularizer, "activity_regularizer")] {
            do { try regularizer?.validate() } catch { throw .invalid("\(slot): \(error.message)") }
        }
        for (constraint, slot) in [(kernelConstraint, "kernel_constraint"), (biasConstraint, "bias_constraint")] {
            do { try constraint?.validate(rank: nil) } catch { throw AttentionError(error.kind, "\(slot): \(error.message)") }
        }
    }
}

/// Multi-head attention (`keras.layers.MultiHeadAttention`) over inputs of any rank ≥ 3:
///   Q = query·Wq + bq, K = key·Wk + bk, V = value·Wv + bv (per head, EinsumDense kernels),
///   A = softmax(Q·Kᵀ/√key_dim, masked) over the key attention axes jointly,
///   O = (A·V [⊙ sigmoid(query·Wg + bg)])·Wo + bo.
public final class MultiHeadAttention<T: KernelScalar>: StoresWeights, @unchecked Sendable {
    public let config: MultiHeadAttentionConfig
    private(set) var store: WeightStore<T>?
    private var built: Built?
    let layerName = "MultiHeadAttention"

    /// Kernel and bias weight indices of one projection.
    private struct Projection {
        var kernel: Int
        var bias: Int?
    }

    /// What build fixed: the axes, the inputs' feature dims and the weights' places.
    private struct Built {
        var axes: AttentionAxes
        var queryDim: Int, keyDim: Int, valueDim: Int
        var outputShape: [Int]
        var query: Projection, key: Projection, gate: Projection?, value: Projection, output: Projection
    }

    public init(_ config: MultiHeadAttentionConfig) throws(AttentionError) {
        try config.validate()
        self.config = config
    }

    private var heads: Int { config.numHeads }
    private var valueWidth: Int { config.valueDim ?? config.keyDim }

    public func build(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) {
        let key = key ?? value
        for (name, dims) in [("query", query), ("value", value), ("key", key)] {
            _ = try elementCount(dims, name)
        }
        guard Array(value.dropFirst().dropLast()) == Array(key.dropFirst().dropLast()) else {
            throw .shape("all dimensions of value and key, except the last one, must be equal; got value \(value) and key \(key)")
        }
        guard query.count == value.count else {
            throw .shape("query (rank \(query.count)) and value (rank \(value.count)) must have the same rank")
        }
        let axes = try AttentionAxes(config.attentionAxes, rank: query.count)
        let outputShape = config.outputShape ?? [query[query.count - 1]]
        let (dq, dk, dv) = (query[query.count - 1], key[key.count - 1], value[value.count - 1])
        var specs: [WeightSpec] = [], initializers: [Initializer] = []
        func add(_ name: String, _ input: Int, _ width: [Int], _ output: [Int]) -> Projection {
            specs.append(WeightSpec(name: "\(name)/kernel", shape: [input] + width + output, inputAxes: 1 + width.count))
            initializers.append(config.kernelInitializer)
            let kernel = specs.count - 1
            guard config.useBias else { return Projection(kernel: kernel, bias: nil) }
            specs.append(WeightSpec(name: "\(name)/bias", shape: output.isEmpty ? width : output))
            initializers.append(config.biasInitializer)
            return Projection(kernel: kernel, bias: specs.count - 1)
        }
        let q = add("query", dq, [], [heads, config.keyDim])
        let k = add("key", dk, [], [heads, config.keyDim])
        let gate = config.useGate ? add("gate", dq, [], [heads, valueWidth]) : nil
        let v = add("value", dv, [], [heads, valueWidth])
        let o = add("attention_output", heads, [valueWidth], outputShape)
        _ = try checkedProduct([heads, config.keyDim], "num_heads x key_dim")
        _ = try checkedProduct([heads, valueWidth], "num_heads x value_dim")
        store = try WeightStore(specs, initializers: initializers, seed: config.seed)
        built = Built(axes: axes, queryDim: dq, keyDim: dk, valueDim: dv, outputShape: outputShape,
                      query: q, key: k, gate: gate, value: v, output: o)
    }

    /// The built state, or a `notBuilt` error.
    private func state() throws(AttentionError) -> (Built, WeightStore<T>) {
        guard let built, let store else {
            throw AttentionError(.notBuilt, "the MultiHeadAttention layer is not built: build it first")
        }
        return (built, store)
    }

    public func outputShapes(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) -> (output: [Int], scores: [Int]) {
        let (b, _) = try state()
        let key = key ?? value
        let rank = b.axes.rank
        for (name, dims, dim) in [("query", query, b.queryDim), ("value", value, b.valueDim), ("key", key, b.keyDim)] {
            _ = try elementCount(dims, name)
            guard dims.count == rank else {
                throw .shape("the layer was built for rank-\(rank) inputs but \(name) has shape \(dims)")
            }
            guard dims[rank - 1] == dim else {
                throw .shape("the layer was built for \(name) last dim \(dim) but \(name) has shape \(dims)")
            }
        }
        guard Array(value.dropFirst().dropLast()) == Array(key.dropFirst().dropLast()) else {
            throw .shape("all dimensions of value and key, except the last one, must be equal; got value \(value) and key \(key)")
        }
        guard key[0] == value[0] else {
            throw .shape("batch sizes differ: key \(key) and value \(value)")
        }
        for axis in b.axes.batch where query[axis] != value[axis] {
            throw .shape("query \(query) and value \(value) differ at axis \(axis), which is not an attention axis")
        }
        let scores = b.axes.scoresShape(query: query, key: key, heads: heads)
        _ = try checkedProduct(scores, "the scores tensor")
        let output = Array(query.dropLast()) + b.outputShape
        _ = try elementCount(output, "the output")
        return (output, scores)
    }

    public func call(_ a: CallArguments) throws(AttentionError) {
        let (b, w) = try state()
        let key = a.key ?? a.value
        let (outputShape, scoresShape) = try outputShapes(query: a.query.dims, value: a.value.dims, key: key.dims)
        let query = try a.query.elements(of: T.self, "query")
        let value = try a.value.elements(of: T.self, "value")
        let keyData = try key.elements(of: T.self, "key")
        try a.output.expect(outputShape, "output")
        let output = try a.output.elements(of: T.self, "output")
        var scores: UnsafeMutablePointer<T>?
        if let s = a.scores {
            try s.expect(scoresShape, "scores")
            scores = try s.elements(of: T.self, "scores")
        }

        let ws = Workspace<T>()
        let (hk, hv) = (config.keyDim, valueWidth)
        let queryRows = try checkedProduct(a.query.dims.dropLast(), "the query rows")
        let keyRows = try checkedProduct(a.value.dims.dropLast(), "the key rows")
        func project(_ input: UnsafePointer<T>, rows: Int, _ p: Projection, width: Int, _ what: String) throws(AttentionError) -> UnsafeMutablePointer<T> {
            let out = try ws.buffer(try checkedProduct([rows, heads, width], what), what)
            let spec = w.specs[p.kernel]
            gemm(m: rows, n: heads * width, k: spec.shape[0],
                 GemmOperands(a: input, lda: spec.shape[0], b: w.values(p.kernel), ldb: heads * width,
                              c: out, ldc: heads * width, bias: p.bias.map { w.values($0) }))
            return out
        }
        let q = try project(query, rows: queryRows, b.query, width: hk, "the projected query")
        let k = try project(keyData, rows: keyRows, b.key, width: hk, "the projected key")
        let v = try project(value, rows: keyRows, b.value, width: hv, "the projected value")
        let attended = try ws.buffer(try checkedProduct([queryRows, heads, hv], "the attention output"), "the attention output")

        let (groups, tq, tk) = try b.axes.problemSizes(query: a.query.dims, key: key.dims)
        let qOperand = try operand(q, input: a.query.dims, width: hk, b.axes, ws, gather: true)
        let kOperand = try operand(k, input: key.dims, width: hk, b.axes, ws, gather: true)
        let vOperand = try operand(v, input: a.value.dims, width: hv, b.axes, ws, gather: true)
        let oOperand = try operand(attended, input: a.query.dims, width: hv, b.axes, ws, gather: false)

        let fusedPath = b.axes.rank == 3 && scores == nil && config.dropout == 0
        let mask = try MultiHeadMask(axes: b.axes, query: a.query.dims, value: a.value.dims, scoresShape: scoresShape)
            .build(a, window: config.slidingWindow ?? 0, fullyMaskedRow: fusedPath ? .uniform : .zero, workspace: ws)
        let dropout = a.training && config.dropout > 0
            ? AttentionDropout(mask: DropoutMask(rate: config.dropout, seed: a.dropoutSeed, stream: a.dropoutStream),
                               scoresAfterDropout: false)
            : nil
        attentionForward(
            shape: AttentionShape(groups: groups, heads: heads, keyValueHeads: heads, queryLength: tq,
                                  keyLength: tk, keyDim: hk, valueDim: hv),
            operands: AttentionOperands(query: UnsafePointer(qOperand.data), queryLayout: qOperand.layout,
                                        key: UnsafePointer(kOperand.data), keyLayout: kOperand.layout,
                                        value: UnsafePointer(vOperand.data), valueLayout: vOperand.layout,
                                        output: oOperand.data, outputLayout: oOperand.layout),
            score: .dot(scale: 1 / T.squareRoot(T(hk))), mask: mask, bias: nil, dropout: dropout, scores: scores)
        oOperand.scatter()

        if let gate = b.gate {
            let g = try project(query, rows: queryRows, gate, width: hv, "the gate")
            multiplyBySigmoid(attended, g, queryRows * heads * hv)
        }
        let outWidth = try checkedProduct(b.outputShape, "output_shape")
        gemm(m: queryRows, n: outWidth, k: heads * hv,
             GemmOperands(a: attended, lda: heads * hv, b: w.values(b.output.kernel), ldb: outWidth,
                          c: output, ldc: outWidth, bias: b.output.bias.map { w.values($0) }))
    }

    /// A projection (input dims but the last, heads, width) as kernel rows: in place when its
    /// batch and attention axes can each be walked with one stride, else through a
    /// transposed copy in (batch axes, heads, attention axes, width) order.
    private func operand(_ data: UnsafeMutablePointer<T>, input: [Int], width: Int, _ axes: AttentionAxes,
                         _ ws: Workspace<T>, gather: Bool) throws(AttentionError) -> ProjectionOperand<T> {
        let dims = axes.projectedDims(input, heads: heads, width: width)
        let strides = contiguousStrides(dims)
        if let g = mergedStride(axes.batch, dims: dims, strides: strides),
           let i = mergedStride(axes.attention, dims: dims, strides: strides) {
            return ProjectionOperand(data: data, layout: RowLayout(group: g, head: width, row: i), scatter: {})
        }
        let count = try checkedProduct(dims, "the transposed projection")
        let copy = try ws.buffer(count, "the transposed projection")
        let order = axes.canonicalOrder
        if gather { transposeCopy(data, dims: dims, order: order, copy, gather: true) }
        let rows = axes.attention.reduce(1) { $0 * dims[$1] }
        let layout = RowLayout(group: heads * rows * width, head: rows * width, row: width)
        return ProjectionOperand(data: copy, layout: layout, scatter: gather ? {} : {
            transposeCopy(data, dims: dims, order: order, copy, gather: false)
        })
    }
}

/// A projection as the kernel sees it, and how to write a transposed copy back.
private struct ProjectionOperand<T> {
    var data: UnsafeMutablePointer<T>
    var layout: RowLayout
    var scatter: () -> Void
}
