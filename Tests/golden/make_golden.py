"""Write the golden files: small cases computed by real Keras 3.15 on the JAX backend.

Each case is one .npz under Tests/golden/<group>/<case>_<dtype>.npz (format: README.md).
Run where Keras is installed:  KERAS_BACKEND=jax JAX_ENABLE_X64=1 <python with keras> \
Tests/golden/make_golden.py [group ...]   (no group: all; or `make golden PYTHON=...`).
Inputs and weights come from numpy generators seeded by the case name, so a rerun writes the
same numbers. Every call runs with training=False: dropout cannot match a framework RNG.
"""

import sys

from golden_npz import (B, DTYPES, OUT, bool_mask, generator, rows_masked, value_row_masked,
                        write_case)
from keras_jax import GQA_DEFAULTS, MHA_DEFAULTS, jnp, keras, np, set_random_weights
from keras.src.backend import set_keras_mask

QUERY_MASK_NOTE = (
    "Keras 3.15 MultiHeadAttention ignores its query_mask argument; this case's query_mask was "
    "carried on the query tensor (keras.src.backend.set_keras_mask), as a Masking or Embedding "
    "layer would, and checked equal to passing the equivalent attention_mask.")
TANH_NOTE = (
    "Keras 3.15 on JAX computes ops.tanh in float32 for float64 inputs (keras.backend.result_type "
    "maps float64 to float32 on backends other than TensorFlow): tanh's argument is rounded to "
    "float32 and its result is float32.")
ADDITIVE_NO_SCALE_NOTE = (
    "Without use_scale the scores stay float32 (a float32 sum of float32 tanh), so the masking "
    "(s - 1e9), the softmax and the returned scores are float32; only weights @ value is float64.")
FUSED_NOTE = (
    "Keras-JAX's fused path (rank 3, no scores, dropout 0) calls keras.ops.dot_product_attention, "
    "which casts the float64 projections to float32: logits, masking (-0.7 * float32 max), "
    "softmax and weights @ value are float32; the projections are float64.")
DOT_PRODUCT_NOTE = (
    "keras.ops.dot_product_attention on JAX casts float64 query, key, value and bias to float32: "
    "the whole computation and the returned output are float32.")
EXTREMES = "extremes"
# A subnormal number of each dtype, for the extremes group.
DENORMAL = {"float32": 1e-40, "float64": 1e-310}
NAN, INF = float("nan"), float("inf")
VALUE_DIM_NOTE = (
    "value_dim != key_dim fails on Keras-JAX's fused path (rank 3, no scores, dropout 0); "
    "this case uses a path that works.")


def save(group, name, dtype, layer, config, call, weights, inputs, outputs, **flags):
    """Write one case (golden_npz.write_case) stamped with the Keras version and backend.
    Only the extremes group may hold non-finite outputs."""
    write_case(group, name, dtype, layer, config, call, weights, inputs, outputs,
               stamps={"keras_version": keras.__version__, "backend": keras.backend.backend()},
               finite=group != EXTREMES, **flags)


def with_changes(changes, dtype, layer, weights, **inputs):
    """Copies of the inputs and weights with `changes` applied: (target, index, value), target
    an input name or "weight_<i>", value a number or "denormal" (DENORMAL[dtype]). Changed
    weights are set on the layer (None for dot_product_attention). Returns the inputs in the
    order given, then the weights."""
    inputs = {name: None if x is None else np.array(x) for name, x in inputs.items()}
    weights = [np.array(w) for w in weights]
    for target, index, value in changes:
        value = DENORMAL[dtype] if value == "denormal" else value
        if target.startswith("weight_"):
            weights[int(target[len("weight_"):])][index] = value
        else:
            inputs[target][index] = value
    if layer is not None and weights:
        layer.set_weights(weights)
        weights = [np.asarray(w) for w in layer.get_weights()]
    return (*inputs.values(), weights)


def changes_note(changes, magnitude):
    """What an extremes case did to its inputs and weights, for its note."""
    def entry(target, index):
        index = index if isinstance(index, tuple) else (index,)
        return target + (f"[{', '.join('...' if i is ... else str(i) for i in index)}]"
                         if index else "")

    parts = [f"inputs scaled by {magnitude:g}"] if magnitude != 1 else []
    parts += [f"{entry(target, index)} = {value}" for target, index, value in changes]
    return "extremes: " + "; ".join(parts) + "."


# --------------------------------------------------------------------------------------------
# keras.layers.Attention and keras.layers.AdditiveAttention
# --------------------------------------------------------------------------------------------

