import AttentionKernels
#if canImport(Glibc)
import Glibc
#endif

/// Scratch buffers for one call, released when the workspace goes away: large ones go back
/// to `ScratchCache` for the next call, the others are freed. Sizes are checked for overflow
/// and against physical memory, and allocation failure is an error, never a trap.
final class Workspace<T: KernelScalar> {
    private var buffers: [(pointer: UnsafeMutableRawPointer, bytes: Int)] = []

    /// A buffer of `count` elements of `T`, uninitialised.
    func buffer(_ count: Int, _ what: String) throws(AttentionError) -> UnsafeMutablePointer<T> {
        try allocate(count, elementSize: MemoryLayout<T>.stride, what).assumingMemoryBound(to: T.self)
    }

    /// A buffer of `count` elements of `T`, zeroed.
    func zeros(_ count: Int, _ what: String) throws(AttentionError) -> UnsafeMutablePointer<T> {
        let p = try buffer(count, what)
        p.update(repeating: 0, count: count)
        return p
    }

    /// A buffer of `count` bytes, uninitialised.
    func bytes(_ count: Int, _ what: String) throws(AttentionError) -> UnsafeMutablePointer<UInt8> {
        try allocate(count, elementSize: 1, what).assumingMemoryBound(to: UInt8.self)
    }

    /// `AttentionKernels.gemm` of m × k by k × n, with its packed panels in this workspace.
    func gemm(m: Int, n: Int, k: Int, _ op: GemmOperands<T>) throws(AttentionError) {
        if m == 1 {  // one row (a decoder's step): B streamed once, no packing; the same bits
            gemv([GemvProduct(x: op.a, b: op.b, ldb: op.ldb, y: op.c, bias: op.bias, accumulate: op.accumulate,
                              n: n, k: k)])
            return
        }
        let plan = GemmPlan<T>(m: m, n: n, k: k)
        AttentionKernels.gemm(plan, op, scratch: try buffer(plan.scratchCount, "a matrix product's packed panels"))
    }

    /// The plan of an `attentionBackward` call and its scratch in this workspace.
    func backwardPlan(_ shape: AttentionShape, score: ScoreFunction<T>,
                      bias: LogitBias<T>?) throws(AttentionError) -> (BackwardPlan<T>, UnsafeMutablePointer<T>) {
        guard let plan = BackwardPlan(shape, score: score, bias: bias) else {
            throw .shape("the attention backward's scratch does not fit in 64 bits")
        }
        return (plan, try buffer(plan.scratchCount, "the attention backward's tiles"))
    }

    /// `allocateMemory`'s block, or a cached one for a large request.
    private func allocate(_ count: Int, elementSize: Int, _ what: String) throws(AttentionError) -> UnsafeMutableRawPointer {
        let (bytes, overflow) = max(1, count).multipliedReportingOverflow(by: elementSize)
        if !overflow, let block = ScratchCache.shared.take(bytes) {
            buffers.append(block)
            return block.pointer
        }
        let p = try allocateMemory(count, elementSize: elementSize, what)
        buffers.append((p, bytes))
        return p
    }

    deinit { for (p, bytes) in buffers { ScratchCache.shared.give(p, bytes: bytes) } }
}

/// This machine's physical memory in bytes (sysconf: pages × page size; Int.max if unknown).
let physicalMemory: Int = {
    #if canImport(Glibc)
    let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
    if pages > 0, pageSize > 0 {
        let (bytes, overflow) = pages.multipliedReportingOverflow(by: pageSize)
        if !overflow { return bytes }
    }
    #endif
    return Int.max
}()

/// Refuses, as outOfMemory, a request of `bytes` for `what` larger than physical memory: it
/// could only fail, or be granted by overcommit and get the process killed once touched.
func checkMemoryRequest(_ bytes: Int, _ what: String) throws(AttentionError) {
    guard bytes > physicalMemory else { return }
    func gib(_ n: Int) -> String { "\((Double(n) / 0x1p30 * 10).rounded() / 10) GiB" }
    throw AttentionError(.outOfMemory, "cannot allocate \(bytes) bytes (\(gib(bytes))) for \(what): more than "
                         + "this machine's \(physicalMemory) bytes (\(gib(physicalMemory))) of physical memory")
}

/// `malloc` of max(1, count) × elementSize bytes for `what`, uninitialised; the caller frees it.
/// A size that overflows is a shape error; one refused by `checkMemoryRequest`, or that malloc
/// cannot give, is outOfMemory.
func allocateMemory(_ count: Int, elementSize: Int, _ what: String) throws(AttentionError) -> UnsafeMutableRawPointer {
    let (size, overflow) = max(1, count).multipliedReportingOverflow(by: elementSize)
    guard !overflow else { throw .shape("\(what) needs more bytes than fit in 64 bits") }
    try checkMemoryRequest(size, what)
    guard let p = malloc(size) else {
        throw AttentionError(.outOfMemory, "cannot allocate \(size) bytes for \(what)")
    }
    return p
}
