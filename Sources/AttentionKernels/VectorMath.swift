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

/// sign[e] = ±1 (the sign of c·x[e]; +1 for zero) and complement[e] = 1 − |tanh(c·x[e])|
/// = 2 / (e^{2|c·x[e]|} + 1), for e in 0..<count (see `TanhRows`).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func tanhSignAndComplement<T: KernelScalar>(_ x: UnsafePointer<T>, _ c: T, _ count: Int,
                                                   sign: UnsafeMutablePointer<T>, complement: UnsafeMutablePointer<T>) {
    let chunk = 1 << 14
    let job = Buffers(x: x, sign: sign, complement: complement)
    parallelFor((count + chunk - 1) / chunk) { k in
        let start = k * chunk
        tanhSignAndComplementRun(job.x + start, c, min(chunk, count - start),
                                 sign: job.sign + start, complement: job.complement + start)
    }
}

/// The pointers of one `tanhSignAndComplement` call, for its workers.
private struct Buffers<T>: @unchecked Sendable {
    let x: UnsafePointer<T>, sign: UnsafeMutablePointer<T>, complement: UnsafeMutablePointer<T>
}

@inline(__always)
private func tanhSignAndComplementRun<T: KernelScalar>(_ x: UnsafePointer<T>, _ c: T, _ count: Int,
                                                       sign: UnsafeMutablePointer<T>, complement: UnsafeMutablePointer<T>) {
    let lanes = T.Vector.scalarCount
    let cv = T.Vector(repeating: c), two = T.Vector(repeating: 2), one = T.Vector(repeating: 1)
    var e = 0
    while e + lanes <= count {
        let t = cv * x.vector(at: e)
        let negative = t .< 0
        sign.store(one.replacing(with: -1, where: negative), at: e)
        complement.store(two / (T.exp(two * t.replacing(with: -t, where: negative)) + one), at: e)
        e += lanes
    }
    while e < count {
        let t = c * x[e]
        sign[e] = t < 0 ? -1 : 1
        complement[e] = 2 / (T.exp(2 * abs(t)) + 1)
        e += 1
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
