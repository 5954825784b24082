/// The row-by-row paths of `attentionForward`: a query row's keys in tiles of
/// `AttentionTile.keys` — streaming through the online softmax when no scores are returned
/// and the flash block does not apply, or materialized into the caller's scores row.

extension Row {
    /// One query row, online softmax over the band's key tiles.
    func streaming(_ i: Int) {
        let lanes = T.Vector.scalarCount
        clearAccumulator()
        var softmax = OnlineSoftmax<T>()
        let band = band(i)
        var j0 = band.lowerBound
        while j0 < band.upperBound {
            let count = min(AttentionTile.keys, band.upperBound - j0)
            defer { j0 += count }
            let kept = keptKeys(i, j0, count)
            if case .none = kept { continue }
            computeLogits(i, j0, count, into: logits)
            // The tile buffer holds a whole number of vectors: the padding is excluded.
            let padded = (count + lanes - 1) / lanes * lanes
            exclude(kept, count, logits, width: padded)
            let factor = softmax.absorb(logits, vectors: padded / lanes)
            if factor != 1 { scale(factor, acc, shape.valueDim) }
            if job.dropout != nil {
                for t in 0..<count { logits[t] *= keep(i, j0 + t) }
            }
            accumulateTile(j0, count)
        }
        if softmax.keptNone {
            fullyMaskedStreaming(i)
        } else {
            recordLogSumExp(i, softmax)
            writeOutput(i, dropoutScale / softmax.sum)
        }
    }

    /// acc += Σ_t logits[t] · v[j0 + t] (excluded keys carry weight 0): two vectors of the
    /// accumulator stay in registers while the tile's keys stream past.
    func accumulateTile(_ j0: Int, _ count: Int) {
        let lanes = T.Vector.scalarCount, hv = shape.valueDim
        let values = job.operands.value + job.operands.valueLayout.offset(g, kvHead, j0)
        let stride = job.operands.valueLayout.row
        var c = 0
        while c + 2 * lanes <= hv {
            var a0 = UnsafePointer(acc).vector(at: c), a1 = UnsafePointer(acc).vector(at: c + lanes)
            var v = values + c
            for t in 0..<count {
                let p = T.Vector(repeating: logits[t])
                a0 = a0.plusProduct(p, v.vector(at: 0))
                a1 = a1.plusProduct(p, v.vector(at: lanes))
                v += stride
            }
            acc.store(a0, at: c)
            acc.store(a1, at: c + lanes)
            c += 2 * lanes
        }
        if c < hv {
            for t in 0..<count { axpy(logits[t], values + t * stride + c, acc + c, hv - c) }
        }
    }

    /// A row with no kept key: the output by the mask's policy (`FullyMaskedWeights`), over
    /// all keys.
    func fullyMaskedStreaming(_ i: Int) {
        let weights = FullyMaskedWeights(self, i)
        clearAccumulator()
        if weights.policy != .zero {
            forEachLogitTile(i, computing: weights.readsLogits) { j0, count in
                for t in 0..<count {
                    axpy(weights.weight(logits[t]) * keep(i, j0 + t), valueRow(j0 + t), acc, shape.valueDim)
                }
            }
        }
        writeOutput(i, dropoutScale)
    }

    /// One query row whose weights go to `weights` (keyLength entries of the scores tensor):
    /// the logits with excluded keys at −∞ and their max, then the weights.
    func materialized(_ i: Int, _ weights: UnsafeMutablePointer<T>) {
        let s = shape.keyLength
        var max = -T.infinity, anyKept = false
        var j0 = 0
        while j0 < s {
            let count = min(AttentionTile.keys, s - j0)
            computeLogits(i, j0, count, into: weights + j0)
            let kept = keptKeys(i, j0, count)
            if case .none = kept {} else { anyKept = true }
            exclude(kept, count, weights + j0, width: count)
            for t in 0..<count { max = maxPropagatingNaN(max, weights[j0 + t]) }
            j0 += count
        }
        if anyKept {
            var sum = T.zero
            for j in 0..<s {
                weights[j] = T.exp(weights[j] - max)
                sum += weights[j]
            }
            recordLogSumExp(i, OnlineSoftmax(shift: max, sum: sum))
            scale(1 / sum, weights, s)
        } else {
            let masked = FullyMaskedWeights(self, i)
            forEachLogitTile(i, computing: masked.readsLogits) { j0, count in
                for t in 0..<count { weights[j0 + t] = masked.weight(logits[t]) }
            }
        }
        clearAccumulator()
        if let dropout = job.dropout, dropout.scoresAfterDropout {
            let keepProbability = T(1 - dropout.mask.rate)
            for j in 0..<s {
                weights[j] = keep(i, j) == 0 ? 0 : weights[j] / keepProbability
                axpy(weights[j], valueRow(j), acc, shape.valueDim)
            }
            writeOutput(i, 1)
        } else {
            for j in 0..<s { axpy(weights[j] * keep(i, j), valueRow(j), acc, shape.valueDim) }
            writeOutput(i, dropoutScale)
        }
    }
}