def luong_case(group, name, config, *, tq=3, tv=4, dim=4, value_dim=None, key=False,
               query_mask=None, value_mask=None, causal=False, scores=True, magnitude=1.0,
               gain=1.0, layer_name=None, changes=()):
    """One Attention/AdditiveAttention case. Weights: uniform(0.5, 1.5) * gain (never 1);
    inputs: normal * magnitude; masks: arrays or True for a random mask; changes: see
    with_changes (layer_name then names the layer)."""
    layer_name = layer_name or {"attention": "Attention",
                                "additive_attention": "AdditiveAttention"}[group]
    tanh = layer_name == "AdditiveAttention" or config["score_mode"] == "concat"
    no_scale_additive = layer_name == "AdditiveAttention" and not config["use_scale"]
    for dtype in DTYPES:
        rng = generator(group, name)
        q = rng.normal(size=(B, tq, dim)) * magnitude
        v = rng.normal(size=(B, tv, value_dim or dim)) * magnitude
        k = rng.normal(size=(B, tv, dim)) * magnitude if key else None
        qm = bool_mask(rng, (B, tq)) if query_mask is True else query_mask
        vm = bool_mask(rng, (B, tv)) if value_mask is True else value_mask
        q, v = q.astype(dtype), v.astype(dtype)
        k = None if k is None else k.astype(dtype)
        layer = getattr(keras.layers, layer_name)(**config, dtype=dtype)
        layer.build([q.shape, v.shape] + ([k.shape] if key else []))
        weights = set_random_weights(
            layer, rng, dtype, lambda r, shape: r.uniform(0.5, 1.5, size=shape) * gain)
        if changes:
            q, v, k, weights = with_changes(changes, dtype, layer, weights, query=q, value=v,
                                            key=k)
        masks = None if qm is None and vm is None else [qm, vm]
        result = layer([q, v] + ([k] if key else []), mask=masks, training=False,
                       return_attention_scores=scores, use_causal_mask=causal)
        output, attention_scores = result if scores else (result, None)
        save(group, name, dtype, layer_name, config,
             {"use_causal_mask": causal, "return_attention_scores": scores}, weights,
             {"query": q, "value": v, "key": k, "query_mask": qm, "value_mask": vm},
             {"output": output, "scores": attention_scores},
             softmax_in_float32=no_scale_additive, float32_compute=tanh,
             notes=(group == EXTREMES and changes_note(changes, magnitude), tanh and TANH_NOTE,
                    no_scale_additive and ADDITIVE_NO_SCALE_NOTE))


def attention_cases():
    g = "attention"
    dot = {"use_scale": False, "score_mode": "dot", "dropout": 0.0}
    dot_s = {**dot, "use_scale": True}
    concat = {**dot, "score_mode": "concat"}
    concat_s = {**concat, "use_scale": True}
    luong_case(g, "dot", dot)
    luong_case(g, "dot_scale", dot_s)
    luong_case(g, "concat", concat)
    luong_case(g, "concat_scale", concat_s)
    luong_case(g, "dot_scale_output_only", dot_s, scores=False)
    luong_case(g, "dot_key", dot, key=True, value_dim=3)
    luong_case(g, "concat_scale_key", concat_s, key=True, value_dim=3)
    luong_case(g, "dot_query_mask", dot, query_mask=True)
    luong_case(g, "dot_scale_value_mask", dot_s, value_mask=True)
    luong_case(g, "dot_both_masks", dot, query_mask=True, value_mask=True, key=True)
    luong_case(g, "concat_scale_both_masks", concat_s, query_mask=True, value_mask=True)
    luong_case(g, "dot_causal", dot, tq=4, tv=4, causal=True)
    luong_case(g, "concat_causal", concat, tq=4, tv=4, causal=True)
    luong_case(g, "dot_causal_value_mask", dot_s, tq=4, tv=4, causal=True, value_mask=True)
    luong_case(g, "dot_causal_tq_lt_tv", dot, tq=3, tv=5, causal=True)
    luong_case(g, "dot_causal_tq_gt_tv", dot, tq=5, tv=3, causal=True, query_mask=True)
    # A fully masked value row: softmax(s - 1e9) in the layer's dtype. Small |s| (< 32)
    # rounds to a uniform row in float32; large |s| (> 64, up to a few hundred) does not.
    luong_case(g, "dot_fully_masked_small", dot, tv=5, value_mask=value_row_masked(5))
    luong_case(g, "dot_scale_fully_masked_large", dot_s, tv=5, value_mask=value_row_masked(5),
               magnitude=6.0)
    luong_case(g, "concat_fully_masked_large", concat, tv=5, value_mask=value_row_masked(5),
               gain=100.0)
    luong_case(g, "dot_dropout_inference", {**dot_s, "dropout": 0.4}, value_mask=True)


def additive_attention_cases():
    g = "additive_attention"
    scale = {"use_scale": True, "dropout": 0.0}
    plain = {"use_scale": False, "dropout": 0.0}
    luong_case(g, "scale", scale)
    luong_case(g, "no_scale", plain)
    luong_case(g, "scale_output_only", scale, scores=False)
    luong_case(g, "scale_key", scale, key=True, value_dim=3)
    luong_case(g, "no_scale_key", plain, key=True, value_dim=5)
    luong_case(g, "scale_query_mask", scale, query_mask=True)
    luong_case(g, "scale_value_mask", scale, value_mask=True)
    luong_case(g, "no_scale_both_masks", plain, query_mask=True, value_mask=True, key=True)
    luong_case(g, "scale_causal", scale, tq=4, tv=4, causal=True)
    luong_case(g, "no_scale_causal_value_mask", plain, tq=4, tv=4, causal=True, value_mask=True)
    luong_case(g, "scale_causal_tq_lt_tv", scale, tq=3, tv=5, causal=True)
    luong_case(g, "scale_causal_tq_gt_tv", scale, tq=5, tv=3, causal=True)
    luong_case(g, "no_scale_fully_masked_small", plain, tv=5, value_mask=value_row_masked(5))
    luong_case(g, "scale_fully_masked_large", scale, tv=5, value_mask=value_row_masked(5),
               gain=40.0)
    luong_case(g, "scale_dropout_inference", {**scale, "dropout": 0.4}, value_mask=True)


# --------------------------------------------------------------------------------------------
# keras.layers.MultiHeadAttention
# --------------------------------------------------------------------------------------------


