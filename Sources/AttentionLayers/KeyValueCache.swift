import AttentionKernels

/// Incremental decoding with a key/value cache, for MultiHeadAttention and
/// GroupQueryAttention: keras_hub's `CachedMultiHeadAttention` semantics and layout.
///
///   cache (B, 2, S_max, K, H): keys at [:, 0], values at [:, 1]; K = key/value heads
///   (num_heads, or num_key_value_heads), H = key_dim (= value_dim: the two are stacked).
///
/// - With `cacheUpdateIndex` (one p for every batch row, or one p_b per row: a ragged batch
///   whose sequences have different lengths): only the new tokens are projected; their keys
///   and values are written into the caller's cache in place, at rows p_b ..< p_b + Tv of
///   batch row b; then the query (B, Tq) attends over the whole cache (S_max keys), masks
///   deciding what it sees — keras_hub's call, whose decoders pass a (B, Tq, S_max)
///   attention_mask. With `useCausalMask`, query row i of batch row b stands at key position
///   p_b + i and sees positions ≤ p_b + i (a sliding window counts from there too): no mask
///   to build, and keys past p_b + Tq − 1 — the unfilled part of the cache — are never read.
/// - Without it (nil): the cache is used as it is and the value and key are not read
///   (cross-attention over an encoder's cached keys and values); masks are top-left aligned,
///   as without a cache.
///
/// Masks are read against the scores (B, N, Tq, S_max): query_mask (B, Tq), value_mask and
/// key_mask over the cache's positions (B, S_max), attention_mask (B, Tq, S_max) or anything
/// Keras's rule broadcasts to it. Returned scores are (B, N, Tq, S_max).
///
/// A row whose every key is masked follows Keras's rule (uniform on the fused path: no
/// scores, dropout 0; else zero) — uniform over all S_max keys, as keras_hub computes it —
/// except with useCausalMask and an update index, where it is zero (**ours**: the uniform
/// row of Keras's fused path would read the unfilled cache).
///
/// No state is kept in the layer: one layer serves any number of sequences, each with its
/// own cache, from any number of threads. The cache is the caller's: calls that update one
/// cache must not run at once. Gradients through a cache are not computed (keras_hub's cache
/// is for inference).
enum KeyValueCacheMessage {
    static let layers = "a key/value cache is an argument of MultiHeadAttention and GroupQueryAttention"
    static let noGradients = "gradients through a key/value cache are not computed (a cache is for inference: "
        + "call without cache for a training step)"
}

/// The layers that take a key/value cache in their call.
public protocol KeyValueCacheLayer: AttentionLayer {}

extension MultiHeadAttention: KeyValueCacheLayer {}
extension GroupQueryAttention: KeyValueCacheLayer {}

/// What a cached call computed that its activity penalties read.
struct CachedPass<T: KernelScalar> {
    var query: UnsafeMutablePointer<T>, queryCount: Int
    /// The new tokens' projected keys and values (when the cache was updated).
    var key: UnsafeMutablePointer<T>?, value: UnsafeMutablePointer<T>?, newCount: Int
    var gate: UnsafeMutablePointer<T>?, gateCount: Int
    var output: UnsafeMutablePointer<T>, outputCount: Int
    var scores: UnsafeMutablePointer<T>?, scoresCount: Int
}

/// A checked cache call: sizes, the cache, and each batch row's update index.
private struct CacheCall<T: KernelScalar> {
    let batch: Int, queryLength: Int, newLength: Int, maxLength: Int
    let cache: UnsafeMutablePointer<T>
    /// p_b for each batch row (in the call's workspace), or nil (the cache is used as it is).
    let positions: UnsafeMutablePointer<Int>?
    /// The largest p_b.
    let lastPosition: Int
}

extension MultiHeadAttention {
    private var cacheHeadsName: String { layerName == "GroupQueryAttention" ? "num_key_value_heads" : "num_heads" }
    private var cacheWidthName: String { layerName == "GroupQueryAttention" ? "head_dim" : "key_dim" }

