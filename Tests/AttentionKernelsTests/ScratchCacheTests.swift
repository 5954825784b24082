#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import AttentionKernels

/// The policy of `ScratchCache`: the smallest kept block that holds a request and is at most
/// twice its size; the oldest blocks freed past the capacity in bytes or blocks; blocks
/// below `minimumBytes` neither taken nor kept. Sizes are in units of u = 128 bytes, so every
/// one of them is at least `minimumBytes`.
@Suite struct ScratchCacheTests {
    private let u = 128

    private func block(_ bytes: Int) -> UnsafeMutableRawPointer {
        guard let p = malloc(bytes) else { fatalError("malloc failed in a test") }
        return p
    }

    @Test func takesTheSmallestBlockThatFits() {
        let cache = ScratchCache(capacityBytes: 1 << 30, capacityBlocks: 8)
        let (a, b, c) = (block(1000 * u), block(3000 * u), block(1500 * u))
        cache.give(a, bytes: 1000 * u)
        cache.give(b, bytes: 3000 * u)
        cache.give(c, bytes: 1500 * u)
        #expect(cache.take(1200 * u).map { $0.pointer == c && $0.bytes == 1500 * u } == true)
        #expect(cache.take(1001 * u) == nil)  // 3000 · u is more than twice 1001 · u
        #expect(cache.take(900 * u).map { $0.pointer == a } == true)
        #expect(cache.take(1600 * u).map { $0.pointer == b } == true)
        #expect(cache.cached.blocks == 0 && cache.cached.bytes == 0)
        for p in [a, b, c] { free(p) }
    }

    @Test func evictsTheOldestPastItsCapacity() {
        let cache = ScratchCache(capacityBytes: 5000 * u, capacityBlocks: 3)
        let blocks = (0..<4).map { _ in block(1000 * u) }
        for p in blocks { cache.give(p, bytes: 1000 * u) }  // 4 blocks > 3: the first is freed
        #expect(cache.cached.blocks == 3 && cache.cached.bytes == 3000 * u)
        cache.give(block(2500 * u), bytes: 2500 * u)  // 5500 · u bytes > 5000 · u: the next oldest goes
        #expect(cache.cached.blocks == 3 && cache.cached.bytes == 4500 * u)
        let taken = cache.take(1000 * u)
        #expect(taken.map { $0.pointer == blocks[2] || $0.pointer == blocks[3] } == true)
        if let taken { free(taken.pointer) }
        cache.give(block(6000 * u), bytes: 6000 * u)  // larger than the capacity: freed with the rest
        #expect(cache.cached.bytes <= 5000 * u)
    }

    @Test func leavesSmallBlocksToMalloc() {
        #expect(900 * u >= ScratchCache.minimumBytes)
        let cache = ScratchCache(capacityBytes: 1 << 30, capacityBlocks: 8)
        cache.give(block(ScratchCache.minimumBytes - 1), bytes: ScratchCache.minimumBytes - 1)  // freed at once
        #expect(cache.cached.blocks == 0)
        let big = block(ScratchCache.minimumBytes)
        cache.give(big, bytes: ScratchCache.minimumBytes)
        #expect(cache.take(ScratchCache.minimumBytes - 1) == nil)  // small requests go to malloc
        #expect(cache.take(ScratchCache.minimumBytes).map { $0.pointer == big } == true)
        free(big)
    }
}
