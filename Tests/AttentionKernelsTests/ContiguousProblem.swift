@testable import AttentionKernels

/// The sizes of a kernel test case whose tensors are contiguous (group, head, row, feature).
protocol ContiguousProblem {
    var groups: Int { get }
    var heads: Int { get }
    var kvHeads: Int { get }
    var t: Int { get }
    var s: Int { get }
    var h: Int { get }
    var hv: Int { get }
}

extension ContiguousProblem {
    var shape: AttentionShape {
        AttentionShape(groups: groups, heads: heads, keyValueHeads: kvHeads, queryLength: t, keyLength: s,
                       keyDim: h, valueDim: hv)
    }

    /// The operands over contiguous query (groups, heads, t, h), key (groups, kvHeads, s, h),
    /// value (groups, kvHeads, s, hv) and output (groups, heads, t, hv) buffers.
    func operands(query: UnsafePointer<Double>, key: UnsafePointer<Double>, value: UnsafePointer<Double>,
                  output: UnsafeMutablePointer<Double>) -> AttentionOperands<Double> {
        AttentionOperands(
            query: query, queryLayout: RowLayout(group: heads * t * h, head: t * h, row: h),
            key: key, keyLayout: RowLayout(group: kvHeads * s * h, head: s * h, row: h),
            value: value, valueLayout: RowLayout(group: kvHeads * s * hv, head: s * hv, row: hv),
            output: output, outputLayout: RowLayout(group: heads * t * hv, head: t * hv, row: hv))
    }
}
