/// C = A·B (+ bias), or C += A·B when `accumulate`, row-major: A is M×K (row stride lda),
/// B is K×N (ldb), C is M×N (ldc), bias has N entries broadcast over rows. Register-blocked: 4 rows × 2 SIMD vectors of C
/// stay in registers while K streams; K is split into panels that stay in cache.
public struct GemmOperands<T: KernelScalar>: @unchecked Sendable {
    public var a: UnsafePointer<T>, lda: Int
    public var b: UnsafePointer<T>, ldb: Int
    public var c: UnsafeMutablePointer<T>, ldc: Int
    public var bias: UnsafePointer<T>?
    public var accumulate: Bool
    public init(a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
                c: UnsafeMutablePointer<T>, ldc: Int, bias: UnsafePointer<T>? = nil, accumulate: Bool = false) {
        self.a = a; self.lda = lda; self.b = b; self.ldb = ldb; self.c = c; self.ldc = ldc; self.bias = bias
        self.accumulate = accumulate
    }
}

/// Rows of C per register block and depth of one K panel.
enum GemmTile {
    static let rows = 4
    static let depth = 256
}

/// C[M×N] = A[M×K]·B[K×N] + bias (or C += A·B), threaded over blocks of rows.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func gemm<T: KernelScalar>(m: Int, n: Int, k: Int, _ op: GemmOperands<T>) {
    guard m > 0, n > 0 else { return }
    let blocks = (m + GemmTile.rows - 1) / GemmTile.rows
    let blocksPerItem = max(1, blocks / (Threads.current * 8))
    let items = (blocks + blocksPerItem - 1) / blocksPerItem
    parallelFor(items) { item in
        let r0 = item * blocksPerItem * GemmTile.rows
        let r1 = min(m, r0 + blocksPerItem * GemmTile.rows)
        gemmRows(r0..<r1, n: n, k: k, op)
    }
}

@inline(__always)
func gemmRows<T: KernelScalar>(_ rows: Range<Int>, n: Int, k: Int, _ op: GemmOperands<T>) {
    // Initialise C with the bias (or zero) unless accumulating, then add panel by panel.
    for r in rows where !op.accumulate {
        let c = op.c + r * op.ldc
        if let bias = op.bias {
            for j in 0..<n { c[j] = bias[j] }
        } else {
            for j in 0..<n { c[j] = 0 }
        }
    }
    var k0 = 0
    while k0 < k {
        let depth = min(GemmTile.depth, k - k0)
        var r = rows.lowerBound
        while r + GemmTile.rows <= rows.upperBound {
            block4(r, k0, depth, n, op)
            r += GemmTile.rows
        }
        while r < rows.upperBound {
            block1(r, k0, depth, n, op)
            r += 1
        }
        k0 += depth
    }
}

/// C[r..<r+4, :] += A[r..<r+4, k0..<k0+depth] · B[k0..<k0+depth, :].
@inline(__always)
func block4<T: KernelScalar>(_ r: Int, _ k0: Int, _ depth: Int, _ n: Int, _ op: GemmOperands<T>) {
    let lanes = T.Vector.scalarCount
    let a0 = op.a + r * op.lda + k0, a1 = a0 + op.lda, a2 = a1 + op.lda, a3 = a2 + op.lda
    let c0 = op.c + r * op.ldc, c1 = c0 + op.ldc, c2 = c1 + op.ldc, c3 = c2 + op.ldc
    let b = op.b + k0 * op.ldb
    var j = 0
    while j + 2 * lanes <= n {
        var x00 = UnsafePointer(c0).vector(at: j), x01 = UnsafePointer(c0).vector(at: j + lanes)
        var x10 = UnsafePointer(c1).vector(at: j), x11 = UnsafePointer(c1).vector(at: j + lanes)
        var x20 = UnsafePointer(c2).vector(at: j), x21 = UnsafePointer(c2).vector(at: j + lanes)
        var x30 = UnsafePointer(c3).vector(at: j), x31 = UnsafePointer(c3).vector(at: j + lanes)
        for p in 0..<depth {
            let bp = b + p * op.ldb + j
            let b0 = bp.vector(at: 0), b1 = bp.vector(at: lanes)
            let v0 = T.Vector(repeating: a0[p]), v1 = T.Vector(repeating: a1[p])
            let v2 = T.Vector(repeating: a2[p]), v3 = T.Vector(repeating: a3[p])
            x00 = x00.addingProduct(v0, b0); x01 = x01.addingProduct(v0, b1)
            x10 = x10.addingProduct(v1, b0); x11 = x11.addingProduct(v1, b1)
            x20 = x20.addingProduct(v2, b0); x21 = x21.addingProduct(v2, b1)
            x30 = x30.addingProduct(v3, b0); x31 = x31.addingProduct(v3, b1)
        }
        c0.store(x00, at: j); c0.store(x01, at: j + lanes)
        c1.store(x10, at: j); c1.store(x11, at: j + lanes)
        c2.store(x20, at: j); c2.store(x21, at: j + lanes)
        c3.store(x30, at: j); c3.store(x31, at: j + lanes)
        j += 2 * lanes
    }
    while j < n {
        var s0 = c0[j], s1 = c1[j], s2 = c2[j], s3 = c3[j]
        for p in 0..<depth {
            let bv = b[p * op.ldb + j]
            s0 += a0[p] * bv; s1 += a1[p] * bv; s2 += a2[p] * bv; s3 += a3[p] * bv
        }
        c0[j] = s0; c1[j] = s1; c2[j] = s2; c3[j] = s3
        j += 1
    }
}

/// C[r, :] += A[r, k0..<k0+depth] · B[k0..<k0+depth, :].
@inline(__always)
func block1<T: KernelScalar>(_ r: Int, _ k0: Int, _ depth: Int, _ n: Int, _ op: GemmOperands<T>) {
    let a = op.a + r * op.lda + k0
    let c = op.c + r * op.ldc
    for p in 0..<depth {
        axpy(a[p], op.b + (k0 + p) * op.ldb, c, n)
    }
}
