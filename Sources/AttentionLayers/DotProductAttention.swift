import AttentionKernels

/// `keras.ops.dot_product_attention`: for query (B, T, N, H), key (B, S, K, H) and value
/// (B, S, K, Hv) with K dividing N (query head n reads key/value head n / (N/K)),
///   output[b, t, n] = softmax_s(scale · q·k + bias, masked entries filled with −0.7·FLT_MAX) · v
/// where bias and mask broadcast numpy-style to (B, N, T, S) and scale defaults to 1/√H.
/// B, T, S and N may be 0 (an empty output; with S = 0 and T > 0 each output row is 0, the
/// empty sum); K, H and Hv must be at least 1.
public struct DotProductAttentionArguments: Sendable {
    public var query: RawTensor
    public var key: RawTensor
    public var value: RawTensor
    public var bias: RawTensor?
    public var mask: RawTensor?
    public var scale: Double?
    public var isCausal: Bool
    public var output: RawTensor
    public init(query: RawTensor, key: RawTensor, value: RawTensor, bias: RawTensor? = nil, mask: RawTensor? = nil,
                scale: Double? = nil, isCausal: Bool = false, output: RawTensor) {
        self.query = query; self.key = key; self.value = value; self.bias = bias; self.mask = mask
        self.scale = scale; self.isCausal = isCausal; self.output = output
    }
}

/// Runs `keras.ops.dot_product_attention` in the query's dtype.
public func dotProductAttention(_ a: DotProductAttentionArguments) throws(AttentionError) {
    switch a.query.elementType {
    case .float32: try dotProductAttention(a, Float.self)
    case .float64: try dotProductAttention(a, Double.self)
    case .uint8: throw AttentionError(.dtype, "query is uint8; dot_product_attention computes in float32 or float64")
    }
}

private func dotProductAttention<T: KernelScalar>(_ a: DotProductAttentionArguments, _: T.Type) throws(AttentionError) {
    for (name, t) in [("query", a.query), ("key", a.key), ("value", a.value)] {
        guard t.dims.count == 4 else {
            throw .shape("dot_product_attention needs 4-D (batch, time, heads, dim) tensors; \(name) has shape \(t.dims)")
        }
        _ = try elementCount(t.dims, name)
    }
    let (b, t, n, h) = (a.query.dims[0], a.query.dims[1], a.query.dims[2], a.query.dims[3])
    let (s, kHeads, hv) = (a.key.dims[1], a.key.dims[2], a.value.dims[3])
    guard a.key.dims[0] == b, a.value.dims[0] == b else {
        throw .shape("batch sizes differ: query \(a.query.dims), key \(a.key.dims), value \(a.value.dims)")
    }
    guard a.key.dims[3] == h else { throw .shape("query dim \(h) differs from key dim \(a.key.dims[3])") }
    guard Array(a.value.dims.prefix(3)) == Array(a.key.dims.prefix(3)) else {
        throw .shape("key \(a.key.dims) and value \(a.value.dims) must agree in batch, length and heads")
    }
    guard kHeads >= 1, h >= 1, hv >= 1 else {
        throw .shape("dot_product_attention needs at least one key/value head and feature dims >= 1; got key \(a.key.dims) and value \(a.value.dims) (batch, lengths and query heads may be 0)")
    }
    guard n % kHeads == 0 else {
        throw .shape("key/value heads (\(kHeads)) must divide query heads (\(n))")
    }
    let scoresShape = [b, n, t, s]
    _ = try checkedProduct(scoresShape, "the logits (B, N, T, S)")
    try a.output.expect([b, t, n, hv], "output")
    var bias: BiasView<T>?
    if let bt = a.bias {
        let st = try broadcastStrides(bt.dims, to: scoresShape, "bias")
        bias = BiasView(base: UnsafePointer(try bt.elements(of: T.self, "bias")),
                        group: st[0], head: st[1], row: st[2], column: st[3])
    }
    var views: [MaskView] = []
    if let mt = a.mask {
        let st = try broadcastStrides(mt.dims, to: scoresShape, "mask")
        views.append(MaskView(base: try mt.mask("mask"), group: st[0], head: st[1], row: st[2], column: st[3]))
    }
    if let scale = a.scale, !scale.isFinite {
        throw .invalid("scale must be finite; got \(scale)")
    }
    let scale = T(a.scale ?? 1 / Double(h).squareRoot())
    attentionForward(
        shape: AttentionShape(groups: b, heads: n, keyValueHeads: kHeads, queryLength: t, keyLength: s,
                              keyDim: h, valueDim: hv),
        operands: AttentionOperands(
            query: UnsafePointer(try a.query.elements(of: T.self, "query")), queryLayout: RowLayout(group: t * n * h, head: h, row: n * h),
            key: UnsafePointer(try a.key.elements(of: T.self, "key")), keyLayout: RowLayout(group: s * kHeads * h, head: h, row: kHeads * h),
            value: UnsafePointer(try a.value.elements(of: T.self, "value")), valueLayout: RowLayout(group: s * kHeads * hv, head: hv, row: kHeads * hv),
            output: try a.output.elements(of: T.self, "output"), outputLayout: RowLayout(group: t * n * hv, head: hv, row: n * hv)),
        score: .dot(scale: scale), mask: AttentionMask(views: views, causal: a.isCausal, fullyMaskedRow: .uniform),
        bias: bias.map { .strided($0) }, dropout: nil, scores: nil)
}
