import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Layer files: a built layer — kind, config, build shapes and weights — in the safetensors
/// format (https://github.com/huggingface/safetensors):
///
///     8 bytes   N, little-endian unsigned: the header's length
///     N bytes   JSON header (UTF-8, padded with spaces to a multiple of 8 when written):
///               {"__metadata__": {string: string},
///                "<weight name>": {"dtype": "F32" | "F64", "shape": [dims],
///                                  "data_offsets": [begin, end]}, ...}
///     the data  each tensor's little-endian bytes, row-major, at [begin, end) of this part
///
/// Tensors are named after the layer's weights ("query/kernel") and hold the layer's dtype.
/// `__metadata__` (every value a string, JSON where structured):
///   format        "libattention-layer-1"
///   layer         Keras's class name: Attention, AdditiveAttention, MultiHeadAttention,
///                 GroupedQueryAttention (GroupQueryAttention is read too), ReuseMultiHeadAttention
///   config        JSON: the layer's Keras get_config() (see `LayerConfig`)
///   build_shapes  JSON: [query, value, key|null] input shapes (a null dim reads as 1)
///   weights       JSON: the weight names in get_weights() order
/// Other metadata keys are ignored.
///
/// Reading refuses, with an `AttentionError` and never a trap: a file that cannot be opened
/// or read, or is not a regular file (`io`); a header length beyond the file or above
/// `maxHeaderLength`, bad JSON, a structure other than the above, tensors whose offsets
/// overlap, leave gaps, or do not end at the file's end, or whose byte size is not
/// shape × dtype, missing or extra tensors, an unknown layer kind, a config the layer refuses,
/// weights other than the ones the config and build shapes give (`invalidArgument`); a
/// tensor dtype other than F32 / F64 or than the config's dtype (`dtype`); tensor shapes other
/// than the layer's weights' and build shapes the layer refuses (`shape`).
/// (Little-endian hosts, as the x86-64 machines the library builds for.)
public enum LayerFile {
    /// The `format` metadata value this library writes and reads.
    public static let format = "libattention-layer-1"
    /// The largest header accepted, in bytes (as the safetensors reference reader).
    public static let maxHeaderLength = 100_000_000

    /// Writes built `layer`, built for `buildShapes`, to `path` (replaced atomically: written
    /// to a temporary file beside it, then renamed). Throws notBuilt before a build.
    public static func save(_ layer: any AttentionLayer, buildShapes: BuildShapes, to path: String) throws(AttentionError) {
        try withPath(path) { cPath throws(AttentionError) in try save(layer, buildShapes: buildShapes, cPath: cPath) }
    }

    /// Reads a layer file: the layer, built for the file's build shapes and holding its weights.
    public static func load(path: String) throws(AttentionError) -> (layer: any AttentionLayer, buildShapes: BuildShapes) {
        try withPath(path) { cPath throws(AttentionError) in try load(cPath: cPath) }
    }

    private static func withPath<R>(_ path: String, _ body: (UnsafePointer<CChar>) throws(AttentionError) -> R) throws(AttentionError) -> R {
        let result: Result<R, AttentionError> = path.utf8CString.withUnsafeBufferPointer { p in
            Result { () throws(AttentionError) -> R in
                guard let base = p.baseAddress else { throw .invalid("empty path") }
                return try body(base)
            }
        }
        return try result.get()
    }
}

/// body(the bytes of `array`), keeping body's error type (Array's own withUnsafeBytes rethrows untyped).
private func withBytes<R>(_ array: [UInt8], _ body: (UnsafeRawBufferPointer) throws(AttentionError) -> R) throws(AttentionError) -> R {
    let result: Result<R, AttentionError> = array.withUnsafeBytes { p in Result { () throws(AttentionError) -> R in try body(p) } }
    return try result.get()
}

// MARK: - Writing

