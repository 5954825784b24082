#if canImport(Glibc)
import Glibc
#endif
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
        try Handles.withEntry(layer, .write, "att_layer_build") { entry in
            let shapes = BuildShapes(query: try dims(query, "query_shape"), value: try dims(value, "value_shape"),
                                     key: try key.map { try $0.pointee.dimsArray("key_shape") })
            try entry.layer.build(query: shapes.query, value: shapes.value, key: shapes.key)
            entry.buildShapes = shapes
        }
    }
}

@_cdecl("att_layer_is_built")
public func att_layer_is_built(_ layer: OpaquePointer?, _ built: UnsafeMutablePointer<Int32>?) -> att_status {
    withStatus {
        let isBuilt = try Handles.with(layer, .read, "att_layer_is_built") { $0.isBuilt }
        guard let built else { throw Failure.null("built") }
        built.pointee = isBuilt ? 1 : 0
    }
}

@_cdecl("att_layer_weight_count")
public func att_layer_weight_count(_ layer: OpaquePointer?, _ count: UnsafeMutablePointer<UInt>?) -> att_status {
    withStatus {
        let specs = try Handles.with(layer, .read, "att_layer_weight_count") { try $0.weightSpecs }
        guard let count else { throw Failure.null("count") }
        count.pointee = UInt(specs.count)
    }
}

/// The spec of weight `index` (a size_t, unsigned), or ATT_ERR_INVALID_ARGUMENT.
private func weightSpec(_ layer: any AttentionLayer, _ index: UInt) throws -> WeightSpec {
    let specs = try layer.weightSpecs
    guard index < UInt(specs.count) else {
        throw Failure(ATT_ERR_INVALID_ARGUMENT, "weight index \(index) is out of range: the layer has \(specs.count) weights")
    }
    return specs[Int(index)]
}

