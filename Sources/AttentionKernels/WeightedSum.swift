/// out[g, n, i] = Σ_j w[g, n, i, j] · v[g, n, j] — attention with given weights (scores
/// reused from an earlier layer), with optional dropout on the weights, numbered by
/// `placement` in the scores tensor as `attentionForward` numbers them.

/// Given weights of (g, n, i, j) at g·group + n·head + i·row + j.
public struct WeightsLayout: Sendable {
    public var group: Int, head: Int, row: Int
    public init(group: Int, head: Int, row: Int) { self.group = group; self.head = head; self.row = row }
}

@_specialize(where T == Float)
@_specialize(where T == Double)
public func weightedSum<T: KernelScalar>(
    shape: AttentionShape, weights: UnsafePointer<T>, weightsLayout: WeightsLayout,
    value: UnsafePointer<T>, valueLayout: RowLayout, output: UnsafeMutablePointer<T>, outputLayout: RowLayout,
    dropout: AttentionDropout?, placement: ScoresPlacement
) {
    let job = WeightedSumJob(shape: shape, weights: weights, weightsLayout: weightsLayout, value: value,
                             valueLayout: valueLayout, output: output, outputLayout: outputLayout,
                             dropout: dropout, placement: placement)
    parallelFor(shape.groups * shape.heads * shape.queryLength) { job.run($0) }
}

struct WeightedSumJob<T: KernelScalar>: @unchecked Sendable {
    let shape: AttentionShape
    let weights: UnsafePointer<T>, weightsLayout: WeightsLayout
    let value: UnsafePointer<T>, valueLayout: RowLayout
    let output: UnsafeMutablePointer<T>, outputLayout: RowLayout
    let dropout: AttentionDropout?
    let placement: ScoresPlacement

    /// Row i of head n of group g.
    func run(_ item: Int) {
        let i = item % shape.queryLength
        let n = (item / shape.queryLength) % shape.heads
        let g = item / (shape.queryLength * shape.heads)
        let w = weights + g * weightsLayout.group + n * weightsLayout.head + i * weightsLayout.row
        let out = output + outputLayout.offset(g, n, i)
        for d in 0..<shape.valueDim { out[d] = 0 }
        let first = ((g * placement.heads + placement.firstHead + n) * shape.queryLength + i) * shape.keyLength
        for j in 0..<shape.keyLength {
            let kept: T = dropout.map { $0.mask.keeps(first + j) ? 1 : 0 } ?? 1
            axpy(w[j] * kept, value + valueLayout.offset(g, n, j), out, shape.valueDim)
        }
        if let dropout { scale(1 / T(1 - dropout.mask.rate), out, shape.valueDim) }
    }
}
