/// e^x and tanh(x) on whole SIMD registers: x = k·ln2 + r with |r| ≤ ln2/2 (k rounded by one
/// multiply-add, r by two with ln2 split in a high and a low part), e^r by a polynomial —
/// for Float of degree 6 fitted to e^r's relative error on |r| ≤ ln2/2 (one multiply-add
/// fewer than Taylor's degree 7, at most 1.0 ulp from e^x over [−87, 20] against 0.93),
/// for Double Taylor's of degree 12 (truncation below 1 ulp) — and 2^k built in the
/// exponent bits.
/// Domain: below −87.6 (Float) / −708 (Double) the result is 0 (such x, −∞ among them, go
/// through the arithmetic unclamped and are replaced at the end), above 88 / 709 it is +∞
/// (libm's last ulps of range are not needed by attention, whose exponents are ≤ 0); a NaN
/// stays NaN through the arithmetic (the clamps keep it).
/// tanh(x) = 1 − 2/(e^{2x} + 1), odd-symmetric, and ±1 beyond where it rounds to ±1.
/// `exponentiate` (the softmax's) skips the overflow side: its arguments x − shift are at most
/// the online softmax's slack (20) or, in the backward, about 0.

extension Float {
    @inlinable
    public static func exp(_ x: FloatVector) -> FloatVector { expInline(x) }

    /// `exponentiate` of KernelScalar, with e^x inlined.
    @inlinable
    public static func exponentiate(_ x: UnsafeMutablePointer<Float>, vectors: Int, minus shift: Float) -> Float {
        let raw = UnsafeMutableRawPointer(x), s = FloatVector(repeating: shift)
        var total = FloatVector()
        for v in 0..<vectors {
            let p = expInline(raw.loadUnaligned(fromByteOffset: v * MemoryLayout<FloatVector>.size, as: FloatVector.self) - s, overflows: false)
            raw.storeBytes(of: p, toByteOffset: v * MemoryLayout<FloatVector>.size, as: FloatVector.self)
            total += p
        }
        return sum(total)
    }

    @inlinable @inline(__always)
    static func expInline(_ x: FloatVector, overflows: Bool = true) -> FloatVector {
        let clamped = overflows ? x.replacing(with: 88, where: x .> 88) : x
        // k = round(x·log2 e): adding 1.5·2²³ rounds to an integer in the low mantissa bits.
        let shifted = FloatVector(repeating: 12_582_912).plusProduct(clamped, FloatVector(repeating: 1.442_695_04))
        let k = shifted - 12_582_912
        let r = clamped.plusProduct(k, FloatVector(repeating: -0.693_145_751_953_125))
            .plusProduct(k, FloatVector(repeating: -1.428_606_765_330_187e-6))
        var p = FloatVector(repeating: 0.001_383_683_4)
        p = FloatVector(repeating: 0.008_374_816).addingProduct(p, r)
        p = FloatVector(repeating: 0.041_668_225).addingProduct(p, r)
        p = FloatVector(repeating: 0.166_664_2).addingProduct(p, r)
        p = FloatVector(repeating: 0.499_999_9).addingProduct(p, r)
        p = FloatVector(repeating: 1).addingProduct(p, r)
        p = FloatVector(repeating: 1).addingProduct(p, r)
        let bits = (unsafeBitCast(shifted, to: FloatBits.self) &- (0x4B40_0000 - 127)) &<< 23
        var result = p * unsafeBitCast(bits, to: FloatVector.self)
        result.replace(with: 0, where: x .< -87.6)
        if overflows { result.replace(with: .infinity, where: x .> 88) }
        return result
    }

    @inlinable
    public static func tanh(_ x: FloatVector) -> FloatVector {
        let a = x.replacing(with: -x, where: x .< 0)
        let e = exp(2 * a.replacing(with: 10, where: a .> 10))
        var t = 1 - 2 / (e + 1)
        t.replace(with: -t, where: x .< 0)
        t.replace(with: x, where: a .< 1e-4)
        return t
    }
}

extension Double {
    @inlinable
    public static func exp(_ x: DoubleVector) -> DoubleVector { expInline(x) }

    /// `exponentiate` of KernelScalar, with e^x inlined.
    @inlinable
    public static func exponentiate(_ x: UnsafeMutablePointer<Double>, vectors: Int, minus shift: Double) -> Double {
        let raw = UnsafeMutableRawPointer(x), s = DoubleVector(repeating: shift)
        var total = DoubleVector()
        for v in 0..<vectors {
            let p = expInline(raw.loadUnaligned(fromByteOffset: v * MemoryLayout<DoubleVector>.size, as: DoubleVector.self) - s, overflows: false)
            raw.storeBytes(of: p, toByteOffset: v * MemoryLayout<DoubleVector>.size, as: DoubleVector.self)
            total += p
        }
        return sum(total)
    }

    @inlinable @inline(__always)
    static func expInline(_ x: DoubleVector, overflows: Bool = true) -> DoubleVector {
        let clamped = overflows ? x.replacing(with: 709, where: x .> 709) : x
        // k = round(x·log2 e): adding 1.5·2⁵² rounds to an integer in the low mantissa bits.
        let shifted = DoubleVector(repeating: 6_755_399_441_055_744).plusProduct(clamped, DoubleVector(repeating: 1.442_695_040_888_963_4))
        let k = shifted - 6_755_399_441_055_744
        let r = clamped.plusProduct(k, DoubleVector(repeating: -0.693_147_180_369_123_8))
            .plusProduct(k, DoubleVector(repeating: -1.908_214_929_270_587_7e-10))
        var p = DoubleVector(repeating: 1.0 / 6_227_020_800)
        p = DoubleVector(repeating: 1.0 / 479_001_600).addingProduct(p, r)
        p = DoubleVector(repeating: 1.0 / 39_916_800).addingProduct(p, r)
        p = DoubleVector(repeating: 1.0 / 3_628_800).addingProduct(p, r)
        p = DoubleVector(repeating: 1.0 / 362_880).addingProduct(p, r)
        p = DoubleVector(repeating: 1.0 / 40_320).addingProduct(p, r)
        p = DoubleVector(repeating: 1.0 / 5_040).addingProduct(p, r)
        p = DoubleVector(repeating: 1.0 / 720).addingProduct(p, r)
        p = DoubleVector(repeating: 1.0 / 120).addingProduct(p, r)
        p = DoubleVector(repeating: 1.0 / 24).addingProduct(p, r)
        p = DoubleVector(repeating: 1.0 / 6).addingProduct(p, r)
        p = DoubleVector(repeating: 0.5).addingProduct(p, r)
        p = DoubleVector(repeating: 1.0).addingProduct(p, r)
        p = DoubleVector(repeating: 1.0).addingProduct(p, r)
        let bits = (unsafeBitCast(shifted, to: DoubleBits.self) &- (0x4338_0000_0000_0000 - 1023)) &<< 52
        var result = p * unsafeBitCast(bits, to: DoubleVector.self)
        result.replace(with: 0, where: x .< -708)
        if overflows { result.replace(with: .infinity, where: x .> 709) }
        return result
    }

    @inlinable
    public static func tanh(_ x: DoubleVector) -> DoubleVector {
        let a = x.replacing(with: -x, where: x .< 0)
        let e = exp(2 * a.replacing(with: 20, where: a .> 20))
        var t = 1 - 2 / (e + 1)
        t.replace(with: -t, where: x .< 0)
        t.replace(with: x, where: a .< 1e-8)
        return t
    }
}

