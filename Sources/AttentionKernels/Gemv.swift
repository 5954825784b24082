/// Matrix products of one row (a decoder's step with one sequence: one token's projections):
/// y = x·B (+ bias), x of K entries, B K×N row-major. `gemm` packs B into panels first, which
/// for one row costs more than the product; here B streams once from where it lies, row by
/// row (in memory order: the prefetcher and the TLB see a plain stream), the columns split
/// over workers. Several products run in one parallel pass (a layer's query, key and value
/// projections of one token).
///
/// Each y[j] is summed as `gemm` sums it: from the bias (or 0, or y when accumulating),
/// panels of `GemmTile.depth` products accumulated from zero by fused multiply-adds in order
/// of k, each panel then added. So a row gives the same bits through either routine, and for
/// any number of workers.
public struct GemvProduct<T: KernelScalar>: @unchecked Sendable {
    public var x: UnsafePointer<T>
    public var b: UnsafePointer<T>, ldb: Int
    public var y: UnsafeMutablePointer<T>
    public var bias: UnsafePointer<T>?
    public var accumulate: Bool
    public var n: Int, k: Int
    public init(x: UnsafePointer<T>, b: UnsafePointer<T>, ldb: Int, y: UnsafeMutablePointer<T>,
                bias: UnsafePointer<T>? = nil, accumulate: Bool = false, n: Int, k: Int) {
        self.x = x; self.b = b; self.ldb = ldb; self.y = y; self.bias = bias; self.accumulate = accumulate
        self.n = n; self.k = k
    }
}

/// The column split of `gemv`.
enum GemvTile {
    /// The fewest vectors of columns a worker takes (fewer workers on narrow products).
    static let minimumVectors = 8
    /// Rows of B per pass over the accumulators (they are loaded and stored once per pass).
    static let rowsPerPass = 4
    /// Columns per block of accumulators (16 KiB of float64: they stay in L1).
    static let columns = 2048
}

/// y = x·B (+ bias) (or y += x·B) for every product, in one parallel pass: the columns of all
/// products, in vectors, split into one contiguous range per worker; a worker walks B row by
/// row over its columns (each row's part read once, in memory order), the depth panel's sums in
/// 64-byte aligned accumulators that stay in L1.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func gemv<T: KernelScalar>(_ products: [GemvProduct<T>]) {
    let lanes = T.Vector.scalarCount
    // Vector v of the pass is vector v − first[p] of product p's columns.
    var first: [Int] = [], total = 0
    for p in products {
        first.append(total)
        total += p.n > 0 ? (p.n + lanes - 1) / lanes : 0
    }
    let partition = Partition(items: total, parts: min(Threads.current, max(1, total / GemvTile.minimumVectors)))
    let job = GemvJob(products: products, first: first, partition: partition)
    parallelFor(partition.parts) { job.run(part: $0) }
}

private struct GemvJob<T: KernelScalar>: @unchecked Sendable {
    let products: [GemvProduct<T>]
    let first: [Int]
    let partition: Partition

    /// Part `part`'s columns of every product it reaches.
    func run(part: Int) {
        let lanes = T.Vector.scalarCount
        let vectors = partition.range(part)
        for (index, op) in products.enumerated() {
            let own = first[index]..<(first[index] + (op.n + lanes - 1) / lanes)
            let lo = max(vectors.lowerBound, own.lowerBound), hi = min(vectors.upperBound, own.upperBound)
            guard lo < hi else { continue }
            columns(op, (lo - own.lowerBound) * lanes, min(op.n, (hi - own.lowerBound) * lanes))
        }
    }

    /// y[c0 ..< c1] of one product, at most `GemvTile.columns` columns at a time.
    func columns(_ op: GemvProduct<T>, _ c0: Int, _ c1: Int) {
        var start = c0
        while start < c1 {
            let end = min(c1, start + GemvTile.columns)
            block(op, start, end)
            start = end
        }
    }

