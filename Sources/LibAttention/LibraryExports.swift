import AttentionKernels
import CAttention

/// Library-wide functions: version, errors, threads.

/// The version, written once: the header's ATT_VERSION_MAJOR/MINOR/PATCH.
private let versionNumbers = (major: Int32(ATT_VERSION_MAJOR), minor: Int32(ATT_VERSION_MINOR),
                              patch: Int32(ATT_VERSION_PATCH))

/// "MAJOR.MINOR.PATCH" as a C string that lives as long as the library (written once, then
/// only read).
nonisolated(unsafe) private let versionString: UnsafePointer<CChar> = {
    let text = "\(versionNumbers.major).\(versionNumbers.minor).\(versionNumbers.patch)".utf8CString
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: text.count)
    text.withUnsafeBufferPointer { p.initialize(from: $0.baseAddress!, count: text.count) }
    return UnsafePointer(p)
}()

@_cdecl("att_version")
public func att_version() -> UnsafePointer<CChar> {
    versionString
}

@_cdecl("att_version_number")
public func att_version_number() -> Int32 {
    versionNumbers.major * 1_000_000 + versionNumbers.minor * 1_000 + versionNumbers.patch
}

/// The kernels this library was compiled with; the dispatching library answers for the
/// variant it loaded.
@_cdecl("att_cpu_kernels")
public func att_cpu_kernels() -> UnsafePointer<CChar> {
    #if ATTENTION_KERNELS_AVX512
    cString("avx512")
    #elseif ATTENTION_KERNELS_AVX2
    cString("avx2")
    #elseif ATTENTION_KERNELS_BASELINE
    cString("baseline")
    #else
    cString("native")
    #endif
}

@_cdecl("att_last_error")
public func att_last_error() -> UnsafePointer<CChar> {
    LastError.get()
}

@_cdecl("att_status_name")
public func att_status_name(_ status: att_status) -> UnsafePointer<CChar> {
    switch status {
    case ATT_OK: cString("ATT_OK")
    case ATT_ERR_NULL_ARGUMENT: cString("ATT_ERR_NULL_ARGUMENT")
    case ATT_ERR_INVALID_ARGUMENT: cString("ATT_ERR_INVALID_ARGUMENT")
    case ATT_ERR_SHAPE: cString("ATT_ERR_SHAPE")
    case ATT_ERR_DTYPE: cString("ATT_ERR_DTYPE")
    case ATT_ERR_INVALID_HANDLE: cString("ATT_ERR_INVALID_HANDLE")
    case ATT_ERR_NOT_BUILT: cString("ATT_ERR_NOT_BUILT")
    case ATT_ERR_STRUCT_SIZE: cString("ATT_ERR_STRUCT_SIZE")
    case ATT_ERR_OUT_OF_MEMORY: cString("ATT_ERR_OUT_OF_MEMORY")
    case ATT_ERR_INTERNAL: cString("ATT_ERR_INTERNAL")
    case ATT_ERR_BUSY: cString("ATT_ERR_BUSY")
    case ATT_ERR_IO: cString("ATT_ERR_IO")
    default: cString("unknown status")
    }
}

@_cdecl("att_set_num_threads")
public func att_set_num_threads(_ n: Int32) -> att_status {
    withStatus {
        guard n >= 1 else { throw Failure(ATT_ERR_INVALID_ARGUMENT, "thread count must be >= 1; got \(n)") }
        Threads.set(Int(n))
    }
}

@_cdecl("att_get_num_threads")
public func att_get_num_threads() -> Int32 {
    Int32(clamping: Threads.current)
}
