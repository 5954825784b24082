import AttentionKernels
#if canImport(Glibc)
import Glibc
#endif

/// A layer's weights in one allocation, in Keras's `get_weights()` order. Pointers into it
/// stay valid until the store is rebuilt or freed, so kernels read weights in place.
final class WeightStore<T: KernelScalar>: @unchecked Sendable {
    private(set) var specs: [WeightSpec]
    private let offsets: [Int]
    private let storage: UnsafeMutablePointer<T>

    /// Allocates and initialises the weights; `initializers[i]` fills weight i, element by
    /// element (no copy of a whole weight in Double).
    init(_ specs: [WeightSpec], initializers: [Initializer], seed: UInt64) throws(AttentionError) {
        var offsets: [Int] = []
        var total = 0
        for (spec, initializer) in zip(specs, initializers) {
            try initializer.validate(shape: spec.shape)
            offsets.append(total)
            let count = try elementCount(spec.shape, elementSize: MemoryLayout<T>.stride, "weight \(spec.name)")
            try checkMemoryRequest(initializer.scratchBytes(count: count),
                                   "the \(initializer.name) initializer's matrices for weight \(spec.name)")
            let (sum, overflow) = total.addingReportingOverflow(count)
            guard !overflow else { throw .shape("the weights need more elements than fit in 64 bits") }
            total = sum
        }
        let raw = try allocateMemory(total, elementSize: MemoryLayout<T>.stride, "the weights")
        storage = raw.bindMemory(to: T.self, capacity: max(1, total))
        self.specs = specs
        self.offsets = offsets
        for (index, spec) in specs.enumerated() {
            let p = storage + offsets[index]
            initializers[index].fill(shape: spec.shape, seed: seed, stream: UInt64(index),
                                     inputAxes: spec.inputAxes) { k, v in p[k] = T(v) }
        }
    }

    deinit { free(storage) }

    /// The first element of weight `index` (read-only use by kernels).
    func pointer(_ index: Int) -> UnsafeMutablePointer<T> {
        storage + offsets[index]
    }

    /// The values of weight `index` (scalars: element 0).
    func values(_ index: Int) -> UnsafePointer<T> { UnsafePointer(pointer(index)) }

    func checkIndex(_ index: Int) throws(AttentionError) {
        guard index >= 0, index < specs.count else {
            throw .invalid("weight index \(index) is out of range: the layer has \(specs.count) weights")
        }
    }

    func copyOut(_ index: Int, into buffer: UnsafeMutableRawPointer) throws(AttentionError) {
        try checkIndex(index)
        buffer.copyMemory(from: pointer(index), byteCount: specs[index].count * MemoryLayout<T>.stride)
    }

    func copyIn(_ index: Int, from buffer: UnsafeRawPointer) throws(AttentionError) {
        try checkIndex(index)
        UnsafeMutableRawPointer(pointer(index)).copyMemory(from: buffer, byteCount: specs[index].count * MemoryLayout<T>.stride)
    }
}

/// A layer whose weights live in a `WeightStore` once built: gives `AttentionLayer`'s
/// dtype, build state and weight access.
protocol StoresWeights: AttentionLayer {
    associatedtype Scalar: KernelScalar
    var store: WeightStore<Scalar>? { get }
    var layerName: String { get }
}

extension StoresWeights {
    public var dtype: DType { Scalar.self == Float.self ? .float32 : .float64 }
    public var isBuilt: Bool { store != nil }

    /// The weights, or a `notBuilt` error.
    func built() throws(AttentionError) -> WeightStore<Scalar> {
        guard let store else { throw AttentionError(.notBuilt, "the \(layerName) layer is not built: build it first") }
        return store
    }

    public var weightSpecs: [WeightSpec] {
        get throws(AttentionError) { try built().specs }
    }

    public func getWeight(_ index: Int, into buffer: UnsafeMutableRawPointer) throws(AttentionError) {
        try built().copyOut(index, into: buffer)
    }

    public func setWeight(_ index: Int, from buffer: UnsafeRawPointer) throws(AttentionError) {
        try built().copyIn(index, from: buffer)
    }
}
