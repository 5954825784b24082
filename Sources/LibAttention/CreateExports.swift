import AttentionLayers
import CAttention

/// One create function per layer kind: config struct → Swift config → a layer of the
/// config's dtype, registered under a new handle.

/// Registers a new layer of `config` computing in `dtype` and stores its handle in `out`.
private func create(_ out: UnsafeMutablePointer<OpaquePointer?>?, _ config: LayerConfig, _ dtype: DType) throws {
    guard let out else { throw Failure.null("out") }
    out.pointee = Handles.insert(try config.makeLayer(dtype))
}

/// The config behind `p`, after checking it is non-NULL and of the size this library knows.
private func config<C: VersionedStruct>(_ p: UnsafePointer<C>?, _ name: String) throws -> C {
    try versionedStruct(p, name, nullName: "config")
}

@_cdecl("att_attention_create")
public func att_attention_create(_ cfg: UnsafePointer<att_attention_config>?,
                                 _ out: UnsafeMutablePointer<OpaquePointer?>?) -> att_status {
    withStatus {
        let c = try config(cfg, "att_attention_config")
        let mode: ScoreMode
        switch c.score_mode {
        case ATT_SCORE_DOT: mode = .dot
        case ATT_SCORE_CONCAT: mode = .concat
        default: throw Failure(ATT_ERR_INVALID_ARGUMENT, "score_mode \(c.score_mode.rawValue) is unknown: expected ATT_SCORE_DOT or ATT_SCORE_CONCAT")
        }
        let swiftConfig = AttentionConfig(useScale: c.use_scale != 0, scoreMode: mode, dropout: c.dropout,
                                          causal: c.causal != 0)
        try create(out, .attention(swiftConfig), try layerDType(c.dtype))
    }
}

@_cdecl("att_additive_attention_create")
public func att_additive_attention_create(_ cfg: UnsafePointer<att_additive_attention_config>?,
                                          _ out: UnsafeMutablePointer<OpaquePointer?>?) -> att_status {
    withStatus {
        let c = try config(cfg, "att_additive_attention_config")
        let swiftConfig = AdditiveAttentionConfig(useScale: c.no_scale == 0, dropout: c.dropout, seed: c.seed)
        try create(out, .additiveAttention(swiftConfig), try layerDType(c.dtype))
    }
}

@_cdecl("att_multi_head_attention_create")
public func att_multi_head_attention_create(_ cfg: UnsafePointer<att_multi_head_attention_config>?,
                                            _ out: UnsafeMutablePointer<OpaquePointer?>?) -> att_status {
    withStatus {
        let c = try config(cfg, "att_multi_head_attention_config")
        let swiftConfig = try multiHeadConfig(c)
        try create(out, .multiHeadAttention(swiftConfig), try layerDType(c.dtype))
    }
}

@_cdecl("att_group_query_attention_create")
public func att_group_query_attention_create(_ cfg: UnsafePointer<att_group_query_attention_config>?,
                                             _ out: UnsafeMutablePointer<OpaquePointer?>?) -> att_status {
    withStatus {
        let c = try config(cfg, "att_group_query_attention_config")
        let swiftConfig = try groupQueryConfig(c)
        try create(out, .groupQueryAttention(swiftConfig), try layerDType(c.dtype))
    }
}

@_cdecl("att_reuse_multi_head_attention_create")
public func att_reuse_multi_head_attention_create(_ cfg: UnsafePointer<att_reuse_multi_head_attention_config>?,
                                                  _ out: UnsafeMutablePointer<OpaquePointer?>?) -> att_status {
    withStatus {
        let c = try config(cfg, "att_reuse_multi_head_attention_config")
        let swiftConfig = try reuseConfig(c)
        try create(out, .reuseMultiHeadAttention(swiftConfig), try layerDType(c.dtype))
    }
}
