import AttentionKernels

/// How `Attention` scores a query row against a key row.
public enum ScoreMode: Sendable, Equatable {
    /// (q · k) · scale.
    case dot
    /// concat_score_weight · Σ tanh(scale · (q + k)).
    case concat
}

/// `keras.layers.Attention`'s constructor arguments (plus TF 2.0's `causal`).
public struct AttentionConfig: Sendable, Equatable {
    public var useScale = false
    public var scoreMode = ScoreMode.dot
    public var dropout = 0.0
    /// TF 2.0's `causal=True`: a causal mask on every call.
    public var causal = false
    public init(useScale: Bool = false, scoreMode: ScoreMode = .dot, dropout: Double = 0, causal: Bool = false) {
        self.useScale = useScale; self.scoreMode = scoreMode; self.dropout = dropout; self.causal = causal
    }
}

/// Luong-style attention (`keras.layers.Attention`). Weights: `scale` () when useScale,
/// `concat_score_weight` () in concat mode, both initialised to 1.
public final class Attention<T: KernelScalar>: StoresWeights, @unchecked Sendable {
    public let config: AttentionConfig
    private(set) var store: WeightStore<T>?
    let layerName = "Attention"
    private let dense = DenseAttention(layerName: "Attention")

    public init(_ config: AttentionConfig) throws(AttentionError) {
        try validateDropout(config.dropout)
        self.config = config
    }

    public func build(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) {
        _ = try dense.shapes(query: query, value: value, key: key)
        var specs: [WeightSpec] = []
        if config.useScale { specs.append(WeightSpec(name: "scale", shape: [])) }
        if config.scoreMode == .concat { specs.append(WeightSpec(name: "concat_score_weight", shape: [])) }
        store = try WeightStore(specs, initializers: specs.map { _ in .ones }, seed: 0)
    }

    public func outputShapes(query: [Int], value: [Int], key: [Int]?) throws(AttentionError) -> (output: [Int], scores: [Int]) {
        try dense.shapes(query: query, value: value, key: key)
    }

    public func call(_ arguments: CallArguments) throws(AttentionError) {
        try run(arguments, nil)
    }

    public func backward(_ arguments: CallArguments, _ gradients: GradientArguments) throws(AttentionError) {
        try run(arguments, gradients)
    }

    private func run(_ arguments: CallArguments, _ gradients: GradientArguments?) throws(AttentionError) {
        let w = try built()
        let scale: T = config.useScale ? w.values(0)[0] : 1
        let scaleIndex: Int? = config.useScale ? 0 : nil
        let score: ScoreFunction<T>
        let slots: [Int?]
        switch config.scoreMode {
        case .dot:
            score = .dot(scale: scale)
            slots = [scaleIndex]
        case .concat:
            let weight = config.useScale ? 1 : 0
            score = .concat(scale: scale, weight: w.values(weight)[0])
            slots = [scaleIndex, weight]
        }
        try dense.call(arguments, T.self, score: score, causal: config.causal, dropoutRate: config.dropout,
                       gradients: gradients.map { ($0, w.specs, slots) })
    }
}
