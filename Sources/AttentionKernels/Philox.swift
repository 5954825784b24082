/// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011):
/// a counter-based generator, so the random number of element f depends only on
/// (key, counter(f)) — the same for any thread count or tiling.
public struct Philox4x32: Sendable {
    public let key0: UInt32
    public let key1: UInt32

    /// Key words from a 64-bit seed: (low 32 bits, high 32 bits).
    @inlinable public init(seed: UInt64) {
        key0 = UInt32(truncatingIfNeeded: seed)
        key1 = UInt32(truncatingIfNeeded: seed >> 32)
    }

    /// The four output words for one 128-bit counter.
    @inlinable
    public func block(_ c0: UInt32, _ c1: UInt32, _ c2: UInt32, _ c3: UInt32) -> (UInt32, UInt32, UInt32, UInt32) {
        var (x0, x1, x2, x3) = (c0, c1, c2, c3)
        var (k0, k1) = (key0, key1)
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(x0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(x2)
            let hi0 = UInt32(truncatingIfNeeded: p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
            let hi1 = UInt32(truncatingIfNeeded: p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
            (x0, x1, x2, x3) = (hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0)
            k0 = k0 &+ 0x9E37_79B9
            k1 = k1 &+ 0xBB67_AE85
        }
        return (x0, x1, x2, x3)
    }

    /// A uniform number in [0, 1) with 24 random bits, for element `index` of stream `stream`:
    /// (word 0 of block(index, index >> 32, stream, stream >> 32)) >> 8, times 2⁻²⁴.
    @inlinable
    public func uniform(index: UInt64, stream: UInt64) -> Double {
        let w = block(UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32),
                      UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32)).0
        return Double(w >> 8) * 0x1p-24
    }
}

/// Dropout on attention weights: element f of the scores tensor is kept iff
/// `uniform(f, stream) >= rate`, and kept elements are divided by 1 − rate.
public struct DropoutMask: Sendable {
    public let rate: Double
    public let generator: Philox4x32
    public let stream: UInt64

    public init(rate: Double, seed: UInt64, stream: UInt64) {
        self.rate = rate
        self.generator = Philox4x32(seed: seed)
        self.stream = stream
    }

    /// Whether the element with flat scores index `index` is kept.
    @inlinable @inline(__always)
    public func keeps(_ index: Int) -> Bool {
        generator.uniform(index: UInt64(index), stream: stream) >= rate
    }
}
