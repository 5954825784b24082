import Dispatch
import Synchronization

/// The number of threads one kernel call may use; results never depend on it.
public enum Threads {
    private static let count = Atomic<Int>(defaultCount())

    /// Threads used per call (≥ 1).
    public static var current: Int { count.load(ordering: .relaxed) }

    /// Sets the threads used per call; values below 1 are clamped to 1.
    public static func set(_ n: Int) { count.store(max(1, n), ordering: .relaxed) }

    private static func defaultCount() -> Int {
        #if canImport(Glibc)
        let online = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        return max(1, online)
        #else
        return 1
        #endif
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Runs `body(i)` for every i in 0..<count, spread over `Threads.current` workers in
/// contiguous chunks whose sizes differ by at most one (worker w starts at
/// w·⌊count/workers⌋ + min(w, count mod workers), a form with no product to overflow).
/// Runs inline when there is one worker or one item.
@inlinable
public func parallelFor(_ count: Int, _ body: @Sendable (Int) -> Void) {
    let workers = min(Threads.current, count)
    if workers <= 1 {
        for i in 0..<count { body(i) }
        return
    }
    let (base, extra) = count.quotientAndRemainder(dividingBy: workers)
    DispatchQueue.concurrentPerform(iterations: workers) { w in
        let lo = w * base + min(w, extra)
        for i in lo..<lo + base + (w < extra ? 1 : 0) { body(i) }
    }
}