    /// Checks a cached call's arguments against the layer and the cache.
    private func checkCacheCall(_ a: CallArguments, _ b: Built, _ workspace: Workspace<T>) throws(AttentionError) -> CacheCall<T> {
        guard let cacheTensor = a.cache else {
            throw .invalid("cache_update_index is given but cache is not: cache_update_index says where to write "
                           + "the new keys and values in a cache (keras_hub's CachedMultiHeadAttention refuses it too)")
        }
        if a.reuseAttentionScores != nil { throw .invalid("\(layerName) takes no reuse_attention_scores") }
        guard b.inputs.axes.rank == 3, b.inputs.axes.attention == [1] else {
            throw .invalid("\(layerName) takes a key/value cache for rank-3 inputs (batch, time, features) attending "
                           + "over axis 1; the layer was built for rank-\(b.inputs.axes.rank) inputs with attention "
                           + "axes \(b.inputs.axes.attention)")
        }
        guard valueWidth == config.keyDim else {
            throw .invalid("a key/value cache stacks keys and values (B, 2, S_max, heads, key_dim): \(layerName) needs "
                           + "value_dim == key_dim for it; this layer has key_dim \(config.keyDim), value_dim \(valueWidth)")
        }
        let key = a.key ?? a.value
        _ = try outputShapes(query: a.query.dims, value: a.value.dims, key: key.dims)  // dims against the build
        let (batch, tq, tv) = (a.query.dims[0], a.query.dims[1], a.value.dims[1])
        let (kv, h) = (keyValueHeads, config.keyDim)
        let d = cacheTensor.dims
        guard d.count == 5, d[0] == batch, d[1] == 2, d[2] >= 0, d[3] == kv, d[4] == h else {
            throw .shape("cache has shape \(d); \(layerName) needs (batch, 2, max_length, \(cacheHeadsName), \(cacheWidthName)) = "
                         + "(\(batch), 2, S_max, \(kv), \(h)): keys at [:, 0], values at [:, 1]")
        }
        let cache = try cacheTensor.elements(of: T.self, "cache")
        let sMax = d[2]
        guard let index = a.cacheUpdateIndex else {
            return CacheCall(batch: batch, queryLength: tq, newLength: tv, maxLength: sMax, cache: cache, positions: nil,
                             lastPosition: 0)
        }
        guard index.count == 1 || index.count == batch else {
            throw .shape("cache_update_index has \(index.count) entries; pass one (for every batch row) or one per "
                         + "batch row (\(batch))")
        }
        let positions = UnsafeMutableRawPointer(try workspace.bytes(try checkedProduct([batch, MemoryLayout<Int>.stride],
                                                                                    "the update indices"),
                                                                    "the update indices"))
            .bindMemory(to: Int.self, capacity: batch)
        var last = 0
        for row in 0..<index.count {
            let p = Int(index.base[row])
            let which = index.count == 1 ? "cache_update_index" : "cache_update_index[\(row)]"
            guard p >= 0 else { throw .invalid("\(which) is \(p); an index into the cache is >= 0") }
            guard tv <= sMax, p <= sMax - tv else {
                throw .invalid("\(which) is \(p): the \(tv) new key/value row\(tv == 1 ? "" : "s") would end at "
                               + "\(p) + \(tv), past the cache's max_length \(sMax) (cache shape \(d))")
            }
            if a.useCausalMask {
                guard tq <= sMax, p <= sMax - tq else {
                    throw .invalid("\(which) is \(p): with use_causal_mask the \(tq) query rows stand at positions "
                                   + "\(p) ..< \(p) + \(tq), past the cache's max_length \(sMax)")
                }
            }
            last = max(last, p)
        }
        for row in 0..<batch { positions[row] = Int(index.base[index.count == 1 ? 0 : row]) }
        return CacheCall(batch: batch, queryLength: tq, newLength: tv, maxLength: sMax, cache: cache,
                         positions: positions, lastPosition: last)
    }

