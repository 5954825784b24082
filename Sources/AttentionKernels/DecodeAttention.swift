/// The decode path of `attentionForward`: a few query rows (≤ 4, e.g. one generated token)
/// against many keys. The key axis is split into chunks that workers take independently;
/// each keeps, per (query row, head), a partial softmax state (max m, sum l, unnormalised
/// output o) over its chunk, visiting a key position's heads together so K and V stream
/// through memory in their own order. The states are then merged:
///     M = max_c m_c,  L = Σ_c l_c·e^(m_c − M),  O = Σ_c o_c·e^(m_c − M),  output = O / L.
enum DecodeTile {
    /// Query rows up to which this path is taken.
    static let maxQueryRows = 4
    /// Keys per chunk.
    static let keys = 256
    /// The largest partial-state buffer (elements) the path uses; beyond it the row path runs.
    static let maxStateElements = 1 << 22
}

extension AttentionJob {
    /// Elements of partial state the decode path needs, or nil when it does not apply.
    var decodeStateElements: Int? {
        guard scores == nil, case .dot = score, shape.queryLength <= DecodeTile.maxQueryRows else { return nil }
        let chunks = (shape.keyLength + DecodeTile.keys - 1) / DecodeTile.keys
        let (count, overflow) = (shape.groups * chunks * shape.queryLength * shape.heads)
            .multipliedReportingOverflow(by: shape.valueDim + 2)
        return overflow || count > DecodeTile.maxStateElements ? nil : count
    }

    /// Runs the decode path with `state` holding decodeStateElements elements.
    func decode(state: UnsafeMutablePointer<T>) {
        guard case .dot(let logitScale) = score else { return }
        let chunks = (shape.keyLength + DecodeTile.keys - 1) / DecodeTile.keys
        let stride = shape.valueDim + 2, hv = shape.valueDim
        let rowsPerGroup = shape.queryLength * shape.heads
        let states = DecodeStates(base: state, chunks: chunks, rows: shape.queryLength, heads: shape.heads, stride: stride)
        let slot = states.slot
        parallelFor(shape.groups * chunks) { item in
            let g = item / chunks, c = item % chunks
            let keys = (c * DecodeTile.keys)..<min((c + 1) * DecodeTile.keys, shape.keyLength)
            for i in 0..<shape.queryLength {
                for n in 0..<shape.heads { states.clear(slot(g, c, i, n), hv) }
            }
            let plain = mask.isEmpty && bias == nil
            withUnsafeTemporaryAllocation(of: T.self, capacity: 1) { one in
                withUnsafeTemporaryAllocation(of: Bool.self, capacity: 1) { keptOne in
                    guard let logit = one.baseAddress, let kept = keptOne.baseAddress else { return }
                    let ops = operands, group = headsPerKeyValueHead
                    for j in keys {
                        for n in 0..<shape.heads {
                            let k = ops.key + ops.keyLayout.offset(g, n / group, j)
                            let v = ops.value + ops.valueLayout.offset(g, n / group, j)
                            for i in 0..<shape.queryLength {
                                let x: T
                                if plain {
                                    x = dot(ops.query + ops.queryLayout.offset(g, n, i), k, shape.keyDim) * logitScale
                                } else {
                                    let row = Row(job: self, g: g, n: n, logits: logit, acc: logit, kept: kept)
                                    guard row.computeKept(i, j, 1) else { continue }
                                    row.computeLogits(i, j, 1, into: logit)
                                    x = logit[0]
                                }
                                states.update(slot(g, c, i, n), logit: x, keep: keep(g, n, i, j), value: v, hv)
                            }
                        }
                    }
                }
            }
        }
        parallelFor(shape.groups * rowsPerGroup) { item in
            let g = item / rowsPerGroup, i = (item % rowsPerGroup) / shape.heads, n = item % shape.heads
            withUnsafeTemporaryAllocation(of: T.self, capacity: AttentionTile.keys + hv) { buffer in
                withUnsafeTemporaryAllocation(of: Bool.self, capacity: AttentionTile.keys) { keptBuffer in
                    guard let base = buffer.baseAddress, let kept = keptBuffer.baseAddress else { return }
                    let row = Row(job: self, g: g, n: n, logits: base, acc: base + AttentionTile.keys, kept: kept)
                    var softmax = OnlineSoftmax<T>()
                    row.clearAccumulator()
                    for c in 0..<chunks {
                        let s = slot(g, c, i, n)
                        let (mine, theirs) = softmax.merge(states.softmax(s))
                        if mine != 1 { scale(mine, row.acc, hv) }
                        if theirs != 0 { axpy(theirs, s + 2, row.acc, hv) }
                    }
                    if softmax.keptNone {
                        row.fullyMaskedStreaming(i)
                    } else {
                        row.writeOutput(i, row.dropoutScale / softmax.sum)
                    }
                }
            }
        }
    }
}

/// Partial softmax states of the decode path: [m, l, o…] per (group, chunk, row, head).
struct DecodeStates<T>: @unchecked Sendable {
    let base: UnsafeMutablePointer<T>
    let chunks: Int, rows: Int, heads: Int, stride: Int

    @Sendable func slot(_ g: Int, _ c: Int, _ i: Int, _ n: Int) -> UnsafeMutablePointer<T> {
        base + (((g * chunks + c) * rows + i) * heads + n) * stride
    }
}

extension DecodeStates where T: KernelScalar {
    /// The softmax state of slot s.
    @inline(__always)
    func softmax(_ s: UnsafeMutablePointer<T>) -> OnlineSoftmax<T> { OnlineSoftmax(shift: s[0], sum: s[1]) }

    /// Slot s before any key: no state, o = 0.
    func clear(_ s: UnsafeMutablePointer<T>, _ hv: Int) {
        s[0] = -T.infinity; s[1] = 0
        (s + 2).update(repeating: 0, count: hv)
    }

    /// One key of the online softmax, logit x and value v: o += keep · e^(x − shift) · v.
    @inline(__always)
    func update(_ s: UnsafeMutablePointer<T>, logit x: T, keep: T, value v: UnsafePointer<T>, _ hv: Int) {
        var softmax = softmax(s)
        let (factor, weight) = softmax.absorb(x)
        if factor != 1 { scale(factor, s + 2, hv) }
        axpy(weight * keep, v, s + 2, hv)
        s[0] = softmax.shift; s[1] = softmax.sum
    }
}
