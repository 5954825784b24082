import AttentionKernels
#if canImport(Glibc)
import Glibc
#endif

/// Scratch buffers for one call, freed when the workspace goes away. Sizes are checked for
/// overflow and allocation failure is an error, never a trap.
final class Workspace<T: KernelScalar> {
    private var buffers: [UnsafeMutableRawPointer] = []

    /// A buffer of `count` elements of `T`, uninitialised.
    func buffer(_ count: Int, _ what: String) throws(AttentionError) -> UnsafeMutablePointer<T> {
        try allocate(count, elementSize: MemoryLayout<T>.stride, what).assumingMemoryBound(to: T.self)
    }

    /// A buffer of `count` bytes, uninitialised.
    func bytes(_ count: Int, _ what: String) throws(AttentionError) -> UnsafeMutablePointer<UInt8> {
        try allocate(count, elementSize: 1, what).assumingMemoryBound(to: UInt8.self)
    }

    private func allocate(_ count: Int, elementSize: Int, _ what: String) throws(AttentionError) -> UnsafeMutableRawPointer {
        let (size, overflow) = max(1, count).multipliedReportingOverflow(by: elementSize)
        guard !overflow else { throw .shape("\(what) needs more bytes than fit in 64 bits") }
        guard let p = malloc(size) else {
            throw AttentionError(.outOfMemory, "cannot allocate \(size) bytes for \(what)")
        }
        buffers.append(p)
        return p
    }

    deinit { for p in buffers { free(p) } }
}
