// The GEMM half of `make bench`: the projection GEMM on square float32 sizes, which the C API
// does not expose. Prints one JSON object of FLOP/s; benchmarks/bench.py runs it beside numpy.
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
    var scratch = [Float](repeating: 0, count: gemmScratchCount(Float.self, m: n, n: n, k: n))
    let seconds = a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
        c.withUnsafeMutableBufferPointer { cp in scratch.withUnsafeMutableBufferPointer { sp in
            median(n <= 1024 ? 31 : 7) {
                gemm(m: n, n: n, k: n, GemmOperands(a: ap.baseAddress!, lda: n, b: bp.baseAddress!, ldb: n,
                                                     c: cp.baseAddress!, ldc: n), scratch: sp.baseAddress!)
            }
        } }
    } }
    return 2 * Double(n * n * n) / seconds
}

let threads = Threads.current
let rates = [512, 1024, 2048].map { "\"\($0)\": \(gemmRate($0))" }
print("{\"threads\": \(threads), \"gemm_flops\": {" + rates.joined(separator: ", ") + "}}")
