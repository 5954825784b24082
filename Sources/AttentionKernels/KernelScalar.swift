#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import VectorShuffles

/// A floating-point type the kernels compute in (Float or Double), with the SIMD vector
/// that fills one AVX-512 register and the scalar transcendental functions the math needs.
public protocol KernelScalar: BinaryFloatingPoint, SIMDScalar, Sendable, Codable
where Vector.Scalar == Self, Vector: Sendable {
    /// One register of lanes: `FloatVector` or `DoubleVector` (512 or 256 bits by the CPU).
    associatedtype Vector: SIMD

    /// e^x.
    static func exp(_ x: Self) -> Self
    /// tanh(x).
    static func tanh(_ x: Self) -> Self
    /// 1 / (1 + e^-x).
    static func sigmoid(_ x: Self) -> Self
    /// √x.
    static func squareRoot(_ x: Self) -> Self
    /// log(x).
    static func log(_ x: Self) -> Self
    /// cos(x).
    static func cos(_ x: Self) -> Self
    /// e^x lane by lane (relative error below 2 ulp; 0 below the smallest normal result).
    static func exp(_ x: Vector) -> Vector
    /// tanh(x) lane by lane.
    static func tanh(_ x: Vector) -> Vector
    /// The sum of the lanes, added pairwise as a tree (halves, quarters, …), which keeps it
    /// in vector registers; `SIMD.sum()` adds the lanes one after another.
    static func sum(_ v: Vector) -> Self
    /// min(x, bound) lane by lane, NaN where x is NaN (`pointwiseMin` gives the bound there).
    static func minimum(_ x: Vector, _ bound: Self) -> Vector
    /// The largest element of the `vectors` whole vectors at x (`largest_*s` of
    /// VectorShuffles: lane-wise maxima, then halves compared down to one lane); a NaN may be
    /// passed over; −∞ for none.
    static func maximum(_ x: UnsafePointer<Self>, vectors: Int) -> Self
    /// x[e] ← e^(x[e] − shift) (as `exp`) on the `vectors` whole vectors at x; returns their sum.
    /// For x − shift ≤ 88 (NaN allowed): larger arguments do not saturate to +∞.
    /// Written once per type with e^x inlined: a generic loop taking e^x as a closure kept the
    /// closure a call and made the causal forward 40% slower.
    static func exponentiate(_ x: UnsafeMutablePointer<Self>, vectors: Int, minus shift: Self) -> Self
    /// out[j · outStride + i] = x[i · stride + j] for i, j < `Vector.scalarCount`: a square
    /// block of one vector per row transposed in registers.
    static func transposeBlock(_ x: UnsafePointer<Self>, stride: Int, into out: UnsafeMutablePointer<Self>,
                               outStride: Int)
}

#if ATTENTION_NARROW_VECTORS
/// A kernel vector: one 256-bit register, on CPUs with FMA but no 512-bit registers (the
/// AVX2 variant). A 512-bit type there is split in two, and the register tile's 16
/// accumulator vectors needed 32 of the 16 registers: it spilled in every step and the AVX2
/// kernels ran at 52% of that CPU's FMA peak.
public typealias FloatVector = SIMD8<Float>
public typealias DoubleVector = SIMD4<Double>
@usableFromInline typealias FloatBits = SIMD8<Int32>
@usableFromInline typealias DoubleBits = SIMD4<Int64>
#else
/// A kernel vector: one 512-bit register (or, without FMA, the same lanes split).
public typealias FloatVector = SIMD16<Float>
public typealias DoubleVector = SIMD8<Double>
@usableFromInline typealias FloatBits = SIMD16<Int32>
@usableFromInline typealias DoubleBits = SIMD8<Int64>
#endif

