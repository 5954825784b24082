import Synchronization
import Testing
@testable import AttentionKernels

/// The partition every parallel loop uses, `parallelFor` at thread counts far beyond this
/// machine's cores, and a kernel that splits its work by worker (GEMM) giving the same bits
/// for every thread count.
@Suite struct ParallelTests {
    /// Every (items, parts) up to 300 × 300: min(parts, items) non-empty contiguous ranges in
    /// order, covering 0..<items once, sizes within one of each other.
    @Test func partitionCoversEveryItemOnce() {
        for items in 0...300 {
            for parts in 1...300 {
                let p = Partition(items: items, parts: parts)
                #expect(p.parts == min(parts, items))
                var next = 0, smallest = Int.max, largest = 0
                for part in 0..<p.parts {
                    let r = p.range(part)
                    #expect(r.lowerBound == next && !r.isEmpty, "items \(items) parts \(parts): part \(part) is \(r)")
                    next = r.upperBound
                    smallest = min(smallest, r.count)
                    largest = max(largest, r.count)
                }
                #expect(next == items, "items \(items) parts \(parts) cover \(next)")
                if p.parts > 0 { #expect(largest - smallest <= 1) }
            }
        }
        #expect(Partition(items: -3, parts: 4).parts == 0)
        #expect(Partition(items: 5, parts: 0).parts == 1)
        let huge = Partition(items: Int.max, parts: Int.max - 1)
        #expect(huge.range(huge.parts - 1).upperBound == Int.max)
    }

    /// Each index runs exactly once, at any thread count, nested calls included.
    @Test(arguments: [1, 2, 3, 5, 64, 256, 5000])
    func parallelForRunsEachIndexOnce(_ threads: Int) {
        let before = Threads.current
        defer { Threads.set(before) }
        Threads.set(threads)
        for count in [0, 1, 2, 7, 97, 300] {
            let runs = Counters(count * 3)
            parallelFor(count) { i in
                runs.add(i)
                parallelFor(2) { j in runs.add(count + 2 * i + j) }
            }
            #expect(runs.values == [Int](repeating: 1, count: count * 3), "count \(count)")
        }
    }

    /// GEMM splits B's strips and A's row blocks by worker; C is the same bits for any count.
    @Test(arguments: [(97, 61, 130), (300, 1100, 257), (5, 2000, 3)])
    func gemmSameBitsForEveryThreadCount(_ dims: (Int, Int, Int)) {
        let (m, n, k) = dims
        var rng = SplitMix(seed: 3)
        let a = (0..<(m * k)).map { _ in Float(rng.uniform() * 2 - 1) }
        let b = (0..<(k * n)).map { _ in Float(rng.uniform() * 2 - 1) }
        func product(_ threads: Int) -> [UInt32] {
            let before = Threads.current
            defer { Threads.set(before) }
            Threads.set(threads)
            let plan = GemmPlan<Float>(m: m, n: n, k: k)
            var c = [Float](repeating: .nan, count: m * n), scratch = [Float](repeating: .nan, count: plan.scratchCount)
            a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in scratch.withUnsafeMutableBufferPointer { sp in
                    gemm(plan, GemmOperands(a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: n, c: cp.baseAddress!,
                                            ldc: n), scratch: sp.baseAddress!)
                } }
            } }
            return c.map(\.bitPattern)
        }
        let expected = product(1)
        for threads in [2, 3, 6, 8, 12, 64, 256] {
            #expect(product(threads) == expected, "\(m)×\(n)×\(k) at \(threads) threads")
        }
    }
}

/// Counters that many threads add to.
final class Counters: Sendable {
    private let counts: Mutex<[Int]>
    init(_ n: Int) { counts = Mutex([Int](repeating: 0, count: n)) }
    func add(_ i: Int) { counts.withLock { $0[i] += 1 } }
    var values: [Int] { counts.withLock { $0 } }
}
