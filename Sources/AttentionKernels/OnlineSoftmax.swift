/// The online softmax (FlashAttention's recurrence), written once for every forward path:
/// the state of a softmax over the keys seen so far — a shift m (the running max, or a value
/// close below it) and l = Σ_j e^(x_j − m) — that absorbs tiles of logits or single logits,
/// and merges with the state of another range of keys. The unnormalised output
/// o = Σ_j e^(x_j − m)·v_j belongs to the caller: each step returns the factor by which o
/// must be rescaled (1 when the shift stays), and the output is finally o · (1 / l).
///
///     m' = max(m, x),  l' = l·e^(m − m') + Σ_j e^(x_j − m'),  o' = o·e^(m − m') + Σ_j e^(x_j − m')·v_j
///
/// Lazy rescaling: the shift stays while the new weights e^(x − m) stay below e^20 (exact up
/// to rounding whatever the tile's own max); only a logit past m + 20 takes a new shift.
/// Excluded keys carry x = −∞ (weight 0). A NaN logit makes the sum NaN.
struct OnlineSoftmax<T: KernelScalar> {
    /// The shift, −∞ before any kept key.
    var shift = -T.infinity
    /// Σ_j e^(x_j − shift) over the kept keys seen.
    var sum = T.zero

    /// How far above the shift a logit may be before the shift moves.
    @inline(__always) static var slack: T { 20 }

    /// True when no key was kept (no logit other than −∞ seen, and no NaN).
    var keptNone: Bool { sum == 0 && !shift.isNaN }

    /// log Σ_j e^(x_j): what the backward recomputes the weights from.
    var logSumExp: T { shift + T.log(sum) }

    /// Moves the shift to cover a logit (or a tile's max) `x`; returns o's rescaling factor.
    @inline(__always)
    private mutating func cover(_ x: T) -> T {
        if shift > -T.infinity && x <= shift + Self.slack { return 1 }
        let newShift = maxPropagatingNaN(shift, x)
        var factor: T = 1
        if newShift != shift && sum != 0 {
            factor = T.exp(shift - newShift)
            sum *= factor
        }
        shift = newShift
        return factor
    }

    /// Absorbs the `vectors` whole vectors of logits at x (excluded keys −∞): x becomes the
    /// weights e^(x − shift). Returns o's rescaling factor.
    @inline(__always)
    mutating func absorb(_ x: UnsafeMutablePointer<T>, vectors: Int) -> T {
        absorb(x, vectors: vectors, maximum: T.maximum(UnsafePointer(x), vectors: vectors))
    }

    /// `absorb` given the vectors' largest logit (`T.maximum`), taken beforehand.
    @inline(__always)
    mutating func absorb(_ x: UnsafeMutablePointer<T>, vectors: Int, maximum tileMax: T) -> T {
        let factor = cover(tileMax)
        sum += T.exponentiate(x, vectors: vectors, minus: shift)
        return factor
    }

    /// Absorbs one logit x; returns o's rescaling factor and x's weight e^(x − shift).
    @inline(__always)
    mutating func absorb(_ x: T) -> (factor: T, weight: T) {
        let factor = cover(x)
        let weight = T.exp(x - shift)
        sum += weight
        return (factor, weight)
    }

    /// Merges the state of another range of keys; returns the factors that bring this
    /// state's o and the other's to the merged shift (o = o·mine + o_other·theirs).
    mutating func merge(_ other: OnlineSoftmax) -> (mine: T, theirs: T) {
        guard other.sum != 0 else { return (1, 0) }
        guard sum != 0 else {
            self = other
            return (0, 1)
        }
        let newShift = maxPropagatingNaN(shift, other.shift)
        let mine = T.exp(shift - newShift), theirs = T.exp(other.shift - newShift)
        sum = sum * mine + other.sum * theirs
        shift = newShift
        return (mine, theirs)
    }
}
