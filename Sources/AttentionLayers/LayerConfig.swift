/// A layer's kind and constructor arguments, and their Keras `get_config()` form: what a
/// layer file records (`LayerFile`) and what makes the layer again.
///
/// The JSON is what the Python package's `get_config()` gives and its constructors take:
/// Keras's argument names, "dtype" ("float32", "float64" or a DTypePolicy dict naming one),
/// initializers, regularizers and constraints as Keras serialises them
/// ({"module", "class_name", "config", "registered_name"}; a plain name such as
/// "glorot_uniform" is read too), "seed" (null or an integer in [0, 2**64)). Reading refuses
/// unknown keys, values of the wrong type and values the layer refuses; "name" and
/// "trainable" are accepted and ignored. Weights come from the file, so the seed of an
/// initializer is read but not kept.
public enum LayerConfig: Sendable, Equatable {
    case attention(AttentionConfig)
    case additiveAttention(AdditiveAttentionConfig)
    case multiHeadAttention(MultiHeadAttentionConfig)
    case groupQueryAttention(GroupQueryAttentionConfig)
    case reuseMultiHeadAttention(ReuseMultiHeadAttentionConfig)

    /// Keras's class name of the layer (GroupQueryAttention's class is GroupedQueryAttention).
    public var kind: String {
        switch self {
        case .attention: "Attention"
        case .additiveAttention: "AdditiveAttention"
        case .multiHeadAttention: "MultiHeadAttention"
        case .groupQueryAttention: "GroupedQueryAttention"
        case .reuseMultiHeadAttention: "ReuseMultiHeadAttention"
        }
    }

    /// The config of a layer of this library (nil for another conforming type).
    public init?(of layer: any AttentionLayer) {
        guard let configured = layer as? any ConfiguredLayer else { return nil }
        self = configured.layerConfig
    }

    /// A new, unbuilt layer of this config computing in `dtype`.
    public func makeLayer(_ dtype: DType) throws(AttentionError) -> any AttentionLayer {
        switch (self, dtype) {
        case (.attention(let c), .float32): try Attention<Float>(c)
        case (.attention(let c), .float64): try Attention<Double>(c)
        case (.additiveAttention(let c), .float32): try AdditiveAttention<Float>(c)
        case (.additiveAttention(let c), .float64): try AdditiveAttention<Double>(c)
        case (.multiHeadAttention(let c), .float32): try MultiHeadAttention<Float>(c)
        case (.multiHeadAttention(let c), .float64): try MultiHeadAttention<Double>(c)
        case (.groupQueryAttention(let c), .float32): try GroupQueryAttention<Float>(c)
        case (.groupQueryAttention(let c), .float64): try GroupQueryAttention<Double>(c)
        case (.reuseMultiHeadAttention(let c), .float32): try ReuseMultiHeadAttention<Float>(c)
        case (.reuseMultiHeadAttention(let c), .float64): try ReuseMultiHeadAttention<Double>(c)
        }
    }
}

/// The input shapes a layer was built for: query, value and key (nil: the value's).
public struct BuildShapes: Sendable, Equatable {
    public var query: [Int]
    public var value: [Int]
    public var key: [Int]?
    public init(query: [Int], value: [Int], key: [Int]?) {
        self.query = query; self.value = value; self.key = key
    }

    /// [query, value, key] as JSON (key null when nil).
    var json: JSON {
        func dims(_ d: [Int]) -> JSON { .array(d.map { .integer($0) }) }
        return .array([dims(query), dims(value), key.map(dims) ?? .null])
    }

    /// From [query, value, key|null]; a null dim (Keras's unknown batch or length) reads as 1.
    init(json: JSON) throws(AttentionError) {
        let items = try json.array("build_shapes")
        guard items.count == 3 else { throw .invalid("build_shapes must be [query, value, key], got \(items.count) entries") }
        func dims(_ j: JSON, _ what: String) throws(AttentionError) -> [Int] {
            let entries = try j.array(what)
            guard entries.count <= BuildShapes.maxRank else {
                throw .shape("\(what) has rank \(entries.count); ranks 0 to \(BuildShapes.maxRank) are supported")
            }
            var out: [Int] = []
            for (i, d) in entries.enumerated() { out.append(d.isNull ? 1 : try d.int("\(what)[\(i)]")) }
            return out
        }
        query = try dims(items[0], "build_shapes query")
        value = try dims(items[1], "build_shapes value")
        key = items[2].isNull ? nil : try dims(items[2], "build_shapes key")
    }

