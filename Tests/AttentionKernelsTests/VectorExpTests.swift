import Testing
@testable import AttentionKernels
#if canImport(Glibc)
import Glibc
#endif

/// The SIMD e^x and tanh against libm, over the whole useful range and its edges.
@Suite struct VectorExpTests {
    static let floats: [Float] = stride(from: -100, through: 100, by: 0.0137).map { Float($0) }
        + [0, -0, 1e-8, -1e-8, 87.9, -87.5, -87.7, -1e9, -.infinity]

    static func lanes<V: SIMD>(_ values: [V.Scalar], _: V.Type) -> [V] {
        stride(from: 0, to: values.count, by: V.scalarCount).map { start in
            var v = V()
            for l in 0..<V.scalarCount { v[l] = values[min(start + l, values.count - 1)] }
            return v
        }
    }

    @Test func floatExpWithinTwoUlp() {
        for v in Self.lanes(Self.floats, FloatVector.self) {
            let e = Float.exp(v)
            for l in 0..<FloatVector.scalarCount {
                let want = expf(v[l])
                if v[l] > 88 { #expect(e[l] == .infinity); continue }
                if want < Float.leastNormalMagnitude { #expect(e[l] == 0 || abs(e[l] - want) < 1e-37); continue }
                #expect(abs(e[l] - want) <= 2 * want.ulp, "exp(\(v[l])) = \(e[l]), libm \(want)")
            }
        }
        #expect(Float.exp(FloatVector(repeating: .nan))[0].isNaN)
        #expect(Float.exp(FloatVector(repeating: 1e9))[0] == .infinity)
    }

    @Test func doubleExpWithinTwoUlp() {
        for v in Self.lanes(Self.floats.map(Double.init) + [-700, 700, 708.9, 1e-300, 1e9], DoubleVector.self) {
            let e = Double.exp(v)
            for l in 0..<DoubleVector.scalarCount {
                let want = Glibc.exp(v[l])
                if v[l] > 709 { #expect(e[l] == .infinity); continue }
                if want < Double.leastNormalMagnitude { #expect(e[l] == 0 || abs(e[l] - want) < 1e-307); continue }
                #expect(abs(e[l] - want) <= 2 * want.ulp, "exp(\(v[l])) = \(e[l]), libm \(want)")
            }
        }
        #expect(Double.exp(DoubleVector(repeating: .nan))[0].isNaN)
    }

    /// tanh is used summed over a feature axis, so its bound is absolute.
    @Test func tanhWithinAbsoluteBound() {
        for v in Self.lanes(Self.floats, FloatVector.self) {
            let t = Float.tanh(v)
            for l in 0..<FloatVector.scalarCount { #expect(abs(t[l] - tanhf(v[l])) <= 2e-7, "tanh(\(v[l]))") }
        }
        for v in Self.lanes(Self.floats.map(Double.init), DoubleVector.self) {
            let t = Double.tanh(v)
            for l in 0..<DoubleVector.scalarCount { #expect(abs(t[l] - Glibc.tanh(v[l])) <= 4e-16, "tanh(\(v[l]))") }
        }
        #expect(Float.tanh(FloatVector(repeating: .nan))[0].isNaN)
    }
}