def mha_case(name, *, q_shape=(B, 4, 4), v_shape=(B, 5, 3), k_dim=None, self_attention=False,
             query_mask=None, value_mask=None, key_mask=None, attention_mask=None, causal=False,
             scores=False, note=None, group="multi_head_attention", magnitude=1.0, changes=(),
             **config):
    """One MultiHeadAttention case. Masks: arrays, or True for a random mask of Keras's shape
    (query_mask: q_shape[:-1]; value/key_mask: v_shape[:-1]; attention_mask: (B, T, S)).
    Inputs: normal * magnitude; changes: see with_changes."""
    config = {**MHA_DEFAULTS, **config}
    # Keras-JAX's fused path (keras.ops.dot_product_attention) runs in float32.
    fused = len(q_shape) == 3 and not scores and config["dropout"] == 0
    for dtype in DTYPES:
        rng = generator(group, name)
        q = (rng.normal(size=q_shape) * magnitude).astype(dtype)
        v = q if self_attention else (rng.normal(size=v_shape) * magnitude).astype(dtype)
        k = (None if k_dim is None
             else (rng.normal(size=v.shape[:-1] + (k_dim,)) * magnitude).astype(dtype))
        qm = bool_mask(rng, q.shape[:-1]) if query_mask is True else query_mask
        vm = bool_mask(rng, v.shape[:-1]) if value_mask is True else value_mask
        km = bool_mask(rng, v.shape[:-1]) if key_mask is True else key_mask
        am = (bool_mask(rng, (B, q.shape[1], v.shape[1])) if attention_mask is True
              else attention_mask)
        layer = keras.layers.MultiHeadAttention(**config, dtype=dtype)
        layer.build(q.shape, v.shape, None if k is None else k.shape)
        weights = set_random_weights(layer, rng, dtype,
                                     lambda r, shape: r.normal(size=shape) * 0.5)
        if changes:
            q, v, k, weights = with_changes(changes, dtype, layer, weights, query=q, value=v,
                                            key=k)

        def call(query, attention_mask):
            return layer(query, v, key=k, value_mask=vm, key_mask=km,
                         attention_mask=attention_mask, use_causal_mask=causal,
                         return_attention_scores=scores, training=False)

        query = jnp.asarray(q)
        if qm is not None:
            set_keras_mask(query, jnp.asarray(qm))
        output, attention_scores = call(query, am) if scores else (call(query, am), None)
        if qm is not None:
            equivalent = call(q, qm[..., None] if am is None else am & qm[..., None])
            if not np.array_equal(equivalent[0] if scores else equivalent, output,
                                  equal_nan=True):
                raise RuntimeError(f"{name}: Keras did not apply the carried query mask")
        save(group, name, dtype, "MultiHeadAttention", config,
             {"use_causal_mask": causal, "return_attention_scores": scores}, weights,
             {"query": q, "value": v, "key": k, "query_mask": qm, "value_mask": vm,
              "key_mask": km, "attention_mask": am},
             {"output": output, "scores": attention_scores}, softmax_in_float32=fused,
             float32_compute=fused,
             notes=(group == EXTREMES and changes_note(changes, magnitude), note,
                    fused and FUSED_NOTE, qm is not None and QUERY_MASK_NOTE))


def both_paths(name, **kwargs):
    """The case without and with scores (at rank 3: on the fused and the softmax path)."""
    mha_case(name, **kwargs)
    mha_case(name + "_scores", scores=True, **kwargs)


def mask_of(name, shape):
    """A random attention mask shared by several cases."""
    return bool_mask(generator("multi_head_attention", "mask_" + name), shape)