    /// The largest rank the C API takes (ATT_MAX_RANK).
    static let maxRank = 8
}

/// A layer type whose config `LayerConfig` can record.
public protocol ConfiguredLayer: AttentionLayer {
    var layerConfig: LayerConfig { get }
}

extension Attention: ConfiguredLayer { public var layerConfig: LayerConfig { .attention(config) } }
extension AdditiveAttention: ConfiguredLayer { public var layerConfig: LayerConfig { .additiveAttention(config) } }
extension MultiHeadAttention: ConfiguredLayer { public var layerConfig: LayerConfig { .multiHeadAttention(config) } }
extension GroupQueryAttention: ConfiguredLayer { public var layerConfig: LayerConfig { .groupQueryAttention(config) } }
extension ReuseMultiHeadAttention: ConfiguredLayer {
    public var layerConfig: LayerConfig { .reuseMultiHeadAttention(config) }
}

// MARK: - Writing the Keras config

extension LayerConfig {
    /// The Keras get_config() of this layer in `dtype`, key for key what the Python package
    /// writes (without "name"). ReuseMultiHeadAttention records its build shapes as
    /// query_shape, key_shape and value_shape, as upstream's config does.
    public func kerasConfig(dtype: DType, buildShapes: BuildShapes?) -> JSON {
        var m: [(key: String, value: JSON)] = [("dtype", .string(dtype == .float32 ? "float32" : "float64"))]
        func optionalList(_ v: [Int]?) -> JSON { v.map { .array($0.map { .integer($0) }) } ?? .null }
        func optionalInt(_ v: Int?) -> JSON { v.map { .integer($0) } ?? .null }
        switch self {
        case .attention(let c):
            m += [("use_scale", .bool(c.useScale)), ("score_mode", .string(c.scoreMode == .dot ? "dot" : "concat")),
                  ("dropout", .real(c.dropout)), ("seed", .null)]
            if c.causal { m.append(("causal", .bool(true))) }
        case .additiveAttention(let c):
            m += [("use_scale", .bool(c.useScale)), ("dropout", .real(c.dropout)), ("seed", .integer(c.seed))]
        case .multiHeadAttention(let c):
            m += [("num_heads", .integer(c.numHeads)), ("key_dim", .integer(c.keyDim)),
                  ("value_dim", .integer(c.valueDim ?? c.keyDim)), ("dropout", .real(c.dropout)),
                  ("use_bias", .bool(c.useBias)), ("use_gate", .bool(c.useGate)),
                  ("output_shape", optionalList(c.outputShape)), ("attention_axes", optionalList(c.attentionAxes)),
                  ("sliding_window", optionalInt(c.slidingWindow))]
            m += c.weightOptions.kerasConfig + [("seed", .integer(c.seed))]
        case .groupQueryAttention(let c):
            m += [("head_dim", .integer(c.headDim)), ("num_query_heads", .integer(c.numQueryHeads)),
                  ("num_key_value_heads", .integer(c.numKeyValueHeads)), ("use_bias", .bool(c.useBias)),
                  ("use_gate", .bool(c.useGate)), ("sliding_window", optionalInt(c.slidingWindow)),
                  ("dropout", .real(c.dropout))]
            m += c.weightOptions.kerasConfig + [("seed", .integer(c.seed))]
        case .reuseMultiHeadAttention(let c):
            m += [("num_heads", .integer(c.numHeads)), ("key_dim", .integer(c.keyDim)),
                  ("value_dim", .integer(c.valueDim ?? c.keyDim)), ("dropout", .real(c.dropout)),
                  ("use_bias", .bool(c.useBias)), ("output_shape", optionalList(c.outputShape)),
                  ("attention_axes", optionalList(c.attentionAxes)), ("reuse_attention", .integer(c.reused)),
                  ("use_relative_pe", .bool(c.useRelativePE)), ("pe_max_seq_length", .integer(c.peMaxSeqLength))]
            m += c.weightOptions.kerasConfig
            m += [("query_shape", optionalList(buildShapes?.query)),
                  ("key_shape", optionalList(buildShapes.map { $0.key ?? $0.value })),
                  ("value_shape", optionalList(buildShapes?.value)), ("seed", .integer(c.seed))]
        }
        return .object(m)
    }
}

