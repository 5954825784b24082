#if canImport(Glibc)
import Glibc
#endif

/// Large scratch blocks kept between calls. malloc serves a block above its mmap threshold
/// (128 KiB, adapting) from fresh pages, which the kernel faults in and zeroes on every call:
/// in a MultiHeadAttention call (B 8, T 256, dim 512, Zen 4 VM) that was 12 of 44 ms.
/// Workspaces, and the attention kernel's per-worker tiles (`withScratch`), take blocks of
/// at least `minimumBytes` from here and give them back when their call ends; the cache
/// keeps the most recently returned, at most `capacityBytes` in all and `capacityBlocks`
/// blocks (256 MiB and 256 for the shared cache), and frees the rest. A request takes the
/// smallest block that holds it, if that block is at most twice its size (a small call does
/// not pin a large block). One mutex guards it; fork handlers hold it across fork(), so the
/// child's copy is whole.
public final class ScratchCache: @unchecked Sendable {
    public static let shared: ScratchCache = {
        let cache = ScratchCache(capacityBytes: 256 << 20, capacityBlocks: 256)
        pthread_atfork({ pthread_mutex_lock(ScratchCache.shared.mutex) },
                       { pthread_mutex_unlock(ScratchCache.shared.mutex) },
                       { pthread_mutex_unlock(ScratchCache.shared.mutex) })
        return cache
    }()
    /// The smallest block a workspace takes from the cache.
    public static let minimumBytes = 1 << 16

    private struct Block {
        let pointer: UnsafeMutableRawPointer
        let bytes: Int
    }

    let capacityBytes: Int, capacityBlocks: Int
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var blocks: [Block] = []  // oldest first
    private var cachedBytes = 0

    init(capacityBytes: Int, capacityBlocks: Int) {
        (self.capacityBytes, self.capacityBlocks) = (capacityBytes, capacityBlocks)
        pthread_mutex_init(mutex, nil)
        blocks.reserveCapacity(capacityBlocks + 1)
    }

    /// The blocks kept (a test's view).
    var cached: (blocks: Int, bytes: Int) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return (blocks.count, cachedBytes)
    }

    /// A cached block of at least `bytes` (and at most 2·bytes), with its size; nil if none,
    /// or if `bytes` is below `minimumBytes` (malloc serves those well).
    public func take(_ bytes: Int) -> (pointer: UnsafeMutableRawPointer, bytes: Int)? {
        guard bytes >= Self.minimumBytes else { return nil }
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        var best: Int?
        for (i, block) in blocks.enumerated() where block.bytes >= bytes && block.bytes / 2 <= bytes {
            if best.map({ block.bytes < blocks[$0].bytes }) ?? true { best = i }
        }
        guard let best else { return nil }
        let block = blocks.remove(at: best)
        cachedBytes -= block.bytes
        return (block.pointer, block.bytes)
    }

    /// Keeps a block of `bytes` (from malloc) for a later `take`, freeing the oldest blocks
    /// beyond the capacity; a block below `minimumBytes` is freed at once.
    public func give(_ pointer: UnsafeMutableRawPointer, bytes: Int) {
        guard bytes >= Self.minimumBytes else {
            free(pointer)
            return
        }
        var evicted: [UnsafeMutableRawPointer] = []
        pthread_mutex_lock(mutex)
        blocks.append(Block(pointer: pointer, bytes: bytes))
        cachedBytes += bytes
        while cachedBytes > capacityBytes || blocks.count > capacityBlocks {
            let oldest = blocks.removeFirst()
            cachedBytes -= oldest.bytes
            evicted.append(oldest.pointer)
        }
        pthread_mutex_unlock(mutex)
        for p in evicted { free(p) }
    }

    deinit {
        for block in blocks { free(block.pointer) }
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
}

/// body(buffer of `count` elements, uninitialised): a block of `ScratchCache` when it is
/// large, else (or if malloc refuses) one from the Swift allocator, freed on return.
func withScratch<T, R>(of _: T.Type, _ count: Int, _ body: (UnsafeMutablePointer<T>) -> R) -> R {
    let (bytes, overflow) = max(1, count).multipliedReportingOverflow(by: MemoryLayout<T>.stride)
    if !overflow, bytes >= ScratchCache.minimumBytes,
       let block = ScratchCache.shared.take(bytes) ?? malloc(bytes).map({ ($0, bytes) }) {
        defer { ScratchCache.shared.give(block.0, bytes: block.1) }
        return body(block.0.bindMemory(to: T.self, capacity: count))
    }
    let buffer = UnsafeMutablePointer<T>.allocate(capacity: max(1, count))
    defer { buffer.deallocate() }
    return body(buffer)
}
