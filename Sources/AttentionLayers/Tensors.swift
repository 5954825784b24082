import AttentionKernels

/// Element types that cross the API: the two compute types and uint8 masks.
public enum ElementType: Sendable, Equatable, CustomStringConvertible {
    case float32, float64, uint8
    public var description: String {
        switch self {
        case .float32: "float32"
        case .float64: "float64"
        case .uint8: "uint8"
        }
    }
}

/// A layer's compute dtype.
public enum DType: Sendable, Equatable {
    case float32, float64
    public var elementType: ElementType { self == .float32 ? .float32 : .float64 }
}

/// A caller's dense row-major tensor, not owned: valid only during the call that received it.
public struct RawTensor: @unchecked Sendable {
    public var data: UnsafeMutableRawPointer
    public var elementType: ElementType
    public var dims: [Int]
    public init(data: UnsafeMutableRawPointer, elementType: ElementType, dims: [Int]) {
        self.data = data; self.elementType = elementType; self.dims = dims
    }
}

/// The number of elements of `dims` (0 when a dim is 0: an empty tensor), refusing dims
/// below `minimumDim` (weights pass 1) and products (in bytes of `elementSize`) that
/// overflow. `what` names the tensor in messages.
public func elementCount(_ dims: [Int], elementSize: Int = 8, minimumDim: Int = 0,
                         _ what: String) throws(AttentionError) -> Int {
    // The product of the nonzero dims must fit even when another dim is 0: strides over
    // the other axes of an empty tensor are computed from it.
    var extent = 1
    for (axis, d) in dims.enumerated() {
        guard d >= minimumDim else {
            throw .shape("\(what) has dim \(d) at axis \(axis) (shape \(dims)); every dim must be >= \(minimumDim)")
        }
        let (p, overflow) = extent.multipliedReportingOverflow(by: max(d, 1))
        guard !overflow else { throw .shape("\(what) shape \(dims) has more elements than fit in 64 bits") }
        extent = p
    }
    guard !extent.multipliedReportingOverflow(by: elementSize).overflow else {
        throw .shape("\(what) shape \(dims) needs more bytes than fit in 64 bits")
    }
    return dims.contains(0) ? 0 : extent
}

/// Throws unless the last dim of each (name, dims) is at least 1: features are what weights
/// and scores are made of, so an empty feature axis is refused (other axes may be empty).
func requireFeatures(_ tensors: [(String, [Int])], _ layerName: String) throws(AttentionError) {
    for (name, dims) in tensors {
        guard let last = dims.last, last >= 1 else {
            throw .shape("\(layerName): \(name) has shape \(dims); its last (feature) dim must be >= 1")
        }
    }
}

/// The product of `values`, refusing overflow (`what` names it in the message).
func checkedProduct(_ values: [Int], _ what: String) throws(AttentionError) -> Int {
    var p = 1
    for v in values {  // zeros aside, as elementCount: the other factors must fit too
        let (r, overflow) = p.multipliedReportingOverflow(by: v == 0 ? 1 : v)
        guard !overflow else { throw .shape("\(what) (\(values.map(String.init).joined(separator: " x "))) overflows 64 bits") }
        p = r
    }
    return values.contains(0) ? 0 : p
}

extension RawTensor {
    /// This tensor as elements of `T`, after checking its element type and dims.
    func elements<T: KernelScalar>(of _: T.Type, _ what: String) throws(AttentionError) -> UnsafeMutablePointer<T> {
        let want: ElementType = T.self == Float.self ? .float32 : .float64
        guard elementType == want else {
            throw AttentionError(.dtype, "\(what) is \(elementType) but the computation is in \(want)")
        }
        _ = try elementCount(dims, elementSize: MemoryLayout<T>.stride, what)
        return data.assumingMemoryBound(to: T.self)
    }

    /// This tensor as a uint8 mask, after checking its element type and dims.
    func mask(_ what: String) throws(AttentionError) -> UnsafePointer<UInt8> {
        guard elementType == .uint8 else {
            throw AttentionError(.dtype, "\(what) is \(elementType); masks are uint8 (0 = masked out)")
        }
        _ = try elementCount(dims, elementSize: 1, what)
        return UnsafePointer(data.assumingMemoryBound(to: UInt8.self))
    }

    /// Throws unless the dims are exactly `expected`.
    func expect(_ expected: [Int], _ what: String, _ why: String = "") throws(AttentionError) {
        guard dims == expected else {
            throw .shape("\(what) has shape \(dims) but \(expected) is required\(why.isEmpty ? "" : " (\(why))")")
        }
    }
}