extension WeightOptions {
    /// The seven options as Keras serialises them.
    var kerasConfig: [(key: String, value: JSON)] {
        [("kernel_initializer", kernelInitializer.keras), ("bias_initializer", biasInitializer.keras),
         ("kernel_regularizer", kernelRegularizer?.keras ?? .null), ("bias_regularizer", biasRegularizer?.keras ?? .null),
         ("activity_regularizer", activityRegularizer?.keras ?? .null),
         ("kernel_constraint", kernelConstraint?.keras ?? .null), ("bias_constraint", biasConstraint?.keras ?? .null)]
    }
}

/// {"module", "class_name", "config", "registered_name": null}, as keras.<module>.serialize gives.
private func kerasObject(_ module: String, _ className: String, _ config: [(key: String, value: JSON)]) -> JSON {
    .object([("module", .string(module)), ("class_name", .string(className)), ("config", .object(config)),
             ("registered_name", .null)])
}

extension Initializer {
    var keras: JSON {
        let seed: (key: String, value: JSON) = ("seed", .null)
        let axes: [(key: String, value: JSON)] = [seed, ("input_axes", .null), ("output_axes", .null)]
        let (name, config): (String, [(key: String, value: JSON)]) = switch self {
        case .glorotUniform: ("GlorotUniform", axes)
        case .glorotNormal: ("GlorotNormal", axes)
        case .heUniform: ("HeUniform", axes)
        case .heNormal: ("HeNormal", axes)
        case .lecunUniform: ("LecunUniform", axes)
        case .lecunNormal: ("LecunNormal", axes)
        case .randomNormal(let mean, let stddev): ("RandomNormal", [seed, ("mean", .real(mean)), ("stddev", .real(stddev))])
        case .randomUniform(let min, let max): ("RandomUniform", [seed, ("minval", .real(min)), ("maxval", .real(max))])
        case .truncatedNormal(let mean, let stddev):
            ("TruncatedNormal", [seed, ("mean", .real(mean)), ("stddev", .real(stddev))])
        case .zeros: ("Zeros", [])
        case .ones: ("Ones", [])
        case .constant(let value): ("Constant", [("value", .real(value))])
        case .orthogonal(let gain): ("Orthogonal", [seed, ("gain", .real(gain))])
        }
        return kerasObject("keras.initializers", name, config)
    }
}

extension Regularizer {
    var keras: JSON {
        switch self {
        case .l1(let l1): kerasObject("keras.regularizers", "L1", [("l1", .real(l1))])
        case .l2(let l2): kerasObject("keras.regularizers", "L2", [("l2", .real(l2))])
        case .l1l2(let l1, let l2): kerasObject("keras.regularizers", "L1L2", [("l1", .real(l1)), ("l2", .real(l2))])
        }
    }
}

extension Constraint {
    var keras: JSON {
        switch self {
        case .maxNorm(let maxValue, let axis):
            kerasObject("keras.constraints", "MaxNorm", [("max_value", .real(maxValue)), ("axis", .integer(axis))])
        case .nonNeg: kerasObject("keras.constraints", "NonNeg", [])
        case .unitNorm(let axis): kerasObject("keras.constraints", "UnitNorm", [("axis", .integer(axis))])
        case .minMaxNorm(let minValue, let maxValue, let rate, let axis):
            kerasObject("keras.constraints", "MinMaxNorm", [("min_value", .real(minValue)), ("max_value", .real(maxValue)),
                                                           ("rate", .real(rate)), ("axis", .integer(axis))])
        }
    }
}

// MARK: - Reading the Keras config

/// The members of a JSON object, taken one by one; `finish()` refuses the ones nobody took.
struct ConfigReader {
    private var members: [String: JSON] = [:]
    private let order: [String]
    let what: String

    init(_ json: JSON, _ what: String) throws(AttentionError) {
        let object = try json.object(what)
        for member in object { members[member.key] = member.value }
        order = object.map(\.key)
        self.what = what
    }

    /// The value of `key`, or nil when absent; taken either way.
    mutating func take(_ key: String) -> JSON? { members.removeValue(forKey: key) }

    /// The value of `key` unless absent or null.
    mutating func present(_ key: String) -> JSON? {
        guard let v = take(key), !v.isNull else { return nil }
        return v
    }

    mutating func int(_ key: String) throws(AttentionError) -> Int {
        guard let v = take(key) else { throw .invalid("\(what) has no \(key)") }
        return try v.int("\(what) \(key)")
    }

    mutating func optionalInt(_ key: String) throws(AttentionError) -> Int? {
        try present(key)?.int("\(what) \(key)")
    }

    mutating func bool(_ key: String, _ fallback: Bool) throws(AttentionError) -> Bool {
        try take(key)?.bool("\(what) \(key)") ?? fallback
    }