    /// y[c0 ..< c1] of one product.
    func block(_ op: GemvProduct<T>, _ c0: Int, _ c1: Int) {
        let lanes = T.Vector.scalarCount, width = c1 - c0
        let y = op.y + c0
        if !op.accumulate {
            if let bias = op.bias { y.update(from: bias + c0, count: width) } else { y.update(repeating: 0, count: width) }
        }
        guard op.k > 0 else { return }
        let padded = (width + lanes - 1) / lanes * lanes
        withUnsafeTemporaryAllocation(byteCount: padded * MemoryLayout<T>.stride, alignment: 64) { raw in
            guard let base = raw.baseAddress else { return }
            let acc = base.bindMemory(to: T.self, capacity: padded)
            let depth = min(GemmTile.depth, op.k)
            var p0 = 0
            while p0 < op.k {
                let d = min(depth, op.k - p0)
                acc.update(repeating: 0, count: padded)
                panel(op, c0: c0, width: width, p0: p0, depth: d, acc: acc)
                let whole = width / lanes * lanes
                var c = 0
                while c < whole {
                    y.store(UnsafePointer(y).vector(at: c) + UnsafePointer(acc).vector(at: c), at: c)
                    c += lanes
                }
                while c < width { y[c] += acc[c]; c += 1 }
                p0 += d
            }
        }
    }

    /// acc[0 ..< width] = Σ_{p in p0 ..< p0 + depth} x[p]·B[p][c0 + j], from zero, in order of
    /// p (as gemm's micro-kernel sums a panel): rowsPerPass rows per pass over acc.
    @inline(__always)
    func panel(_ op: GemvProduct<T>, c0: Int, width: Int, p0: Int, depth: Int, acc: UnsafeMutablePointer<T>) {
        let lanes = T.Vector.scalarCount, whole = width / lanes * lanes, ldb = op.ldb
        var p = p0
        let end = p0 + depth
        while p + GemvTile.rowsPerPass <= end {
            let x0 = T.Vector(repeating: op.x[p]), x1 = T.Vector(repeating: op.x[p + 1])
            let x2 = T.Vector(repeating: op.x[p + 2]), x3 = T.Vector(repeating: op.x[p + 3])
            let r0 = op.b + p * ldb + c0, r1 = r0 + ldb, r2 = r1 + ldb, r3 = r2 + ldb
            var c = 0
            while c < whole {
                var a = UnsafePointer(acc).vector(at: c)
                a = a.plusProduct(x0, r0.vector(at: c))
                a = a.plusProduct(x1, r1.vector(at: c))
                a = a.plusProduct(x2, r2.vector(at: c))
                a = a.plusProduct(x3, r3.vector(at: c))
                acc.store(a, at: c)
                c += lanes
            }
            while c < width {
                var a = acc[c]
                a = fusedMultiplyAdd(op.x[p], r0[c], a)
                a = fusedMultiplyAdd(op.x[p + 1], r1[c], a)
                a = fusedMultiplyAdd(op.x[p + 2], r2[c], a)
                a = fusedMultiplyAdd(op.x[p + 3], r3[c], a)
                acc[c] = a
                c += 1
            }
            p += GemvTile.rowsPerPass
        }
        while p < end {
            let x0 = T.Vector(repeating: op.x[p])
            let r0 = op.b + p * ldb + c0
            var c = 0
            while c < whole {
                acc.store(UnsafePointer(acc).vector(at: c).plusProduct(x0, r0.vector(at: c)), at: c)
                c += lanes
            }
            while c < width {
                acc[c] = fusedMultiplyAdd(op.x[p], r0[c], acc[c])
                c += 1
            }
            p += 1
        }
    }
}

/// a·b + c as one lane of `plusProduct` computes it: fused where the target has FMA.
@inline(__always)
func fusedMultiplyAdd<T: KernelScalar>(_ a: T, _ b: T, _ c: T) -> T {
    #if ATTENTION_NO_FMA
    return c + a * b
    #else
    return c.addingProduct(a, b)
    #endif
}
