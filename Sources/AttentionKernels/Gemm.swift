/// C = A·B (+ bias), or C += A·B when `accumulate`, row-major: A is M×K (row stride lda),
/// B is K×N (ldb), C is M×N (ldc), bias has N entries broadcast over rows.
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

/// The blocking of `gemm` (Goto's scheme): B is packed in panels of `depth` rows ×
/// `columns` columns, stored as strips of 2 SIMD vectors wide; A in blocks of `rows` rows
/// (per thread) × `depth`, stored as strips of `microRows` rows; a micro-kernel keeps a
/// microRows × 2-vector tile of C in registers while it walks the depth.
enum GemmTile {
    static let microRows = 8
    static let depth = 256
    static let rows = 96
    static let columns = 1024
}

/// How one `gemm` call is blocked and split over workers, fixed when the plan is made: the
/// thread count is read once, so the scratch a plan sizes is the scratch its call uses. Row
/// blocks have at most `GemmTile.rows` rows and come in a whole number per worker, of equal
/// height up to a micro-kernel's rows (512 rows on 2 workers: 6 blocks of 88 (the last 72)
/// rather than 5 of 96 and one of 32, which gave one worker 288 rows and the other 224).
/// Every element of C is summed over K in the same order whatever the split.
public struct GemmPlan<T: KernelScalar>: Sendable {
    public let m: Int, n: Int, k: Int
    let strip = 2 * T.Vector.scalarCount
    let panelColumns: Int, depth: Int, blockRows: Int, rowBlocks: Int, workers: Int, aBlock: Int

    public init(m: Int, n: Int, k: Int) {
        (self.m, self.n, self.k) = (max(0, m), max(0, n), max(0, k))
        panelColumns = min(GemmTile.columns, (max(1, n) + strip - 1) / strip * strip)
        depth = min(GemmTile.depth, max(1, k))
        let fullBlocks = (max(1, m) + GemmTile.rows - 1) / GemmTile.rows
        workers = Partition(items: fullBlocks, parts: min(Threads.current, WorkerPool.maximumThreads)).parts
        let blocks = (fullBlocks + workers - 1) / workers * workers
        let mr = GemmTile.microRows
        blockRows = ((max(1, m) + blocks - 1) / blocks + mr - 1) / mr * mr
        rowBlocks = (max(1, m) + blockRows - 1) / blockRows
        aBlock = (GemmTile.rows + GemmTile.microRows) * depth
    }

    /// Elements of scratch the call needs: one packed panel of B, one block of A per worker
    /// (about 100 KiB per worker in float32).
    public var scratchCount: Int { panelColumns * depth + workers * aBlock }
}

/// C[M×N] = A[M×K]·B[K×N] + bias (or C += A·B), as `plan` blocks it. Packs operands into
/// cache-sized panels of `scratch` (plan.scratchCount elements) and runs a register-blocked
/// SIMD micro-kernel, threaded over strips of B and blocks of rows.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func gemm<T: KernelScalar>(_ plan: GemmPlan<T>, _ op: GemmOperands<T>, scratch: UnsafeMutablePointer<T>) {
    let (m, n, k) = (plan.m, plan.n, plan.k)
    guard m > 0, n > 0 else { return }
    initialise(m: m, n: n, op)
    guard k > 0 else { return }
    let workers = plan.workers
    let job = GemmJob(op: op, m: m, blockRows: plan.blockRows, bPanel: scratch,
                      aBlocks: scratch + plan.panelColumns * plan.depth, aBlockSize: plan.aBlock)
    var j0 = 0
    while j0 < n {
        let width = min(plan.panelColumns, n - j0)
        var p0 = 0
        while p0 < k {
            let d = min(plan.depth, k - p0)
            let (panelRow, panelColumn) = (p0, j0)
            parallelFor((width + plan.strip - 1) / plan.strip) { s in
                job.packB(panelRow, d, panelColumn, width, strip: s)
            }
            parallelFor(workers) { w in
                var block = w
                while block < plan.rowBlocks {
                    job.multiply(rowBlock: block, worker: w, p0: panelRow, depth: d, j0: panelColumn, width: width)
                    block += workers
                }
            }
            p0 += d
        }
        j0 += width
    }
}