    mutating func double(_ key: String, _ fallback: Double) throws(AttentionError) -> Double {
        try take(key)?.double("\(what) \(key)") ?? fallback
    }

    /// null/absent → nil; an integer → [it]; an array of integers.
    mutating func intList(_ key: String) throws(AttentionError) -> [Int]? {
        guard let v = present(key) else { return nil }
        if case .number = v { return [try v.int("\(what) \(key)")] }
        let items = try v.array("\(what) \(key)")
        guard items.count <= BuildShapes.maxRank else {
            throw .invalid("\(what) \(key) has \(items.count) entries; at most \(BuildShapes.maxRank) are supported")
        }
        var out: [Int] = []
        for (i, item) in items.enumerated() { out.append(try item.int("\(what) \(key)[\(i)]")) }
        return out
    }

    /// A seed: null or an integer in [0, 2**64) (absent: nil).
    mutating func seed(_ key: String = "seed") throws(AttentionError) -> UInt64? {
        try present(key)?.uint64("\(what) \(key)")
    }

    /// Refuses the keys nobody took.
    func finish() throws(AttentionError) {
        let unknown = order.filter { members[$0] != nil }
        guard unknown.isEmpty else {
            throw .invalid("\(what) has unknown keys \(unknown.map { "\"\($0)\"" }.joined(separator: ", "))")
        }
    }
}

extension LayerConfig {
    /// The config of a layer of Keras class `kind` from its get_config() JSON, and its dtype.
    public static func decode(kind: String, config json: JSON) throws(AttentionError) -> (LayerConfig, DType) {
        var r = try ConfigReader(json, "the \(kind) config")
        if let name = r.take("name"), !name.isNull { _ = try name.string("\(r.what) name") }
        _ = try r.bool("trainable", true)
        let dtype = try decodeDType(r.take("dtype"), r.what)
        let config: LayerConfig
        switch kind {
        case "Attention":
            let mode = try r.present("score_mode")?.string("\(r.what) score_mode") ?? "dot"
            guard mode == "dot" || mode == "concat" else {
                throw .invalid("\(r.what) score_mode must be \"dot\" or \"concat\", got \"\(mode)\"")
            }
            config = .attention(AttentionConfig(useScale: try r.bool("use_scale", false),
                                                scoreMode: mode == "dot" ? .dot : .concat,
                                                dropout: try r.double("dropout", 0), causal: try r.bool("causal", false)))
            _ = try r.seed()  // the Python layer's dropout seed; C calls pass theirs
        case "AdditiveAttention":
            config = .additiveAttention(AdditiveAttentionConfig(useScale: try r.bool("use_scale", true),
                                                                dropout: try r.double("dropout", 0),
                                                                seed: try r.seed() ?? 0))
        case "MultiHeadAttention":
            var c = MultiHeadAttentionConfig(numHeads: try r.int("num_heads"), keyDim: try r.int("key_dim"),
                                             valueDim: try r.optionalInt("value_dim"))
            c.dropout = try r.double("dropout", 0)
            c.useBias = try r.bool("use_bias", true)
            c.useGate = try r.bool("use_gate", false)
            c.outputShape = try r.intList("output_shape")
            c.attentionAxes = try r.intList("attention_axes")
            c.slidingWindow = try r.optionalInt("sliding_window")
            _ = try r.present("flash_attention")?.bool("\(r.what) flash_attention")  // changes no number
            c.weightOptions = try WeightOptions(&r)
            c.seed = try r.seed() ?? 0
            config = .multiHeadAttention(c)
        case "GroupQueryAttention", "GroupedQueryAttention":
            var c = GroupQueryAttentionConfig(headDim: try r.int("head_dim"), numQueryHeads: try r.int("num_query_heads"),
                                              numKeyValueHeads: try r.int("num_key_value_heads"))
            c.dropout = try r.double("dropout", 0)
            c.useBias = try r.bool("use_bias", true)
            c.useGate = try r.bool("use_gate", false)
            c.slidingWindow = try r.optionalInt("sliding_window")
            _ = try r.present("flash_attention")?.bool("\(r.what) flash_attention")  // changes no number
            c.weightOptions = try WeightOptions(&r)
            c.seed = try r.seed() ?? 0
            config = .groupQueryAttention(c)
        case "ReuseMultiHeadAttention":
            var c = ReuseMultiHeadAttentionConfig(numHeads: try r.int("num_heads"), keyDim: try r.int("key_dim"),
                                                  valueDim: try r.optionalInt("value_dim"))
            c.dropout = try r.double("dropout", 0)
            c.useBias = try r.bool("use_bias", true)
            c.outputShape = try r.intList("output_shape")
            c.attentionAxes = try r.intList("attention_axes")
            c.reuseAttention = try r.optionalInt("reuse_attention") ?? 0
            c.useRelativePE = try r.bool("use_relative_pe", false)
            let pe = try r.optionalInt("pe_max_seq_length"), alias = try r.optionalInt("max_sequence_length")
            if let pe, let alias, pe != alias, pe != 512 {
                throw .invalid("\(r.what) gives pe_max_seq_length \(pe) and max_sequence_length \(alias); give one")
            }
            c.peMaxSeqLength = alias ?? pe ?? 512
            c.weightOptions = try WeightOptions(&r)
            for key in ["query_shape", "key_shape", "value_shape"] {  // upstream's record; build_shapes rule
                for (i, d) in try (r.present(key) ?? .array([])).array("\(r.what) \(key)").enumerated() where !d.isNull {
                    _ = try d.int("\(r.what) \(key)[\(i)]")
                }
            }
            c.seed = try r.seed() ?? 0
            config = .reuseMultiHeadAttention(c)
        default:
            throw .invalid("unknown layer kind \"\(kind)\": expected Attention, AdditiveAttention, MultiHeadAttention, GroupQueryAttention or ReuseMultiHeadAttention")
        }
        try r.finish()
        return (config, dtype)
    }

