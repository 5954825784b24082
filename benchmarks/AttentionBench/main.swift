// The kernel half of `make bench`, what the C API does not expose alone: the projection GEMM
// on square float32 sizes, and the dot-product attention kernels of a training step — the
// forward that keeps the log-sum-exp rows and the backward. Prints one JSON object;
// benchmarks/bench.py runs it beside numpy.
import AttentionKernels
#if canImport(Glibc)
import Glibc
#endif

/// Seconds since an arbitrary start.
func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// The median of `repeats` timings of `body`, after one warm-up run.
func median(_ repeats: Int, _ body: () -> Void) -> Double {
    body()
    var times: [Double] = []
    for _ in 0..<repeats {
        let t0 = now()
        body()
        times.append(now() - t0)
    }
    return times.sorted()[repeats / 2]
}

/// FLOP/s of `gemm` on n × n float32 matrices.
func gemmRate(_ n: Int) -> Double {
    var a = [Float](repeating: 0, count: n * n), b = a, c = a
    for i in 0..<(n * n) { a[i] = Float(i % 7) * 0.1; b[i] = Float(i % 5) * 0.2 }
    let plan = GemmPlan<Float>(m: n, n: n, k: n)
    var scratch = [Float](repeating: 0, count: plan.scratchCount)
    let seconds = a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
        c.withUnsafeMutableBufferPointer { cp in scratch.withUnsafeMutableBufferPointer { sp in
            median(n <= 1024 ? 31 : 7) {
                gemm(plan, GemmOperands(a: ap.baseAddress!, lda: n, b: bp.baseAddress!, ldb: n,
                                                     c: cp.baseAddress!, ldc: n), scratch: sp.baseAddress!)
            }
        } }
    } }
    return 2 * Double(n * n * n) / seconds
}

/// Seconds of the training forward (log-sum-exp kept) and of the backward of scaled
/// dot-product attention on (b, n, t, h) float32 tensors, with `threads` threads.
func attentionSeconds(b: Int, n: Int, t: Int, h: Int, causal: Bool, threads: Int) -> (forward: Double, backward: Double) {
    Threads.set(threads)
    defer { Threads.set(allThreads) }
    let count = b * n * t * h
    var x = [Float](repeating: 0, count: 5 * count)
    for i in x.indices { x[i] = Float((i * 7919) % 1000) / 500 - 1 }
    var out = [Float](repeating: 0, count: count), grads = [Float](repeating: 0, count: 3 * count)
    var lse = [Float](repeating: 0, count: b * n * t)
    let shape = AttentionShape(groups: b, heads: n, keyValueHeads: n, queryLength: t, keyLength: t, keyDim: h, valueDim: h)
    let score = ScoreFunction<Float>.dot(scale: 1 / Float(h).squareRoot())
    let mask = AttentionMask(causal: causal, fullyMaskedRow: .zero)
    let plan = BackwardPlan(shape, score: score, bias: nil)!
    var scratch = [Float](repeating: 0, count: plan.scratchCount)
    let layout = RowLayout(group: n * t * h, head: t * h, row: h)
    return x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { op in
        grads.withUnsafeMutableBufferPointer { gp in lse.withUnsafeMutableBufferPointer { lp in
            scratch.withUnsafeMutableBufferPointer { sp in
                let base = xp.baseAddress!, g = gp.baseAddress!
                let operands = AttentionOperands(query: base, queryLayout: layout, key: base + count, keyLayout: layout,
                                                 value: base + 2 * count, valueLayout: layout,
                                                 output: op.baseAddress!, outputLayout: layout)
                let repeats = t >= 4096 ? 3 : 7
                let forward = median(repeats) {
                    attentionForward(shape: shape, operands: operands, score: score, mask: mask, bias: nil,
                                     dropout: nil, scores: nil, logSumExp: lp.baseAddress!)
                }
                let gradients = AttentionGradients(output: base + 3 * count, outputLayout: layout, query: g, queryLayout: layout,
                                                   key: g + count, keyLayout: layout, value: g + 2 * count, valueLayout: layout)
                let backward = median(repeats) {
                    attentionBackward(plan: plan, shape: shape, operands: operands, score: score, mask: mask, bias: nil, dropout: nil,
                                      logSumExp: UnsafePointer(lp.baseAddress!), gradients: gradients,
                                      scratch: sp.baseAddress!)
                }
                return (forward, backward)
            }
        } }
    } }
}

let allThreads = Threads.current
let rates = [512, 1024, 2048].map { "\"\($0)\": \(gemmRate($0))" }
let workloads = [(4, 8, 512, 64, false), (4, 8, 512, 64, true), (1, 8, 2048, 64, false), (1, 8, 4096, 64, true)]
let backward = workloads.map { b, n, t, h, causal in
    let name = "sdpa_b\(b)_h\(n)_t\(t)_d\(h)" + (causal ? "_causal" : "")
    let both = attentionSeconds(b: b, n: n, t: t, h: h, causal: causal, threads: allThreads)
    let one = attentionSeconds(b: b, n: n, t: t, h: h, causal: causal, threads: 1)
    return "\"\(name)\": {\"forward_seconds\": \(both.forward), \"backward_seconds\": \(both.backward), "
        + "\"backward_seconds_1_thread\": \(one.backward)}"
}
print("{\"threads\": \(allThreads), \"gemm_flops\": {" + rates.joined(separator: ", ") + "}, \"attention\": {"
      + backward.joined(separator: ", ") + "}}")
