/// The description of one batched attention computation, in the kernel's index space:
/// `groups` independent problems (batch × non-attention axes), each with `heads` heads, a
/// query of `queryLength` rows and keys/values of `keyLength` rows. Scores and masks are
/// indexed (g, n, i, j), the layout Keras returns scores in (after flattening).

/// Where rows of a (group, head, row, feature) tensor live: element offset of row
/// (g, n, i) is g·group + n·head + i·row; the features of a row are contiguous.
public struct RowLayout: Sendable, Equatable {
    public var group: Int
    public var head: Int
    public var row: Int
    public init(group: Int, head: Int, row: Int) {
        self.group = group; self.head = head; self.row = row
    }
    @inlinable @inline(__always)
    func offset(_ g: Int, _ n: Int, _ i: Int) -> Int { g &* group &+ n &* head &+ i &* row }
}

/// Sizes of the problem. Key/value head of query head n is n / (heads / keyValueHeads).
public struct AttentionShape: Sendable, Equatable {
    public var groups: Int
    public var heads: Int
    public var keyValueHeads: Int
    public var queryLength: Int
    public var keyLength: Int
    public var keyDim: Int
    public var valueDim: Int
    public init(groups: Int, heads: Int, keyValueHeads: Int, queryLength: Int, keyLength: Int,
                keyDim: Int, valueDim: Int) {
        self.groups = groups; self.heads = heads; self.keyValueHeads = keyValueHeads
        self.queryLength = queryLength; self.keyLength = keyLength
        self.keyDim = keyDim; self.valueDim = valueDim
    }
}

/// The tensors of one call. The library never keeps these pointers past the call.
public struct AttentionOperands<T: KernelScalar>: @unchecked Sendable {
    public var query: UnsafePointer<T>, queryLayout: RowLayout
    public var key: UnsafePointer<T>, keyLayout: RowLayout
    public var value: UnsafePointer<T>, valueLayout: RowLayout
    public var output: UnsafeMutablePointer<T>, outputLayout: RowLayout
    public init(query: UnsafePointer<T>, queryLayout: RowLayout, key: UnsafePointer<T>, keyLayout: RowLayout,
                value: UnsafePointer<T>, valueLayout: RowLayout,
                output: UnsafeMutablePointer<T>, outputLayout: RowLayout) {
        self.query = query; self.queryLayout = queryLayout
        self.key = key; self.keyLayout = keyLayout
        self.value = value; self.valueLayout = valueLayout
        self.output = output; self.outputLayout = outputLayout
    }
}

/// How a query row i and key row j give a logit.
public enum ScoreFunction<T: KernelScalar>: @unchecked Sendable {
    /// (q·k) · scale — Luong, and multi-head attention.
    case dot(scale: T)
    /// weight · Σ_d tanh(scale · (q_d + k_d)) — Luong's concat mode.
    case concat(scale: T, weight: T, tanh: TanhRows<T>? = nil)
    /// Σ_d scale_d · tanh(q_d + k_d) — Bahdanau; a nil scale means all ones.
    case additive(scale: UnsafePointer<T>?, tanh: TanhRows<T>? = nil)

    /// The scale of dot scores (1 for the others).
    var dotScale: T {
        if case .dot(let scale) = self { scale } else { 1 }
    }
}

/// e^{2c·x} of every element of the query and key rows (c: concat's scale, or 1), laid out as
/// the query and the key, NaN where it is not a finite normal number (|c·x| ≳ 43.6 in float32)
/// or x is NaN. A concat/additive logit then needs no tanh per pair, only a quotient:
///     tanh(c·(q + k)) = 1 − 2 / (1 + e^{2c·q}·e^{2c·k})
/// (the product overflows or underflows only where tanh rounds to ±1). A pair that meets a
/// NaN entry is computed from tanh(c·(q + k)) directly.
public struct TanhRows<T: KernelScalar>: @unchecked Sendable {
    public var queryExponential: UnsafePointer<T>
    public var keyExponential: UnsafePointer<T>
    public init(queryExponential: UnsafePointer<T>, keyExponential: UnsafePointer<T>) {
        self.queryExponential = queryExponential; self.keyExponential = keyExponential
    }
}

