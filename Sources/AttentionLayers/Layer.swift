/// The arguments of one forward call, as raw tensors: a layer checks each against its
/// dtype and shapes. Unused optional tensors are nil.
public struct CallArguments: Sendable {
    public var query: RawTensor
    public var value: RawTensor
    public var key: RawTensor?
    public var queryMask: RawTensor?
    public var valueMask: RawTensor?
    public var keyMask: RawTensor?
    public var attentionMask: RawTensor?
    public var training: Bool
    public var useCausalMask: Bool
    public var dropoutSeed: UInt64
    public var dropoutStream: UInt64
    public var output: RawTensor
    public var scores: RawTensor?
    /// ReuseMultiHeadAttention: scores of an earlier layer, (B, heads, T, S).
    public var reuseAttentionScores: RawTensor?
    /// MultiHeadAttention, GroupQueryAttention: a key/value cache (B, 2, S_max, key/value
    /// heads, key_dim), keys at [:, 0], values at [:, 1] (see KeyValueCache.swift).
    public var cache: RawTensor?
    /// Where the new tokens' keys and values go in `cache`: one index for every batch row, or
    /// one per row; nil uses the cache as it is.
    public var cacheUpdateIndex: CacheUpdateIndex?

    public init(query: RawTensor, value: RawTensor, key: RawTensor? = nil, queryMask: RawTensor? = nil,
                valueMask: RawTensor? = nil, keyMask: RawTensor? = nil, attentionMask: RawTensor? = nil,
                training: Bool = false, useCausalMask: Bool = false, dropoutSeed: UInt64 = 0,
                dropoutStream: UInt64 = 0, output: RawTensor, scores: RawTensor? = nil,
                reuseAttentionScores: RawTensor? = nil, cache: RawTensor? = nil,
                cacheUpdateIndex: CacheUpdateIndex? = nil) {
        self.query = query; self.value = value; self.key = key
        self.queryMask = queryMask; self.valueMask = valueMask; self.keyMask = keyMask
        self.attentionMask = attentionMask; self.training = training; self.useCausalMask = useCausalMask
        self.dropoutSeed = dropoutSeed; self.dropoutStream = dropoutStream
        self.output = output; self.scores = scores; self.reuseAttentionScores = reuseAttentionScores
        self.cache = cache; self.cacheUpdateIndex = cacheUpdateIndex
    }

    /// Whether the call passes a key/value cache (or an update index without one, an error).
    public var usesCache: Bool { cache != nil || cacheUpdateIndex != nil }
}

/// The caller's `count` cache update indices at `base` (1: for every batch row; the batch
/// size: one per row), not owned: read during the call, after the call's shapes are checked
/// (so a count that only a malformed call could have is never read or copied).
public struct CacheUpdateIndex: @unchecked Sendable {
    public var base: UnsafePointer<Int64>
    public var count: Int
    public init(base: UnsafePointer<Int64>, count: Int) { self.base = base; self.count = count }
}

/// What every attention layer offers, whatever its dtype: build from input shapes, weights
/// in Keras's `get_weights()` order, output shapes, and the forward call. `call` only reads
/// the layer, so concurrent calls are safe; `build` and `setWeight` mutate it.
public protocol AttentionLayer: AnyObject, Sendable {
    var dtype: DType { get }
    var isBuilt: Bool { get }
    func build(query: [Int], value: [Int], key: [Int]?) throws(AttentionError)
    /// Name and shape of each weight, in Keras's order.
    var weightSpecs: [WeightSpec] { get throws(AttentionError) }
    /// Copies weight `index` to/from `buffer` (elements of the layer's dtype, count checked by the caller).
    func getWeight(_ index: Int, into buffer: UnsafeMutableRawPointer) throws(AttentionError)
    func setWeight(_ index: Int, from buffer: UnsafeRawPointer) throws(AttentionError)
    /// Shapes of the output and of the scores for these input shapes.
    func outputShapes(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) -> (output: [Int], scores: [Int])
    func call(_ arguments: CallArguments) throws(AttentionError)
    /// The forward call of `arguments` (writing its output and scores) and the backward of
    /// L = Σ output·dO (+ Σ scores·dΣ) (+ Σ losses when `gradients.regularization`), with one
    /// dropout mask for both. Thread-safe as `call`.
    func backward(_ arguments: CallArguments, _ gradients: GradientArguments) throws(AttentionError)
    /// The regularization penalties, as Keras's `layer.losses`: one per regularized weight,
    /// then, for a call of `arguments` when given, one per regularized activity.
    func losses(_ arguments: CallArguments?) throws(AttentionError) -> [Double]
    /// Applies the kernel and bias constraints to the weights (after an update).
    func applyConstraints() throws(AttentionError)
}

extension AttentionLayer {
    /// Layers without regularizers have no losses.
    public func losses(_ arguments: CallArguments?) throws(AttentionError) -> [Double] {
        _ = try weightSpecs
        return []
    }

    /// Layers without constraints leave their weights as they are.
    public func applyConstraints() throws(AttentionError) { _ = try weightSpecs }
}

/// A weight's Keras name (e.g. "query/kernel") and shape; for an EinsumDense kernel, how
/// many leading axes are contracted with the input (they make its fan_in).
public struct WeightSpec: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var inputAxes: Int?
    public init(name: String, shape: [Int], inputAxes: Int? = nil) {
        self.name = name; self.shape = shape; self.inputAxes = inputAxes
    }
    public var count: Int { shape.reduce(1, *) }
}
