#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import AttentionKernels

/// The policy of `ScratchCache`: the smallest kept block that holds a request and is at most
/// twice its size; the oldest blocks freed past the capacity in bytes or blocks.
@Suite struct ScratchCacheTests {
    private func block(_ bytes: Int) -> UnsafeMutableRawPointer {
        guard let p = malloc(bytes) else { fatalError("malloc failed in a test") }
        return p
    }

    @Test func takesTheSmallestBlockThatFits() {
        let cache = ScratchCache(capacityBytes: 1 << 30, capacityBlocks: 8)
        let (a, b, c) = (block(1000), block(3000), block(1500))
        cache.give(a, bytes: 1000)
        cache.give(b, bytes: 3000)
        cache.give(c, bytes: 1500)
        #expect(cache.take(1200).map { $0.pointer == c && $0.bytes == 1500 } == true)
        #expect(cache.take(1001) == nil)  // 3000 is more than twice 1001
        #expect(cache.take(900).map { $0.pointer == a } == true)
        #expect(cache.take(1600).map { $0.pointer == b } == true)
        #expect(cache.cached.blocks == 0 && cache.cached.bytes == 0)
        for p in [a, b, c] { free(p) }
    }

    @Test func evictsTheOldestPastItsCapacity() {
        let cache = ScratchCache(capacityBytes: 5000, capacityBlocks: 3)
        let blocks = (0..<4).map { _ in block(1000) }
        for p in blocks { cache.give(p, bytes: 1000) }  // 4 blocks > 3: the first is freed
        #expect(cache.cached.blocks == 3 && cache.cached.bytes == 3000)
        cache.give(block(2500), bytes: 2500)  // 5500 bytes > 5000: the next oldest goes
        #expect(cache.cached.blocks == 3 && cache.cached.bytes == 4500)
        let taken = cache.take(1000)
        #expect(taken.map { $0.pointer == blocks[2] || $0.pointer == blocks[3] } == true)
        if let taken { free(taken.pointer) }
        cache.give(block(6000), bytes: 6000)  // larger than the capacity: freed with the rest
        #expect(cache.cached.bytes <= 5000)
    }
}
