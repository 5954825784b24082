/// How multi-head attention over N-D inputs maps onto the kernel's (g, n, i, j) space.
///
/// Inputs have shape (B, d_1, …, d_{r−2}, features). The attention axes (default: all of
/// d_1 … d_{r−2}) are flattened into the query row index i and the key row index j; the
/// batch axis and the other axes ("batch axes") into the group index g. Scores have Keras's
/// layout (B, <other axes>, heads, <query attention axes>, <key attention axes>), which is
/// exactly (g, n, i, j) flattened row-major.
struct AttentionAxes: Equatable {
    let rank: Int
    /// Attention axes of the input, in the order given (negative ones resolved).
    let attention: [Int]
    /// Axis 0 and the non-attention axes, ascending.
    let batch: [Int]

    /// Resolves `attention_axes` (nil: every axis but batch and features) for inputs of
    /// `rank`; a negative axis a means `negativeBase + a` — Keras counts from the rank,
    /// TF Model Garden's Reuse layer from the rank of the projection (rank + 1).
    init(_ axes: [Int]?, rank: Int, negativeBase: Int? = nil, layerName: String = "MultiHeadAttention") throws(AttentionError) {
        guard rank >= 3 else {
            throw .shape("\(layerName) needs inputs of rank >= 3 (batch, ..., features); got rank \(rank)")
        }
        let base = negativeBase ?? rank
        let resolved = (axes ?? Array(1..<(rank - 1))).map { $0 < 0 ? base + $0 : $0 }
        guard !resolved.isEmpty else { throw .invalid("attention_axes is empty") }
        for (given, axis) in zip(axes ?? resolved, resolved) {
            guard axis >= 1, axis <= rank - 2 else {
                let which = axis == 0 ? " (the batch axis)" : axis == rank - 1 ? " (the feature axis)" : ""
                throw .invalid("attention_axes contains \(given)\(which), but for inputs of rank \(rank) attention axes must be in 1...\(rank - 2) (or \(1 - base)...\(rank - 2 - base))")
            }
        }
        guard Set(resolved).count == resolved.count else {
            throw .invalid("attention_axes \(axes ?? resolved) repeats an axis (resolved: \(resolved))")
        }
        self.rank = rank
        attention = resolved
        batch = (0..<(rank - 1)).filter { !resolved.contains($0) }
    }

    /// Scores shape (B, <other axes>, heads, <query attention dims>, <key attention dims>).
    func scoresShape(query: [Int], key: [Int], heads: Int) -> [Int] {
        batch.map { query[$0] } + [heads] + attention.map { query[$0] } + attention.map { key[$0] }
    }

    /// Sizes of the kernel problem: groups, query rows, key rows.
    func problemSizes(query: [Int], key: [Int]) throws(AttentionError) -> (groups: Int, queryRows: Int, keyRows: Int) {
        (try checkedProduct(batch.map { query[$0] }, "the batch axes"),
         try checkedProduct(attention.map { query[$0] }, "the query attention axes"),
         try checkedProduct(attention.map { key[$0] }, "the key attention axes"))
    }

    /// Dims of a projection of an input of shape `input`: input dims but the last, heads, width.
    func projectedDims(_ input: [Int], heads: Int, width: Int) -> [Int] {
        Array(input.dropLast()) + [heads, width]
    }

    /// Axis order that lays a projection out as (batch axes, head, attention axes, width).
    var canonicalOrder: [Int] { batch + [rank - 1] + attention + [rank] }
}

/// What a multi-head layer's build fixed about its inputs, and the shapes it gives.
struct BuiltInputs {
    var axes: AttentionAxes
    var queryDim: Int, keyDim: Int, valueDim: Int
    /// The output's trailing dims (output_shape, or the query's last dim).
    var outputShape: [Int]

    /// Checks build shapes: one rank, and value and key equal but in the last dim.
    init(query: [Int], value: [Int], key: [Int], axes: [Int]?, negativeBase: Int? = nil, outputShape: [Int]?,
         layerName: String) throws(AttentionError) {
        for (name, dims) in [("query", query), ("value", value), ("key", key)] {
            _ = try elementCount(dims, name)
        }
        guard Array(value.dropFirst().dropLast()) == Array(key.dropFirst().dropLast()) else {
            throw .shape("all dimensions of value and key, except the last one, must be equal; got value \(value) and key \(key)")
        }
        guard query.count == value.count else {
            throw .shape("query (rank \(query.count)) and value (rank \(value.count)) must have the same rank")
        }
        self.axes = try AttentionAxes(axes, rank: query.count, negativeBase: negativeBase, layerName: layerName)
        try requireFeatures([("query", query), ("value", value), ("key", key)], layerName)
        queryDim = query[query.count - 1]
        keyDim = key[key.count - 1]
        valueDim = value[value.count - 1]
        self.outputShape = outputShape ?? [queryDim]
    }

    /// Output and scores shapes for call inputs of these shapes, which must fit the build.
    func shapes(query: [Int], value: [Int], key: [Int], heads: Int) throws(AttentionError) -> (output: [Int], scores: [Int]) {
        let rank = axes.rank
        for (name, dims, dim) in [("query", query, queryDim), ("value", value, valueDim), ("key", key, keyDim)] {
            _ = try elementCount(dims, name)
            guard dims.count == rank else {
                throw .shape("the layer was built for rank-\(rank) inputs but \(name) has shape \(dims)")
            }
            guard dims[rank - 1] == dim else {
                throw .shape("the layer was built for \(name) last dim \(dim) but \(name) has shape \(dims)")
            }
        }
        guard Array(value.dropFirst().dropLast()) == Array(key.dropFirst().dropLast()) else {
            throw .shape("all dimensions of value and key, except the last one, must be equal; got value \(value) and key \(key)")
        }
        guard key[0] == value[0] else {
            throw .shape("batch sizes differ: key \(key) and value \(value)")
        }
        for axis in axes.batch where query[axis] != value[axis] {
            throw .shape("query \(query) and value \(value) differ at axis \(axis), which is not an attention axis")
        }
        let scores = axes.scoresShape(query: query, key: key, heads: heads)
        _ = try checkedProduct(scores, "the scores tensor")
        let output = Array(query.dropLast()) + outputShape
        _ = try elementCount(output, "the output")
        return (output, scores)
    }
}
