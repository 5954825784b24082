import AttentionKernels

/// `keras.layers.AdditiveAttention`'s constructor arguments.
public struct AdditiveAttentionConfig: Sendable, Equatable {
    public var useScale = true
    public var dropout = 0.0
    /// Seeds the glorot-uniform initialisation of `scale`.
    public var seed: UInt64 = 0
    public init(useScale: Bool = true, dropout: Double = 0, seed: UInt64 = 0) {
        self.useScale = useScale; self.dropout = dropout; self.seed = seed
    }
}

/// Bahdanau-style attention (`keras.layers.AdditiveAttention`): scores
/// Σ_d scale_d · tanh(q_d + k_d). Weight: `scale` (dim,) when useScale, glorot uniform.
public final class AdditiveAttention<T: KernelScalar>: StoresWeights, @unchecked Sendable {
    public let config: AdditiveAttentionConfig
    private(set) var store: WeightStore<T>?
    let layerName = "AdditiveAttention"
    private var dim = 0
    private let dense = DenseAttention(layerName: "AdditiveAttention")

    public init(_ config: AdditiveAttentionConfig) throws(AttentionError) {
        try validateDropout(config.dropout)
        self.config = config
    }

    public func build(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) {
        _ = try dense.shapes(query: query, value: value, key: key)
        let features = query[query.count - 1]  // >= 1: checked by shapes
        let specs = config.useScale ? [WeightSpec(name: "scale", shape: [features])] : []
        store = try WeightStore(specs, initializers: specs.map { _ in .glorotUniform }, seed: config.seed)
        dim = features
    }

    public func outputShapes(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) -> (output: [Int], scores: [Int]) {
        let shapes = try dense.shapes(query: query, value: value, key: key)
        if isBuilt, config.useScale, query[query.count - 1] != dim {  // without scale, no weight binds the dim
            throw .shape("AdditiveAttention was built for dim \(dim) but the query's last dim is \(query[query.count - 1])")
        }
        return shapes
    }

    public func call(_ arguments: CallArguments) throws(AttentionError) {
        try run(arguments, nil)
    }

    public func backward(_ arguments: CallArguments, _ gradients: GradientArguments) throws(AttentionError) {
        try run(arguments, gradients)
    }

    private func run(_ arguments: CallArguments, _ gradients: GradientArguments?) throws(AttentionError) {
        let w = try built()
        _ = try outputShapes(query: arguments.query.dims, value: arguments.value.dims, key: arguments.key?.dims)
        let score = ScoreFunction<T>.additive(scale: config.useScale ? w.values(0) : nil)
        try dense.call(arguments, T.self, score: score, causal: false, dropoutRate: config.dropout,
                       gradients: gradients.map { ($0, w.specs, [config.useScale ? 0 : nil]) })
    }
}
