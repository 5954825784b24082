import AttentionLayers
import CAttention

/// The live layers, by handle. A handle is an id that is never reused, so a destroyed or
/// made-up handle is recognised and refused instead of dereferenced.
enum Handles {
    private struct Table {
        var layers: [UInt: any AttentionLayer] = [:]
        var nextID: UInt = 0x10_0000
    }

    private static let table = Locked(Table())

    /// Registers `layer` and returns its new handle.
    static func insert(_ layer: any AttentionLayer) -> OpaquePointer? {
        table.withLock { t in
            let id = t.nextID
            t.nextID += 16
            t.layers[id] = layer
            return OpaquePointer(bitPattern: id)
        }
    }

    /// The layer of `handle`, or ATT_ERR_INVALID_HANDLE.
    static func layer(_ handle: OpaquePointer?) throws -> any AttentionLayer {
        guard let handle else { throw Failure(ATT_ERR_INVALID_HANDLE, "layer handle is NULL") }
        let id = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
        guard let layer = table.withLock({ $0.layers[id] }) else {
            throw Failure(ATT_ERR_INVALID_HANDLE, "layer handle \(handle) is not a live layer (never created, or destroyed)")
        }
        return layer
    }

    /// Forgets `handle`; the layer is freed once no call is using it.
    static func remove(_ handle: OpaquePointer) throws {
        let id = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
        let removed = table.withLock { $0.layers.removeValue(forKey: id) }
        guard removed != nil else {
            throw Failure(ATT_ERR_INVALID_HANDLE, "layer handle \(handle) is not a live layer (never created, or destroyed)")
        }
    }
}

/// Weight names as C strings that live as long as the library (the set of names is small).
enum InternedNames {
    private static let table = Locked([String: UnsafeMutablePointer<CChar>]())

    static func cString(_ name: String) -> UnsafePointer<CChar>? {
        table.withLock { t in
            if let p = t[name] { return UnsafePointer(p) }
            guard let p = strdup(name) else { return nil }
            t[name] = p
            return UnsafePointer(p)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
