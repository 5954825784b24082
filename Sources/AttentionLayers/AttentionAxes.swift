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

    /// Resolves Keras's `attention_axes` (nil: every axis but batch and features) for
    /// inputs of `rank`; a negative axis counts from the rank.
    init(_ axes: [Int]?, rank: Int) throws(AttentionError) {
        guard rank >= 3 else {
            throw .shape("MultiHeadAttention needs inputs of rank >= 3 (batch, ..., features); got rank \(rank)")
        }
        let resolved = (axes ?? Array(1..<(rank - 1))).map { $0 < 0 ? rank + $0 : $0 }
        guard !resolved.isEmpty else { throw .invalid("attention_axes is empty") }
        for (given, axis) in zip(axes ?? resolved, resolved) {
            guard axis >= 1, axis <= rank - 2 else {
                let which = axis == 0 ? " (the batch axis)" : axis == rank - 1 ? " (the feature axis)" : ""
                throw .invalid("attention_axes contains \(given)\(which), but for inputs of rank \(rank) attention axes must be in 1...\(rank - 2) (or -\(rank - 1)...-2)")
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
