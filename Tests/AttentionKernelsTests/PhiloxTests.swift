import Testing
@testable import AttentionKernels

@Suite struct PhiloxTests {
    /// Random123's known-answer vectors for philox4x32_10.
    @Test func knownAnswers() {
        let zero = Philox4x32(seed: 0).block(0, 0, 0, 0)
        #expect([zero.0, zero.1, zero.2, zero.3] == [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8])
        let ones = Philox4x32(seed: 0xffff_ffff_ffff_ffff).block(0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff)
        #expect([ones.0, ones.1, ones.2, ones.3] == [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd])
        let pi = Philox4x32(seed: 0x299f_31d0_a409_3822).block(0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344)
        #expect([pi.0, pi.1, pi.2, pi.3] == [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1])
    }

    @Test func dropoutKeepsAboutOneMinusRate() {
        let mask = DropoutMask(rate: 0.3, seed: 42, stream: 7)
        let kept = (0..<100_000).filter { mask.keeps($0) }.count
        #expect(abs(Double(kept) / 100_000 - 0.7) < 0.01)
        let other = DropoutMask(rate: 0.3, seed: 42, stream: 8)
        #expect((0..<1000).contains { mask.keeps($0) != other.keeps($0) })
    }
}
