import AttentionKernels

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

/// The kernel's (g, n, i, j) view of a uint8 mask of `dims` (the scores' rank) broadcast to
/// `scores`, whose axes are: `groups` (flattened to g), the `head` axis (nil: none), `rows`
/// (flattened to i) and `columns` (to j). When a run of axes cannot be walked with one
/// stride, the mask is materialised in scores layout in `workspace`.
func maskView(_ data: UnsafePointer<UInt8>, dims: [Int], scores: [Int], groups: [Int], head: Int?, rows: [Int],
              columns: [Int], _ name: String, _ workspace: Workspace<some KernelScalar>) throws(AttentionError) -> MaskView {
    guard let strides = try? broadcastStrides(dims, to: scores, name) else {
        throw .shape("\(name) does not broadcast to \(scores), the scores' shape (expanded as Keras expands it: \(dims))")
    }
    if let g = mergedStride(groups, dims: scores, strides: strides),
       let i = mergedStride(rows, dims: scores, strides: strides),
       let j = mergedStride(columns, dims: scores, strides: strides) {
        return MaskView(base: data, group: g, head: head.map { strides[$0] } ?? 0, row: i, column: j)
    }
    let count = try checkedProduct(scores, "the scores tensor")
    let dense = try workspace.bytes(count, "the materialised \(name)")
    var k = 0
    forEachOffset(scores, strides) { offset in
        dense[k] = data[offset]
        k += 1
    }
    let heads = head.map { scores[$0] } ?? 1
    let rowCount = rows.reduce(1) { $0 * scores[$1] }, columnCount = columns.reduce(1) { $0 * scores[$1] }
    return MaskView(base: dense, group: heads * rowCount * columnCount, head: rowCount * columnCount,
                    row: columnCount, column: 1)
}