    /// The forward of a call with a key/value cache (see the top of this file).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func cachedForward(_ a: CallArguments, _ workspace: Workspace<T>) throws(AttentionError) -> CachedPass<T> {
        let (b, w) = try state()
        let c = try checkCacheCall(a, b, workspace)
        let (batch, tq, tv, sMax) = (c.batch, c.queryLength, c.newLength, c.maxLength)
        let (kv, h) = (keyValueHeads, config.keyDim)
        let key = a.key ?? a.value
        let (outputShape, _) = try outputShapes(query: a.query.dims, value: a.value.dims, key: key.dims)
        let scoresShape = [batch, heads, tq, sMax]
        _ = try checkedProduct(scoresShape, "the scores tensor")
        let (output, scores) = try a.results(T.self, output: outputShape, scores: scoresShape)
        let updating = c.positions != nil
        let causalStep = updating && a.useCausalMask
        let dropout = a.training && config.dropout > 0
            ? AttentionDropout(mask: DropoutMask(rate: config.dropout, seed: a.dropoutSeed, stream: a.dropoutStream),
                               scoresAfterDropout: false)
            : nil
        let keras: FullyMaskedRow = scores == nil && config.dropout == 0 ? .uniform : .zero
        var mask = try MultiHeadMask(axes: b.inputs.axes, query: a.query.dims, value: [batch, sMax, a.value.dims[2]],
                                     scoresShape: scoresShape)
            .build(a, window: config.slidingWindow ?? 0, fullyMaskedRow: causalStep ? .zero : keras, workspace: workspace)

        // Projections: the query (and gate) of the new query rows; with an update, the key and
        // value of the new tokens only, written into the cache.
        let projector = Projector(weights: w, workspace: workspace)
        let query = UnsafePointer(try a.query.elements(of: T.self, "query"))
        var inputs: [(UnsafePointer<T>, Int, Projection, String)] = [(query, batch * tq, b.query, "the projected query")]
        if let gate = b.gate { inputs.append((query, batch * tq, gate, "the gate")) }
        if updating {
            inputs.append((UnsafePointer(try key.elements(of: T.self, "key")), batch * tv, b.key, "the projected key"))
            inputs.append((UnsafePointer(try a.value.elements(of: T.self, "value")), batch * tv, b.value,
                           "the projected value"))
        }
        let projected = try projector.projectAll(inputs)
        let q = projected[0], gate = b.gate == nil ? nil : projected[1]
        let (newKey, newValue) = updating ? (projected[projected.count - 2], projected[projected.count - 1]) : (nil, nil)
        let width = kv * h, plane = sMax * width
        if let positions = c.positions, let newKey, let newValue {
            for row in 0..<batch {
                for t in 0..<tv {
                    let target = c.cache + row * 2 * plane + (positions[row] + t) * width
                    target.update(from: newKey + (row * tv + t) * width, count: width)
                    (target + plane).update(from: newValue + (row * tv + t) * width, count: width)
                }
            }
        }

        // Attention over the cache, in place: (g, n, i) = (batch row, head, query row).
        let attendedCount = try checkedProduct([batch, tq, heads, h], "the attention output")
        let attended = try workspace.buffer(attendedCount, "the attention output")
        let cacheLayout = RowLayout(group: 2 * plane, head: h, row: width)
        var keys = UnsafePointer(c.cache), values = UnsafePointer(c.cache + plane)
        let score = 1 / T.squareRoot(T(h))
        var keyLength = sMax
        if let positions = c.positions, mask.causal || mask.window > 0 { mask.positions = UnsafePointer(positions) }
        if causalStep, let positions = c.positions {
            // No row sees a key past its own position: the kernel's key axis ends at the last
            // one any row sees (also what keeps the parallel split on keys that exist).
            keyLength = min(sMax, c.lastPosition + tq)
            if scores != nil {
                // The scores path computes every logit of the row before masking: it reads
                // copies whose unfilled part is 0, never the caller's unfilled cache.
                let copy = try workspace.zeros(try checkedProduct([batch, 2, sMax, width], "a cache copy"), "a cache copy")
                for row in 0..<batch {
                    for half in 0..<2 {
                        (copy + row * 2 * plane + half * plane)
                            .update(from: c.cache + row * 2 * plane + half * plane, count: (positions[row] + tq) * width)
                    }
                }
                (keys, values) = (UnsafePointer(copy), UnsafePointer(copy + plane))
                keyLength = sMax
            } else if dropout != nil {
                keyLength = sMax  // dropout numbers the scores' elements along the whole cache
            }
        }
        let shape = AttentionShape(groups: batch, heads: heads, keyValueHeads: kv, queryLength: tq,
                                   keyLength: keyLength, keyDim: h, valueDim: h)
        let operands = AttentionOperands(
            query: UnsafePointer(q), queryLayout: RowLayout(group: tq * heads * h, head: h, row: heads * h),
            key: keys, keyLayout: cacheLayout, value: values, valueLayout: cacheLayout,
            output: attended, outputLayout: RowLayout(group: tq * heads * h, head: h, row: heads * h))
        // A step (a few query rows) takes attentionForward's decode path.
        attentionForward(shape: shape, operands: operands, score: .dot(scale: score), mask: mask, bias: nil,
                         dropout: dropout, scores: scores)

