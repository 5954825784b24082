/// numpy-style broadcasting of masks and biases onto a target shape, as element strides.

/// Element strides that read a row-major tensor of `dims` as if broadcast to `target`
/// (dims right-aligned; each must be 1 or equal to the target's): 0 on broadcast axes.
func broadcastStrides(_ dims: [Int], to target: [Int], _ what: String) throws(AttentionError) -> [Int] {
    guard dims.count <= target.count else {
        throw .shape("\(what) of shape \(dims) has more dims than \(target), the shape it must broadcast to")
    }
    let padded = Array(repeating: 1, count: target.count - dims.count) + dims
    var strides = Array(repeating: 0, count: target.count)
    var step = 1
    for axis in stride(from: target.count - 1, through: 0, by: -1) {
        let d = padded[axis]
        guard d == 1 || d == target[axis] else {
            throw .shape("\(what) of shape \(dims) does not broadcast to \(target)")
        }
        strides[axis] = d == 1 ? 0 : step
        step *= d
    }
    return strides
}

/// The stride of the flattened run of `axes` (slowest first) of a tensor with these `dims`
/// and `strides`, or nil when the run cannot be walked with one stride. Axes of size 1 do
/// not matter; a run of only such axes has stride 0.
func mergedStride(_ axes: [Int], dims: [Int], strides: [Int]) -> Int? {
    let live = axes.filter { dims[$0] > 1 }
    guard let last = live.last else { return 0 }
    for (a, b) in zip(live, live.dropFirst()) where strides[a] != strides[b] * dims[b] {
        return nil
    }
    return strides[last]
}

/// Row-major element strides of `dims`.
func contiguousStrides(_ dims: [Int]) -> [Int] {
    var strides = Array(repeating: 1, count: dims.count)
    var step = 1
    for axis in stride(from: dims.count - 1, through: 0, by: -1) {
        strides[axis] = step
        step *= dims[axis]
    }
    return strides
}

/// Calls body(offset) with the element offset (under `strides`) of every index of `dims`,
/// in row-major order.
func forEachOffset(_ dims: [Int], _ strides: [Int], _ body: (Int) -> Void) {
    if dims.contains(0) { return }
    var index = Array(repeating: 0, count: dims.count)
    var offset = 0
    while true {
        body(offset)
        var axis = dims.count - 1
        while axis >= 0 {
            index[axis] += 1
            offset += strides[axis]
            if index[axis] < dims[axis] { break }
            offset -= strides[axis] * dims[axis]
            index[axis] = 0
            axis -= 1
        }
        if axis < 0 { return }
    }
}

/// Copies between a tensor of `dims` (row-major, or laid out by `strides`) and its
/// transpose with axes `order` (contiguous): `gather` reads the tensor into the transpose,
/// otherwise the transpose is scattered back into the tensor.
func transposeCopy<T>(_ tensor: UnsafeMutablePointer<T>, dims: [Int], strides: [Int]? = nil, order: [Int],
                      _ transposed: UnsafeMutablePointer<T>, gather: Bool) {
    let strides = strides ?? contiguousStrides(dims)
    var k = 0
    forEachOffset(order.map { dims[$0] }, order.map { strides[$0] }) { offset in
        if gather { transposed[k] = tensor[offset] } else { tensor[offset] = transposed[k] }
        k += 1
    }
}