def multi_head_attention_cases():
    both_paths("r3")
    both_paths("r3_key", k_dim=2)
    mha_case("r3_no_bias_scores", use_bias=False, scores=True)
    mha_case("r3_output_shape_int", output_shape=4)
    mha_case("r3_output_shape_tuple_scores", output_shape=(2, 3), scores=True)
    mha_case("r3_value_dim_scores", value_dim=4, scores=True, note=VALUE_DIM_NOTE)
    mha_case("r3_value_dim_dropout", value_dim=4, dropout=0.25, note=VALUE_DIM_NOTE)
    both_paths("r3_gate", use_gate=True)
    mha_case("r3_gate_value_dim_scores", use_gate=True, value_dim=2, scores=True,
             note=VALUE_DIM_NOTE)
    square = {"q_shape": (B, 5, 4), "v_shape": (B, 5, 3)}
    mha_case("r3_sliding_window", sliding_window=2, **square)
    both_paths("r3_sliding_window_causal", sliding_window=2, causal=True, **square)
    both_paths("r3_query_mask", query_mask=True)
    both_paths("r3_value_mask", value_mask=True)
    both_paths("r3_key_mask", k_dim=2, key_mask=True)
    mha_case("r3_key_mask_no_key_scores", key_mask=True, scores=True)
    mha_case("r3_value_and_key_mask", k_dim=3, value_mask=True, key_mask=True)
    both_paths("r3_attention_mask_bts", attention_mask=True)
    mask_ts = mask_of("ts", (4, 5))
    both_paths("r3_attention_mask_ts", attention_mask=mask_ts)
    mha_case("r3_attention_mask_1ts", attention_mask=mask_ts[None])
    both_paths("r3_all_masks", k_dim=2, query_mask=True, value_mask=True, key_mask=True,
               attention_mask=True, causal=True, **square)
    both_paths("r3_causal", causal=True, **square)
    both_paths("r3_causal_tq_lt_tv", causal=True, q_shape=(B, 3, 4), v_shape=(B, 5, 3))
    both_paths("r3_causal_tq_gt_tv", causal=True, q_shape=(B, 5, 4), v_shape=(B, 3, 3))
    both_paths("r3_causal_value_mask", causal=True, value_mask=True, **square)
    # Fully masked rows: batch 1's values all masked, and query row 2 of batch 0 masked by
    # the attention mask. Fused path: uniform rows; softmax path (scores or dropout): zeros.
    full = {"value_mask": rows_masked((B, 5), 1), "attention_mask": rows_masked((B, 4, 5),
                                                                                (0, 2))}
    both_paths("r3_fully_masked", **full)
    mha_case("r3_fully_masked_dropout", dropout=0.3, **full)
    both_paths("r3_dropout_inference", dropout=0.3)
    mha_case("r3_query_mask_dropout", dropout=0.3, query_mask=True)

    r4 = {"q_shape": (B, 2, 4, 4), "v_shape": (B, 2, 5, 3)}
    both_paths("r4_axes_none", q_shape=(B, 2, 3, 4), v_shape=(B, 3, 2, 3))
    # With several attention axes, Keras's query/value masks ((B, T1, T2, 1), (B, S1, 1, S2))
    # do not broadcast together; a full attention_mask (B, T1, T2, S1, S2) does.
    mha_case("r4_axes_none_attention_mask", q_shape=(B, 2, 3, 4), v_shape=(B, 3, 2, 3),
             attention_mask=mask_of("r4_none", (B, 2, 3, 3, 2)), scores=True)
    mha_case("r4_axes_1", attention_axes=(1,), q_shape=(B, 3, 2, 4), v_shape=(B, 5, 2, 3),
             scores=True)
    both_paths("r4_axes_2", attention_axes=(2,), **r4)
    mha_case("r4_axes_neg2", attention_axes=-2, **r4)
    mha_case("r4_axes_2_query_value_mask", attention_axes=(2,), query_mask=True,
             value_mask=True, scores=True, **r4)
    mha_case("r4_axes_2_key_mask", attention_axes=(2,), k_dim=2, key_mask=True, **r4)
    mha_case("r4_axes_2_attention_mask", attention_axes=(2,), scores=True,
             attention_mask=mask_of("r4_2", (B, 2, 4, 5)), **r4)
    # Keras builds the causal mask from the axis-1 lengths; here they equal the axis-2 ones.
    mha_case("r4_axes_2_causal", attention_axes=(2,), causal=True, scores=True,
             q_shape=(B, 3, 3, 4), v_shape=(B, 3, 3, 3))
    mha_case("r4_axes_2_value_dim", attention_axes=(2,), value_dim=4, **r4)
    mha_case("r4_output_shape_tuple", attention_axes=(2,), output_shape=(2, 3), **r4)
    mha_case("r4_gate_no_bias", attention_axes=(2,), use_gate=True, use_bias=False, **r4)
    mha_case("r4_fully_masked", attention_axes=(2,), value_mask=rows_masked((B, 2, 5), (1, 0)),
             **r4)

    mha_case("r5_axes_none", q_shape=(B, 2, 3, 2, 4), v_shape=(B, 3, 2, 2, 3))
    mha_case("r5_axes_23_scores", attention_axes=(2, 3), q_shape=(B, 2, 3, 2, 4),
             v_shape=(B, 2, 4, 3, 3), scores=True)
    mha_case("r5_axes_13", attention_axes=(1, 3), q_shape=(B, 2, 3, 2, 4),
             v_shape=(B, 3, 3, 4, 3), scores=True)
    mha_case("r5_axes_23_attention_mask", attention_axes=(2, 3), q_shape=(B, 2, 3, 2, 4),
             v_shape=(B, 2, 4, 3, 3), attention_mask=mask_of("r5_23", (B, 2, 3, 2, 4, 3)),
             scores=True)

    # The two examples of the Keras MultiHeadAttention docstring.
    mha_case("docs_cross_attention", num_heads=2, key_dim=2, q_shape=(B, 8, 16),
             v_shape=(B, 4, 16), scores=True)
    mha_case("docs_2d_self_attention", num_heads=2, key_dim=2, attention_axes=(2, 3),
             q_shape=(B, 5, 3, 4, 16), self_attention=True)


# --------------------------------------------------------------------------------------------
# keras.ops.dot_product_attention
# --------------------------------------------------------------------------------------------

