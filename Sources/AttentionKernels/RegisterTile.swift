/// The register tile's rows: 8 where there are 32 vector registers (AVX-512: 16
/// accumulators, 2 vectors of B and a broadcast), 6 where there are 16 (AVX2 with 256-bit
/// kernel vectors: 12 accumulators + 3 fit; 8 rows spilled accumulators in every step).
#if ATTENTION_NARROW_VECTORS
let registerTileRows = 6
#else
let registerTileRows = 8
#endif

/// A `registerTileRows` × 2-vector block of accumulators and the rank-1 update that the
/// register-blocked kernels (GEMM, the flash block's Q·Kᵀ and P·V, the backward's block
/// products) are made of:
///     acc[r] += a_r[k] · b[k]   for k in 0..<depth,
/// a_r[k] a scalar of row r broadcast to all lanes, b[k] two vectors.
struct RegisterTile<T: KernelScalar> {
    var x00: T.Vector, x01: T.Vector, x10: T.Vector, x11: T.Vector
    var x20: T.Vector, x21: T.Vector, x30: T.Vector, x31: T.Vector
    var x40: T.Vector, x41: T.Vector, x50: T.Vector, x51: T.Vector
    #if !ATTENTION_NARROW_VECTORS
    var x60: T.Vector, x61: T.Vector, x70: T.Vector, x71: T.Vector
    #endif

    /// Zero accumulators.
    @inline(__always) init() {
        let z = T.Vector()
        (x00, x01, x10, x11, x20, x21, x30, x31) = (z, z, z, z, z, z, z, z)
        (x40, x41, x50, x51) = (z, z, z, z)
        #if !ATTENTION_NARROW_VECTORS
        (x60, x61, x70, x71) = (z, z, z, z)
        #endif
    }

    /// Accumulators loaded from 2 vectors at `row(r)` for each row r.
    @inline(__always) init(loading row: (Int) -> UnsafePointer<T>) {
        let lanes = T.Vector.scalarCount
        func pair(_ r: Int) -> (T.Vector, T.Vector) { (row(r).vector(at: 0), row(r).vector(at: lanes)) }
        (x00, x01) = pair(0); (x10, x11) = pair(1); (x20, x21) = pair(2); (x30, x31) = pair(3)
        (x40, x41) = pair(4); (x50, x51) = pair(5)
        #if !ATTENTION_NARROW_VECTORS
        (x60, x61) = pair(6); (x70, x71) = pair(7)
        #endif
    }

    /// acc[r] += Σ_k a_r[k · aStep] · (b + k · bStep)[0 ..< 2 vectors], a_r = rows(r).
    @inline(__always)
    mutating func accumulate(_ rows: (Int) -> UnsafePointer<T>, aStep: Int, _ b: UnsafePointer<T>, bStep: Int,
                             depth: Int) {
        let lanes = T.Vector.scalarCount
        let (a0, a1, a2, a3, a4, a5) = (rows(0), rows(1), rows(2), rows(3), rows(4), rows(5))
        #if !ATTENTION_NARROW_VECTORS
        let (a6, a7) = (rows(6), rows(7))
        #endif
        var bp = b, k = 0
        for _ in 0..<depth {
            let b0 = bp.vector(at: 0), b1 = bp.vector(at: lanes)
            var v = T.Vector(repeating: a0[k]); x00 = x00.plusProduct(v, b0); x01 = x01.plusProduct(v, b1)
            v = T.Vector(repeating: a1[k]); x10 = x10.plusProduct(v, b0); x11 = x11.plusProduct(v, b1)
            v = T.Vector(repeating: a2[k]); x20 = x20.plusProduct(v, b0); x21 = x21.plusProduct(v, b1)
            v = T.Vector(repeating: a3[k]); x30 = x30.plusProduct(v, b0); x31 = x31.plusProduct(v, b1)
            v = T.Vector(repeating: a4[k]); x40 = x40.plusProduct(v, b0); x41 = x41.plusProduct(v, b1)
            v = T.Vector(repeating: a5[k]); x50 = x50.plusProduct(v, b0); x51 = x51.plusProduct(v, b1)
            #if !ATTENTION_NARROW_VECTORS
            v = T.Vector(repeating: a6[k]); x60 = x60.plusProduct(v, b0); x61 = x61.plusProduct(v, b1)
            v = T.Vector(repeating: a7[k]); x70 = x70.plusProduct(v, b0); x71 = x71.plusProduct(v, b1)
            #endif
            bp += bStep
            k += aStep
        }
    }

    /// `accumulate` on the first vector of b only (acc[r].1 untouched): for strips of at most
    /// one vector of columns.
    @inline(__always)
    mutating func accumulateFirstVector(_ rows: (Int) -> UnsafePointer<T>, aStep: Int, _ b: UnsafePointer<T>,
                                        bStep: Int, depth: Int) {
        let (a0, a1, a2, a3, a4, a5) = (rows(0), rows(1), rows(2), rows(3), rows(4), rows(5))
        #if !ATTENTION_NARROW_VECTORS
        let (a6, a7) = (rows(6), rows(7))
        #endif
        var bp = b, k = 0
        for _ in 0..<depth {
            let b0 = bp.vector(at: 0)
            x00 = x00.plusProduct(T.Vector(repeating: a0[k]), b0)
            x10 = x10.plusProduct(T.Vector(repeating: a1[k]), b0)
            x20 = x20.plusProduct(T.Vector(repeating: a2[k]), b0)
            x30 = x30.plusProduct(T.Vector(repeating: a3[k]), b0)
            x40 = x40.plusProduct(T.Vector(repeating: a4[k]), b0)
            x50 = x50.plusProduct(T.Vector(repeating: a5[k]), b0)
            #if !ATTENTION_NARROW_VECTORS
            x60 = x60.plusProduct(T.Vector(repeating: a6[k]), b0)
            x70 = x70.plusProduct(T.Vector(repeating: a7[k]), b0)
            #endif
            bp += bStep
            k += aStep
        }
    }

