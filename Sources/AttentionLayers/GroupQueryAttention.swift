import AttentionKernels

/// `keras.layers.GroupQueryAttention`'s constructor arguments.
public struct GroupQueryAttentionConfig: Sendable, Equatable {
    public var headDim: Int
    public var numQueryHeads: Int
    /// Must divide numQueryHeads: 1 is multi-query attention, numQueryHeads multi-head.
    public var numKeyValueHeads: Int
    public var dropout = 0.0
    public var useBias = true
    public var slidingWindow: Int?
    public var useGate = false
    public var seed: UInt64 = 0
    public var weightOptions = WeightOptions()

    public init(headDim: Int, numQueryHeads: Int, numKeyValueHeads: Int) {
        self.headDim = headDim; self.numQueryHeads = numQueryHeads; self.numKeyValueHeads = numKeyValueHeads
    }

    /// The multi-head attention this is, with headDim for keys and values, over axis 1.
    var multiHead: MultiHeadAttentionConfig {
        var m = MultiHeadAttentionConfig(numHeads: numQueryHeads, keyDim: headDim, valueDim: headDim)
        m.dropout = dropout; m.useBias = useBias; m.slidingWindow = slidingWindow; m.useGate = useGate
        m.seed = seed; m.weightOptions = weightOptions
        return m
    }
}

/// Grouped-query attention (`keras.layers.GroupQueryAttention`): multi-head attention on
/// rank-3 inputs whose key and value have numKeyValueHeads heads, each shared by
/// numQueryHeads / numKeyValueHeads query heads. Weights: query (Dq, Nq, H), key (Dk, Nkv, H),
/// [gate (Dq, Nq, H)], value (Dv, Nkv, H), attention_output (Nq, H, Dq), each with a bias
/// when useBias.
public final class GroupQueryAttention<T: KernelScalar>: AttentionLayer, @unchecked Sendable {
    public let config: GroupQueryAttentionConfig
    private let attention: MultiHeadAttention<T>

    public init(_ config: GroupQueryAttentionConfig) throws(AttentionError) {
        guard config.headDim >= 1 else { throw .invalid("head_dim must be a positive integer; got \(config.headDim)") }
        guard config.numQueryHeads >= 1, config.numKeyValueHeads >= 1 else {
            throw .invalid("num_query_heads (\(config.numQueryHeads)) and num_key_value_heads (\(config.numKeyValueHeads)) must be positive integers")
        }
        guard config.numQueryHeads % config.numKeyValueHeads == 0 else {
            throw .invalid("num_query_heads (\(config.numQueryHeads)) must be divisible by num_key_value_heads (\(config.numKeyValueHeads))")
        }
        self.config = config
        attention = try MultiHeadAttention(config.multiHead, keyValueHeads: config.numKeyValueHeads,
                                           layerName: "GroupQueryAttention", penalizesOwnOutputs: true)
    }

    public var dtype: DType { attention.dtype }
    public var isBuilt: Bool { attention.isBuilt }
    public var weightSpecs: [WeightSpec] { get throws(AttentionError) { try attention.weightSpecs } }

    /// Keras's GroupQueryAttention projects rank-3 inputs (its einsum equations are fixed).
    /// Like Keras's call (not its compute_output_shape), query and value may differ in their
    /// last dim.
    private func check(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) {
        for (name, dims) in [("query", query), ("value", value), ("key", key ?? value)] where dims.count != 3 {
            throw .shape("GroupQueryAttention needs rank-3 inputs (batch, time, features); \(name) has shape \(dims)")
        }
    }

    public func build(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) {
        try check(query: query, value: value, key: key)
        try attention.build(query: query, value: value, key: key)
    }

    public func getWeight(_ index: Int, into buffer: UnsafeMutableRawPointer) throws(AttentionError) {
        try attention.getWeight(index, into: buffer)
    }

    public func setWeight(_ index: Int, from buffer: UnsafeRawPointer) throws(AttentionError) {
        try attention.setWeight(index, from: buffer)
    }

    public func outputShapes(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) -> (output: [Int], scores: [Int]) {
        try check(query: query, value: value, key: key)
        return try attention.outputShapes(query: query, value: value, key: key)
    }

    public func call(_ arguments: CallArguments) throws(AttentionError) {
        try check(query: arguments.query.dims, value: arguments.value.dims, key: arguments.key?.dims)
        try attention.call(arguments)
    }

    public func backward(_ arguments: CallArguments, _ gradients: GradientArguments) throws(AttentionError) {
        try check(query: arguments.query.dims, value: arguments.value.dims, key: arguments.key?.dims)
        try attention.backward(arguments, gradients)
    }

    public func losses(_ arguments: CallArguments?) throws(AttentionError) -> [Double] {
        if let arguments { try check(query: arguments.query.dims, value: arguments.value.dims, key: arguments.key?.dims) }
        return try attention.losses(arguments)
    }

    public func applyConstraints() throws(AttentionError) { try attention.applyConstraints() }
}
