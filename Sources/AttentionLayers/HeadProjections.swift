import AttentionKernels

/// The per-head projections of multi-head layers (Keras's EinsumDense kernels) and the
/// kernel's view of projected tensors, shared by MultiHeadAttention, GroupQueryAttention
/// and ReuseMultiHeadAttention.

/// Kernel and bias weight indices of one projection.
struct Projection {
    var kernel: Int
    var bias: Int?
}

/// The weights of a layer being built, in Keras's order.
struct WeightPlan {
    var specs: [WeightSpec] = []
    var initializers: [Initializer] = []
    let options: WeightOptions

    /// Adds a kernel of `shape` whose first `inputAxes` dims contract with the input, and a
    /// bias of `biasShape` when `bias` is true.
    mutating func projection(_ name: String, kernel shape: [Int], inputAxes: Int, biasShape: [Int],
                             bias: Bool) -> Projection {
        let kernel = add(WeightSpec(name: "\(name)/kernel", shape: shape, inputAxes: inputAxes), options.kernelInitializer)
        guard bias else { return Projection(kernel: kernel, bias: nil) }
        return Projection(kernel: kernel, bias: add(WeightSpec(name: "\(name)/bias", shape: biasShape), options.biasInitializer))
    }

    /// Adds one weight; returns its index.
    mutating func add(_ spec: WeightSpec, _ initializer: Initializer) -> Int {
        specs.append(spec)
        initializers.append(initializer)
        return specs.count - 1
    }

    func store<T: KernelScalar>(seed: UInt64) throws(AttentionError) -> WeightStore<T> {
        try WeightStore(specs, initializers: initializers, seed: seed)
    }
}

/// Runs projections with one layer's weights, into buffers of one call's workspace.
struct Projector<T: KernelScalar> {
    let weights: WeightStore<T>
    let workspace: Workspace<T>

    /// (rows × in) input · kernel (in × heads·width) + bias, in a new buffer of rows × heads·width.
    func project(_ input: UnsafePointer<T>, rows: Int, _ p: Projection, _ what: String) throws(AttentionError) -> UnsafeMutablePointer<T> {
        let shape = weights.specs[p.kernel].shape
        let width = try checkedProduct(Array(shape.dropFirst()), what)
        let out = try workspace.buffer(try checkedProduct([rows, width], what), what)
        try project(input, rows: rows, p, into: out, accumulate: false)
        return out
    }

    /// out (rows × width) = [out +] input (rows × in) · kernel (in × width) [+ bias], where
    /// `in` is the product of the kernel's contracted dims.
    func project(_ input: UnsafePointer<T>, rows: Int, _ p: Projection, into out: UnsafeMutablePointer<T>,
                 accumulate: Bool, inputAxes: Int = 1) throws(AttentionError) {
        let shape = weights.specs[p.kernel].shape
        let k = shape.prefix(inputAxes).reduce(1, *), n = shape.dropFirst(inputAxes).reduce(1, *)
        try workspace.gemm(m: rows, n: n, k: k,
                           GemmOperands(a: input, lda: k, b: weights.values(p.kernel), ldb: n, c: out, ldc: n,
                                        bias: p.bias.map { weights.values($0) }, accumulate: accumulate))
    }

