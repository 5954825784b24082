import AttentionLayers
import CAttention

/// The layer-handle functions every layer kind shares: destroy, build, weights, call.

@_cdecl("att_layer_destroy")
public func att_layer_destroy(_ layer: OpaquePointer?) -> att_status {
    withStatus {
        guard let layer else { return }
        try Handles.remove(layer)
    }
}

@_cdecl("att_layer_build")
public func att_layer_build(_ layer: OpaquePointer?, _ query: UnsafePointer<att_shape>?,
                            _ value: UnsafePointer<att_shape>?, _ key: UnsafePointer<att_shape>?) -> att_status {
    withStatus {
        let l = try Handles.layer(layer)
        try l.build(query: try dims(query, "query_shape"), value: try dims(value, "value_shape"),
                    key: try key.map { try $0.pointee.dimsArray("key_shape") })
    }
}

@_cdecl("att_layer_is_built")
public func att_layer_is_built(_ layer: OpaquePointer?, _ built: UnsafeMutablePointer<Int32>?) -> att_status {
    withStatus {
        let l = try Handles.layer(layer)
        guard let built else { throw Failure.null("built") }
        built.pointee = l.isBuilt ? 1 : 0
    }
}

@_cdecl("att_layer_weight_count")
public func att_layer_weight_count(_ layer: OpaquePointer?, _ count: UnsafeMutablePointer<Int>?) -> att_status {
    withStatus {
        let specs = try Handles.layer(layer).weightSpecs
        guard let count else { throw Failure.null("count") }
        count.pointee = specs.count
    }
}

/// The spec of weight `index`, or ATT_ERR_INVALID_ARGUMENT.
private func weightSpec(_ layer: any AttentionLayer, _ index: Int) throws -> WeightSpec {
    let specs = try layer.weightSpecs
    guard index >= 0, index < specs.count else {
        throw Failure(ATT_ERR_INVALID_ARGUMENT, "weight index \(UInt(bitPattern: index)) is out of range: the layer has \(specs.count) weights")
    }
    return specs[index]
}

@_cdecl("att_layer_weight_info")
public func att_layer_weight_info(_ layer: OpaquePointer?, _ index: Int, _ shape: UnsafeMutablePointer<att_shape>?,
                                  _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> att_status {
    withStatus {
        let spec = try weightSpec(try Handles.layer(layer), index)
        shape?.pointee = att_shape(spec.shape)
        if let name {
            guard let interned = InternedNames.cString(spec.name) else {
                throw Failure(ATT_ERR_OUT_OF_MEMORY, "cannot allocate the weight name")
            }
            name.pointee = interned
        }
    }
}

/// Checks that `t` has weight `index`'s shape and the layer's dtype.
private func checkWeightTensor(_ t: RawTensor, _ spec: WeightSpec, _ layer: any AttentionLayer, _ index: Int) throws {
    guard t.elementType == layer.dtype.elementType else {
        throw Failure(ATT_ERR_DTYPE, "weight \(index) (\(spec.name)) is \(layer.dtype.elementType); the tensor is \(t.elementType)")
    }
    guard t.dims == spec.shape else {
        throw Failure(ATT_ERR_SHAPE, "weight \(index) (\(spec.name)) has shape \(spec.shape); the tensor has shape \(t.dims)")
    }
}

@_cdecl("att_layer_get_weight")
public func att_layer_get_weight(_ layer: OpaquePointer?, _ index: Int, _ out: UnsafeMutablePointer<att_tensor>?) -> att_status {
    withStatus {
        let l = try Handles.layer(layer)
        let spec = try weightSpec(l, index)
        let t = try tensor(UnsafePointer(out), "out")
        try checkWeightTensor(t, spec, l, index)
        try l.getWeight(index, into: t.data)
    }
}

@_cdecl("att_layer_set_weight")
public func att_layer_set_weight(_ layer: OpaquePointer?, _ index: Int, _ value: UnsafePointer<att_tensor>?) -> att_status {
    withStatus {
        let l = try Handles.layer(layer)
        let spec = try weightSpec(l, index)
        let t = try tensor(value, "value")
        try checkWeightTensor(t, spec, l, index)
        try l.setWeight(index, from: t.data)
    }
}

@_cdecl("att_layer_output_shape")
public func att_layer_output_shape(_ layer: OpaquePointer?, _ query: UnsafePointer<att_shape>?,
                                   _ value: UnsafePointer<att_shape>?, _ key: UnsafePointer<att_shape>?,
                                   _ output: UnsafeMutablePointer<att_shape>?,
                                   _ scores: UnsafeMutablePointer<att_shape>?) -> att_status {
    withStatus {
        let l = try Handles.layer(layer)
        let shapes = try l.outputShapes(query: try dims(query, "query_shape"), value: try dims(value, "value_shape"),
                                        key: try key.map { try $0.pointee.dimsArray("key_shape") })
        for s in [shapes.output, shapes.scores] where s.count > Int(ATT_MAX_RANK) {
            throw Failure(ATT_ERR_SHAPE, "the result shape \(s) has more than \(ATT_MAX_RANK) dims")
        }
        output?.pointee = att_shape(shapes.output)
        scores?.pointee = att_shape(shapes.scores)
    }
}

@_cdecl("att_layer_call")
public func att_layer_call(_ layer: OpaquePointer?, _ args: UnsafePointer<att_call_args>?) -> att_status {
    withStatus {
        let l = try Handles.layer(layer)
        let a = try versionedStruct(args, "att_call_args", nullName: "args")
        guard l.isBuilt else { throw Failure(ATT_ERR_NOT_BUILT, "the layer is not built: call att_layer_build first") }
        let arguments = CallArguments(
            query: try tensor(a.query, "args->query"),
            value: try tensor(a.value, "args->value"),
            key: try optionalTensor(a.key, "args->key"),
            queryMask: try optionalTensor(a.query_mask, "args->query_mask"),
            valueMask: try optionalTensor(a.value_mask, "args->value_mask"),
            keyMask: try optionalTensor(a.key_mask, "args->key_mask"),
            attentionMask: try optionalTensor(a.attention_mask, "args->attention_mask"),
            training: a.training != 0, useCausalMask: a.use_causal_mask != 0,
            dropoutSeed: a.dropout_seed, dropoutStream: a.dropout_stream,
            output: try tensor(UnsafePointer(a.output), "args->output"),
            scores: try optionalTensor(UnsafePointer(a.scores), "args->scores"),
            reuseAttentionScores: try optionalTensor(a.reuse_attention_scores, "args->reuse_attention_scores"))
        try l.call(arguments)
    }
}
