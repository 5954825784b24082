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

func tensor(_ t: att_tensor, _ what: String) throws -> RawTensor {
    guard let data = t.data else { throw Failure.null("\(what)->data") }
    return RawTensor(data: data, elementType: try elementType(t.dtype, what), dims: try t.shape.dimsArray(what))
}
