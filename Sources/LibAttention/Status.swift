import AttentionLayers
import CAttention
#if canImport(Glibc)
import Glibc
#endif

/// Why an exported function failed: a status and the message `att_last_error()` returns.
struct Failure: Error {
    let status: att_status
    let message: String

    init(_ status: att_status, _ message: String) {
        self.status = status
        self.message = message
    }

    init(_ error: AttentionError) {
        switch error.kind {
        case .invalidArgument: status = ATT_ERR_INVALID_ARGUMENT
        case .shape: status = ATT_ERR_SHAPE
        case .dtype: status = ATT_ERR_DTYPE
        case .notBuilt: status = ATT_ERR_NOT_BUILT
        case .outOfMemory: status = ATT_ERR_OUT_OF_MEMORY
        case .io: status = ATT_ERR_IO
        }
        message = error.message
    }

    static func null(_ what: String) -> Failure { Failure(ATT_ERR_NULL_ARGUMENT, "\(what) is NULL") }
}

/// Runs `body`, turning any failure into its status and this thread's last error.
func withStatus(_ body: () throws -> Void) -> att_status {
    do {
        try body()
        return ATT_OK
    } catch let failure as Failure {
        LastError.set(failure.message)
        return failure.status
    } catch let error as AttentionError {
        let failure = Failure(error)
        LastError.set(failure.message)
        return failure.status
    } catch {
        LastError.set("internal error: \(error)")
        return ATT_ERR_INTERNAL
    }
}

/// The message of the last failure on each thread, as a C string owned by the thread.
enum LastError {
    static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { free($0) }
        return key
    }()

    static func set(_ message: String) {
        let old = pthread_getspecific(key)
        pthread_setspecific(key, strdup(message))
        free(old)
    }

    static func get() -> UnsafePointer<CChar> {
        guard let p = pthread_getspecific(key) else { return cString("") }
        return UnsafePointer(p.assumingMemoryBound(to: CChar.self))
    }
}

/// A C string with static storage.
func cString(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// The versioned struct behind `p` (its first field is `size_t struct_size`), read only
/// after that field shows the caller's struct is the size this library knows — a shorter
/// struct from an older caller is never read past its end.
func versionedStruct<T>(_ p: UnsafePointer<T>?, _ name: String, nullName: String) throws -> T {
    guard let p else { throw Failure.null(nullName) }
    let size = UnsafeRawPointer(p).load(as: Int.self)
    guard size == MemoryLayout<T>.size else {
        throw Failure(ATT_ERR_STRUCT_SIZE, "\(name).struct_size is \(UInt(bitPattern: size)) but this library knows \(name) as \(MemoryLayout<T>.size) bytes")
    }
    return p.pointee
}