    /// `accumulate` on a strip of `columns` columns of b: both vectors, or only the first
    /// (`accumulateFirstVector`) when they fit in one.
    @inline(__always)
    mutating func accumulate(_ rows: (Int) -> UnsafePointer<T>, aStep: Int, _ b: UnsafePointer<T>, bStep: Int,
                             depth: Int, columns: Int) {
        if columns > T.Vector.scalarCount {
            accumulate(rows, aStep: aStep, b, bStep: bStep, depth: depth)
        } else {
            accumulateFirstVector(rows, aStep: aStep, b, bStep: bStep, depth: depth)
        }
    }

    /// The two accumulator vectors of row r (0 ..< registerTileRows).
    @inline(__always) func row(_ r: Int) -> (T.Vector, T.Vector) {
        switch r {
        case 0: (x00, x01)
        case 1: (x10, x11)
        case 2: (x20, x21)
        case 3: (x30, x31)
        case 4: (x40, x41)
        #if ATTENTION_NARROW_VECTORS
        default: (x50, x51)
        #else
        case 5: (x50, x51)
        case 6: (x60, x61)
        default: (x70, x71)
        #endif
        }
    }
}

/// What `multiply` does with C: adds A·B to it, or overwrites it with scale · A·B.
enum ProductTarget<T: KernelScalar> {
    case adding
    case overwriting(scale: T)
}

/// C (m × n) += A·B, or C = scale · A·B, with the register tile, for blocks that live in
/// cache: row r of A starts at a(r) and holds its k-th element at k·aStep (aStep 1: A as
/// stored; the block's row stride: Aᵀ); row k of B starts at b + k·bStep and is readable for
/// whole strips of 2 vectors (zero-padded past n); row r of C starts at c(r) and, when
/// overwritten, is written in whole strips of 2 vectors (its row must hold n rounded up to
/// them).
/// `span(r0, rows)`, when given, bounds the work of the micro-block of rows r0 ..< r0 + rows:
/// only its columns in `columns` (whole strips of 2 vectors around them) and its terms k in
/// `depth` are taken — the caller vouches that the others add nothing (e.g. masked weights);
/// overwritten, the strips it skips are set to 0.
@inline(__always)
func multiply<T: KernelScalar>(m: Int, n: Int, depth: Int,
                               a: (Int) -> UnsafePointer<T>, aStep: Int,
                               b: UnsafePointer<T>, bStep: Int,
                               c: (Int) -> UnsafeMutablePointer<T>, _ target: ProductTarget<T> = .adding,
                               span: ((Int, Int) -> (columns: Range<Int>, depth: Range<Int>))? = nil) {
    let lanes = T.Vector.scalarCount, width = 2 * lanes, micro = FlashTile.microRows
    var scale: T.Vector? = nil
    if case .overwriting(let s) = target { scale = T.Vector(repeating: s) }
    var i0 = 0
    while i0 < m {
        let rows = min(micro, m - i0)
        defer { i0 += micro }
        var (columns, terms) = (0..<n, 0..<depth)
        if let span {
            let bounds = span(i0, rows)
            (columns, terms) = (bounds.columns.clamped(to: columns), bounds.depth.clamped(to: terms))
            if terms.isEmpty { columns = 0..<0 }
            if scale != nil {  // the skipped strips of an overwritten C hold 0
                let first = columns.isEmpty ? n : columns.lowerBound / width * width
                let end = columns.isEmpty ? n : min(n, (columns.upperBound + width - 1) / width * width)
                for r in 0..<rows {
                    c(i0 + r).update(repeating: 0, count: first)
                    (c(i0 + r) + end).update(repeating: 0, count: (n + width - 1) / width * width - end)
                }
            }
        }
        guard !columns.isEmpty else { continue }
        var j0 = columns.lowerBound / width * width
        while j0 < columns.upperBound {
            let whole = n - j0 >= width
            var tile = RegisterTile<T>()
            tile.accumulate({ a(i0 + min($0, rows - 1)) + terms.lowerBound * aStep }, aStep: aStep,
                            b + terms.lowerBound * bStep + j0, bStep: bStep, depth: terms.count)
            for r in 0..<micro where r < rows {  // (a constant trip count keeps the tile in registers)
                let (x0, x1) = tile.row(r)
                let out = c(i0 + r) + j0
                if let scale {
                    out.store(scale * x0, at: 0)
                    out.store(scale * x1, at: lanes)
                } else if whole {
                    out.store(UnsafePointer(out).vector(at: 0) + x0, at: 0)
                    out.store(UnsafePointer(out).vector(at: lanes) + x1, at: lanes)
                } else {
                    for t in 0..<(n - j0) { out[t] += t < lanes ? x0[t] : x1[t - lanes] }
                }
            }
            j0 += width
        }
    }
}