extension Float: KernelScalar {
    public typealias Vector = FloatVector
    public static func transposeBlock(_ x: UnsafePointer<Float>, stride: Int, into out: UnsafeMutablePointer<Float>,
                                      outStride: Int) {
        #if ATTENTION_NARROW_VECTORS
        transpose_float_8x8(x, stride, out, outStride)
        #else
        transpose_float_16x16(x, stride, out, outStride)
        #endif
    }
    @inlinable public static func exp(_ x: Float) -> Float { expf(x) }
    @inlinable public static func tanh(_ x: Float) -> Float { tanhf(x) }
    @inlinable public static func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }
    @inlinable public static func squareRoot(_ x: Float) -> Float { x.squareRoot() }
    @inlinable public static func log(_ x: Float) -> Float { logf(x) }
    @inlinable public static func cos(_ x: Float) -> Float { cosf(x) }
    @inlinable @inline(__always)
    public static func sum(_ v: FloatVector) -> Float {
        #if ATTENTION_NARROW_VECTORS
        let h8 = v
        #else
        let h16 = halves(v, SIMD8<Float>.self), h8 = h16.0 + h16.1
        #endif
        let h4 = halves(h8, SIMD4<Float>.self), h2 = halves(h4.0 + h4.1, SIMD2<Float>.self), h1 = h2.0 + h2.1
        return h1.x + h1.y
    }
    @inlinable @inline(__always)
    public static func minimum(_ x: FloatVector, _ bound: Float) -> FloatVector {
        x.replacing(with: bound, where: x .> bound)
    }
    @inline(__always)
    public static func maximum(_ x: UnsafePointer<Float>, vectors: Int) -> Float {
        #if ATTENTION_NARROW_VECTORS
        largest_float8s(x, vectors)
        #else
        largest_float16s(x, vectors)
        #endif
    }
}

extension Double: KernelScalar {
    public typealias Vector = DoubleVector
    public static func transposeBlock(_ x: UnsafePointer<Double>, stride: Int, into out: UnsafeMutablePointer<Double>,
                                      outStride: Int) {
        #if ATTENTION_NARROW_VECTORS
        transpose_double_4x4(x, stride, out, outStride)
        #else
        transpose_double_8x8(x, stride, out, outStride)
        #endif
    }
    @inlinable public static func exp(_ x: Double) -> Double { Glibc.exp(x) }
    @inlinable public static func tanh(_ x: Double) -> Double { Glibc.tanh(x) }
    @inlinable public static func sigmoid(_ x: Double) -> Double { 1 / (1 + Glibc.exp(-x)) }
    @inlinable public static func squareRoot(_ x: Double) -> Double { x.squareRoot() }
    @inlinable public static func log(_ x: Double) -> Double { Glibc.log(x) }
    @inlinable public static func cos(_ x: Double) -> Double { Glibc.cos(x) }
    @inlinable @inline(__always)
    public static func sum(_ v: DoubleVector) -> Double {
        #if ATTENTION_NARROW_VECTORS
        let h4 = v
        #else
        let h8 = halves(v, SIMD4<Double>.self), h4 = h8.0 + h8.1
        #endif
        let h2 = halves(h4, SIMD2<Double>.self), h1 = h2.0 + h2.1
        return h1.x + h1.y
    }
    @inlinable @inline(__always)
    public static func minimum(_ x: DoubleVector, _ bound: Double) -> DoubleVector {
        x.replacing(with: bound, where: x .> bound)
    }
    @inline(__always)
    public static func maximum(_ x: UnsafePointer<Double>, vectors: Int) -> Double {
        #if ATTENTION_NARROW_VECTORS
        largest_double4s(x, vectors)
        #else
        largest_double8s(x, vectors)
        #endif
    }
}

/// The low and high halves of v (`SIMD.lowHalf`/`highHalf` are generic getters the optimizer
/// leaves as calls; a bit cast is a register split).
@inlinable @inline(__always)
func halves<V: SIMD, Half: SIMD>(_ v: V, _: Half.Type) -> (Half, Half) {
    unsafeBitCast(v, to: (Half, Half).self)
}

extension SIMD where Scalar: FloatingPoint {
    /// self + a·b: one fused multiply-add where the target CPU has FMA; else a multiply and an
    /// add (a fused operation without the hardware is a library call per lane, ~50× slower).
    /// The register-blocked products and e^x's range reduction use it; the e^x polynomial keeps
    /// the exact `addingProduct`.
    @inlinable @inline(__always)
    public func plusProduct(_ a: Self, _ b: Self) -> Self {
        #if ATTENTION_NO_FMA
        return self + a * b
        #else
        return addingProduct(a, b)
        #endif
    }
}

extension UnsafePointer where Pointee: KernelScalar {
    /// The `Vector` of lanes starting at `self + offset` (no alignment needed).
    @inlinable @inline(__always)
    func vector(at offset: Int) -> Pointee.Vector {
        UnsafeRawPointer(self + offset).loadUnaligned(as: Pointee.Vector.self)
    }
}

extension UnsafeMutablePointer where Pointee: KernelScalar {
    /// Stores `v` at `self + offset` (no alignment needed).
    @inlinable @inline(__always)
    func store(_ v: Pointee.Vector, at offset: Int) {
        UnsafeMutableRawPointer(self + offset).storeBytes(of: v, as: Pointee.Vector.self)
    }
}
