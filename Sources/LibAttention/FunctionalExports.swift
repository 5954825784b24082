import AttentionLayers
import CAttention

@_cdecl("att_dot_product_attention")
public func att_dot_product_attention(_ args: UnsafePointer<att_dot_product_attention_args>?) -> att_status {
    withStatus {
        let a = try versionedStruct(args, "att_dot_product_attention_args", nullName: "args")
        let query = try tensor(a.query, "args->query")
        let arguments = DotProductAttentionArguments(
            query: query, key: try tensor(a.key, "args->key"), value: try tensor(a.value, "args->value"),
            bias: try optionalTensor(a.bias, "args->bias"), mask: try optionalTensor(a.mask, "args->mask"),
            scale: a.has_scale != 0 ? a.scale : nil, isCausal: a.is_causal != 0,
            output: try tensor(UnsafePointer(a.output), "args->output"))
        let (q, v) = (query.dims, arguments.value.dims)
        try requireDisjoint(
            written: [CallTensor(name: "args->output", tensor: arguments.output, required: {  // (B, T, N, Hv)
                q.count == 4 && v.count == 4 ? Array(q.dropLast()) + [v[3]] : nil
            })],
            read: [("args->query", query), ("args->key", arguments.key), ("args->value", arguments.value),
                   ("args->bias", arguments.bias), ("args->mask", arguments.mask)].map { CallTensor(name: $0.0, tensor: $0.1) })
        try dotProductAttention(arguments)
    }
}
