import Testing
@testable import AttentionKernels

/// Problems with an empty axis: no keys gives output rows of 0 (the empty sum) and −∞
/// log-sum-exps, and a backward with dQ = 0; no groups or no query rows touch nothing.
@Suite struct EmptyProblemTests {
    static func shape(groups: Int, t: Int, s: Int) -> AttentionShape {
        AttentionShape(groups: groups, heads: 2, keyValueHeads: 1, queryLength: t, keyLength: s, keyDim: 3, valueDim: 4)
    }

    @Test func noKeysGiveZeroRowsAndZeroQueryGradients() {
        let shape = Self.shape(groups: 2, t: 3, s: 0)
        let rows = 2 * 2 * 3
        var query = [Double](repeating: 1, count: rows * 3), output = [Double](repeating: .nan, count: rows * 4)
        var lse = [Double](repeating: 0, count: rows), dq = [Double](repeating: .nan, count: rows * 3)
        let dO = [Double](repeating: 1, count: rows * 4)
        var none = [Double](repeating: 0, count: 1)
        let q = RowLayout(group: 6 * 3, head: 3, row: 6), o = RowLayout(group: 6 * 4, head: 4, row: 8)
        let kv = RowLayout(group: 0, head: 0, row: 3)
        query.withUnsafeMutableBufferPointer { qp in
            output.withUnsafeMutableBufferPointer { op in
                none.withUnsafeMutableBufferPointer { np in
                    let operands = AttentionOperands<Double>(
                        query: UnsafePointer(qp.baseAddress!), queryLayout: q, key: UnsafePointer(np.baseAddress!), keyLayout: kv,
                        value: UnsafePointer(np.baseAddress!), valueLayout: kv, output: op.baseAddress!, outputLayout: o)
                    lse.withUnsafeMutableBufferPointer { lp in
                        attentionForward(shape: shape, operands: operands, score: .dot(scale: 1),
                                         mask: AttentionMask(fullyMaskedRow: .uniform), bias: nil, dropout: nil,
                                         scores: nil, logSumExp: lp.baseAddress)
                    }
                    let plan = BackwardPlan<Double>(shape, score: .dot(scale: 1), bias: nil)!
                    var scratch = [Double](repeating: 0, count: max(1, plan.scratchCount))
                    dq.withUnsafeMutableBufferPointer { dp in
                        dO.withUnsafeBufferPointer { gp in
                            scratch.withUnsafeMutableBufferPointer { sp in
                                lse.withUnsafeBufferPointer { lp in
                                    attentionBackward(
                                        plan: plan, shape: shape, operands: operands, score: .dot(scale: 1),
                                        mask: AttentionMask(fullyMaskedRow: .uniform), bias: nil, dropout: nil,
                                        logSumExp: lp.baseAddress!,
                                        gradients: AttentionGradients(output: gp.baseAddress!, outputLayout: o,
                                                                      query: dp.baseAddress!, queryLayout: q,
                                                                      key: np.baseAddress!, keyLayout: kv,
                                                                      value: np.baseAddress!, valueLayout: kv),
                                        scratch: sp.baseAddress!)
                                }
                            }
                        }
                    }
                }
            }
        }
        #expect(output.allSatisfy { $0 == 0 })
        #expect(lse.allSatisfy { $0 == -.infinity })
        #expect(dq.allSatisfy { $0 == 0 })
    }

    @Test(arguments: [(0, 3, 5), (2, 0, 5), (0, 0, 0)])
    func emptyPlansAreMadeAndHaveNoWork(_ sizes: (Int, Int, Int)) {
        let plan = BackwardPlan<Float>(Self.shape(groups: sizes.0, t: sizes.1, s: sizes.2), score: .dot(scale: 1), bias: nil)
        #expect(plan != nil)
    }
}
