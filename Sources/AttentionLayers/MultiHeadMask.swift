import AttentionKernels

/// Keras 3.15's MultiHeadAttention masks, combined as Keras combines them and mapped onto
/// the kernel's (g, n, i, j) space:
///   query_mask m → m[..., None] (expand at −1);  value_mask and key_mask m (rank ≥ 1) →
///   m[..., None, :] (expand at −2);  causal and sliding window (1, T₁, S₁) from the axis-1
///   lengths;  attention_mask as given. These broadcast together (AND, numpy rules); the
///   result gains size-1 axes at position −2·len(attention_axes)−1 until it has the scores'
///   rank, then broadcasts to the scores. Any mask shape for which this works is accepted,
///   with this meaning: e.g. for a rank-4 query (B, T, X, dim) over axis 1, query_mask (B, T)
///   and value_mask (B, S) or (1, S) broadcast over X and the heads.
struct MultiHeadMask {
    let axes: AttentionAxes
    let query: [Int]
    let value: [Int]
    let scoresShape: [Int]

    private struct Piece {
        var dims: [Int]
        var data: UnsafePointer<UInt8>?  // nil: a structural piece (causal or window)
        var name: String
    }

    func build(_ a: CallArguments, window: Int, fullyMaskedRow: FullyMaskedRow,
               workspace: Workspace<some KernelScalar>) throws(AttentionError) -> AttentionMask {
        var pieces: [Piece] = []
        if let m = a.queryMask {
            pieces.append(Piece(dims: m.dims + [1], data: try m.mask("query_mask"), name: "query_mask of shape \(m.dims)"))
        }
        for (m, name) in [(a.valueMask, "value_mask"), (a.keyMask, "key_mask")] {
            guard let m else { continue }
            guard let last = m.dims.last else {
                throw .shape("\(name) is a scalar; it needs an axis to expand at −2 (the value's shape without its last dim, or one that broadcasts to it)")
            }
            pieces.append(Piece(dims: m.dims.dropLast() + [1, last], data: try m.mask(name), name: "\(name) of shape \(m.dims)"))
        }
        let band = [1, query[1], value[1]]
        if a.useCausalMask { pieces.append(Piece(dims: band, data: nil, name: "the causal mask")) }
        if window > 0 { pieces.append(Piece(dims: band, data: nil, name: "the sliding window mask")) }
        if let m = a.attentionMask {
            pieces.append(Piece(dims: m.dims, data: try m.mask("attention_mask"), name: "attention_mask of shape \(m.dims)"))
        }

        // Structural pieces are kernel flags when the one attention axis is axis 1.
        let bandIsKernelFlag = axes.attention == [1]
        var mask = AttentionMask(causal: bandIsKernelFlag && a.useCausalMask,
                                 window: bandIsKernelFlag ? window : 0, fullyMaskedRow: fullyMaskedRow)
        let combinedRank = pieces.map(\.dims.count).max() ?? 0
        for piece in pieces {
            var data = piece.data
            if data == nil {
                if bandIsKernelFlag { continue }
                data = UnsafePointer(try bandMask(causal: piece.name == "the causal mask", window: window, workspace))
            }
            guard let data else { continue }
            do throws(AttentionError) {
                let dims = try expanded(piece.dims, combinedRank: combinedRank, piece.name)
                let nb = axes.batch.count, na = axes.attention.count
                mask.views.append(try maskView(data, dims: dims, scores: scoresShape, groups: Array(0..<nb), head: nb,
                                               rows: Array((nb + 1)..<(nb + 1 + na)),
                                               columns: Array((nb + 1 + na)..<scoresShape.count),
                                               piece.name, workspace))
            } catch where error.kind == .shape && piece.name.hasPrefix("attention_mask") {
                throw attentionMaskError(piece.dims)
            }
        }
        return mask
    }

    /// The error for an attention_mask that does not fit, naming the shape to pass in the
    /// caller's layout: the scores' shape without the head axis.
    private func attentionMaskError(_ dims: [Int]) -> AttentionError {
        func tuple(_ d: [Int]) -> String { d.count == 1 ? "(\(d[0]),)" : "(" + d.map(String.init).joined(separator: ", ") + ")" }
        let head = axes.batch.count
        var full = scoresShape
        full.remove(at: head)
        let simple = axes.batch.count == 1 && axes.attention.count == 1
        let layout = simple ? "(B, T, S)" : "(B, <other axes>, <query attention axes>, <key attention axes>)"
        let examples = simple ? ", such as (T, S) = \(tuple(Array(full.suffix(2)))) or (B, 1, S) = \(tuple([full[0], 1, full[2]]))" : ""
        let scores = simple ? "(B, N, T, S)" : "(B, <other axes>, N, <query attention axes>, <key attention axes>)"
        return .shape("attention_mask has shape \(tuple(dims)); pass \(layout) = \(tuple(full)), or a shape that broadcasts to it\(examples); a mask of rank \(scoresShape.count) is read against the scores \(scores) = \(tuple(scoresShape))")
    }

    /// `dims` padded with leading 1s to the combined rank, then given size-1 axes at
    /// −2·len(attention_axes)−1 up to the scores' rank.
    private func expanded(_ dims: [Int], combinedRank: Int, _ name: String) throws(AttentionError) -> [Int] {
        var d = Array(repeating: 1, count: combinedRank - dims.count) + dims
        guard d.count <= scoresShape.count else {
            throw .shape("the combined mask has rank \(d.count), more than the scores' rank \(scoresShape.count) (from \(name))")
        }
        while d.count < scoresShape.count {
            let position = d.count - 2 * axes.attention.count
            guard position >= 0 else {
                throw .shape("\(name) does not broadcast to \(scoresShape), the scores' shape: the combined mask has rank \(combinedRank), fewer than the 2·len(attention_axes) = \(2 * axes.attention.count) axes Keras expands it after")
            }
            d.insert(1, at: position)
        }
        return d
    }

    /// The (1, T₁, S₁) causal (j ≤ i) or sliding-window (|i − j| < window) mask as bytes.
    private func bandMask(causal: Bool, window: Int, _ workspace: Workspace<some KernelScalar>) throws(AttentionError) -> UnsafeMutablePointer<UInt8> {
        let (t, s) = (query[1], value[1])
        let p = try workspace.bytes(try checkedProduct([t, s], "the band mask"), "the band mask")
        for i in 0..<t {
            for j in 0..<s {
                p[i * s + j] = (causal ? j <= i : abs(i - j) < window) ? 1 : 0
            }
        }
        return p
    }
}
