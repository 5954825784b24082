import AttentionLayers
import CAttention

/// Conversions of the multi-head layers' configs, with their initializer, regularizer and
/// constraint structs.

/// The initializer a C struct names; ATT_INIT_DEFAULT gives `fallback`.
func initializer(_ c: att_initializer, default fallback: Initializer, _ what: String) throws -> Initializer {
    let (a, b) = (c.a, c.b)
    let unset = a == 0 && b == 0
    switch c.kind {
    case ATT_INIT_DEFAULT: return fallback
    case ATT_INIT_GLOROT_UNIFORM: return .glorotUniform
    case ATT_INIT_GLOROT_NORMAL: return .glorotNormal
    case ATT_INIT_HE_UNIFORM: return .heUniform
    case ATT_INIT_HE_NORMAL: return .heNormal
    case ATT_INIT_LECUN_UNIFORM: return .lecunUniform
    case ATT_INIT_LECUN_NORMAL: return .lecunNormal
    case ATT_INIT_RANDOM_NORMAL: return unset ? .randomNormal(mean: 0, stddev: 0.05) : .randomNormal(mean: a, stddev: b)
    case ATT_INIT_RANDOM_UNIFORM: return unset ? .randomUniform(min: -0.05, max: 0.05) : .randomUniform(min: a, max: b)
    case ATT_INIT_TRUNCATED_NORMAL: return unset ? .truncatedNormal(mean: 0, stddev: 0.05) : .truncatedNormal(mean: a, stddev: b)
    case ATT_INIT_ZEROS: return .zeros
    case ATT_INIT_ONES: return .ones
    case ATT_INIT_CONSTANT: return .constant(a)
    case ATT_INIT_ORTHOGONAL: return .orthogonal(gain: a == 0 ? 1 : a)
    default: throw Failure(ATT_ERR_INVALID_ARGUMENT, "\(what).kind \(c.kind.rawValue) is not a known initializer")
    }
}

func regularizer(_ c: att_regularizer, _ what: String) throws -> Regularizer? {
    switch c.kind {
    case ATT_REG_NONE: return nil
    case ATT_REG_L1: return .l1(c.l1)
    case ATT_REG_L2: return .l2(c.l2)
    case ATT_REG_L1_L2: return .l1l2(l1: c.l1, l2: c.l2)
    default: throw Failure(ATT_ERR_INVALID_ARGUMENT, "\(what).kind \(c.kind.rawValue) is not a known regularizer")
    }
}

func constraint(_ c: att_constraint, _ what: String) throws -> Constraint? {
    let axis = Int(c.axis)
    switch c.kind {
    case ATT_CONSTRAINT_NONE: return nil
    case ATT_CONSTRAINT_MAX_NORM: return .maxNorm(maxValue: c.max_value, axis: axis)
    case ATT_CONSTRAINT_NON_NEG: return .nonNeg
    case ATT_CONSTRAINT_UNIT_NORM: return .unitNorm(axis: axis)
    case ATT_CONSTRAINT_MIN_MAX_NORM: return .minMaxNorm(minValue: c.min_value, maxValue: c.max_value, rate: c.rate, axis: axis)
    default: throw Failure(ATT_ERR_INVALID_ARGUMENT, "\(what).kind \(c.kind.rawValue) is not a known constraint")
    }
}

/// The C configs' weight option fields, which share their names across layer kinds.
protocol WeightOptionFields {
    var kernel_initializer: att_initializer { get }
    var bias_initializer: att_initializer { get }
    var kernel_regularizer: att_regularizer { get }
    var bias_regularizer: att_regularizer { get }
    var activity_regularizer: att_regularizer { get }
    var kernel_constraint: att_constraint { get }
    var bias_constraint: att_constraint { get }
}

extension att_multi_head_attention_config: WeightOptionFields {}
extension att_group_query_attention_config: WeightOptionFields {}
extension att_reuse_multi_head_attention_config: WeightOptionFields {}

