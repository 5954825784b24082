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

/// The blocking of `gemm` (Goto's scheme, A unpacked): B is packed in panels of `depth`
/// rows × `columns` columns, stored as strips of 2 SIMD vectors wide; a worker takes a run
/// of at least `rows` rows of A, read in place; a micro-kernel keeps a microRows × 2-vector
/// tile of C in registers while it walks the depth, broadcasting A's elements from its
/// microRows rows (packing A into strips, as Goto does, cost 5% of a projection's time:
/// a scalar transpose that the in-place rows do not need).
enum GemmTile {
    static let microRows = registerTileRows
    static let depth = 512
    static let rows = 96
    static let columns = 1024
}

/// How one `gemm` call is blocked and split over workers, fixed when the plan is made: the
/// thread count is read once, so the scratch a plan sizes is the scratch its call uses. The
/// rows go to the workers as contiguous runs of micro-blocks (`GemmTile.microRows` rows)
/// that differ by at most one micro-block, each worker taking at least `GemmTile.rows` rows
/// (blocks of 96 rows dealt out in turn gave one worker 1056 of 2048 rows and the other 992:
/// a projection on 2 threads ran 1.86x its 1-thread speed). Every element of C is summed
/// over K in the same order whatever the split.
public struct GemmPlan<T: KernelScalar>: Sendable {
    public let m: Int, n: Int, k: Int
    let strip = 2 * T.Vector.scalarCount
    let panelColumns: Int, depth: Int
    /// The micro-blocks of rows, split over the workers.
    let rowParts: Partition

    public init(m: Int, n: Int, k: Int) {
        (self.m, self.n, self.k) = (max(0, m), max(0, n), max(0, k))
        panelColumns = min(GemmTile.columns, (max(1, n) + strip - 1) / strip * strip)
        depth = min(GemmTile.depth, max(1, k))
        let microBlocks = (max(1, m) + GemmTile.microRows - 1) / GemmTile.microRows
        let workers = min(Threads.current, WorkerPool.maximumThreads, (max(1, m) + GemmTile.rows - 1) / GemmTile.rows)
        rowParts = Partition(items: microBlocks, parts: workers)
    }

    /// Elements of scratch the call needs: one packed panel of B (2 MiB in float32).
    public var scratchCount: Int { panelColumns * depth }
}

/// C[M×N] = A[M×K]·B[K×N] + bias (or C += A·B), as `plan` blocks it. Packs B into
/// cache-sized panels of `scratch` (plan.scratchCount elements) and runs a register-blocked
/// SIMD micro-kernel, threaded over strips of B and blocks of rows.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func gemm<T: KernelScalar>(_ plan: GemmPlan<T>, _ op: GemmOperands<T>, scratch: UnsafeMutablePointer<T>) {
    let (m, n, k) = (plan.m, plan.n, plan.k)
    guard m > 0, n > 0 else { return }
    guard k > 0 else {
        initialise(m: m, n: n, op)
        return
    }
    let job = GemmJob(op: op, m: m, bPanel: scratch)
    var j0 = 0
    while j0 < n {
        let width = min(plan.panelColumns, n - j0)
        var p0 = 0
        while p0 < k {
            let d = min(plan.depth, k - p0)
            let (panelRow, panelColumn) = (p0, j0)
            let rowChunks = (d + 15) / 16
            parallelFor(rowChunks) { c in
                job.packB(panelRow, d, panelColumn, width, rows: (c * 16)..<min(c * 16 + 16, d))
            }
            parallelFor(plan.rowParts.parts) { w in
                job.multiply(microBlocks: plan.rowParts.range(w), p0: panelRow, depth: d, j0: panelColumn,
                             width: width, first: panelRow == 0 && !op.accumulate)
            }
            p0 += d
        }
        j0 += width
    }
}

/// C = bias (or 0) unless accumulating: the result of an empty sum (K = 0).
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
    let m: Int
    let bPanel: UnsafeMutablePointer<T>

    var strip: Int { 2 * T.Vector.scalarCount }

    /// Rows `rows` (of depth) of B[p0..<p0+depth, j0..<j0+width] into the panel's strips of
    /// `strip` columns, zero-padded: element (p, j) at s·depth·strip + p·strip + (j mod strip)
    /// for strip s = j / strip. Row by row, so B is read in order (a strip at a time walked
    /// B down its columns: 2.7% of a projection's time).
    func packB(_ p0: Int, _ depth: Int, _ j0: Int, _ width: Int, rows: Range<Int>) {
        let lanes = T.Vector.scalarCount, strips = (width + strip - 1) / strip
        for p in rows {
            let src = UnsafePointer(op.b + (p0 + p) * op.ldb + j0)
            var dst = bPanel + p * strip
            for s in 0..<strips {
                let columns = min(strip, width - s * strip), from = src + s * strip
                if columns == strip {
                    dst.store(from.vector(at: 0), at: 0)
                    dst.store(from.vector(at: lanes), at: lanes)
                } else {
                    dst.update(from: from, count: columns)
                    (dst + columns).update(repeating: 0, count: strip - columns)
                }
                dst += depth * strip
            }
        }
    }

    /// C's rows of micro-blocks `microBlocks`, columns j0 ..< j0 + width, += their A rows ·
    /// the packed panel (depth terms from p0); on the first panel (`first`) C starts from the
    /// bias (or 0) instead of being read, so C is written once when one panel holds all of K.
    func multiply(microBlocks: Range<Int>, p0: Int, depth: Int, j0: Int, width: Int, first: Bool) {
        let mr = GemmTile.microRows
        for block in microBlocks {
            let i = block * mr, micro = min(mr, m - i)
            let a = op.a + i * op.lda + p0
            var s = 0
            while s * strip < width {
                let column = j0 + s * strip
                microKernel({ a + min($0, micro - 1) * op.lda }, bPanel + s * depth * strip, depth,
                            c: op.c + i * op.ldc + column, rows: micro, columns: min(strip, width - s * strip),
                            start: first ? .some(op.bias.map { $0 + column }) : nil)
                s += 1
            }
        }
    }

    /// C tile (rows ≤ 8 × columns ≤ strip) += A's rows a(r) · packed B strip; with `start`,
    /// C tile = start's row (a bias row, or zeros for nil) + A·B, C not read.
    @inline(__always)
    func microKernel(_ a: (Int) -> UnsafePointer<T>, _ b: UnsafeMutablePointer<T>, _ depth: Int,
                     c: UnsafeMutablePointer<T>, rows: Int, columns: Int, start: UnsafePointer<T>??) {
        let lanes = T.Vector.scalarCount
        var tile = RegisterTile<T>()
        tile.accumulate(a, aStep: 1, UnsafePointer(b), bStep: 2 * lanes, depth: depth)
        // What the tile is added to, per row: C's row, or the start row (the same for all).
        let origin: (UnsafeMutablePointer<T>) -> UnsafePointer<T>? = { row in
            switch start {
            case .none: UnsafePointer(row)
            case .some(let bias): bias
            }
        }
        for r in 0..<GemmTile.microRows where r < rows {
            let (v0, v1) = tile.row(r)
            let row = c + r * op.ldc, base = origin(row)
            if columns == 2 * lanes {
                row.store((base?.vector(at: 0) ?? T.Vector()) + v0, at: 0)
                row.store((base?.vector(at: lanes) ?? T.Vector()) + v1, at: lanes)
            } else {
                for j in 0..<columns { row[j] = (base?[j] ?? 0) + (j < lanes ? v0[j] : v1[j - lanes]) }
            }
        }
    }
}