def dpa_case(name, *, t=3, s=3, heads=4, kv_heads=4, head_dim=4, bias_shape=None,
             mask=None, scale=None, is_causal=False, group="dot_product_attention",
             magnitude=1.0, changes=()):
    """One keras.ops.dot_product_attention case: query (B,T,N,H), key/value (B,S,K,H).
    mask: an array, or a shape for a random bool mask (bool: Keras passes non-bool masks to
    a fallback that broadcasts rank < 4 masks differently). query, key and value: normal *
    magnitude; changes: see with_changes."""
    config = {"scale": scale, "is_causal": is_causal}
    for dtype in DTYPES:
        rng = generator(group, name)
        q = (rng.normal(size=(B, t, heads, head_dim)) * magnitude).astype(dtype)
        k = (rng.normal(size=(B, s, kv_heads, head_dim)) * magnitude).astype(dtype)
        v = (rng.normal(size=(B, s, kv_heads, head_dim)) * magnitude).astype(dtype)
        bias = None if bias_shape is None else rng.normal(size=bias_shape).astype(dtype)
        m = bool_mask(rng, mask) if isinstance(mask, tuple) else mask
        if changes:
            q, k, v, bias, _ = with_changes(changes, dtype, None, [], query=q, key=k, value=v,
                                            bias=bias)
        output = keras.ops.dot_product_attention(q, k, v, bias=bias, mask=m, scale=scale,
                                                 is_causal=is_causal)
        save(group, name, dtype, "dot_product_attention", config,
             {"use_causal_mask": False, "return_attention_scores": False}, [],
             {"query": q, "key": k, "value": v, "bias": bias, "mask": m},
             {"output": output}, softmax_in_float32=True, float32_compute=True,
             notes=(group == EXTREMES and changes_note(changes, magnitude), DOT_PRODUCT_NOTE))


def dot_product_attention_cases():
    dpa_case("mha", kv_heads=4)
    dpa_case("gqa", kv_heads=2)
    dpa_case("mqa", kv_heads=1)
    dpa_case("t_lt_s", t=3, s=5, kv_heads=2)
    dpa_case("t_gt_s", t=5, s=3, kv_heads=2, head_dim=2)
    dpa_case("scale", kv_heads=2, scale=0.37)
    dpa_case("bias_bnts", s=5, kv_heads=2, bias_shape=(B, 4, 3, 5))
    dpa_case("bias_ts", s=5, kv_heads=2, bias_shape=(3, 5))
    dpa_case("bias_1nts", s=5, kv_heads=2, bias_shape=(1, 4, 3, 5))
    dpa_case("mask_bnts", s=5, kv_heads=2, mask=(B, 4, 3, 5))
    dpa_case("mask_ts", s=5, kv_heads=2, mask=(3, 5))
    dpa_case("mask_1nts", s=5, kv_heads=2, mask=(1, 4, 3, 5))
    dpa_case("mask_b1ts", s=5, kv_heads=1, mask=(B, 1, 3, 5))
    dpa_case("mask_nts", s=5, kv_heads=4, mask=(4, 3, 5))
    dpa_case("causal", t=4, s=4, kv_heads=2, is_causal=True)
    dpa_case("causal_t_lt_s", t=3, s=5, kv_heads=2, is_causal=True)
    dpa_case("causal_t_gt_s", t=5, s=3, kv_heads=4, is_causal=True)
    dpa_case("causal_bias_mask_scale", t=4, s=5, kv_heads=2, bias_shape=(B, 4, 4, 5),
             mask=(B, 1, 4, 5), scale=0.6, is_causal=True)
    dpa_case("fully_masked_row", s=5, kv_heads=2, bias_shape=(3, 5),
             mask=rows_masked((B, 1, 3, 5), (1, 0, 2)))


# --------------------------------------------------------------------------------------------
# keras.layers.GroupQueryAttention
# --------------------------------------------------------------------------------------------

GQA_FUSED_NOTE = (
    "Keras-JAX's GroupQueryAttention fused path (no scores, dropout 0) calls "
    "keras.ops.dot_product_attention, which casts the float64 projections to float32: logits, "
    "masking (-0.7 * float32 max), softmax and weights @ value are float32.")


def gqa_case(name, *, t=4, s=5, dq=4, dv=None, dk=None, query_mask=None, value_mask=None,
             key_mask=None, attention_mask=None, causal=False, scores=False, note=None,
             group="group_query_attention", magnitude=1.0, changes=(), **config):
    """One GroupQueryAttention case: query (B, t, dq), value (B, s, dv or dq), key (B, s, dk)
    when dk is given. Masks: arrays, or True for a random mask of Keras's shape (query_mask
    (B, t); value/key_mask (B, s); attention_mask (B, t, s)). GQA takes query_mask as given.
    Inputs: normal * magnitude; changes: see with_changes."""
    config = {**GQA_DEFAULTS, **config}
    fused = not scores and config["dropout"] == 0
    for dtype in DTYPES:
        rng = generator(group, name)
        q = (rng.normal(size=(B, t, dq)) * magnitude).astype(dtype)
        v = (rng.normal(size=(B, s, dv or dq)) * magnitude).astype(dtype)
        k = None if dk is None else (rng.normal(size=(B, s, dk)) * magnitude).astype(dtype)
        qm = bool_mask(rng, (B, t)) if query_mask is True else query_mask
        vm = bool_mask(rng, (B, s)) if value_mask is True else value_mask
        km = bool_mask(rng, (B, s)) if key_mask is True else key_mask
        am = bool_mask(rng, (B, t, s)) if attention_mask is True else attention_mask
        layer = keras.layers.GroupQueryAttention(**config, dtype=dtype)
        layer.build(q.shape, v.shape, None if k is None else k.shape)
        weights = set_random_weights(layer, rng, dtype,
                                     lambda r, shape: r.normal(size=shape) * 0.5)
        if changes:
            q, v, k, weights = with_changes(changes, dtype, layer, weights, query=q, value=v,
                                            key=k)
        result = layer(q, v, key=k, query_mask=qm, value_mask=vm, key_mask=km,
                       attention_mask=am, use_causal_mask=causal,
                       return_attention_scores=scores, training=False)
        output, attention_scores = result if scores else (result, None)
        save(group, name, dtype, "GroupQueryAttention", config,
             {"use_causal_mask": causal, "return_attention_scores": scores}, weights,
             {"query": q, "value": v, "key": k, "query_mask": qm, "value_mask": vm,
              "key_mask": km, "attention_mask": am},
             {"output": output, "scores": attention_scores}, softmax_in_float32=fused,
             float32_compute=fused,
             notes=(group == EXTREMES and changes_note(changes, magnitude), note,
                    fused and GQA_FUSED_NOTE))


