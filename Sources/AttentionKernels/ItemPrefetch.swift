/// The rows a worker's next flash block reads and writes first — its query and output rows,
/// the key and value rows its bands reach — prefetched into the outer caches a few rows at a
/// time while the current block computes. One head's rows sit a whole row of heads apart in
/// the (batch, position, head, feature) layout, so without it every block starts by waiting
/// on DRAM (packing the keys, the first value tiles).
struct ItemPrefetch {
    /// `count` rows of `bytes` bytes, `stride` bytes apart from `first`.
    struct Rows: @unchecked Sendable {  // (an address to prefetch, never dereferenced)
        let first: UnsafeRawPointer?, stride: Int, bytes: Int, count: Int
        let hint: PrefetchHint

        init<T>(_ first: UnsafePointer<T>, stride: Int, width: Int, count: Int, writes: Bool = false) {
            let size = MemoryLayout<T>.stride
            (self.first, self.stride, bytes, self.count) = (UnsafeRawPointer(first), stride &* size, width &* size, count)
            hint = writes ? .aheadToWrite : .ahead
        }

        private init() { (first, stride, bytes, count, hint) = (nil, 0, 0, 0, .ahead) }
        static let none = Rows()

        /// Prefetches the cache lines of row r, if there is one.
        @inline(__always)
        func fetch(_ r: Int) {
            guard r < count, let first else { return }
            prefetch(first + r &* stride, bytes: bytes, hint)
        }
    }

    private var regions = InlineArray<4, Rows>(repeating: .none)
    private var count = 0, next = 0, rows = 0, rowsPerStep = 0

    /// Adds rows to prefetch (at most 4 sets of rows are kept).
    mutating func add(_ rows: Rows) {
        guard count < regions.count else { return }
        regions[count] = rows
        count += 1
    }

    /// Paces the prefetching to be done after half of `steps` calls to `step`, leaving the
    /// lines time to arrive.
    mutating func spread(over steps: Int) {
        rows = 0
        for k in 0..<count { rows = max(rows, regions[k].count) }
        rowsPerStep = (2 * rows + max(1, steps) - 1) / max(1, steps)
    }

    /// Prefetches the next rows of each set.
    @inline(__always)
    mutating func step() {
        let end = min(next + rowsPerStep, rows)
        while next < end {
            for k in 0..<count { regions[k].fetch(next) }
            next += 1
        }
    }
}

extension Row {
    /// Adds the query rows `rows` of this (group, head) and its output rows (to be written) to `ahead`.
    func prefetch(rows: Range<Int>, into ahead: inout ItemPrefetch) {
        let o = job.operands
        ahead.add(.init(queryRow(rows.lowerBound), stride: o.queryLayout.row, width: shape.keyDim, count: rows.count))
        ahead.add(.init(UnsafePointer(outputRow(rows.lowerBound)), stride: o.outputLayout.row, width: shape.valueDim,
                        count: rows.count, writes: true))
    }

    /// Adds the key and value rows `keys` of this (group, head) to `ahead`.
    func prefetch(keys: Range<Int>, into ahead: inout ItemPrefetch) {
        let o = job.operands
        ahead.add(.init(keyRow(keys.lowerBound), stride: o.keyLayout.row, width: shape.keyDim, count: keys.count))
        ahead.add(.init(valueRow(keys.lowerBound), stride: o.valueLayout.row, width: shape.valueDim, count: keys.count))
    }
}
