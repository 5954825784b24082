/// The masking policy, written once for every path (streaming rows, flash block, decode,
/// backward): which keys a query row keeps — the causal band and sliding window, then the
/// mask views — the test that skips a tile no row of a block reaches, and the weights of a
/// row whose every key is masked.

/// The keys of a tile that a row keeps.
enum KeptKeys {
    /// None: the tile is skipped (its weights are 0).
    case none
    /// The keys j0 + t for t in the range (only the band masks).
    case run(Range<Int>)
    /// The keys whose flag is set in the row's `kept` buffer.
    case flags
}

extension AttentionMask {
    /// Keys j in this range may be kept by the causal band and the sliding window, for query
    /// row i of group g, at key position p + i (p = positions?[g] ?? 0), of `keyLength` keys.
    /// A window wider than the key axis reaches its end (so p + i + window cannot overflow).
    @inline(__always)
    func band(_ g: Int, _ i: Int, keyLength: Int) -> Range<Int> {
        let position = i + (positions?[g] ?? 0)
        var lo = 0, hi = keyLength
        if causal { hi = min(hi, position + 1) }
        if window > 0 {
            lo = max(lo, position - window + 1)
            hi = min(hi, position + min(window, hi))
        }
        return min(lo, hi)..<hi
    }
}

extension Row {
    /// The keys row i may see by the causal band and sliding window (`AttentionMask.band`).
    func band(_ i: Int) -> Range<Int> { job.mask.band(g, i, keyLength: shape.keyLength) }

    /// The keys from the first that a row of `rows` may see to the last (both bounds of a
    /// band move forward with the row, so the first and last rows give them).
    func keySpan(_ rows: Range<Int>) -> Range<Int> {
        guard !rows.isEmpty else { return 0..<0 }
        let first = band(rows.lowerBound), last = band(rows.upperBound - 1)
        return min(first.lowerBound, last.upperBound)..<last.upperBound
    }

    /// Whether the bands of rows `rows` all miss keys `keys` (they lie outside the rows'
    /// `keySpan`): such a tile is skipped for the block.
    func bandsMiss(_ rows: Range<Int>, _ keys: Range<Int>) -> Bool {
        let span = keySpan(rows)
        return keys.lowerBound >= span.upperBound || keys.upperBound <= span.lowerBound
    }

    /// Whether every row of `rows` may see all of `keys` (they lie in the first and last rows'
    /// bands, and so in every band between).
    func bandsCover(_ rows: Range<Int>, _ keys: Range<Int>) -> Bool {
        guard !rows.isEmpty else { return true }
        let first = band(rows.lowerBound), last = band(rows.upperBound - 1)
        return max(first.lowerBound, last.lowerBound) <= keys.lowerBound
            && min(first.upperBound, last.upperBound) >= keys.upperBound
    }

    /// kept[t] for keys j0 ..< j0 + count of row i (band included); returns whether any is kept.
    func computeKept(_ i: Int, _ j0: Int, _ count: Int) -> Bool {
        let band = band(i)
        for t in 0..<count { kept[t] = band.contains(j0 + t) }
        for view in job.mask.views {
            let base = view.base + g * view.group + n * view.head + i * view.row + j0 * view.column
            for t in 0..<count where base[t * view.column] == 0 { kept[t] = false }
        }
        for t in 0..<count where kept[t] { return true }
        return false
    }

    /// The keys j0 ..< j0 + count that row i keeps (flags in `kept` when views mask).
    func keptKeys(_ i: Int, _ j0: Int, _ count: Int) -> KeptKeys {
        guard job.mask.views.isEmpty else { return computeKept(i, j0, count) ? .flags : .none }
        let band = band(i)
        let first = max(band.lowerBound - j0, 0), end = min(band.upperBound - j0, count)
        return first < end ? .run(first..<end) : .none
    }

    /// x[t] = −∞ for t < width where the key is not in `kept` (t ≥ count: past the tile).
    func exclude(_ kept: KeptKeys, _ count: Int, _ x: UnsafeMutablePointer<T>, width: Int) {
        switch kept {
        case .none:
            x.update(repeating: -T.infinity, count: width)
        case .run(let run):
            for t in 0..<run.lowerBound { x[t] = -T.infinity }
            for t in run.upperBound..<width { x[t] = -T.infinity }
        case .flags:
            for t in 0..<width where t >= count || !self.kept[t] { x[t] = -T.infinity }
        }
    }

    /// Whether row i keeps some key, looking at `tile` keys at a time.
    func keepsAnyKey(_ i: Int, tile: Int) -> Bool {
        let band = band(i)
        var j0 = band.lowerBound
        while j0 < band.upperBound {
            let count = min(tile, band.upperBound - j0)
            if case .none = keptKeys(i, j0, count) { j0 += count } else { return true }
        }
        return false
    }
}

/// What Keras's Attention subtracts from masked logits.
let largeMaskOffset = 1e9

/// The weights of a row whose every key is masked, by the mask's `FullyMaskedRow` policy:
/// 0, 1/S, or softmax(x − 1e9) over all S keys (its max and sum taken at init).
struct FullyMaskedWeights<T: KernelScalar> {
    let policy: FullyMaskedRow
    private let keyLength: Int
    private var softmax = OnlineSoftmax<T>()

    init(_ row: Row<T>, _ i: Int) {
        policy = row.job.mask.fullyMaskedRow
        keyLength = row.shape.keyLength
        guard policy == .subtractLarge else { return }
        row.forEachLogitTile(i) { _, count in
            for t in 0..<count { _ = softmax.absorb(row.logits[t] - T(largeMaskOffset)) }
        }
    }

    /// Whether `weight` reads the logit (else it may be anything).
    var readsLogits: Bool { policy == .subtractLarge }

    /// Whether the weights depend on the logits (else they have no logit gradient).
    var hasLogitGradient: Bool { policy == .subtractLarge }

    /// The weight of a key whose logit is x.
    @inline(__always)
    func weight(_ x: T) -> T {
        switch policy {
        case .zero: 0
        case .uniform: 1 / T(keyLength)
        case .subtractLarge: T.exp(x - T(largeMaskOffset) - softmax.shift) / softmax.sum
        }
    }
}
