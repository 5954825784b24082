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
    let output: UnsafeMutablePointer<T>?, outputLayout: RowLayout
    let dropout: AttentionDropout?
    let placement: ScoresPlacement

    /// Row i of head n of group g.
    func run(_ item: Int) {
        let i = item % shape.queryLength
        let n = (item / shape.queryLength) % shape.heads
        let g = item / (shape.queryLength * shape.heads)
        let w = weights + g * weightsLayout.group + n * weightsLayout.head + i * weightsLayout.row
        guard let output else { return }
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

/// The gradient tensors of `weightedSumBackward`: dV (overwritten) and optionally dW (added to).
public struct WeightedSumGradients<T: KernelScalar>: @unchecked Sendable {
    public var output: UnsafePointer<T>, outputLayout: RowLayout
    public var value: UnsafeMutablePointer<T>, valueLayout: RowLayout
    public var weights: UnsafeMutablePointer<T>?, weightsLayout: WeightsLayout
    public init(output: UnsafePointer<T>, outputLayout: RowLayout, value: UnsafeMutablePointer<T>, valueLayout: RowLayout,
                weights: UnsafeMutablePointer<T>?, weightsLayout: WeightsLayout) {
        self.output = output; self.outputLayout = outputLayout; self.value = value; self.valueLayout = valueLayout
        self.weights = weights; self.weightsLayout = weightsLayout
    }
}

/// The backward of `weightedSum` given dO, with κ_ij the dropout factor (keep/(1 − rate),
/// or 1): dV[g,n,j] = Σ_i w_ij·κ_ij·dO_i and dW[g,n,i,j] += κ_ij·dO_i·v_j.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func weightedSumBackward<T: KernelScalar>(
    shape: AttentionShape, weights: UnsafePointer<T>, weightsLayout: WeightsLayout,
    value: UnsafePointer<T>, valueLayout: RowLayout, dropout: AttentionDropout?, placement: ScoresPlacement,
    gradients: WeightedSumGradients<T>
) {
    let job = WeightedSumJob(shape: shape, weights: weights, weightsLayout: weightsLayout, value: value,
                             valueLayout: valueLayout, output: nil, outputLayout: gradients.outputLayout,
                             dropout: dropout, placement: placement)
    parallelFor(shape.groups * shape.heads) { job.backward($0, gradients) }
}

extension WeightedSumJob {
    /// Head n of group g (item g·heads + n).
    func backward(_ item: Int, _ d: WeightedSumGradients<T>) {
        let n = item % shape.heads, g = item / shape.heads
        let (hv, tq, tk) = (shape.valueDim, shape.queryLength, shape.keyLength)
        let factor = dropout.map { 1 / T(1 - $0.mask.rate) } ?? 1
        for j in 0..<tk { (d.value + d.valueLayout.offset(g, n, j)).update(repeating: 0, count: hv) }
        for i in 0..<tq {
            let dO = d.output + d.outputLayout.offset(g, n, i)
            let w = weights + g * weightsLayout.group + n * weightsLayout.head + i * weightsLayout.row
            let dW = d.weights.map { $0 + g * d.weightsLayout.group + n * d.weightsLayout.head + i * d.weightsLayout.row }
            let first = ((g * placement.heads + placement.firstHead + n) * tq + i) * tk
            for j in 0..<tk {
                let kappa = dropout.map { $0.mask.keeps(first + j) ? factor : 0 } ?? 1
                if kappa == 0 { continue }
                axpy(w[j] * kappa, dO, d.value + d.valueLayout.offset(g, n, j), hv)
                if let dW { dW[j] += kappa * dot(dO, value + valueLayout.offset(g, n, j), hv) }
            }
        }
    }
}
