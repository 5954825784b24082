import AttentionLayers
import CAttention
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A live layer and who is using it. `users` is the number of readers (calls, backward,
/// losses, weight and shape queries) inside the layer, or −1 while one writer (build,
/// set_weight, apply_constraints) changes it. Nobody waits: whoever cannot enter gets
/// ATT_ERR_BUSY, so no thread blocks on another and nothing is held across a fork.
final class LayerEntry: Sendable {
    let layer: any AttentionLayer
    let users = Atomic<Int>(0)
    /// The shapes of the last successful build (att_layer_save records them). Written only by
    /// a writer (users == −1) and read only by readers, so the acquire/release of `users`
    /// orders every access.
    nonisolated(unsafe) var buildShapes: BuildShapes?

    init(_ layer: any AttentionLayer, buildShapes: BuildShapes? = nil) {
        self.layer = layer
        self.buildShapes = buildShapes
    }

    /// How an entry point uses the layer.
    enum Access {
        case read, write
    }

    /// Enters as a reader (unless a writer is in) or as the only user (a writer: 0 → −1).
    /// `function` names the entry point in the ATT_ERR_BUSY message.
    func enter(_ access: Access, _ function: StaticString) throws {
        switch access {
        case .read:
            var seen = users.load(ordering: .relaxed)
            while seen >= 0 {
                let (entered, now) = users.compareExchange(expected: seen, desired: seen + 1, ordering: .acquiring)
                if entered { return }
                seen = now
            }
            throw Failure(ATT_ERR_BUSY, "layer is in use by another thread: \(function) cannot run while att_layer_build, att_layer_set_weight or att_layer_apply_constraints changes the layer")
        case .write:
            let (entered, now) = users.compareExchange(expected: 0, desired: -1, ordering: .acquiring)
            if entered { return }
            let who = now < 0 ? "another build, set_weight or apply_constraints is changing it"
                              : "\(now) call\(now == 1 ? "" : "s") (call, backward, losses or a weight query) \(now == 1 ? "is" : "are") using it"
            throw Failure(ATT_ERR_BUSY, "layer is in use by another thread: \(function) cannot change the layer while \(who)")
        }
    }

    func leave(_ access: Access) {
        switch access {
        case .read: users.subtract(1, ordering: .releasing)
        case .write: users.store(0, ordering: .releasing)
        }
    }
}

/// The live layers, by handle. A handle is an id that is never reused, so a destroyed or
/// made-up handle is recognised and refused instead of dereferenced.
enum Handles {
    fileprivate struct Table {
        var layers: [UInt: LayerEntry] = [:]
        var nextID: UInt = 0x10_0000
    }

    /// The table, created on the library's first use of a handle; creating it registers the
    /// fork handlers (ForkSafety), so they exist before any lock they guard can be taken.
    fileprivate static let table: Locked<Table> = {
        let table = Locked(Table())
        ForkSafety.register()
        return table
    }()

    /// Registers `layer` (built for `buildShapes`, if given) and returns its new handle.
    static func insert(_ layer: any AttentionLayer, buildShapes: BuildShapes? = nil) -> OpaquePointer? {
        let entry = LayerEntry(layer, buildShapes: buildShapes)
        return table.withLock { t in
            let id = t.nextID
            t.nextID += 16
            t.layers[id] = entry
            return OpaquePointer(bitPattern: id)
        }
    }

    /// body(layer of `handle`) with the layer entered for `access` by `function`; throws
    /// ATT_ERR_INVALID_HANDLE for a handle that is not live, ATT_ERR_BUSY when the layer
    /// cannot be entered. The entry stays alive until body returns, even if destroyed meanwhile.
    static func with<Result>(_ handle: OpaquePointer?, _ access: LayerEntry.Access, _ function: StaticString,
                             _ body: (any AttentionLayer) throws -> Result) throws -> Result {
        try withEntry(handle, access, function) { try body($0.layer) }
    }

    /// `with`, giving body the whole entry (the layer and its recorded build shapes).
    static func withEntry<Result>(_ handle: OpaquePointer?, _ access: LayerEntry.Access, _ function: StaticString,
                                  _ body: (LayerEntry) throws -> Result) throws -> Result {
        let entry = try lookup(handle)
        try entry.enter(access, function)
        defer { entry.leave(access) }
        return try body(entry)
    }

    private static func lookup(_ handle: OpaquePointer?) throws -> LayerEntry {
        guard let handle else { throw Failure(ATT_ERR_INVALID_HANDLE, "layer handle is NULL") }
        guard let entry = table.withLock({ $0.layers[id(handle)] }) else { throw notLive(handle) }
        return entry
    }

    /// Forgets `handle` at once; the layer is freed when the last call inside it returns.
    static func remove(_ handle: OpaquePointer) throws {
        let removed = table.withLock { $0.layers.removeValue(forKey: id(handle)) }
        guard removed != nil else { throw notLive(handle) }
    }

    private static func id(_ handle: OpaquePointer) -> UInt {
        UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
    }

    private static func notLive(_ handle: OpaquePointer) -> Failure {
        Failure(ATT_ERR_INVALID_HANDLE, "layer handle \(handle) is not a live layer (never created, or destroyed)")
    }

    /// In a forked child: the threads that were inside layers do not exist, so no layer is in use.
    /// Runs with the table's lock held (ForkSafety's prepare handler took it).
    fileprivate static func forgetUsersAfterFork() {
        table.withLockHeld { t in
            for entry in t.layers.values { entry.users.store(0, ordering: .relaxed) }
        }
    }
}

/// Weight names as C strings that live as long as the library (the set of names is small).
enum InternedNames {
    fileprivate static let table = Locked([String: UnsafeMutablePointer<CChar>]())

    static func cString(_ name: String) -> UnsafePointer<CChar>? {
        table.withLock { t in
            if let p = t[name] { return UnsafePointer(p) }
            guard let p = strdup(name) else { return nil }
            t[name] = p
            return UnsafePointer(p)
        }
    }
}

/// pthread_atfork handlers that keep the library's locks free across fork(): prepare takes
/// every lock (waiting for the holders, which hold them only briefly and never while
/// calling out), the parent releases them, the child resets every layer's user count and
/// releases them. The pool of worker threads handles fork itself (AttentionKernels).
enum ForkSafety {
    /// Registers the handlers; called once, from the handle table's creation. The name table
    /// is created first, so that prepare never creates a global.
    static func register() {
        _ = InternedNames.table
        pthread_atfork(prepare, parent, child)
    }
}

private func prepare() {
    InternedNames.table.lock()
    Handles.table.lock()
}

private func parent() {
    Handles.table.unlock()
    InternedNames.table.unlock()
}

private func child() {
    Handles.forgetUsersAfterFork()
    Handles.table.unlock()
    InternedNames.table.unlock()
}
