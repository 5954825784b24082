import AttentionLayers
import CAttention

/// Conversions from the C structs of attention.h to the Swift layer types, with the checks
/// only the boundary can make (NULL pointers, ranks, enum values).

extension att_shape {
    /// The dims, after checking the rank is in 0...ATT_MAX_RANK.
    func dimsArray(_ what: String) throws -> [Int] {
        guard rank >= 0, Int(rank) <= Int(ATT_MAX_RANK) else {
            throw Failure(ATT_ERR_SHAPE, "\(what) has rank \(rank); ranks 0 to \(ATT_MAX_RANK) are supported")
        }
        var copy = dims
        return withUnsafeBytes(of: &copy) { raw in
            (0..<Int(rank)).map { Int(raw.load(fromByteOffset: $0 * 8, as: Int64.self)) }
        }
    }

    /// An att_shape holding `dims` (at most ATT_MAX_RANK of them).
    init(_ dims: [Int]) {
        self.init()
        rank = Int32(dims.count)
        withUnsafeMutableBytes(of: &self.dims) { raw in
            for (i, d) in dims.prefix(Int(ATT_MAX_RANK)).enumerated() {
                raw.storeBytes(of: Int64(d), toByteOffset: i * 8, as: Int64.self)
            }
        }
    }
}

/// The dims of an optional shape pointer; NULL is an error unless `optional`.
func dims(_ p: UnsafePointer<att_shape>?, _ what: String) throws -> [Int] {
    guard let p else { throw Failure.null(what) }
    return try p.pointee.dimsArray(what)
}

func elementType(_ dtype: att_dtype, _ what: String) throws -> ElementType {
    switch dtype {
    case ATT_FLOAT32: return .float32
    case ATT_FLOAT64: return .float64
    case ATT_UINT8: return .uint8
    default: throw Failure(ATT_ERR_DTYPE, "\(what) has unknown dtype \(dtype.rawValue)")
    }
}

/// A layer's dtype from a config field (0 means float32).
func layerDType(_ dtype: att_dtype) throws -> DType {
    switch dtype.rawValue {
    case 0, ATT_FLOAT32.rawValue: return .float32
    case ATT_FLOAT64.rawValue: return .float64
    default: throw Failure(ATT_ERR_INVALID_ARGUMENT, "config dtype \(dtype.rawValue) is not ATT_FLOAT32 or ATT_FLOAT64")
    }
}

/// The tensor behind a required pointer.
func tensor(_ p: UnsafePointer<att_tensor>?, _ what: String) throws -> RawTensor {
    guard let p else { throw Failure.null(what) }
    return try tensor(p.pointee, what)
}

/// The tensor behind an optional pointer (NULL → nil).
func optionalTensor(_ p: UnsafePointer<att_tensor>?, _ what: String) throws -> RawTensor? {
    guard let p else { return nil }
    return try tensor(p.pointee, what)
}

/// A tensor with no elements may have NULL data (as malloc(0) may return): it is never read
/// or written, so any address serves.
func tensor(_ t: att_tensor, _ what: String) throws -> RawTensor {
    let dims = try t.shape.dimsArray(what)
    guard let data = t.data ?? (dims.contains(0) ? emptyTensorData : nil) else { throw Failure.null("\(what)->data") }
    return RawTensor(data: data, elementType: try elementType(t.dtype, what), dims: dims)
}

/// The address given to an empty tensor passed with NULL data.
nonisolated(unsafe) private let emptyTensorData = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)

/// A tensor of a call by its C name (tensor nil: the caller passed none). For one the call
/// writes, `required` gives the shape the call requires of it (nil: unknown here); it is
/// computed only when the tensor overlaps another.
struct CallTensor {
    let name: String
    let tensor: RawTensor?
    var required: () -> [Int]? = { nil }
}

/// The bytes `t` spans, or nil when its dims are not valid (the layer refuses those later).
private func byteRange(_ t: RawTensor) -> Range<UInt>? {
    let size: UInt = switch t.elementType {
    case .float32: 4
    case .float64: 8
    case .uint8: 1
    }
    var bytes = size
    for d in t.dims {
        guard d >= 0 else { return nil }
        let (p, overflow) = bytes.multipliedReportingOverflow(by: UInt(d))
        guard !overflow else { return nil }
        bytes = p
    }
    let start = UInt(bitPattern: t.data)
    let (end, overflow) = start.addingReportingOverflow(bytes)
    return overflow ? nil : start..<end
}

/// Whether a tensor of `written` shares a byte with another of `written` or `read` (nil:
/// absent; tensors with invalid dims are skipped, as requireDisjoint skips them): the quick
/// test before requireDisjoint's named lists.
func anyOverlap(written: [RawTensor?], read: [RawTensor?]) -> Bool {
    let all = written + read
    for i in written.indices {
        guard let t = all[i], let r = byteRange(t) else { continue }
        for j in (i + 1)..<all.count {
            if let u = all[j], let s = byteRange(u), r.overlaps(s) { return true }
        }
    }
    return false
}

/// Refuses a call in which a tensor the library writes shares memory with another tensor of
/// the call, written or read (the kernels read inputs after they start writing outputs).
/// Tensors that are only read may share memory. A written tensor whose shape is not the one
/// required is left to the layer, which refuses it with ATT_ERR_SHAPE.
func requireDisjoint(written: [CallTensor], read: [CallTensor]) throws {
    func ranges(_ list: [CallTensor]) -> [(CallTensor, Range<UInt>)] {
        list.compactMap { c in c.tensor.flatMap(byteRange).map { (c, $0) } }
    }
    func hasRequiredShape(_ c: CallTensor) -> Bool { c.tensor?.dims == c.required() }
    let w = ranges(written), all = w + ranges(read)
    for i in w.indices {
        for j in (i + 1)..<all.count where all[i].1.overlaps(all[j].1) {
            let (target, other) = (all[i].0, all[j].0)
            guard hasRequiredShape(target), j >= w.count || hasRequiredShape(other) else { continue }
            throw Failure(ATT_ERR_INVALID_ARGUMENT, "\(target.name) overlaps \(other.name) in memory: a tensor the library writes may not share memory with another tensor of the call")
        }
    }
}