    /// A projection of an input of shape `input` (dims but the last, heads, width) as kernel
    /// rows: in place when its batch and attention axes each walk with one stride, else
    /// through a transposed copy in (batch axes, heads, attention axes, width) order, which
    /// `gather` fills from the projection (for an input) or `scatter()` writes back (output).
    /// Consecutive input rows are `rowStride` elements apart (default heads · width).
    func operand(_ data: UnsafeMutablePointer<T>, input: [Int], heads: Int, width: Int, _ axes: AttentionAxes,
                 gather: Bool, rowStride: Int? = nil) throws(AttentionError) -> ProjectedOperand<T> {
        let dims = axes.projectedDims(input, heads: heads, width: width)
        var strides = contiguousStrides(dims)
        if let rowStride {
            for axis in 0..<(dims.count - 2) { strides[axis] = strides[axis] / (heads * width) * rowStride }
        }
        if let g = mergedStride(axes.batch, dims: dims, strides: strides),
           let i = mergedStride(axes.attention, dims: dims, strides: strides) {
            return ProjectedOperand(data: data, layout: RowLayout(group: g, head: width, row: i), scatter: {})
        }
        let copy = try workspace.buffer(try checkedProduct(dims, "a transposed projection"), "a transposed projection")
        let order = axes.canonicalOrder
        if gather { transposeCopy(data, dims: dims, strides: strides, order: order, copy, gather: true) }
        let rows = axes.attention.reduce(1) { $0 * dims[$1] }
        let layout = RowLayout(group: heads * rows * width, head: rows * width, row: width)
        return ProjectedOperand(data: copy, layout: layout, scatter: gather ? {} : {
            transposeCopy(data, dims: dims, strides: strides, order: order, copy, gather: false)
        })
    }
}

/// The heads one fused attention pass computes: their projections and sizes.
struct HeadGroup {
    var query: Projection, key: Projection, value: Projection
    var heads: Int, keyValueHeads: Int, keyDim: Int, valueDim: Int
}

/// One fused attention pass over a `HeadGroup`, as `Projector.attend` ran it: what its
/// backward needs.
struct AttendedHeads<T: KernelScalar> {
    /// The projections (rows, heads, width; contiguous in passes that keep the log-sum-exp,
    /// else possibly rows of one shared projection) and the output (query rows, heads,
    /// valueDim), in the inputs' layout.
    var query, key, value, attended: UnsafeMutablePointer<T>
    /// The kernel's view of them (transposed copies where the axes need them).
    var operands: AttentionOperands<T>
    var shape: AttentionShape
    var score: ScoreFunction<T>
    /// Per (group, head, query row), when the pass was asked to keep them.
    var logSumExp: UnsafeMutablePointer<T>?
}

extension Projector {
    /// Projects query, key and value for `group`'s heads and runs the fused kernel over
    /// `axes`; the result's `attended` is the attention output, (query rows, heads, valueDim)
    /// in the query's layout. Scores, when asked for, go to `scores` at `placement`.
    func attend(_ a: CallArguments, _ group: HeadGroup, _ axes: AttentionAxes, mask: AttentionMask,
                bias: LogitBias<T>?, dropout: AttentionDropout?, scores: UnsafeMutablePointer<T>?,
                placement: ScoresPlacement? = nil, keepLogSumExp: Bool = false) throws(AttentionError) -> AttendedHeads<T> {
        let key = a.key ?? a.value
        let queryRows = try checkedProduct(Array(a.query.dims.dropLast()), "the query rows")
        let keyRows = try checkedProduct(Array(a.value.dims.dropLast()), "the key rows")
        let (h, kv, hk, hv) = (group.heads, group.keyValueHeads, group.keyDim, group.valueDim)
        let q: UnsafeMutablePointer<T>, k: UnsafeMutablePointer<T>, v: UnsafeMutablePointer<T>
        var rowStride: Int?
        if !keepLogSumExp, let shared = try projectShared(a, group, rows: queryRows) {
            (q, k, v) = (shared.query, shared.key, shared.value)
            rowStride = shared.rowStride
        } else {
            q = try project(try a.query.elements(of: T.self, "query"), rows: queryRows, group.query, "the projected query")
            k = try project(try key.elements(of: T.self, "key"), rows: keyRows, group.key, "the projected key")
            v = try project(try a.value.elements(of: T.self, "value"), rows: keyRows, group.value, "the projected value")
        }
        let attended = try workspace.buffer(try checkedProduct([queryRows, h, hv], "the attention output"), "the attention output")
        let qOperand = try operand(q, input: a.query.dims, heads: h, width: hk, axes, gather: true, rowStride: rowStride)
        let kOperand = try operand(k, input: key.dims, heads: kv, width: hk, axes, gather: true, rowStride: rowStride)
        let vOperand = try operand(v, input: a.value.dims, heads: kv, width: hv, axes, gather: true, rowStride: rowStride)
        let oOperand = try operand(attended, input: a.query.dims, heads: h, width: hv, axes, gather: false)
        let (groups, tq, tk) = try axes.problemSizes(query: a.query.dims, key: key.dims)
        let shape = AttentionShape(groups: groups, heads: h, keyValueHeads: kv, queryLength: tq, keyLength: tk,
                                   keyDim: hk, valueDim: hv)
        let operands = AttentionOperands(query: UnsafePointer(qOperand.data), queryLayout: qOperand.layout,
                                         key: UnsafePointer(kOperand.data), keyLayout: kOperand.layout,
                                         value: UnsafePointer(vOperand.data), valueLayout: vOperand.layout,
                                         output: oOperand.data, outputLayout: oOperand.layout)
        let score = ScoreFunction<T>.dot(scale: 1 / T.squareRoot(T(hk)))
        let logSumExp = keepLogSumExp
            ? try workspace.buffer(try checkedProduct([groups, h, tq], "the log-sum-exp rows"), "the log-sum-exp rows") : nil
        attentionForward(shape: shape, operands: operands, score: score, mask: mask, bias: bias, dropout: dropout,
                         scores: scores, placement: placement, logSumExp: logSumExp)
        oOperand.scatter()
        return AttendedHeads(query: q, key: k, value: v, attended: attended, operands: operands, shape: shape,
                             score: score, logSumExp: logSumExp)
    }