extension LayerFile {
    /// `save` for a C path (bytes passed to the system as they are).
    public static func save(_ layer: any AttentionLayer, buildShapes: BuildShapes, cPath: UnsafePointer<CChar>) throws(AttentionError) {
        guard let config = LayerConfig(of: layer) else {
            throw .invalid("layer of type \(type(of: layer)) is not one of this library's layer kinds")
        }
        let specs = try layer.weightSpecs
        let elementSize = layer.dtype == .float32 ? 4 : 8
        var tensors: [(key: String, value: JSON)] = []
        var offset = 0
        for spec in specs {
            let bytes = try elementCount(spec.shape, elementSize: elementSize, "weight \(spec.name)") * elementSize
            tensors.append((spec.name, .object([("dtype", .string(elementSize == 4 ? "F32" : "F64")),
                                               ("shape", .array(spec.shape.map { .integer($0) })),
                                               ("data_offsets", .array([.integer(offset), .integer(offset + bytes)]))])))
            offset += bytes
        }
        let metadata: [(key: String, value: JSON)] = [
            ("format", .string(format)), ("layer", .string(config.kind)),
            ("config", .string(config.kerasConfig(dtype: layer.dtype, buildShapes: buildShapes).text)),
            ("build_shapes", .string(buildShapes.json.text)),
            ("weights", .string(JSON.array(specs.map { .string($0.name) }).text)),
        ]
        var header = Array(JSON.object([("__metadata__", .object(metadata))] + tensors).text.utf8)
        header += Array(repeating: UInt8(ascii: " "), count: (8 - header.count % 8) % 8)

        let file = try OutputFile(cPath)
        var length = UInt64(header.count).littleEndian
        try withUnsafeBytes(of: &length) { p throws(AttentionError) in try file.write(p) }
        try withBytes(header) { p throws(AttentionError) in try file.write(p) }
        for (index, spec) in specs.enumerated() {
            let count = spec.count
            let buffer = try allocateMemory(count, elementSize: elementSize, "a copy of weight \(spec.name)")
            defer { free(buffer) }
            try layer.getWeight(index, into: buffer)
            try file.write(UnsafeRawBufferPointer(start: buffer, count: count * elementSize))
        }
        try file.commit()
    }
}

/// A file written beside its destination and renamed over it by `commit`; removed if never
/// committed.
///
/// (Files are opened with fopen, errno read through __errno_location and the file type
/// compared with its POSIX constant: the Glibc overlay's `open`, `errno` and `S_IF*` would
/// link its math wrappers too, whose hypotf needs glibc 2.35 and would raise the wheel's
/// manylinux tag.)
private final class OutputFile {
    private let path: [CChar]
    private let temporary: [CChar]
    private var file: UnsafeMutablePointer<FILE>?
    private let fd: Int32

    init(_ cPath: UnsafePointer<CChar>) throws(AttentionError) {
        path = Array(UnsafeBufferPointer(start: cPath, count: strlen(cPath) + 1))
        temporary = Array(path.dropLast()) + Array(".tmp-\(getpid())-\(OutputFile.counter.add(1, ordering: .relaxed).newValue)".utf8CString)
        file = fopen(temporary, "wxe")  // x: O_EXCL, e: O_CLOEXEC
        guard let file else { throw systemError("cannot create", temporary) }
        fd = fileno(file)
    }