def gqa_both_paths(name, **kwargs):
    """The case without scores (Keras's fused path) and with scores (its softmax path)."""
    gqa_case(name, **kwargs)
    gqa_case(name + "_scores", scores=True, **kwargs)


def group_query_attention_cases():
    gqa_both_paths("kv1", num_key_value_heads=1)
    gqa_both_paths("kv2")
    gqa_both_paths("kv4", num_key_value_heads=4)
    gqa_both_paths("q6_kv3", num_query_heads=6, num_key_value_heads=3, head_dim=2)
    gqa_both_paths("q6_kv2", num_query_heads=6, num_key_value_heads=2)
    gqa_both_paths("key_value_dims", dk=2, dv=5)
    gqa_both_paths("no_bias", use_bias=False)
    gqa_both_paths("gate", use_gate=True)
    gqa_case("gate_no_bias_kv1", use_gate=True, use_bias=False, num_key_value_heads=1)
    gqa_both_paths("query_mask", query_mask=True)
    gqa_both_paths("value_mask", value_mask=True)
    gqa_both_paths("key_mask", dk=3, key_mask=True)
    gqa_case("key_mask_no_key_scores", key_mask=True, scores=True)
    gqa_both_paths("attention_mask_bts", attention_mask=True)
    mask_ts = bool_mask(generator("group_query_attention", "mask_ts"), (4, 5))
    gqa_both_paths("attention_mask_ts", attention_mask=mask_ts)
    gqa_case("attention_mask_1ts", attention_mask=mask_ts[None])
    square = {"t": 5, "s": 5}
    # Causal alone takes Keras's is_causal kernel on the fused path.
    gqa_both_paths("causal", causal=True, **square)
    gqa_both_paths("causal_tq_lt_tv", causal=True, t=3, s=5)
    gqa_both_paths("causal_tq_gt_tv", causal=True, t=5, s=3)
    gqa_both_paths("causal_value_mask", causal=True, value_mask=True, **square)
    gqa_both_paths("sliding_window", sliding_window=2, **square)
    gqa_both_paths("sliding_window_causal", sliding_window=2, causal=True, t=6, s=5)
    gqa_both_paths("all_masks", dk=2, query_mask=True, value_mask=True, key_mask=True,
                   attention_mask=True, causal=True, use_gate=True, **square)
    # Fully masked rows: batch 1's values all masked, query row 2 of batch 0 masked by the
    # attention mask. Fused path: uniform rows; softmax path (scores or dropout): zeros.
    full = {"value_mask": rows_masked((B, 5), 1), "attention_mask": rows_masked((B, 4, 5),
                                                                                (0, 2))}
    gqa_both_paths("fully_masked", **full)
    gqa_case("fully_masked_dropout", dropout=0.3, **full)
    gqa_case("fully_masked_query_mask", query_mask=rows_masked((B, 4), (1, 3)),
             value_mask=rows_masked((B, 5), 0))
    gqa_both_paths("dropout_inference", dropout=0.3, num_key_value_heads=1)


# --------------------------------------------------------------------------------------------
# Numeric extremes: NaN, ±Inf, denormals, huge scores, in inputs and weights, with masks
# --------------------------------------------------------------------------------------------

