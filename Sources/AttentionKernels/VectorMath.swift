import CachePrefetch

/// Small dense vector routines on raw buffers, SIMD across the contiguous axis.

/// Σ_d a[d]·b[d].
@inlinable
public func dot<T: KernelScalar>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ n: Int) -> T {
    let lanes = T.Vector.scalarCount
    var s0 = T.Vector(), s1 = T.Vector()
    var d = 0
    while d + 2 * lanes <= n {
        s0 = s0.plusProduct(a.vector(at: d), b.vector(at: d))
        s1 = s1.plusProduct(a.vector(at: d + lanes), b.vector(at: d + lanes))
        d += 2 * lanes
    }
    if d + lanes <= n {
        s0 = s0.plusProduct(a.vector(at: d), b.vector(at: d))
        d += lanes
    }
    var s = T.sum(s0 + s1)
    while d < n { s += a[d] * b[d]; d += 1 }
    return s
}

/// y[d] += alpha·x[d].
@inlinable
public func axpy<T: KernelScalar>(_ alpha: T, _ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) {
    let lanes = T.Vector.scalarCount
    let a = T.Vector(repeating: alpha)
    var d = 0
    while d + lanes <= n {
        y.store(UnsafePointer(y).vector(at: d).plusProduct(a, x.vector(at: d)), at: d)
        d += lanes
    }
    while d < n { y[d] += alpha * x[d]; d += 1 }
}

/// y[d] = alpha·y[d].
@inlinable
public func scale<T: KernelScalar>(_ alpha: T, _ y: UnsafeMutablePointer<T>, _ n: Int) {
    let lanes = T.Vector.scalarCount
    let a = T.Vector(repeating: alpha)
    var d = 0
    while d + lanes <= n {
        y.store(UnsafePointer(y).vector(at: d) * a, at: d)
        d += lanes
    }
    while d < n { y[d] *= alpha; d += 1 }
}

/// exponential[e] = e^{2c·x[e]} for e in 0..<count, NaN where that would not be a finite
/// normal number (see `TanhRows`).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func tanhExponentials<T: KernelScalar>(_ x: UnsafePointer<T>, _ c: T, _ count: Int,
                                              into exponential: UnsafeMutablePointer<T>) {
    let chunk = 1 << 14
    let job = Buffers(x: x, exponential: exponential)
    parallelFor((count + chunk - 1) / chunk) { k in
        let start = k * chunk
        tanhExponentialsRun(job.x + start, c, min(chunk, count - start), into: job.exponential + start)
    }
}

/// The pointers of one `tanhExponentials` call, for its workers.
private struct Buffers<T>: @unchecked Sendable {
    let x: UnsafePointer<T>, exponential: UnsafeMutablePointer<T>
}

@inline(__always)
private func tanhExponentialsRun<T: KernelScalar>(_ x: UnsafePointer<T>, _ c: T, _ count: Int,
                                                  into exponential: UnsafeMutablePointer<T>) {
    let lanes = T.Vector.scalarCount
    let twice = T.Vector(repeating: 2 * c)
    var e = 0
    while e + lanes <= count {
        let y = twice * x.vector(at: e)
        exponential.store(T.exp(y), at: e)
        e += lanes
    }
    if e < count {  // the tail through the same vector e^x: an element's bits do not depend on where it sits
        var y = T.Vector()
        for t in e..<count { y[t - e] = x[t] }
        let tail = T.exp(twice * y)
        for t in e..<count { exponential[t] = tail[t - e] }
    }
    // Checked on the results, not on y: the vector e^y is 0 from −708 in float64, inside the
    // range −log(smallest normal) = −708.4 would allow. (A scalar pass: comparisons of
    // generic SIMD vectors compile lane by lane.)
    for e in 0..<count where !(exponential[e] >= T.leastNormalMagnitude && exponential[e] <= T.greatestFiniteMagnitude) {
        exponential[e] = .nan
    }
}

/// x[e] *= sigmoid(gate[e]) for e in 0..<count — the gate of gated attention.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func multiplyBySigmoid<T: KernelScalar>(_ x: UnsafeMutablePointer<T>, _ gate: UnsafePointer<T>, _ count: Int) {
    for e in 0..<count { x[e] *= T.sigmoid(gate[e]) }
}

/// The larger of a and b, NaN if either is NaN (so NaN logits reach the output as Keras's do).
@inlinable @inline(__always)
func maxPropagatingNaN<T: KernelScalar>(_ a: T, _ b: T) -> T {
    if a.isNaN || b.isNaN { return .nan }
    return a < b ? b : a
}

/// out[e · stride + t] = (rows + t · rowStride)[e] for t < count, e < width: rows into
/// columns, by square blocks of one vector per row (`KernelScalar.transposeBlock`), the
/// edges element by element; the next block's rows are prefetched.
@inline(__always)
func transpose<T: KernelScalar>(count: Int, width: Int, rows: UnsafePointer<T>, rowStride: Int,
                                into out: UnsafeMutablePointer<T>, stride: Int) {
    let side = T.Vector.scalarCount
    func elementwise(_ keys: Range<Int>, _ elements: Range<Int>) {
        for t in keys { for e in elements { out[e * stride + t] = rows[t * rowStride + e] } }
    }
    var t = 0
    while t + side <= count {
        for next in (t + side)..<min(t + 2 * side, count) { prefetch(rows + next * rowStride, width) }
        var e = 0
        while e + side <= width {
            T.transposeBlock(rows + t * rowStride + e, stride: rowStride, into: out + e * stride + t, outStride: stride)
            e += side
        }
        elementwise(t..<t + side, e..<width)
        t += side
    }
    elementwise(t..<count, 0..<width)
}

/// What a prefetched line is for: this phase of the work (towards L1), or a later one (the
/// outer caches), to be read or to be written.
enum PrefetchHint {
    case now, ahead, aheadToWrite
}

/// Prefetches the cache lines of the `bytes` bytes at x.
@inline(__always)
func prefetch(_ x: UnsafeRawPointer, bytes: Int, _ hint: PrefetchHint = .now) {
    @inline(__always) func touch(_ address: UnsafeRawPointer) {
        switch hint {
        case .now: cache_prefetch(address)
        case .ahead: cache_prefetch_ahead(address)
        case .aheadToWrite: cache_prefetch_ahead_to_write(address)
        }
    }
    guard bytes > 0 else { return }
    for byte in Swift.stride(from: 0, to: bytes, by: 64) { touch(x + byte) }
    touch(x + bytes - 1)
}

/// Prefetches the cache lines of x[0 ..< n].
@inline(__always)
func prefetch<T>(_ x: UnsafePointer<T>, _ n: Int) {
    prefetch(UnsafeRawPointer(x), bytes: n &* MemoryLayout<T>.stride)
}