@_cdecl("att_layer_weight_info")
public func att_layer_weight_info(_ layer: OpaquePointer?, _ index: UInt, _ shape: UnsafeMutablePointer<att_shape>?,
                                  _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> att_status {
    withStatus {
        let spec = try Handles.with(layer, .read, "att_layer_weight_info") { try weightSpec($0, index) }
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
private func checkWeightTensor(_ t: RawTensor, _ spec: WeightSpec, _ layer: any AttentionLayer, _ index: UInt) throws {
    guard t.elementType == layer.dtype.elementType else {
        throw Failure(ATT_ERR_DTYPE, "weight \(index) (\(spec.name)) is \(layer.dtype.elementType); the tensor is \(t.elementType)")
    }
    guard t.dims == spec.shape else {
        throw Failure(ATT_ERR_SHAPE, "weight \(index) (\(spec.name)) has shape \(spec.shape); the tensor has shape \(t.dims)")
    }
}

@_cdecl("att_layer_get_weight")
public func att_layer_get_weight(_ layer: OpaquePointer?, _ index: UInt, _ out: UnsafeMutablePointer<att_tensor>?) -> att_status {
    withStatus {
        try Handles.with(layer, .read, "att_layer_get_weight") { l in
            let spec = try weightSpec(l, index)
            let t = try tensor(UnsafePointer(out), "out")
            try checkWeightTensor(t, spec, l, index)
            try l.getWeight(Int(index), into: t.data)
        }
    }
}

@_cdecl("att_layer_set_weight")
public func att_layer_set_weight(_ layer: OpaquePointer?, _ index: UInt, _ value: UnsafePointer<att_tensor>?) -> att_status {
    withStatus {
        try Handles.with(layer, .write, "att_layer_set_weight") { l in
            let spec = try weightSpec(l, index)
            let t = try tensor(value, "value")
            try checkWeightTensor(t, spec, l, index)
            try l.setWeight(Int(index), from: t.data)
        }
    }
}

@_cdecl("att_layer_output_shape")
public func att_layer_output_shape(_ layer: OpaquePointer?, _ query: UnsafePointer<att_shape>?,
                                   _ value: UnsafePointer<att_shape>?, _ key: UnsafePointer<att_shape>?,
                                   _ output: UnsafeMutablePointer<att_shape>?,
                                   _ scores: UnsafeMutablePointer<att_shape>?) -> att_status {
    withStatus {
        let shapes = try Handles.with(layer, .read, "att_layer_output_shape") { l in
            try l.outputShapes(query: try dims(query, "query_shape"), value: try dims(value, "value_shape"),
                               key: try key.map { try $0.pointee.dimsArray("key_shape") })
        }
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
        try Handles.with(layer, .read, "att_layer_call") { l in
            let a = try versionedStruct(args, "att_call_args", nullName: "args")
            try requireBuilt(l)
            var arguments = try callArguments(a, l, scratch: nil)
            try addKeyValueCache(a, to: &arguments, l)
            try requireDisjoint(arguments, callerOutput: true, l)
            try l.call(arguments)
        }
    }
}

@_cdecl("att_layer_backward")
public func att_layer_backward(_ layer: OpaquePointer?, _ args: UnsafePointer<att_call_args>?,
                               _ grads: UnsafePointer<att_gradient_args>?) -> att_status {
    withStatus {
        try Handles.with(layer, .read, "att_layer_backward") { l in
            let a = try versionedStruct(args, "att_call_args", nullName: "args")
            let g = try versionedStruct(grads, "att_gradient_args", nullName: "grads")
            try requireBuilt(l)
            var weights: [RawTensor?]?
            if let list = g.weight_gradients {
                weights = try (0..<(try l.weightSpecs).count).map { i throws in
                    list[i].data == nil ? nil : try tensor(list[i], "grads->weight_gradients[\(i)]")
                }
            }
            let gradients = GradientArguments(
                outputGradient: try tensor(g.output_gradient, "grads->output_gradient"),
                scoresGradient: try optionalTensor(g.scores_gradient, "grads->scores_gradient"),
                query: try optionalTensor(UnsafePointer(g.query_gradient), "grads->query_gradient"),
                value: try optionalTensor(UnsafePointer(g.value_gradient), "grads->value_gradient"),
                key: try optionalTensor(UnsafePointer(g.key_gradient), "grads->key_gradient"),
                reuseAttentionScores: try optionalTensor(UnsafePointer(g.reuse_attention_scores_gradient),
                                                         "grads->reuse_attention_scores_gradient"),
                weights: weights, regularization: g.include_regularization != 0)
            let output = ScratchOutput()
            defer { withExtendedLifetime(output) {} }  // (the layer writes into its buffer)
            var arguments = try callArguments(a, l, scratch: output)
            try addKeyValueCache(a, to: &arguments, l)
            try requireDisjoint(arguments, callerOutput: a.output != nil, l, gradients)
            try l.backward(arguments, gradients)
        }
    }
}

@_cdecl("att_layer_losses")
public func att_layer_losses(_ layer: OpaquePointer?, _ args: UnsafePointer<att_call_args>?,
                             _ losses: UnsafeMutablePointer<Double>?, _ capacity: UInt,
                             _ count: UnsafeMutablePointer<UInt>?) -> att_status {
    withStatus {
        try Handles.with(layer, .read, "att_layer_losses") { l in
            guard let count else { throw Failure.null("count") }
            guard losses != nil || capacity == 0 else { throw Failure.null("losses (capacity is \(capacity))") }
            try requireBuilt(l)
            let output = ScratchOutput()
            defer { withExtendedLifetime(output) {} }  // (the layer writes into its buffer)
            let arguments = try args.map { p throws in
                let a = try versionedStruct(p, "att_call_args", nullName: "args")
                var arguments = try callArguments(a, l, scratch: output)
                try addKeyValueCache(a, to: &arguments, l)
                try requireDisjoint(arguments, callerOutput: a.output != nil, l)
                return arguments
            }
            let values = try l.losses(arguments)
            if let losses {
                for (i, v) in values.prefix(Int(clamping: capacity)).enumerated() { losses[i] = v }
            }
            count.pointee = UInt(values.count)
        }
    }
}

@_cdecl("att_layer_apply_constraints")
public func att_layer_apply_constraints(_ layer: OpaquePointer?) -> att_status {
    withStatus {
        try Handles.with(layer, .write, "att_layer_apply_constraints") { l in
            try requireBuilt(l)
            try l.applyConstraints()
        }
    }
}

/// Throws NOT_BUILT for a layer without weights (the entry points that run it).
func requireBuilt(_ l: any AttentionLayer) throws {
    guard l.isBuilt else { throw Failure(ATT_ERR_NOT_BUILT, "the layer is not built: call att_layer_build first") }
}

/// The output buffer of a call whose caller passed none (training entry points), freed with it:
/// the entry point keeps it alive (`withExtendedLifetime` when it returns) until the layer has
/// written it.
final class ScratchOutput {
    private var buffer: UnsafeMutableRawPointer?

    func allocate(_ bytes: Int) throws -> UnsafeMutableRawPointer {
        guard let p = malloc(max(1, bytes)) else {
            throw Failure(ATT_ERR_OUT_OF_MEMORY, "cannot allocate \(bytes) bytes for the output")
        }
        buffer = p
        return p
    }

    deinit { free(buffer) }
}

/// The forward arguments of a call. A NULL output is an error unless `scratch` is given,
/// which then holds a buffer for it.
private func callArguments(_ a: att_call_args, _ l: any AttentionLayer, scratch: ScratchOutput?) throws -> CallArguments {
    let query = try tensor(a.query, "args->query"), value = try tensor(a.value, "args->value")
    let key = try optionalTensor(a.key, "args->key")
    let output: RawTensor
    if let given = a.output {
        output = try tensor(UnsafePointer(given), "args->output")
    } else if let scratch {
        let dims = try l.outputShapes(query: query.dims, value: value.dims, key: key?.dims).output
        let size = l.dtype == .float32 ? 4 : 8
        let count = try elementCount(dims, elementSize: size, "the output")
        output = RawTensor(data: try scratch.allocate(count * size), elementType: l.dtype.elementType, dims: dims)
    } else {
        throw Failure.null("args->output")
    }
    return CallArguments(
        query: query, value: value, key: key,
        queryMask: try optionalTensor(a.query_mask, "args->query_mask"),
        valueMask: try optionalTensor(a.value_mask, "args->value_mask"),
        keyMask: try optionalTensor(a.key_mask, "args->key_mask"),
        attentionMask: try optionalTensor(a.attention_mask, "args->attention_mask"),
        training: a.training != 0, useCausalMask: a.use_causal_mask != 0,
        dropoutSeed: a.dropout_seed, dropoutStream: a.dropout_stream,
        output: output,
        scores: try optionalTensor(UnsafePointer(a.scores), "args->scores"),
        reuseAttentionScores: try optionalTensor(a.reuse_attention_scores, "args->reuse_attention_scores"))
}

/// Refuses a call (with `g`: a backward) in which a tensor the library writes overlaps
/// another of the call (see requireDisjoint). `callerOutput`: the output is the caller's, not
/// a ScratchOutput.
/// A forward whose written tensors overlap nothing (the usual call) is let through after a
/// test of byte ranges alone; the named lists are built only to find the culprit.
private func requireDisjoint(_ c: CallArguments, callerOutput: Bool, _ l: any AttentionLayer,
                             _ g: GradientArguments? = nil) throws {
    let output = callerOutput ? c.output : nil
    let inputs = [c.query, c.value, c.key, c.queryMask, c.valueMask, c.keyMask, c.attentionMask, c.reuseAttentionScores]
    if g == nil, !anyOverlap(written: [output, c.scores], read: inputs) { return }
    let shapes = { try? l.outputShapes(query: c.query.dims, value: c.value.dims, key: c.key?.dims) }
    var written = [CallTensor(name: "args->output", tensor: output, required: { shapes()?.output }),
                   CallTensor(name: "args->scores", tensor: c.scores, required: { shapes()?.scores })]
    var read = Array(zip(["args->query", "args->value", "args->key", "args->query_mask", "args->value_mask",
                          "args->key_mask", "args->attention_mask", "args->reuse_attention_scores"], inputs))
    if let g {
        written += [CallTensor(name: "grads->query_gradient", tensor: g.query, required: { c.query.dims }),
                    CallTensor(name: "grads->value_gradient", tensor: g.value, required: { c.value.dims }),
                    CallTensor(name: "grads->key_gradient", tensor: g.key, required: { c.key?.dims }),
                    CallTensor(name: "grads->reuse_attention_scores_gradient", tensor: g.reuseAttentionScores,
                               required: { c.reuseAttentionScores?.dims })]
        written += (g.weights ?? []).enumerated().map { i, w in
            CallTensor(name: "grads->weight_gradients[\(i)]", tensor: w, required: {
                guard let specs = try? l.weightSpecs, i < specs.count else { return nil }
                return specs[i].shape
            })
        }
        read += [("grads->output_gradient", g.outputGradient), ("grads->scores_gradient", g.scoresGradient)]
    }
    try LibAttention.requireDisjoint(written: written, read: read.map { CallTensor(name: $0.0, tensor: $0.1) })
}