    /// "float32", "float64", null (float32) or a DTypePolicy dict whose config names one.
    /// The half-precision policies compute in float32 here (their weights are float32), as
    /// the Python layers do; only the rounding of results to half precision is left out.
    private static func decodeDType(_ json: JSON?, _ what: String) throws(AttentionError) -> DType {
        var name = json ?? .null
        if case .object = name {
            var policy = try ConfigReader(name, "\(what) dtype")
            var inner = try ConfigReader(policy.take("config") ?? .null, "\(what) dtype config")
            name = inner.take("name") ?? .null
        }
        if name.isNull { return .float32 }
        switch try name.string("\(what) dtype") {
        case "float32", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16": return .float32
        case "float64": return .float64
        case let other:
            throw .invalid("\(what) dtype must be \"float32\", \"float64\" or a half-precision policy computed in float32 (\"float16\", \"bfloat16\", \"mixed_float16\", \"mixed_bfloat16\"), got \"\(other)\"")
        }
    }
}

/// A Keras object spec: a name ("glorot_uniform", "GlorotUniform") or a serialised dict,
/// resolved to a canonical class name and a reader of its config.
private func kerasSpec(_ json: JSON, _ names: [String: String], _ what: String) throws(AttentionError) -> (String, ConfigReader) {
    let given: String, config: JSON
    if case .string(let s) = json {
        given = s
        config = .object([])
    } else {
        var r = try ConfigReader(json, what)
        given = try (r.take("class_name") ?? .null).string("\(what) class_name")
        config = r.present("config") ?? .object([])
        for key in ["module", "registered_name"] { _ = r.take(key) }
        try r.finish()
    }
    guard let name = names[given] else {
        throw .invalid("\(what) \"\(given)\" is unknown; supported: \(Set(names.values).sorted().joined(separator: ", "))")
    }
    return (name, try ConfigReader(config, "\(what) \(name) config"))
}

/// Class name → itself, its snake_case spelling, and `aliases`.
private func spellings(_ classes: [(String, String)], aliases: [String: String] = [:]) -> [String: String] {
    var names = aliases
    for (className, snake) in classes {
        names[className] = className
        names[snake] = className
    }
    return names
}

private let initializerNames = spellings(
    [("GlorotUniform", "glorot_uniform"), ("GlorotNormal", "glorot_normal"), ("HeUniform", "he_uniform"),
     ("HeNormal", "he_normal"), ("LecunUniform", "lecun_uniform"), ("LecunNormal", "lecun_normal"),
     ("RandomNormal", "random_normal"), ("RandomUniform", "random_uniform"), ("TruncatedNormal", "truncated_normal"),
     ("Zeros", "zeros"), ("Ones", "ones"), ("Constant", "constant"), ("Orthogonal", "orthogonal")],
    aliases: ["normal": "RandomNormal", "uniform": "RandomUniform", "zero": "Zeros", "one": "Ones"])