        let rows = batch * tq, attendedWidth = heads * h
        if let gate {  // σ(query·Wg + bg) kept for the activity penalty, as Keras takes it
            for e in 0..<(rows * attendedWidth) {
                gate[e] = T.sigmoid(gate[e])
                attended[e] *= gate[e]
            }
        }
        try projector.project(attended, rows: rows, b.output, into: output, accumulate: false, inputAxes: 2)
        return CachedPass(query: q, queryCount: rows * heads * h, key: newKey, value: newValue,
                          newCount: batch * tv * width, gate: gate, gateCount: rows * attendedWidth,
                          output: output, outputCount: try elementCount(outputShape, "the output"),
                          scores: scores, scoresCount: scores == nil ? 0 : try elementCount(scoresShape, "the scores"))
    }

    /// The activity penalties of a cached call, as Keras lists its projections' (each / B):
    /// query, [key, value: the new tokens', when the cache is updated — keras_hub projects
    /// nothing else], [gate], output (GroupQueryAttention: the output again, and the scores).
    func cachedActivityPenalties(_ a: CallArguments, _ activity: Regularizer) throws(AttentionError) -> [Double] {
        let workspace = Workspace<T>()
        let pass = try cachedForward(a, workspace)
        let batch = Double(max(1, a.query.dims[0]))
        var result = [activity.penalty(of: pass.query, pass.queryCount) / batch]
        if let key = pass.key, let value = pass.value {
            result.append(activity.penalty(of: key, pass.newCount) / batch)
            if let gate = pass.gate { result.append(activity.penalty(of: gate, pass.gateCount) / batch) }
            result.append(activity.penalty(of: value, pass.newCount) / batch)
        } else if let gate = pass.gate {
            result.append(activity.penalty(of: gate, pass.gateCount) / batch)
        }
        let output = activity.penalty(of: pass.output, pass.outputCount) / batch
        result.append(output)
        if penalizesOwnOutputs {
            result.append(output)
            if let scores = pass.scores { result.append(activity.penalty(of: scores, pass.scoresCount) / batch) }
        }
        return withExtendedLifetime(workspace) { result }
    }
}

extension Projector {
    /// Each (input, rows, projection, what) projected into a new buffer, as `project` does;
    /// when every input is one row (a decoder's step), in one parallel pass (`gemv`).
    func projectAll(_ items: [(UnsafePointer<T>, Int, Projection, String)]) throws(AttentionError) -> [UnsafeMutablePointer<T>] {
        guard items.allSatisfy({ $0.1 == 1 }) else {
            var outputs: [UnsafeMutablePointer<T>] = []
            for (input, rows, p, what) in items { outputs.append(try project(input, rows: rows, p, what)) }
            return outputs
        }
        var outputs: [UnsafeMutablePointer<T>] = [], products: [GemvProduct<T>] = []
        for (input, _, p, what) in items {
            let shape = weights.specs[p.kernel].shape
            let n = shape.dropFirst().reduce(1, *)
            let out = try workspace.buffer(n, what)
            outputs.append(out)
            products.append(GemvProduct(x: input, b: weights.values(p.kernel), ldb: n, y: out,
                                        bias: p.bias.map { weights.values($0) }, n: n, k: shape[0]))
        }
        gemv(products)
        return outputs
    }
}