/// A broadcast view of a uint8 mask over (g, n, i, j): stride 0 on broadcast axes.
/// A nonzero element keeps the position.
public struct MaskView: @unchecked Sendable {
    public var base: UnsafePointer<UInt8>
    public var group: Int, head: Int, row: Int, column: Int
    public init(base: UnsafePointer<UInt8>, group: Int, head: Int, row: Int, column: Int) {
        self.base = base; self.group = group; self.head = head; self.row = row; self.column = column
    }
}

/// A broadcast view of an additive logit bias over (g, n, i, j).
public struct BiasView<T: KernelScalar>: @unchecked Sendable {
    public var base: UnsafePointer<T>
    public var group: Int, head: Int, row: Int, column: Int
    public init(base: UnsafePointer<T>, group: Int, head: Int, row: Int, column: Int) {
        self.base = base; self.group = group; self.head = head; self.row = row; self.column = column
    }
}

/// An additive bias of the logits.
public enum LogitBias<T: KernelScalar>: @unchecked Sendable {
    /// bias[g, n, i, j] read through broadcast strides.
    case strided(BiasView<T>)
    /// table[n · headStride + clamp(j − i + P − 1, 0, 2P − 2)]: a relative position bias
    /// with P = maxDistance (TF Model Garden's relative position embeddings).
    case relativePosition(table: UnsafePointer<T>, headStride: Int, maxDistance: Int)
}

/// What a row whose every key is masked becomes. Rows with at least one kept key are the
/// same under every policy: masked keys get weight exactly 0.
public enum FullyMaskedRow: Sendable {
    /// softmax(logit − 1e9), the arithmetic done in the layer's dtype (Keras `Attention`).
    case subtractLarge
    /// Every logit filled with one constant: uniform weights (Keras's fused path).
    case uniform
    /// Zero weights (Keras's masked `Softmax` layer).
    case zero
}

/// The positions excluded from attention: the AND of every view, a causal band
/// (keep j ≤ p + i) and a sliding window (keep |p + i − j| < window, 0 = none), where
/// p = positions?[g] ?? 0 is the key position of group g's query row 0 — a decoder's new
/// tokens after the p it has cached (0 ≤ p and p + queryLength ≤ keyLength, checked by the
/// caller). The band also bounds the keys a row reads: a causal row never reads past p + i.
public struct AttentionMask: @unchecked Sendable {
    public var views: [MaskView]
    public var causal: Bool
    public var window: Int
    public var positions: UnsafePointer<Int>?
    public var fullyMaskedRow: FullyMaskedRow
    public init(views: [MaskView] = [], causal: Bool = false, window: Int = 0, positions: UnsafePointer<Int>? = nil,
                fullyMaskedRow: FullyMaskedRow) {
        self.views = views; self.causal = causal; self.window = window; self.positions = positions
        self.fullyMaskedRow = fullyMaskedRow
    }
    /// True when nothing is masked.
    public var isEmpty: Bool { views.isEmpty && !causal && window == 0 }
}

/// Where this problem's heads sit in the scores tensor, which also numbers dropout's
/// elements: head n is head `firstHead + n` of `heads` per group. Several problems (e.g.
/// new and reused heads) can so fill one scores tensor.
public struct ScoresPlacement: Sendable, Equatable {
    public var heads: Int
    public var firstHead: Int
    public init(heads: Int, firstHead: Int) { self.heads = heads; self.firstHead = firstHead }
}

/// Dropout on the attention weights, and whether the returned scores show it
/// (Keras's `Attention` returns dropped weights; `MultiHeadAttention` the weights before).
public struct AttentionDropout: Sendable {
    public var mask: DropoutMask
    public var scoresAfterDropout: Bool
    public init(mask: DropoutMask, scoresAfterDropout: Bool) {
        self.mask = mask; self.scoresAfterDropout = scoresAfterDropout
    }
}