func weightOptions(_ c: some WeightOptionFields) throws -> WeightOptions {
    var o = WeightOptions()
    o.kernelInitializer = try initializer(c.kernel_initializer, default: .glorotUniform, "kernel_initializer")
    o.biasInitializer = try initializer(c.bias_initializer, default: .zeros, "bias_initializer")
    o.kernelRegularizer = try regularizer(c.kernel_regularizer, "kernel_regularizer")
    o.biasRegularizer = try regularizer(c.bias_regularizer, "bias_regularizer")
    o.activityRegularizer = try regularizer(c.activity_regularizer, "activity_regularizer")
    o.kernelConstraint = try constraint(c.kernel_constraint, "kernel_constraint")
    o.biasConstraint = try constraint(c.bias_constraint, "bias_constraint")
    return o
}

/// The first `count` (at most `limit`) entries of a C array field of ATT_MAX_RANK int64s.
func prefix<Tuple>(_ tuple: Tuple, _ count: Int32, _ what: String, limit: Int = Int(ATT_MAX_RANK)) throws -> [Int] {
    guard count >= 0, Int(count) <= limit else {
        throw Failure(ATT_ERR_INVALID_ARGUMENT, "\(what) \(count) is outside 0...\(limit)")
    }
    var copy = tuple
    return withUnsafeBytes(of: &copy) { raw in
        (0..<Int(count)).map { Int(raw.load(fromByteOffset: $0 * 8, as: Int64.self)) }
    }
}

/// output_shape[0 ..< rank]: at most ATT_MAX_RANK − 2 dims, as the output kernel is
/// (num_heads, value_dim, *output_shape).
func outputShape<Tuple>(_ tuple: Tuple, _ rank: Int32) throws -> [Int] {
    try prefix(tuple, rank, "output_rank", limit: Int(ATT_MAX_RANK) - 2)
}

func multiHeadConfig(_ c: att_multi_head_attention_config) throws -> MultiHeadAttentionConfig {
    var m = MultiHeadAttentionConfig(numHeads: Int(c.num_heads), keyDim: Int(c.key_dim),
                                     valueDim: c.value_dim == 0 ? nil : Int(c.value_dim))
    m.dropout = c.dropout
    m.useBias = c.no_bias == 0
    m.outputShape = c.output_rank == 0 ? nil : try outputShape(c.output_shape, c.output_rank)
    m.attentionAxes = c.num_attention_axes == 0 ? nil : try prefix(c.attention_axes, c.num_attention_axes, "num_attention_axes")
    m.slidingWindow = c.sliding_window == 0 ? nil : Int(c.sliding_window)
    m.useGate = c.use_gate != 0
    m.seed = c.seed
    m.weightOptions = try weightOptions(c)
    return m
}

func groupQueryConfig(_ c: att_group_query_attention_config) throws -> GroupQueryAttentionConfig {
    var g = GroupQueryAttentionConfig(headDim: Int(c.head_dim), numQueryHeads: Int(c.num_query_heads),
                                      numKeyValueHeads: Int(c.num_key_value_heads))
    g.dropout = c.dropout
    g.useBias = c.no_bias == 0
    g.slidingWindow = c.sliding_window == 0 ? nil : Int(c.sliding_window)
    g.useGate = c.use_gate != 0
    g.seed = c.seed
    g.weightOptions = try weightOptions(c)
    return g
}

func reuseConfig(_ c: att_reuse_multi_head_attention_config) throws -> ReuseMultiHeadAttentionConfig {
    var m = ReuseMultiHeadAttentionConfig(numHeads: Int(c.num_heads), keyDim: Int(c.key_dim),
                                          valueDim: c.value_dim == 0 ? nil : Int(c.value_dim))
    m.dropout = c.dropout
    m.reuseAttention = Int(c.reuse_attention)
    m.useRelativePE = c.use_relative_pe != 0
    m.peMaxSeqLength = c.pe_max_seq_length == 0 ? 512 : Int(c.pe_max_seq_length)
    m.useBias = c.no_bias == 0
    m.outputShape = c.output_rank == 0 ? nil : try outputShape(c.output_shape, c.output_rank)
    m.attentionAxes = c.num_attention_axes == 0 ? nil : try prefix(c.attention_axes, c.num_attention_axes, "num_attention_axes")
    m.seed = c.seed
    m.weightOptions = try weightOptions(c)
    return m
}
