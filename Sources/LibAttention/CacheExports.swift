import AttentionLayers
import CAttention

/// The key/value cache fields of att_call_args (cache, cache_update_index,
/// cache_update_index_count): read into the call's arguments, with the checks only the
/// boundary can make (the layer checks shapes, dtype and index values).

/// Adds `a`'s key/value cache, if any, to `arguments`, and refuses a cache that overlaps
/// another tensor of the call (updated: any; read only: the output and scores).
func addKeyValueCache(_ a: att_call_args, to arguments: inout CallArguments, _ l: any AttentionLayer) throws {
    let cache = try optionalTensor(UnsafePointer(a.cache), "args->cache")
    let index = try cacheUpdateIndex(a, batch: arguments.query.dims.first)
    guard cache != nil || index != nil else { return }
    guard l is any KeyValueCacheLayer else {
        let given = cache != nil ? "args->cache" : "args->cache_update_index"
        throw Failure(ATT_ERR_INVALID_ARGUMENT, "\(given): this layer kind takes no key/value cache "
                      + "(MultiHeadAttention and GroupQueryAttention do)")
    }
    arguments.cache = cache
    arguments.cacheUpdateIndex = index
    guard let cache else { return }
    let arguments = arguments
    let c = CallTensor(name: "args->cache", tensor: cache, required: { cache.dims.count == 5 ? cache.dims : nil })
    let others = [("args->query", arguments.query), ("args->value", arguments.value), ("args->key", arguments.key),
                  ("args->query_mask", arguments.queryMask), ("args->value_mask", arguments.valueMask),
                  ("args->key_mask", arguments.keyMask), ("args->attention_mask", arguments.attentionMask),
                  ("args->reuse_attention_scores", arguments.reuseAttentionScores),
                  ("args->output", a.output == nil ? nil : arguments.output), ("args->scores", arguments.scores)]
        .map { CallTensor(name: $0.0, tensor: $0.1) }
    if index != nil {
        try requireDisjoint(written: [c], read: others)
    } else {
        // Read only: it may share memory with the inputs, not with what the call writes.
        let shapes = { try? l.outputShapes(query: arguments.query.dims, value: arguments.value.dims,
                                          key: arguments.key?.dims) }
        let written = [CallTensor(name: "args->output", tensor: a.output == nil ? nil : arguments.output,
                                  required: { shapes()?.output }),
                       CallTensor(name: "args->scores", tensor: arguments.scores, required: { arguments.scores?.dims })]
        try requireDisjoint(written: written, read: [c])
    }
}

/// cache_update_index, after checking its count against the query's batch size (its entries
/// are read by the layer, once the call's shapes are checked).
private func cacheUpdateIndex(_ a: att_call_args, batch: Int?) throws -> CacheUpdateIndex? {
    let count = UInt(bitPattern: a.cache_update_index_count)  // size_t: unsigned (SIZE_MAX is not -1)
    guard let p = a.cache_update_index else {
        guard count == 0 else {
            throw Failure(ATT_ERR_NULL_ARGUMENT, "args->cache_update_index is NULL but args->cache_update_index_count is \(count)")
        }
        return nil
    }
    guard count == 1 || batch.map({ $0 >= 0 && count == UInt($0) }) ?? false else {
        let rows = batch.map { "the batch size (\($0))" } ?? "the batch size"
        throw Failure(ATT_ERR_SHAPE, "args->cache_update_index has \(count) entries (cache_update_index_count); "
                      + "pass 1 (one index for every batch row) or \(rows) (one per row)")
    }
    return CacheUpdateIndex(base: p, count: Int(count))
}