private let regularizerNames = spellings([("L1", "l1"), ("L2", "l2"), ("L1L2", "l1l2")], aliases: ["l1_l2": "L1L2"])
private let constraintNames = spellings([("MaxNorm", "max_norm"), ("NonNeg", "non_neg"), ("UnitNorm", "unit_norm"),
                                         ("MinMaxNorm", "min_max_norm")])

extension WeightOptions {
    /// The seven options from a layer config's reader (absent: the defaults).
    init(_ r: inout ConfigReader) throws(AttentionError) {
        self.init()
        kernelInitializer = try Initializer(r.take("kernel_initializer"), default: .glorotUniform, "\(r.what) kernel_initializer")
        biasInitializer = try Initializer(r.take("bias_initializer"), default: .zeros, "\(r.what) bias_initializer")
        kernelRegularizer = try Regularizer(r.present("kernel_regularizer"), "\(r.what) kernel_regularizer")
        biasRegularizer = try Regularizer(r.present("bias_regularizer"), "\(r.what) bias_regularizer")
        activityRegularizer = try Regularizer(r.present("activity_regularizer"), "\(r.what) activity_regularizer")
        kernelConstraint = try Constraint(r.present("kernel_constraint"), "\(r.what) kernel_constraint")
        biasConstraint = try Constraint(r.present("bias_constraint"), "\(r.what) bias_constraint")
    }
}

extension Initializer {
    /// From a Keras spec; absent gives `fallback`, null is refused (Keras needs one).
    init(_ json: JSON?, default fallback: Initializer, _ what: String) throws(AttentionError) {
        guard let json else { self = fallback; return }
        guard !json.isNull else { throw .invalid("\(what) is required (a name such as \"glorot_uniform\" or a config dict)") }
        var (name, c) = try kerasSpec(json, initializerNames, what)
        _ = try c.seed()
        switch name {
        case "RandomNormal": self = .randomNormal(mean: try c.double("mean", 0), stddev: try c.double("stddev", 0.05))
        case "TruncatedNormal": self = .truncatedNormal(mean: try c.double("mean", 0), stddev: try c.double("stddev", 0.05))
        case "RandomUniform": self = .randomUniform(min: try c.double("minval", -0.05), max: try c.double("maxval", 0.05))
        case "Zeros": self = .zeros
        case "Ones": self = .ones
        case "Constant": self = .constant(try c.double("value", 0))
        case "Orthogonal": self = .orthogonal(gain: try c.double("gain", 1))
        default:
            for key in ["input_axes", "output_axes"] where c.present(key) != nil {
                throw .invalid("\(what): an explicit \(key) is not supported (the layer chooses it)")
            }
            let table: [String: Initializer] = ["GlorotUniform": .glorotUniform, "GlorotNormal": .glorotNormal,
                                                "HeUniform": .heUniform, "HeNormal": .heNormal,
                                                "LecunUniform": .lecunUniform, "LecunNormal": .lecunNormal]
            self = table[name] ?? .glorotUniform
        }
        try c.finish()
    }
}

extension Regularizer {
    /// From a Keras spec; nil (absent or null) is no regularizer.
    init?(_ json: JSON?, _ what: String) throws(AttentionError) {
        guard let json else { return nil }
        var (name, c) = try kerasSpec(json, regularizerNames, what)
        switch name {
        case "L1": self = .l1(try c.double("l1", 0.01))
        case "L2": self = .l2(try c.double("l2", 0.01))
        default: self = .l1l2(l1: try c.double("l1", 0), l2: try c.double("l2", 0))
        }
        try c.finish()
    }
}

extension Constraint {
    /// From a Keras spec; nil (absent or null) is no constraint. The axis must be one integer.
    init?(_ json: JSON?, _ what: String) throws(AttentionError) {
        guard let json else { return nil }
        var (name, c) = try kerasSpec(json, constraintNames, what)
        func axis() throws(AttentionError) -> Int {
            let axis = try c.take("axis")?.int("\(c.what) axis") ?? 0
            guard axis >= Int(Int32.min), axis <= Int(Int32.max) else { throw .invalid("\(c.what) axis \(axis) does not fit 32 bits") }
            return axis
        }
        switch name {
        case "MaxNorm": self = .maxNorm(maxValue: try c.double("max_value", 2), axis: try axis())
        case "NonNeg": self = .nonNeg
        case "UnitNorm": self = .unitNorm(axis: try axis())
        default:
            self = .minMaxNorm(minValue: try c.double("min_value", 0), maxValue: try c.double("max_value", 1),
                               rate: try c.double("rate", 1), axis: try axis())
        }
        try c.finish()
    }
}