def extremes_cases():
    """Keras's results recorded as they are, NaN and Inf included (write_case(finite=False)).
    Indices are of the arrays of the case's shapes; "denormal" is DENORMAL[dtype]."""
    g = EXTREMES
    dot = {"use_scale": False, "score_mode": "dot", "dropout": 0.0}
    dot_s = {**dot, "use_scale": True}
    concat = {**dot, "score_mode": "concat"}
    concat_s = {**concat, "use_scale": True}

    def attention(name, config, *changes, **kwargs):
        luong_case(g, "attention_" + name, config, layer_name="Attention", changes=changes,
                   **kwargs)

    # query (2, 3, 4), value (2, 4, 4) or (2, 5, 4) with a masked value row, key like value.
    attention("dot_nan_query", dot, ("query", (0, 1, 2), NAN))
    attention("dot_inf_query", dot, ("query", (0, 1, 2), INF))
    attention("dot_neginf_query", dot, ("query", (0, 1, 2), -INF))
    attention("dot_nan_key", dot, ("key", (1, 2, 0), NAN), key=True)
    attention("dot_inf_value", dot, ("value", (0, 2, 1), INF))
    attention("dot_inf_and_neginf_value", dot, ("value", (0, 2, 1), INF),
              ("value", (0, 3, 1), -INF))
    attention("dot_denormal_query", dot, ("query", ..., "denormal"))
    attention("dot_denormal_value", dot, ("value", ..., "denormal"))
    attention("dot_scale_scores_1e30", dot_s, magnitude=1e15)
    # Scores up to ±1e38; the sums of |q_d k_d| stay below the float32 maximum (3.4e38), so
    # no order of summation overflows. Then up to ±4e38: Inf in float32.
    attention("dot_scores_1e38", dot, magnitude=3.8e18)
    attention("dot_scores_overflow", dot, magnitude=1e19)
    attention("dot_scale_nan", dot_s, ("weight_0", (), NAN))
    attention("dot_scale_inf", dot_s, ("weight_0", (), INF))
    attention("dot_scale_neginf", dot_s, ("weight_0", (), -INF))
    attention("dot_scale_denormal", dot_s, ("weight_0", (), "denormal"))
    attention("dot_scale_zero_inf_query", dot_s, ("weight_0", (), 0.0),
              ("query", (1, 0, 3), INF))
    # Subnormal times -Inf: -Inf in IEEE arithmetic; XLA on CPU flushes subnormals to 0 (NaN).
    attention("dot_denormal_query_neginf_key", dot, ("query", 0, "denormal"),
              ("key", (0, 2), -INF), key=True)
    attention("concat_nan_query", concat, ("query", (0, 1, 2), NAN))
    attention("concat_inf_query", concat, ("query", (0, 1, 2), INF))
    attention("concat_neginf_key", concat, ("key", (1, 2, 0), -INF), key=True)
    attention("concat_inf_and_neginf", concat, ("query", (0, 1, 2), INF),
              ("value", (0, 3, 2), -INF))
    attention("concat_weight_1e30", concat, ("weight_0", (), 1e30))
    attention("concat_weight_1e38", concat, ("weight_0", (), 1e38))
    attention("concat_weight_nan", concat, ("weight_0", (), NAN))
    attention("concat_weight_inf", concat, ("weight_0", (), INF))
    attention("concat_scale_denormal", concat_s, ("weight_0", (), "denormal"))
    attention("concat_scale_inf", concat_s, ("weight_0", (), INF))
    # Fully masked value rows (batch 1; value (0, 1) masked too) with extreme values.
    masked = {"tv": 5, "value_mask": value_row_masked(5)}
    attention("dot_fully_masked_nan_key", dot, ("key", (1, 2, 0), NAN), key=True, **masked)
    attention("dot_masked_nan_key", dot, ("key", (0, 1, 0), NAN), key=True, **masked)
    attention("dot_masked_inf_value", dot, ("value", (0, 1, 3), INF), ("value", (1, 2, 0), INF),
              key=True, **masked)
    attention("dot_masked_inf_value_output_only", dot, ("value", (0, 1, 3), INF),
              ("value", (1, 2, 0), INF), key=True, scores=False, **masked)
    attention("dot_fully_masked_scores_1e30", dot, magnitude=1e15, **masked)
    attention("concat_fully_masked_weight_1e30", concat, ("weight_0", (), 1e30), **masked)
    # Key 3 is causally masked for every query (Tq = 3) and each row keeps key 0.
    attention("dot_causal_nan_key", dot, ("key", (0, 3, 1), NAN), key=True, tq=3, tv=4,
              causal=True)
    attention("dot_query_masked_nan_query", dot, ("query", (0, 1, 2), NAN),
              query_mask=rows_masked((B, 3), (0, 1)))

    def additive(name, config, *changes, **kwargs):
        luong_case(g, "additive_attention_" + name, config, layer_name="AdditiveAttention",
                   changes=changes, **kwargs)

    scale = {"use_scale": True, "dropout": 0.0}
    plain = {"use_scale": False, "dropout": 0.0}
    additive("nan_query", scale, ("query", (0, 1, 2), NAN))
    additive("inf_query", scale, ("query", (0, 1, 2), INF))
    additive("neginf_key", scale, ("key", (1, 2, 0), -INF), key=True)
    additive("nan_value", scale, ("value", (0, 2, 1), NAN))
    additive("no_scale_inf_value", plain, ("value", (0, 2, 1), INF))
    additive("scale_nan", scale, ("weight_0", (1,), NAN))
    additive("scale_inf", scale, ("weight_0", (2,), INF))
    additive("scale_1e30", scale, ("weight_0", ..., 1e30))
    additive("scale_1e38", scale, ("weight_0", ..., 1e38))
    additive("scale_denormal", scale, ("weight_0", ..., "denormal"))
    additive("denormal_inputs", scale, ("query", ..., "denormal"), ("value", ..., "denormal"))
    additive("fully_masked_nan_value", scale, ("value", (1, 2, 0), NAN), **masked)
    additive("masked_inf_value", scale, ("value", (0, 1, 3), INF), **masked)
    additive("no_scale_fully_masked_neginf_query", plain, ("query", (1, 0, 1), -INF), **masked)

    def mha(name, *changes, **kwargs):
        both_paths("mha_" + name, group=g, changes=changes, **kwargs)

    # query (2, 4, 4), value (2, 5, 3), key (2, 5, 2); 2 heads of 3. Weights: 0/1 query,
    # 2/3 key, 4/5 value, 6/7 attention_output (kernel/bias).
    mha("nan_query", ("query", (0, 1, 2), NAN))
    mha("inf_query", ("query", (0, 1, 2), INF))
    mha("neginf_key", ("key", (1, 3, 0), -INF), k_dim=2)
    mha("inf_value", ("value", (0, 2, 1), INF))
    mha("denormal_inputs", ("query", ..., "denormal"), ("value", ..., "denormal"))
    mha("scores_1e30", magnitude=1e15)
    # Logits about 1e40: finite in float64, beyond float32 (Keras's fused path is float32).
    mha("scores_1e40", magnitude=1e20)
    mha("nan_query_kernel", ("weight_0", (1, 0, 2), NAN))
    mha("inf_value_bias", ("weight_5", (1, 0), INF))
    mha("neginf_output_bias", ("weight_7", (2,), -INF))
    mha("denormal_kernels", ("weight_2", ..., "denormal"), ("weight_4", ..., "denormal"))
    mha_masked = {"k_dim": 2, "value_mask": value_row_masked(5)}
    mha("fully_masked_nan_key", ("key", (1, 2, 0), NAN), **mha_masked)
    mha("masked_nan_key", ("key", (0, 1, 0), NAN), **mha_masked)
    mha("masked_nan_value", ("value", (0, 1, 0), NAN), **mha_masked)
    mha("fully_masked_inf_value", ("value", (1, 2, 0), INF), **mha_masked)
    mha("query_masked_nan_query", ("query", (0, 1, 2), NAN),
        query_mask=rows_masked((B, 4), (0, 1)))

    def gqa(name, *changes, **kwargs):
        gqa_both_paths("gqa_" + name, group=g, changes=changes, **kwargs)

    # query (2, 4, 4), value (2, 5, 4), key (2, 5, 3); 4 query heads, 2 kv heads of 3.
    # Weights: 0/1 query, 2/3 key, [4/5 gate,] then value, attention_output.
    gqa("nan_query", ("query", (0, 1, 2), NAN))
    gqa("inf_key", ("key", (1, 3, 0), INF), dk=3)
    gqa("neginf_value", ("value", (0, 2, 1), -INF))
    gqa("denormal_inputs", ("query", ..., "denormal"), ("value", ..., "denormal"))
    gqa("scores_1e30", magnitude=1e15)
    gqa("nan_key_kernel", ("weight_2", (0, 1, 1), NAN))
    gqa("gate_inf_bias", ("weight_5", (0, 0), INF), ("weight_5", (1, 0), -INF), use_gate=True)
    gqa("gate_nan_kernel", ("weight_4", (3, 2, 1), NAN), use_gate=True)
    gqa_masked = {"dk": 3, "value_mask": value_row_masked(5)}
    gqa("fully_masked_nan_key", ("key", (1, 2, 0), NAN), **gqa_masked)
    gqa("masked_nan_key", ("key", (0, 1, 0), NAN), **gqa_masked)
    gqa("masked_nan_value", ("value", (0, 1, 0), NAN), **gqa_masked)
    gqa("query_masked_nan_query", ("query", (0, 1, 2), NAN),
        query_mask=rows_masked((B, 4), (0, 1)))

    def dpa(name, *changes, **kwargs):
        dpa_case("dot_product_attention_" + name, group=g, changes=changes,
                 **{"s": 5, "kv_heads": 2, **kwargs})

    # query (2, 3, 4, 4), key and value (2, 5, 2, 4); bias (3, 5) where given.
    key_masked = np.ones((B, 1, 3, 5), bool)
    key_masked[1, :, :, 1] = False      # key 1 of batch 1 masked for every query
    row_masked = key_masked.copy()
    row_masked[1, :, 2] = False         # and query 2 of batch 1 fully masked
    dpa("nan_query", ("query", (0, 1, 2, 3), NAN))
    dpa("inf_key", ("key", (1, 3, 0, 2), INF))
    dpa("neginf_value", ("value", (0, 2, 1, 1), -INF))
    dpa("denormal_inputs", ("query", ..., "denormal"), ("value", ..., "denormal"))
    dpa("scores_1e30", magnitude=1.4e15)
    # Logits up to ±1e38: q·k up to 2e38 (scale 1/2), its sums of |terms| as large.
    dpa("scores_1e38", magnitude=5e18)
    dpa("scores_1e40", magnitude=1e20)
    dpa("nan_bias", ("bias", (1, 2), NAN), bias_shape=(3, 5))
    dpa("inf_bias", ("bias", (1, 2), INF), bias_shape=(3, 5))
    dpa("neginf_bias", ("bias", (0,), -INF), ("bias", (1, 3), -INF), bias_shape=(3, 5))
    # Kept logits below the fill value -0.7 * float32 max: masked entries take the weight.
    dpa("bias_below_mask_fill", ("bias", ..., -3e38), bias_shape=(3, 5), mask=row_masked)
    dpa("masked_nan_key", ("key", (1, 1, 0, 0), NAN), mask=row_masked)
    dpa("masked_nan_value", ("value", (1, 1, 0, 0), NAN), mask=key_masked)
    dpa("masked_inf_bias", ("bias", (2,), INF), bias_shape=(3, 5), mask=row_masked)


GROUPS = {
    "attention": attention_cases,
    "additive_attention": additive_attention_cases,
    "multi_head_attention": multi_head_attention_cases,
    "dot_product_attention": dot_product_attention_cases,
    "group_query_attention": group_query_attention_cases,
    EXTREMES: extremes_cases,
}


def main(groups):
    """Rewrite the given groups (all when none is named)."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        sys.exit(f"unknown group(s) {sorted(unknown)}; the groups are {list(GROUPS)}")
    for group in groups or GROUPS:
        for stale in (OUT / group).glob("*.npz"):
            stale.unlink()
        GROUPS[group]()
    files = sorted(f for group in groups or GROUPS for f in (OUT / group).glob("*.npz"))
    size = sum(f.stat().st_size for f in files)
    print(f"wrote {len(files)} golden files ({size / 1e6:.2f} MB) under {OUT}")


if __name__ == "__main__":
    main(sys.argv[1:])
