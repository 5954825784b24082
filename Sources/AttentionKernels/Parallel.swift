#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The number of threads one kernel call may use; results never depend on it.
public enum Threads {
    private static let count = Atomic<Int>(defaultCount())

    /// Threads used per call (≥ 1); a call uses at most `WorkerPool.maximumThreads` of them.
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

/// `items` split into `parts` contiguous, non-empty ranges whose sizes differ by at most one:
/// part p starts at p·⌊items/parts⌋ + min(p, items mod parts) (no product that can overflow).
/// Asking for more parts than items gives one part per item; no items give no parts.
public struct Partition: Sendable {
    public let items: Int
    /// min(requested, items), at least 1 when there are items, 0 when there are none.
    public let parts: Int
    @usableFromInline let base: Int, extra: Int

    public init(items: Int, parts requested: Int) {
        self.items = max(0, items)
        parts = self.items == 0 ? 0 : min(max(1, requested), self.items)
        (base, extra) = parts == 0 ? (0, 0) : self.items.quotientAndRemainder(dividingBy: parts)
    }

    /// The items of part p, for 0 ≤ p < parts.
    @inlinable
    public func range(_ p: Int) -> Range<Int> {
        let lo = p * base + min(p, extra)
        return lo..<(lo + base + (p < extra ? 1 : 0))
    }
}

/// Runs `body(i)` for every i in 0..<count: the items are split by `Partition` into one part
/// per worker (at most `Threads.current`), and the parts are run by the calling thread and
/// the pool's helpers. Runs inline with one worker or one item, and when the pool is busy
/// (another thread's call, or a call from inside a `body`).
public func parallelFor(_ count: Int, _ body: @Sendable (Int) -> Void) {
    let partition = Partition(items: count, parts: min(Threads.current, WorkerPool.maximumThreads))
    if partition.parts > 1, WorkerPool.shared.run(partition, body) { return }
    for i in 0..<partition.items { body(i) }
}

/// Runs `body(range)` for each part of 0..<count split by `Partition` into one contiguous
/// part per worker (at most `Threads.current`), as `parallelFor`: for work whose items share
/// state worth keeping from one item to the next (the forward's packed key tiles).
public func parallelForParts(_ count: Int, _ body: @Sendable (Range<Int>) -> Void) {
    let partition = Partition(items: count, parts: min(Threads.current, WorkerPool.maximumThreads))
    parallelFor(partition.parts) { body(partition.range($0)) }
}

/// The helper threads of `parallelFor`: pthreads started when first needed (at most
/// `maximumThreads − 1`) and kept, which join the calling thread on one job at a time. Every
/// field is behind one mutex; fork handlers hold it across fork() and give the child an empty
/// pool (the helpers do not exist there), whose helpers start again on its next job.
///
/// In a forked child the calling thread only waits while new helpers run every part: the
/// Swift runtime linked into the library caches each thread's id, and the thread that forked
/// carries its parent's stale id into the child, so it must not contend for the runtime's
/// locks with threads of the child (that can deadlock); helpers started in the child only
/// contend among themselves.
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()
    /// The most threads (the caller and helpers) one call uses.
    static let maximumThreads = 1024

    /// What the helpers of a job read: the body and the split of its items.
    private struct Job {
        let body: (Int) -> Void
        let partition: Partition
    }

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Helpers wait here for a ticket; the caller waits here for its helpers to finish.
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let finished = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var helpers = 0                          // threads started
    private var busy = false                         // a job is running
    private var tickets = 0                          // helpers the job still takes
    private var active = 0                           // helpers inside the job
    private var nextPart = 0                         // the job's first unclaimed part
    private var callerWorks = true                   // false in a forked child
    private var job: UnsafePointer<Job>?             // on the caller's stack while busy

    private init() {
        initialiseLocks()
        pthread_atfork({ WorkerPool.shared.forkPrepare() }, { WorkerPool.shared.forkParent() },
                       { WorkerPool.shared.forkChild() })
    }

    private func initialiseLocks() {
        pthread_mutex_init(mutex, nil)
        initialiseConditions()
    }

    private func initialiseConditions() {
        pthread_cond_init(wake, nil)
        pthread_cond_init(finished, nil)
    }

    /// Runs the parts of `partition` on the caller and up to parts − 1 helpers (in a forked
    /// child: on up to `parts` helpers), and returns true once all have run; false, having run
    /// nothing, when the pool is busy or (in a child) no helper could be started.
    func run(_ partition: Partition, _ body: (Int) -> Void) -> Bool {
        pthread_mutex_lock(mutex)
        let wanted = callerWorks ? partition.parts - 1 : partition.parts
        if !busy { startHelpers(wanted) }
        guard !busy, callerWorks || helpers > 0 else {
            pthread_mutex_unlock(mutex)
            return false
        }
        busy = true
        withoutActuallyEscaping(body) { body in
            withUnsafePointer(to: Job(body: body, partition: partition)) { job in
                self.job = job
                nextPart = 0
                tickets = min(wanted, helpers)
                if tickets > 0 { pthread_cond_broadcast(wake) }
                if callerWorks { work(job) }
                while nextPart < partition.parts || active > 0 { pthread_cond_wait(finished, mutex) }
                tickets = 0
                self.job = nil
            }
        }
        busy = false
        pthread_mutex_unlock(mutex)
        return true
    }

    /// Starts helpers until there are `wanted` (bounded by maximumThreads − 1); a helper that
    /// cannot be started leaves the work to those there are. Called with the mutex held.
    private func startHelpers(_ wanted: Int) {
        let target = min(wanted, WorkerPool.maximumThreads - 1)
        while helpers < target {
            var thread = pthread_t()
            guard pthread_create(&thread, nil, { _ in WorkerPool.shared.helperLoop() }, nil) == 0 else { return }
            pthread_detach(thread)
            helpers += 1
        }
    }

    /// A helper's life: wait for a ticket, work on the job, tell the caller when the last
    /// helper leaves it.
    private func helperLoop() -> Never {
        pthread_mutex_lock(mutex)
        while true {
            while tickets == 0 { pthread_cond_wait(wake, mutex) }
            tickets -= 1
            active += 1
            if let job { work(job) }
            active -= 1
            if active == 0 { pthread_cond_signal(finished) }
        }
    }

    /// Claims and runs parts of `job` until none is left; entered and left with the mutex
    /// held, released while a part runs.
    private func work(_ job: UnsafePointer<Job>) {
        while nextPart < job.pointee.partition.parts {
            let part = nextPart
            nextPart += 1
            pthread_mutex_unlock(mutex)
            for i in job.pointee.partition.range(part) { job.pointee.body(i) }
            pthread_mutex_lock(mutex)
        }
    }

    private func forkPrepare() { pthread_mutex_lock(mutex) }
    private func forkParent() { pthread_mutex_unlock(mutex) }

    /// In the child only the forking thread exists (it took the mutex in forkPrepare): no
    /// helpers, no job in progress, no waiters on the conditions.
    private func forkChild() {
        initialiseConditions()
        helpers = 0; busy = false; tickets = 0; active = 0; nextPart = 0; job = nil
        callerWorks = false
        pthread_mutex_unlock(mutex)
    }
}