    /// The backward of `attend` (run with keepLogSumExp) given dAttended, the gradient of its
    /// output: adds the projections' weight gradients and the inputs' gradients to `grads`,
    /// and dS to `biasGradient` (a relative-position table's). `activity` adds its penalty's
    /// gradient (divided by each input's batch size) at the projections' outputs.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func attendBackward(_ pass: AttendedHeads<T>, _ a: CallArguments, _ group: HeadGroup, _ axes: AttentionAxes,
                        mask: AttentionMask, bias: LogitBias<T>?, dropout: AttentionDropout?,
                        placement: ScoresPlacement? = nil, dAttended: UnsafeMutablePointer<T>,
                        scores: (gradient: UnsafePointer<T>, forward: UnsafePointer<T>)?,
                        biasGradient: UnsafeMutablePointer<T>?, activity: Regularizer?,
                        _ grads: Gradients<T>) throws(AttentionError) {
        guard let logSumExp = pass.logSumExp else { throw .invalid("libattention bug: a backward pass without the forward's log-sum-exp") }
        let key = a.key ?? a.value
        let queryRows = try checkedProduct(Array(a.query.dims.dropLast()), "the query rows")
        let keyRows = try checkedProduct(Array(a.value.dims.dropLast()), "the key rows")
        let (h, kv, hk, hv) = (group.heads, group.keyValueHeads, group.keyDim, group.valueDim)
        let dq = try workspace.buffer(queryRows * h * hk, "the projected query's gradient")
        let dk = try workspace.buffer(keyRows * kv * hk, "the projected key's gradient")
        let dv = try workspace.buffer(keyRows * kv * hv, "the projected value's gradient")
        let dO = try operand(dAttended, input: a.query.dims, heads: h, width: hv, axes, gather: true)
        let dqOperand = try operand(dq, input: a.query.dims, heads: h, width: hk, axes, gather: false)
        let dkOperand = try operand(dk, input: key.dims, heads: kv, width: hk, axes, gather: false)
        let dvOperand = try operand(dv, input: a.value.dims, heads: kv, width: hv, axes, gather: false)
        let (plan, scratch) = try workspace.backwardPlan(pass.shape, score: pass.score, bias: bias)
        attentionBackward(plan: plan, shape: pass.shape, operands: pass.operands, score: pass.score, mask: mask, bias: bias,
                          dropout: dropout, placement: placement, logSumExp: UnsafePointer(logSumExp),
                          gradients: AttentionGradients(
                            output: UnsafePointer(dO.data), outputLayout: dO.layout,
                            query: dqOperand.data, queryLayout: dqOperand.layout,
                            key: dkOperand.data, keyLayout: dkOperand.layout,
                            value: dvOperand.data, valueLayout: dvOperand.layout,
                            scores: scores, bias: biasGradient),
                          scratch: scratch)
        dqOperand.scatter(); dkOperand.scatter(); dvOperand.scatter()
        if let activity {
            activity.addGradient(of: pass.query, queryRows * h * hk, factor: 1 / Double(a.query.dims[0]), into: dq)
            activity.addGradient(of: pass.key, keyRows * kv * hk, factor: 1 / Double(key.dims[0]), into: dk)
            activity.addGradient(of: pass.value, keyRows * kv * hv, factor: 1 / Double(a.value.dims[0]), into: dv)
        }
        try backProject(dq, input: try a.query.elements(of: T.self, "query"), rows: queryRows, group.query, grads,
                        input: grads.query)
        try backProject(dk, input: try key.elements(of: T.self, "key"), rows: keyRows, group.key, grads,
                        input: grads.keyShare(a))
        try backProject(dv, input: try a.value.elements(of: T.self, "value"), rows: keyRows, group.value, grads,
                        input: grads.value)
    }
}

