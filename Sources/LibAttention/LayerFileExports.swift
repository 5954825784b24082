import AttentionLayers
import CAttention

/// Layer files (AttentionLayers.LayerFile): a built layer with its config, build shapes and
/// weights in one safetensors file, written and read by the Python package too.

@_cdecl("att_layer_save")
public func att_layer_save(_ layer: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> att_status {
    withStatus {
        try Handles.withEntry(layer, .read, "att_layer_save") { entry in
            guard let path else { throw Failure.null("path") }
            try requireBuilt(entry.layer)
            guard let shapes = entry.buildShapes else {
                throw Failure(ATT_ERR_NOT_BUILT, "the layer has no build shapes to record: build it with att_layer_build")
            }
            try LayerFile.save(entry.layer, buildShapes: shapes, cPath: path)
        }
    }
}

@_cdecl("att_layer_load")
public func att_layer_load(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> att_status {
    withStatus {
        guard let path else { throw Failure.null("path") }
        guard let out else { throw Failure.null("out") }
        let (layer, shapes) = try LayerFile.load(cPath: path)
        out.pointee = Handles.insert(layer, buildShapes: shapes)
    }
}
