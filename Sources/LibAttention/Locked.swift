#if canImport(Glibc)
import Glibc
#endif

/// A value behind a pthread mutex. (`Synchronization.Mutex` locks with futexes on Linux,
/// which ThreadSanitizer cannot see: it reported the handle table's guarded accesses as races.)
/// Holders never call out while holding it, so fork handlers may take it (`ForkSafety`).
final class Locked<Value>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    init(_ value: Value) {
        pthread_mutex_init(mutex, nil)
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// body(&value) with the mutex held.
    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }

    /// Takes the mutex without a scope: for the fork handlers only, which pair lock with unlock.
    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }

    /// body(&value) for a caller that already holds the mutex (a fork handler after `lock`).
    func withLockHeld<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        try body(&value)
    }
}
