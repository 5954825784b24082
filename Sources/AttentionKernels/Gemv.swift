/// Matrix products of one row (a decoder's step with one sequence: one token's projections):
/// y = x·B (+ bias), x of K entries, B K×N row-major. `gemm` packs B into panels first, which
/// for one row costs more than the product; here B streams once from where it lies, eight
/// vectors of columns at a time (eight independent multiply-add chains), the columns split
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

/// The column blocking of `gemv`.
enum GemvTile {
    /// Vectors of columns per block: eight accumulators in registers.
    static let vectors = 8
}

/// y = x·B (+ bias) (or y += x·B) for every product, in one parallel pass over blocks of
/// columns.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func gemv<T: KernelScalar>(_ products: [GemvProduct<T>]) {
    let width = GemvTile.vectors * T.Vector.scalarCount
    // Block b of the pass is block b − first[p] of product p.
    var first: [Int] = [], total = 0
    for p in products {
        first.append(total)
        total += p.n > 0 ? (p.n + width - 1) / width : 0
    }
    let job = GemvJob(products: products, first: first)
    parallelFor(total) { job.run($0) }
}

private struct GemvJob<T: KernelScalar>: @unchecked Sendable {
    let products: [GemvProduct<T>]
    let first: [Int]

    func run(_ block: Int) {
        var p = products.count - 1
        while first[p] > block { p -= 1 }
        let op = products[p]
        let width = GemvTile.vectors * T.Vector.scalarCount
        let j0 = (block - first[p]) * width
        let columns = min(width, op.n - j0)
        let y = op.y + j0
        if !op.accumulate {
            if let bias = op.bias { y.update(from: bias + j0, count: columns) } else { y.update(repeating: 0, count: columns) }
        }
        guard op.k > 0 else { return }
        let depth = min(GemmTile.depth, op.k)
        var p0 = 0
        while p0 < op.k {
            let d = min(depth, op.k - p0)
            panel(op, j0: j0, columns: columns, p0: p0, depth: d)
            p0 += d
        }
    }

    /// y[j0 ..< j0 + columns] += Σ_{p in p0 ..< p0 + depth} x[p]·B[p][j], summed from zero.
    @inline(__always)
    func panel(_ op: GemvProduct<T>, j0: Int, columns: Int, p0: Int, depth: Int) {
        let lanes = T.Vector.scalarCount
        let y = op.y + j0
        var c = 0
        if columns == GemvTile.vectors * lanes {
            var a0 = T.Vector(), a1 = T.Vector(), a2 = T.Vector(), a3 = T.Vector()
            var a4 = T.Vector(), a5 = T.Vector(), a6 = T.Vector(), a7 = T.Vector()
            var row = op.b + p0 * op.ldb + j0
            for p in p0..<(p0 + depth) {
                let x = T.Vector(repeating: op.x[p])
                a0 = a0.plusProduct(x, row.vector(at: 0)); a1 = a1.plusProduct(x, row.vector(at: lanes))
                a2 = a2.plusProduct(x, row.vector(at: 2 * lanes)); a3 = a3.plusProduct(x, row.vector(at: 3 * lanes))
                a4 = a4.plusProduct(x, row.vector(at: 4 * lanes)); a5 = a5.plusProduct(x, row.vector(at: 5 * lanes))
                a6 = a6.plusProduct(x, row.vector(at: 6 * lanes)); a7 = a7.plusProduct(x, row.vector(at: 7 * lanes))
                row += op.ldb
            }
            func add(_ v: Int, _ a: T.Vector) { y.store(UnsafePointer(y).vector(at: v * lanes) + a, at: v * lanes) }
            add(0, a0); add(1, a1); add(2, a2); add(3, a3); add(4, a4); add(5, a5); add(6, a6); add(7, a7)
            return
        }
        while c + lanes <= columns {
            var a = T.Vector()
            var row = op.b + p0 * op.ldb + j0 + c
            for p in p0..<(p0 + depth) {
                a = a.plusProduct(T.Vector(repeating: op.x[p]), row.vector(at: 0))
                row += op.ldb
            }
            y.store(UnsafePointer(y).vector(at: c) + a, at: c)
            c += lanes
        }
        while c < columns {
            // One lane of the vector code: the same fused (or, without FMA, unfused) steps.
            var a = T.zero
            var row = op.b + p0 * op.ldb + j0 + c
            for p in p0..<(p0 + depth) {
                a = fusedMultiplyAdd(op.x[p], row[0], a)
                row += op.ldb
            }
            y[c] += a
            c += 1
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
