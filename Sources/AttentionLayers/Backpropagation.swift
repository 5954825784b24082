import AttentionKernels

/// The backward call: for the forward `CallArguments`, the gradient of a loss L with respect
/// to the output (and optionally the returned scores) gives L's gradients with respect to
/// the inputs and the weights. Every output tensor is optional (nil: not computed) and is
/// overwritten.
public struct GradientArguments: Sendable {
    public var outputGradient: RawTensor
    public var scoresGradient: RawTensor?
    public var query: RawTensor?
    /// With no key in the call, also the key's share (key = value).
    public var value: RawTensor?
    /// Only when the call has a key.
    public var key: RawTensor?
    public var reuseAttentionScores: RawTensor?
    /// One per weight, in `weightSpecs` order (nil: none; a nil entry: not that weight).
    public var weights: [RawTensor?]?
    /// Adds the gradients of the regularization losses (weights and activity) to L.
    public var regularization: Bool

    public init(outputGradient: RawTensor, scoresGradient: RawTensor? = nil, query: RawTensor? = nil,
                value: RawTensor? = nil, key: RawTensor? = nil, reuseAttentionScores: RawTensor? = nil,
                weights: [RawTensor?]? = nil, regularization: Bool = false) {
        self.outputGradient = outputGradient; self.scoresGradient = scoresGradient
        self.query = query; self.value = value; self.key = key; self.reuseAttentionScores = reuseAttentionScores
        self.weights = weights; self.regularization = regularization
    }
}

/// Where one backward pass puts its results, checked and zeroed: input gradients (nil when
/// not asked for) and weight gradients by weight index; and the gradient of the returned
/// scores with the scores themselves, when the loss reads them.
struct Gradients<T: KernelScalar> {
    var query: UnsafeMutablePointer<T>?
    var value: UnsafeMutablePointer<T>?
    var key: UnsafeMutablePointer<T>?
    var reuseAttentionScores: UnsafeMutablePointer<T>?
    var weights: [UnsafeMutablePointer<T>?]
    var scores: (gradient: UnsafePointer<T>, forward: UnsafePointer<T>)?

    /// The output gradient and the results, after checking every tensor against the call's
    /// shapes. `keyShare` is where the key's gradient goes (the value's when the call has
    /// no key).
    static func prepare(_ g: GradientArguments, _ a: CallArguments, specs: [WeightSpec], output: [Int], scores: [Int])
        throws(AttentionError) -> (Gradients, outputGradient: UnsafeMutablePointer<T>) {
        try g.outputGradient.expect(output, "output_gradient", "the output's shape")
        let dOut = try g.outputGradient.elements(of: T.self, "output_gradient")
        var scoresPair: (gradient: UnsafePointer<T>, forward: UnsafePointer<T>)?
        if let s = g.scoresGradient {
            guard let forward = a.scores else {
                throw .invalid("a scores_gradient needs the call to return the scores (pass a scores tensor)")
            }
            try s.expect(scores, "scores_gradient", "the scores' shape")
            scoresPair = (UnsafePointer(try s.elements(of: T.self, "scores_gradient")),
                          UnsafePointer(try forward.elements(of: T.self, "scores")))
        }
        if g.key != nil, a.key == nil {
            throw .invalid("a key gradient was asked for but the call has no key (its gradient is part of the value's)")
        }
        if g.reuseAttentionScores != nil, a.reuseAttentionScores == nil {
            throw .invalid("a reuse_attention_scores gradient was asked for but the call has no reuse_attention_scores")
        }
        func zeroed(_ t: RawTensor?, _ shape: [Int], _ what: String) throws(AttentionError) -> UnsafeMutablePointer<T>? {
            guard let t else { return nil }
            try t.expect(shape, what, "the shape of what it is the gradient of")
            let p = try t.elements(of: T.self, what)
            p.update(repeating: 0, count: try elementCount(shape, what))
            return p
        }
        var result = Gradients(query: try zeroed(g.query, a.query.dims, "query_gradient"),
                               value: try zeroed(g.value, a.value.dims, "value_gradient"),
                               key: try zeroed(g.key, a.key?.dims ?? [], "key_gradient"),
                               reuseAttentionScores: try zeroed(g.reuseAttentionScores, a.reuseAttentionScores?.dims ?? [],
                                                                "reuse_attention_scores_gradient"),
                               weights: [], scores: scoresPair)
        if let weights = g.weights {
            guard weights.count == specs.count else {
                throw .invalid("\(weights.count) weight gradients given for a layer of \(specs.count) weights")
            }
            for (index, (t, spec)) in zip(weights, specs).enumerated() {
                result.weights.append(try zeroed(t, spec.shape, "weight gradient \(index) (\(spec.name))"))
            }
        } else {
            result.weights = Array(repeating: nil, count: specs.count)
        }
        return (result, dOut)
    }

    /// The gradient of the key input: the key's, or the value's when the call has none.
    func keyShare(_ a: CallArguments) -> UnsafeMutablePointer<T>? { a.key == nil ? value : key }
}

extension Projector {
    /// The backward of `project(input, rows:, p, into:, inputAxes:)` given dY (rows × width):
    /// dW += inputᵀ·dY, db += Σ_rows dY, and dInput += dY·Wᵀ, each when its buffer is given.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func backProject(_ dY: UnsafePointer<T>, input: UnsafePointer<T>, rows: Int, _ p: Projection, inputAxes: Int = 1,
                     _ grads: Gradients<T>, input dInput: UnsafeMutablePointer<T>?) throws(AttentionError) {
        let shape = weights.specs[p.kernel].shape
        let k = shape.prefix(inputAxes).reduce(1, *), n = shape.dropFirst(inputAxes).reduce(1, *)
        if let dW = grads.weights[p.kernel] {
            let transposed = try workspace.buffer(try checkedProduct([k, rows], "a transposed projection input"),
                                                  "a transposed projection input")
            transpose(input, rows: rows, columns: k, into: transposed)
            try multiply(m: k, n: n, depth: rows, UnsafePointer(transposed), dY, into: dW)
        }
        if let bias = p.bias, let db = grads.weights[bias] {
            for r in 0..<rows { axpy(1, dY + r * n, db, n) }
        }
        if let dInput {
            let transposed = try workspace.buffer(k * n, "a transposed kernel")
            transpose(weights.values(p.kernel), rows: k, columns: n, into: transposed)
            try multiply(m: rows, n: k, depth: n, dY, UnsafePointer(transposed), into: dInput)
        }
    }

    /// c (m × n) += a (m × depth) · b (depth × n).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func multiply(m: Int, n: Int, depth: Int, _ a: UnsafePointer<T>, _ b: UnsafePointer<T>,
                  into c: UnsafeMutablePointer<T>) throws(AttentionError) {
        try workspace.gemm(m: m, n: n, k: depth, GemmOperands(a: a, lda: depth, b: b, ldb: n, c: c, ldc: n, accumulate: true))
    }
}

/// out (columns × rows) = xᵀ for x (rows × columns), in cache-sized blocks.
@_specialize(where T == Float)
@_specialize(where T == Double)
func transpose<T>(_ x: UnsafePointer<T>, rows: Int, columns: Int, into out: UnsafeMutablePointer<T>) {
    let block = 32
    var r0 = 0
    while r0 < rows {
        var c0 = 0
        while c0 < columns {
            for r in r0..<min(r0 + block, rows) {
                for c in c0..<min(c0 + block, columns) { out[c * rows + r] = x[r * columns + c] }
            }
            c0 += block
        }
        r0 += block
    }
}
