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

/// A struct of attention.h that begins with `size_t struct_size` and may grow at its end.
protocol VersionedStruct {
    /// Its size in the first version that published it: the smallest struct_size accepted.
    static var firstPublishedSize: Int { get }
    /// The zero-filled struct (every field's default).
    init()
}

/// The first published size of every versioned struct, in bytes: their sizes in 0.1.0
/// (commit 73bccfb) on LP64. These numbers never change; a struct only gains fields past them.
extension att_attention_config: VersionedStruct { static var firstPublishedSize: Int { 40 } }
extension att_additive_attention_config: VersionedStruct { static var firstPublishedSize: Int { 32 } }
extension att_multi_head_attention_config: VersionedStruct { static var firstPublishedSize: Int { 416 } }
extension att_group_query_attention_config: VersionedStruct { static var firstPublishedSize: Int { 280 } }
extension att_reuse_multi_head_attention_config: VersionedStruct { static var firstPublishedSize: Int { 424 } }
extension att_call_args: VersionedStruct { static var firstPublishedSize: Int { 112 } }
extension att_gradient_args: VersionedStruct { static var firstPublishedSize: Int { 72 } }
extension att_dot_product_attention_args: VersionedStruct { static var firstPublishedSize: Int { 80 } }

/// The versioned struct behind `p`: its first struct_size bytes (any size from the first
/// published one up to this library's), with the fields past them zero. Nothing past the
/// caller's struct_size is read, so an older caller's shorter struct is never over-read.
func versionedStruct<T: VersionedStruct>(_ p: UnsafePointer<T>?, _ name: String, nullName: String) throws -> T {
    guard let p else { throw Failure.null(nullName) }
    let raw = UnsafeRawPointer(p)
    let size = raw.loadUnaligned(as: UInt.self)
    let accepted = UInt(T.firstPublishedSize)...UInt(MemoryLayout<T>.size)
    guard accepted.contains(size) else {
        let range = accepted.count == 1 ? "\(accepted.lowerBound) bytes" : "\(accepted.lowerBound) to \(accepted.upperBound) bytes"
        throw Failure(ATT_ERR_STRUCT_SIZE, "\(name).struct_size is \(size); this library accepts \(range) (set it to sizeof(\(name)))")
    }
    var value = T()
    withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: Int(size))) }
    return value
}