    deinit {
        if let file {
            fclose(file)
            unlink(temporary)
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(AttentionError) {
        var done = 0
        while done < bytes.count {
            guard let base = bytes.baseAddress else { return }
            let n = Glibc.write(fd, base + done, bytes.count - done)
            if n < 0 && systemErrno() == EINTR { continue }
            guard n > 0 else { throw systemError("cannot write", temporary) }
            done += n
        }
    }

    func commit() throws(AttentionError) {
        let closed = file.map { fclose($0) } ?? 0
        file = nil
        guard closed == 0 else {
            let error = systemError("cannot write", temporary)
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let error = systemError("cannot write", path)
            unlink(temporary)
            throw error
        }
    }

    /// Distinct temporary names for saves running at once in one process (an atomic, so no
    /// lock can be held across a fork).
    private static let counter = Atomic<Int>(0)
}

/// This thread's errno.
private func systemErrno() -> Int32 { __errno_location().pointee }

/// An `io` error naming the path and the system's reason (errno).
private func systemError(_ action: String, _ path: [CChar]) -> AttentionError {
    let reason = String(cString: strerror(systemErrno()))
    return AttentionError(.io, "\(action) \(displayName(path)): \(reason)")
}

/// A NUL-terminated path as text for messages (invalid UTF-8 repaired).
private func displayName(_ path: [CChar]) -> String {
    String(decoding: path.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

// MARK: - Reading

/// A regular file opened for reading, closed when released. The type is checked before
/// opening (a FIFO must not block the open) and again on the open file.
private final class InputFile {
    let file: UnsafeMutablePointer<FILE>
    let fd: Int32
    let size: Int
    let path: [CChar]

    init(_ cPath: UnsafePointer<CChar>) throws(AttentionError) {
        path = Array(UnsafeBufferPointer(start: cPath, count: strlen(cPath) + 1))
        var status = stat()
        guard stat(cPath, &status) == 0 else { throw systemError("cannot open", path) }
        guard isRegular(status) else { throw AttentionError(.io, "cannot read \(displayName(path)): not a regular file") }
        guard let file = fopen(cPath, "rbe") else { throw systemError("cannot open", path) }
        fd = fileno(file)
        guard fstat(fd, &status) == 0 else {
            let error = systemError("cannot read", path)
            fclose(file)
            throw error
        }
        guard isRegular(status) else {
            fclose(file)
            throw AttentionError(.io, "cannot read \(displayName(path)): not a regular file")
        }
        self.file = file
        size = Int(status.st_size)
    }

    deinit { fclose(file) }

    /// Reads exactly `count` bytes at `offset` into `buffer`.
    func read(_ buffer: UnsafeMutableRawPointer, count: Int, at offset: Int) throws(AttentionError) {
        var done = 0
        while done < count {
            let n = pread(fd, buffer + done, count - done, off_t(offset + done))
            if n < 0 && systemErrno() == EINTR { continue }
            guard n >= 0 else { throw systemError("cannot read", path) }
            guard n > 0 else {
                throw AttentionError(.io, "cannot read \(displayName(path)): the file ended early (was it truncated while loading?)")
            }
            done += n
        }
    }
}

/// Whether `status` is a regular file's (POSIX S_IFMT and S_IFREG).
private func isRegular(_ status: stat) -> Bool { status.st_mode & 0o170000 == 0o100000 }

/// One tensor entry of a header.
private struct TensorEntry {
    var name: String
    var dtype: DType
    var shape: [Int]
    var begin: Int, end: Int
}

extension LayerFile {
    /// `load` for a C path (bytes passed to the system as they are).
    public static func load(cPath: UnsafePointer<CChar>) throws(AttentionError) -> (layer: any AttentionLayer, buildShapes: BuildShapes) {
        let file = try InputFile(cPath)
        guard file.size >= 8 else {
            throw .invalid("not a layer file: \(file.size) bytes, shorter than the 8-byte header length")
        }
        var length: UInt64 = 0
        try withUnsafeMutableBytes(of: &length) { p throws(AttentionError) in
            if let base = p.baseAddress { try file.read(base, count: 8, at: 0) }
        }
        length = UInt64(littleEndian: length)
        guard length <= UInt64(maxHeaderLength) else {
            throw .invalid("not a layer file: its header length \(length) is above the limit of \(maxHeaderLength) bytes")
        }
        let headerLength = Int(length)
        guard headerLength <= file.size - 8 else {
            throw .invalid("truncated layer file: the header is \(headerLength) bytes but only \(file.size - 8) follow the length")
        }
        let headerBuffer = try allocateMemory(headerLength, elementSize: 1, "the layer file's header")
        defer { free(headerBuffer) }
        try file.read(headerBuffer, count: headerLength, at: 8)
        let header = Array(UnsafeRawBufferPointer(start: headerBuffer, count: headerLength))
        let dataStart = 8 + headerLength
        let (metadata, tensors) = try parseHeader(try JSON.parse(header, "the layer file's header"),
                                                  dataSize: file.size - dataStart)

        func meta(_ key: String) throws(AttentionError) -> String {
            guard let value = metadata[key] else {
                throw .invalid("not a layer file of this library: __metadata__ has no \"\(key)\"")
            }
            return value
        }
        let fileFormat = try meta("format")
        guard fileFormat == format else {
            throw .invalid("not a layer file of this library: format \"\(fileFormat)\", expected \"\(format)\"")
        }
        let kind = try meta("layer")
        let (config, dtype) = try LayerConfig.decode(kind: kind, config: try JSON.parse(try meta("config"), "__metadata__ config"))
        let shapes = try BuildShapes(json: try JSON.parse(try meta("build_shapes"), "__metadata__ build_shapes"))
        let order = try weightOrder(try JSON.parse(try meta("weights"), "__metadata__ weights"), tensors)

        let layer = try config.makeLayer(dtype)
        try layer.build(query: shapes.query, value: shapes.value, key: shapes.key)
        let specs = try layer.weightSpecs
        guard specs.map(\.name) == order else {
            throw .invalid("the file's weights \(order) do not fit its \(kind) config and build shapes, which give \(specs.map(\.name))")
        }
        let elementSize = dtype == .float32 ? 4 : 8
        for (index, spec) in specs.enumerated() {
            guard let t = tensors[spec.name] else { continue }  // weightOrder checked every name
            guard t.dtype == dtype else {
                throw AttentionError(.dtype, "tensor \"\(t.name)\" is \(t.dtype == .float32 ? "F32" : "F64") but the layer's dtype is \(dtype == .float32 ? "float32" : "float64")")
            }
            guard t.shape == spec.shape else {
                throw .shape("tensor \"\(t.name)\" has shape \(t.shape) but the layer's weight has shape \(spec.shape)")
            }
            let buffer = try allocateMemory(spec.count, elementSize: elementSize, "weight \(spec.name)")
            defer { free(buffer) }
            try file.read(buffer, count: t.end - t.begin, at: dataStart + t.begin)
            try layer.setWeight(index, from: buffer)
        }
        return (layer, shapes)
    }

    /// The metadata and the tensor entries of a header, with the entries' dtypes, shapes and
    /// offsets checked: each a known dtype, its byte size shape × dtype, and together covering
    /// [0, dataSize) without overlap or gap.
    private static func parseHeader(_ json: JSON, dataSize: Int) throws(AttentionError) -> ([String: String], [String: TensorEntry]) {
        var metadata: [String: String] = [:]
        var tensors: [String: TensorEntry] = [:]
        for (key, value) in try json.object("the layer file's header") {
            if key == "__metadata__" {
                for (k, v) in try value.object("__metadata__") { metadata[k] = try v.string("__metadata__ \"\(k)\"") }
            } else {
                tensors[key] = try tensorEntry(key, value)
            }
        }
        var expected = 0
        for t in tensors.values.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
            guard t.begin == expected else {
                throw .invalid(t.begin < expected
                    ? "tensor \"\(t.name)\" at bytes [\(t.begin), \(t.end)) overlaps another tensor's data"
                    : "tensor data has a gap at bytes [\(expected), \(t.begin)) before tensor \"\(t.name)\"")
            }
            expected = t.end
        }
        guard expected == dataSize else {
            throw .invalid(expected > dataSize
                ? "truncated layer file: tensor data ends at byte \(expected) of the data but the file holds \(dataSize) bytes of data"
                : "the layer file has \(dataSize - expected) bytes after the last tensor's data")
        }
        return (metadata, tensors)
    }

    private static func tensorEntry(_ name: String, _ json: JSON) throws(AttentionError) -> TensorEntry {
        var r = try ConfigReader(json, "tensor \"\(name)\"")
        let dtypeName = try (r.take("dtype") ?? .null).string("\(r.what) dtype")
        let dtype: DType
        switch dtypeName {
        case "F32": dtype = .float32
        case "F64": dtype = .float64
        case "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "I64", "U64":
            throw AttentionError(.dtype, "\(r.what) has dtype \(dtypeName); layer weights are F32 or F64")
        default:
            throw AttentionError(.dtype, "\(r.what) has unknown dtype \"\(dtypeName)\"")
        }
        var shape: [Int] = []
        for (i, d) in try (r.take("shape") ?? .null).array("\(r.what) shape").enumerated() {
            let dim = try d.int("\(r.what) shape[\(i)]")
            guard dim >= 0 else { throw .invalid("\(r.what) has a negative dim \(dim)") }
            shape.append(dim)
        }
        let offsets = try (r.take("data_offsets") ?? .null).array("\(r.what) data_offsets")
        guard offsets.count == 2 else { throw .invalid("\(r.what) data_offsets must be [begin, end]") }
        let begin = try offsets[0].int("\(r.what) data_offsets[0]"), end = try offsets[1].int("\(r.what) data_offsets[1]")
        guard begin >= 0, begin <= end else { throw .invalid("\(r.what) has data_offsets [\(begin), \(end)]: need 0 <= begin <= end") }
        try r.finish()
        var bytes = dtype == .float32 ? 4 : 8
        for d in shape {
            let (p, overflow) = bytes.multipliedReportingOverflow(by: d)
            guard !overflow else { throw .invalid("\(r.what) shape \(shape) has more bytes than fit in 64 bits") }
            bytes = p
        }
        guard end - begin == bytes else {
            throw .invalid("\(r.what) spans \(end - begin) bytes but its shape \(shape) of \(dtypeName) needs \(bytes)")
        }
        return TensorEntry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }

    /// The weight order, after checking it names every tensor once and nothing else.
    private static func weightOrder(_ json: JSON, _ tensors: [String: TensorEntry]) throws(AttentionError) -> [String] {
        var order: [String] = []
        var seen = Set<String>()
        for (i, item) in try json.array("__metadata__ weights").enumerated() {
            let name = try item.string("__metadata__ weights[\(i)]")
            guard seen.insert(name).inserted else { throw .invalid("__metadata__ weights lists \"\(name)\" twice") }
            guard tensors[name] != nil else { throw .invalid("weight \"\(name)\" is listed in __metadata__ weights but the file has no such tensor") }
            order.append(name)
        }
        let extra = tensors.keys.filter { !seen.contains($0) }.sorted()
        guard extra.isEmpty else { throw .invalid("tensors \(extra) are not weights listed in __metadata__ weights") }
        return order
    }
}