/// C = bias (or 0) unless accumulating.
private func initialise<T: KernelScalar>(m: Int, n: Int, _ op: GemmOperands<T>) {
    guard !op.accumulate else { return }
    for r in 0..<m {
        let c = op.c + r * op.ldc
        if let bias = op.bias {
            c.update(from: bias, count: n)
        } else {
            c.update(repeating: 0, count: n)
        }
    }
}

struct GemmJob<T: KernelScalar>: @unchecked Sendable {
    let op: GemmOperands<T>
    let m: Int, blockRows: Int
    let bPanel: UnsafeMutablePointer<T>
    let aBlocks: UnsafeMutablePointer<T>
    let aBlockSize: Int

    var strip: Int { 2 * T.Vector.scalarCount }

    /// Strip s of B[p0..<p0+depth, j0..<j0+width] (`strip` columns, zero-padded): element
    /// (p, j) at s·depth·strip + p·strip + (j mod strip).
    func packB(_ p0: Int, _ depth: Int, _ j0: Int, _ width: Int, strip s: Int) {
        let columns = min(strip, width - s * strip)
        var dst = bPanel + s * depth * strip
        for p in 0..<depth {
            let src = op.b + (p0 + p) * op.ldb + j0 + s * strip
            dst.update(from: src, count: columns)
            if columns < strip { (dst + columns).update(repeating: 0, count: strip - columns) }
            dst += strip
        }
    }

    /// A[rows of block, p0..<p0+depth] into strips of microRows rows, zero-padded:
    /// element (i, p) of strip s at s·depth·microRows + p·microRows + (i mod microRows).
    func packA(_ a: UnsafeMutablePointer<T>, _ r0: Int, _ rows: Int, _ p0: Int, _ depth: Int) {
        let mr = GemmTile.microRows
        let strips = (rows + mr - 1) / mr
        for s in 0..<strips {
            let dst = a + s * depth * mr
            for i in 0..<mr {
                let row = s * mr + i
                if row < rows {
                    let src = op.a + (r0 + row) * op.lda + p0
                    for p in 0..<depth { dst[p * mr + i] = src[p] }
                } else {
                    for p in 0..<depth { dst[p * mr + i] = 0 }
                }
            }
        }
    }

    func multiply(rowBlock: Int, worker: Int, p0: Int, depth: Int, j0: Int, width: Int) {
        let r0 = rowBlock * blockRows
        let rows = min(blockRows, m - r0)
        let a = aBlocks + worker * aBlockSize
        packA(a, r0, rows, p0, depth)
        let mr = GemmTile.microRows
        var i = 0
        while i < rows {
            var s = 0
            while s * strip < width {
                microKernel(a + (i / mr) * depth * mr, bPanel + s * depth * strip, depth,
                            c: op.c + (r0 + i) * op.ldc + j0 + s * strip,
                            rows: min(mr, rows - i), columns: min(strip, width - s * strip))
                s += 1
            }
            i += mr
        }
    }

    /// C tile (rows ≤ 8 × columns ≤ strip) += packed A strip · packed B strip.
    @inline(__always)
    func microKernel(_ a: UnsafeMutablePointer<T>, _ b: UnsafeMutablePointer<T>, _ depth: Int,
                     c: UnsafeMutablePointer<T>, rows: Int, columns: Int) {
        let lanes = T.Vector.scalarCount
        var tile = Tile8x2<T>()
        tile.accumulate({ UnsafePointer(a + $0) }, aStep: GemmTile.microRows, UnsafePointer(b), bStep: 2 * lanes,
                        depth: depth)
        func add(_ r: Int, _ v0: T.Vector, _ v1: T.Vector) {
            guard r < rows else { return }
            let row = c + r * op.ldc
            if columns == 2 * lanes {
                row.store(UnsafePointer(row).vector(at: 0) + v0, at: 0)
                row.store(UnsafePointer(row).vector(at: lanes) + v1, at: lanes)
            } else {
                for j in 0..<columns { row[j] += j < lanes ? v0[j] : v1[j - lanes] }
            }
        }
        for r in 0..<GemmTile.microRows {
            let (v0, v1) = tile.row(r)
            add(r, v0, v1)
        }
    }
}