extension Projector {
    /// Self-attention (query, key and value one tensor): the three projections in one GEMM
    /// pass over the input, against the kernels side by side — each row of the result holds
    /// the row's query, key and value projections. nil when the inputs differ.
    func projectShared(_ a: CallArguments, _ group: HeadGroup, rows: Int)
        throws(AttentionError) -> (query: UnsafeMutablePointer<T>, key: UnsafeMutablePointer<T>,
                                   value: UnsafeMutablePointer<T>, rowStride: Int)? {
        guard a.value.data == a.query.data, a.value.dims == a.query.dims,
              a.key.map({ $0.data == a.query.data && $0.dims == a.query.dims }) ?? true else { return nil }
        let projections = [group.query, group.key, group.value]
        let widths = projections.map { weights.specs[$0.kernel].shape.dropFirst().reduce(1, *) }
        let input = weights.specs[group.query.kernel].shape[0], total = widths.reduce(0, +)
        let kernel = try workspace.buffer(try checkedProduct([input, total], "the shared projection's kernel"),
                                          "the shared projection's kernel")
        var column = 0
        for (p, width) in zip(projections, widths) {
            let w = weights.values(p.kernel)
            for r in 0..<input { (kernel + r * total + column).update(from: w + r * width, count: width) }
            column += width
        }
        var bias: UnsafeMutablePointer<T>?
        if projections.contains(where: { $0.bias != nil }) {
            let b = try workspace.buffer(total, "the shared projection's bias")
            column = 0
            for (p, width) in zip(projections, widths) {
                if let index = p.bias {
                    (b + column).update(from: weights.values(index), count: width)
                } else {
                    (b + column).update(repeating: 0, count: width)
                }
                column += width
            }
            bias = b
        }
        let out = try workspace.buffer(try checkedProduct([rows, total], "the shared projection"), "the shared projection")
        try workspace.gemm(m: rows, n: total, k: input,
                           GemmOperands(a: try a.query.elements(of: T.self, "query"), lda: input, b: kernel, ldb: total,
                                        c: out, ldc: total, bias: bias.map { UnsafePointer($0) }))
        return (out, out + widths[0], out + widths[0] + widths[1], total)
    }
}

/// A projection as the kernel sees it, and how to write a transposed copy back.
struct ProjectedOperand<T> {
    var data: UnsafeMutablePointer<T>
    var layout: RowLayout
    var scatter: () -> Void
}

extension CallArguments {
    /// The output, and the scores when asked for, after checking their shapes and dtype.
    func results<T: KernelScalar>(_: T.Type, output outputShape: [Int], scores scoresShape: [Int])
        throws(AttentionError) -> (output: UnsafeMutablePointer<T>, scores: UnsafeMutablePointer<T>?) {
        try output.expect(outputShape, "output")
        let out = try output.elements(of: T.self, "output")
        guard let s = scores else { return (out, nil) }
        try s.expect(scoresShape, "scores")
        return (out, try s.elements(of: T.self, "scores"))
    }
}
