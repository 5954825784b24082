"""Write the gradient golden files: small cases differentiated by real Keras 3.15 on JAX.

Each case is one .npz under Tests/golden/gradients/<group>/<case>_<dtype>.npz (format:
README.md, "Gradient files"); the ReuseMultiHeadAttention ones come from
make_reuse_grad_golden.py. Run where Keras is installed:
  KERAS_BACKEND=jax JAX_ENABLE_X64=1 <python with keras> Tests/golden/make_grad_golden.py [group ...]
(no group: all). Groups: attention, additive_attention, multi_head_attention,
group_query_attention, constraints.

A case is one training step of L = sum(output * output_gradient)
[+ sum(scores * scores_gradient)] [+ sum(layer.losses)]: jax.value_and_grad through the real
keras.layers.X.__call__ inside a keras.StatelessScope that maps the layer's trainable
variables to the differentiated values (what Keras's JAX trainer does one level up, so the
layer's own activity regularizer runs too). Every call runs with training=False: dropout
cannot match a framework RNG. Inputs, weights and upstream gradients come from numpy
generators seeded by the case name, so a rerun writes the same numbers.

Checks before writing: the traced forward equals an eager call (output, scores, and
layer.losses as Keras lists them after that call), every gradient is finite, and a central
difference of L along a random direction of all inputs and weights agrees with the
gradients (float64 cases; loosely where Keras computes in float32).
"""

import json
import sys

from golden_npz import (B, DTYPES, OUT, bool_mask, generator, rows_masked, trainable_order,
                        value_row_masked, write_case)
from keras_jax import GQA_DEFAULTS, MHA_DEFAULTS, jax, jnp, keras, np, set_random_weights

ROOT = "gradients"
STAMPS = {"keras_version": keras.__version__, "backend": "jax", "jax_version": jax.__version__}

TANH_NOTE = (
    "Keras 3.15 on JAX computes ops.tanh in float32 for float64 inputs, forward and backward "
    "(the cast's gradient rounds the cotangent to float32).")
ADDITIVE_NO_SCALE_NOTE = (
    "Without use_scale the scores stay float32 (a float32 sum of float32 tanh): masking, "
    "softmax and its backward are float32; only weights @ value and its backward are float64.")
FUSED_NOTE = (
    "Keras-JAX's fused path (rank 3, no scores, dropout 0) calls keras.ops.dot_product_attention, "
    "which casts the float64 projections to float32: the attention core and its backward are "
    "float32; the projections and their gradients are float64.")
GQA_FUSED_NOTE = (
    "Keras-JAX's GroupQueryAttention fused path (no scores, dropout 0) calls "
    "keras.ops.dot_product_attention, which casts the float64 projections to float32: the "
    "attention core and its backward are float32.")
FULLY_MASKED_LUONG_NOTE = (
    "Fully masked score rows ({}): Keras computes softmax(s - 1e9) in the layer's dtype "
    "and differentiates through it as if exact (d(s - 1e9)/ds = 1), so the masked row's "
    "softmax Jacobian (uniform in float32 for small |s|, softmax(s) in float64) sends gradient "
    "to query, key and scale.")
FULLY_MASKED_MHA_NOTE = (
    "Fully masked rows (batch 1's values; query 2 of batch 0 by attention_mask). Softmax path: "
    "keras.layers.Softmax replaces masked logits by -1e9 and zeroes masked probabilities, so a "
    "fully masked row is zeros and sends no gradient. Fused path: the row is uniform (every "
    "logit is the fill value), the value gets gradient from it, query and key do not.")
MHA_ACTIVITY_NOTE = (
    "Keras MultiHeadAttention keeps activity_regularizer private (self.activity_regularizer is "
    "None) and passes it to every EinsumDense sublayer: query, key (applied to the value when no "
    "key is passed), value, gate (after its sigmoid) and attention_output. Each penalty is "
    "regularizer(sublayer output) / that output's dim 0 (the batch size). The layer's output is "
    "penalised once (it is attention_output's), the scores never.")
GQA_ACTIVITY_NOTE = (
    "Keras GroupQueryAttention passes activity_regularizer to every EinsumDense sublayer (query, "
    "key, gate after its sigmoid, value, attention_output: their outputs before ops.repeat) AND "
    "sets self.activity_regularizer, so Layer.__call__ also penalises the layer's own outputs: "
    "the output (a second time, equal to attention_output's penalty) and, when returned, the "
    "scores (B, num_query_heads, T, S). Each penalty is divided by its tensor's dim 0 (the "
    "batch size).")
WEIGHT_PENALTY_NOTE = (
    "kernel_regularizer / bias_regularizer penalise every EinsumDense kernel / bias, not divided "
    "by anything; layer.losses lists the activity penalties of the call, then the weight "
    "penalties.")


def save(group, name, dtype, layer, config, call, weights, inputs, outputs, **flags):
    """Write one case under gradients/<group> (golden_npz.write_case)."""
    (OUT / ROOT).mkdir(exist_ok=True)
    write_case(f"{ROOT}/{group}", name, dtype, layer, config, call, weights, inputs, outputs,
               stamps=STAMPS, **flags)


def serialize(obj, family):
    """Keras's serialized dict (JSON-able), or None."""
    return None if obj is None else json.loads(json.dumps(family.serialize(obj)))


# --------------------------------------------------------------------------------------------
# The step: value and gradients of L through layer.__call__
# --------------------------------------------------------------------------------------------

def keras_step(layer, call, inputs, output_gradient, scores_gradient, regularization):
    """Differentiate L through call(**inputs) (which calls the layer). inputs: {name: array or
    None}; the non-None ones are differentiated. Returns (expected arrays, Keras's losses as
    listed by layer.losses after an eager call, checks) with the weight gradients in
    get_weights() order."""
    trainable = list(layer.trainable_variables)
    order = trainable_order(layer, trainable)
    others = list(layer.non_trainable_variables)
    xs = {n: jnp.asarray(x) for n, x in inputs.items() if x is not None}
    og = jnp.asarray(output_gradient)
    sg = None if scores_gradient is None else jnp.asarray(scores_gradient)

    def loss(values, args):
        mapping = list(zip(trainable, values)) + [(v, v.value) for v in others]
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True):
            result = call(**args)
            losses = list(layer.losses)
        out, sc = result if sg is not None else (result, None)
        total = jnp.sum(out * og)
        if sg is not None:
            total = total + jnp.sum(sc * sg)
        if regularization:
            for penalty in losses:
                total = total + penalty
        return total, (out, sc, losses)

    values = [v.value for v in trainable]
    (total, (out, sc, losses)), (g_w, g_x) = jax.value_and_grad(
        loss, argnums=(0, 1), has_aux=True)(values, xs)

    # The eager call: the same forward, and layer.losses as Keras lists them after it.
    eager = call(**{n: np.asarray(x) for n, x in inputs.items() if x is not None})
    eager_out, eager_sc = eager if sg is not None else (eager, None)
    eager_losses = [float(x) for x in layer.losses]
    if not np.allclose(np.asarray(eager_out), np.asarray(out), rtol=1e-6, atol=1e-7):
        raise RuntimeError("traced and eager outputs differ")
    if sc is not None and not np.allclose(np.asarray(eager_sc), np.asarray(sc), rtol=1e-6,
                                          atol=1e-7):
        raise RuntimeError("traced and eager scores differ")
    traced_losses = sorted(float(x) for x in losses)
    if not np.allclose(sorted(eager_losses), traced_losses, rtol=1e-6, atol=0):
        raise RuntimeError(f"traced losses {traced_losses} != eager {sorted(eager_losses)}")

    expected = {"output": np.asarray(out), "scores": None if sc is None else np.asarray(sc),
                "loss": np.asarray(float(total))}
    for n in inputs:
        expected["grad_" + n] = np.asarray(g_x[n]) if n in g_x else None
    for i, j in enumerate(order):
        expected[f"grad_weight_{i}"] = np.asarray(g_w[j])
    for key, value in expected.items():
        if value is not None and not np.all(np.isfinite(value)):
            raise RuntimeError(f"non-finite {key}")

    def directional(step):
        """(central difference of L along a random direction, the gradients' prediction)."""
        rng = np.random.default_rng(7)
        dw = [rng.normal(size=v.shape) for v in values]
        dx = {n: rng.normal(size=x.shape) for n, x in xs.items()}
        plus = loss([v + step * d for v, d in zip(values, dw)],
                    {n: x + step * dx[n] for n, x in xs.items()})[0]
        minus = loss([v - step * d for v, d in zip(values, dw)],
                     {n: x - step * dx[n] for n, x in xs.items()})[0]
        predicted = sum(float(jnp.sum(g * d)) for g, d in zip(g_w, dw))
        predicted += sum(float(jnp.sum(g_x[n] * dx[n])) for n in xs)
        return (float(plus) - float(minus)) / (2 * step), predicted

    return expected, eager_losses, directional


def check_directional(directional, dtype, float32_path, what):
    """The gradients predict L's central difference (float64 only)."""
    if dtype != "float64":
        return
    step, rtol = (1e-3, 2e-2) if float32_path else (1e-5, 1e-6)
    fd, predicted = directional(step)
    if abs(fd - predicted) > rtol * (1 + abs(predicted)):
        raise RuntimeError(f"{what}: central difference {fd!r} != gradients' {predicted!r}")


def draw_upstream(rng, dtype, output_shape, scores_shape):
    og = rng.normal(size=output_shape).astype(dtype)
    sg = None if scores_shape is None else rng.normal(size=scores_shape).astype(dtype)
    return og, sg


def finish(group, name, dtype, layer_kind, config, call_flags, weights, inputs, upstream,
           expected, losses, regularization, *, softmax_in_float32, float32_compute, notes):
    og, sg = upstream
    outputs = dict(expected)
    outputs["output_gradient"] = og
    outputs["scores_gradient"] = sg
    if regularization or losses:
        outputs["losses"] = np.asarray(losses, np.float64)
    save(group, name, dtype, layer_kind, config,
         {**call_flags, "return_attention_scores": sg is not None,
          "regularization": regularization},
         weights, inputs, outputs, softmax_in_float32=softmax_in_float32,
         float32_compute=float32_compute, notes=notes)


# --------------------------------------------------------------------------------------------
# keras.layers.Attention and keras.layers.AdditiveAttention
# --------------------------------------------------------------------------------------------

def luong_case(group, name, config, *, tq=3, tv=4, dim=4, value_dim=None, key=False,
               query_mask=None, value_mask=None, causal=False, scores=False, gain=1.0,
               magnitude=1.0, fd=True, note=None):
    """One Attention/AdditiveAttention case. Weights uniform(0.5, 1.5) * gain; inputs normal *
    magnitude; masks: arrays or True for a random mask. scores: add a scores_gradient."""
    layer_name = {"attention": "Attention", "additive_attention": "AdditiveAttention"}[group]
    tanh = layer_name == "AdditiveAttention" or config["score_mode"] == "concat"
    no_scale_additive = layer_name == "AdditiveAttention" and not config["use_scale"]
    for dtype in DTYPES:
        rng = generator(f"{ROOT}/{group}", name)
        q = (rng.normal(size=(B, tq, dim)) * magnitude).astype(dtype)
        v = (rng.normal(size=(B, tv, value_dim or dim)) * magnitude).astype(dtype)
        k = (rng.normal(size=(B, tv, dim)) * magnitude).astype(dtype) if key else None
        qm = bool_mask(rng, (B, tq)) if query_mask is True else query_mask
        vm = bool_mask(rng, (B, tv)) if value_mask is True else value_mask
        layer = getattr(keras.layers, layer_name)(**config, dtype=dtype)
        layer.build([q.shape, v.shape] + ([k.shape] if key else []))
        weights = set_random_weights(
            layer, rng, dtype, lambda r, shape: r.uniform(0.5, 1.5, size=shape) * gain)
        masks = None if qm is None and vm is None else [qm, vm]

        def call(query, value, key=None):
            return layer([query, value] + ([key] if key is not None else []), mask=masks,
                         training=False, return_attention_scores=scores,
                         use_causal_mask=causal)

        upstream = draw_upstream(rng, dtype, (B, tq, (value_dim or dim)),
                                 (B, tq, tv) if scores else None)
        expected, losses, directional = keras_step(
            layer, call, {"query": q, "value": v, "key": k}, *upstream, False)
        if fd:
            check_directional(directional, dtype, tanh, f"{group}/{name}_{dtype}")
        finish(group, name, dtype, layer_name, config, {"use_causal_mask": causal}, weights,
               {"query": q, "value": v, "key": k, "query_mask": qm, "value_mask": vm},
               upstream, expected, losses, False, softmax_in_float32=no_scale_additive,
               float32_compute=tanh,
               notes=(note, tanh and TANH_NOTE, no_scale_additive and ADDITIVE_NO_SCALE_NOTE))


def attention_cases():
    g = "attention"
    dot = {"use_scale": False, "score_mode": "dot", "dropout": 0.0}
    dot_s = {**dot, "use_scale": True}
    concat = {**dot, "score_mode": "concat"}
    concat_s = {**concat, "use_scale": True}
    luong_case(g, "dot", dot)
    luong_case(g, "dot_scale_scores", dot_s, scores=True)
    luong_case(g, "dot_key", dot, key=True, value_dim=3, scores=True)
    luong_case(g, "concat", concat)
    luong_case(g, "concat_scale_scores", concat_s, scores=True)
    luong_case(g, "concat_scale_key", concat_s, key=True, value_dim=3)
    # The query mask zeroes output rows, not scores: masked rows still get the scores' gradient.
    luong_case(g, "dot_both_masks_scores", dot, query_mask=True, value_mask=True, scores=True)
    luong_case(g, "concat_scale_both_masks", concat_s, query_mask=True, value_mask=True, key=True)
    luong_case(g, "dot_scale_causal_value_mask", dot_s, tq=4, tv=4, causal=True,
               value_mask=True, scores=True, fd=False,
               note=FULLY_MASKED_LUONG_NOTE.format("queries 0 and 1 of batch 1, by the causal "
                                                   "and the value mask"))
    luong_case(g, "concat_causal", concat, tq=4, tv=4, causal=True)
    luong_case(g, "dot_causal_tq_gt_tv", dot, tq=5, tv=3, causal=True)
    luong_case(g, "dot_fully_masked_scores", dot, tv=5, value_mask=value_row_masked(5),
               scores=True, fd=False,
               note=FULLY_MASKED_LUONG_NOTE.format("batch 1's values all masked"))


def additive_attention_cases():
    g = "additive_attention"
    scale = {"use_scale": True, "dropout": 0.0}
    plain = {"use_scale": False, "dropout": 0.0}
    luong_case(g, "scale", scale)
    luong_case(g, "scale_scores", scale, scores=True)
    luong_case(g, "no_scale_scores", plain, scores=True)
    luong_case(g, "scale_key", scale, key=True, value_dim=3)
    luong_case(g, "no_scale_key", plain, key=True, value_dim=5)
    luong_case(g, "scale_both_masks_scores", scale, query_mask=True, value_mask=True,
               scores=True)
    luong_case(g, "no_scale_causal_value_mask", plain, tq=4, tv=4, causal=True, value_mask=True,
               fd=False, note=FULLY_MASKED_LUONG_NOTE.format(
                   "batch 0's values all masked; its float32 scores make them uniform in both "
                   "dtypes"))
    luong_case(g, "scale_causal_key_scores", scale, tq=4, tv=4, causal=True, key=True,
               scores=True)


# --------------------------------------------------------------------------------------------
# keras.layers.MultiHeadAttention and keras.layers.GroupQueryAttention
# --------------------------------------------------------------------------------------------

VALUE_DIM_NOTE = ("value_dim != key_dim fails on Keras-JAX's fused path (rank 3, no scores, "
                  "dropout 0); this case uses a path that works.")


def regularizer_config(kernel=None, bias=None, activity=None):
    """Constructor kwargs (Keras objects) and their serialized config entries."""
    objects = {"kernel_regularizer": kernel, "bias_regularizer": bias,
               "activity_regularizer": activity}
    return objects, {k: serialize(v, keras.regularizers) for k, v in objects.items()}


def projected_case(kind, name, *, q_shape, v_shape, k_dim=None, self_attention=False,
                   value_mask=None, key_mask=None, attention_mask=None, causal=False,
                   scores=False, regularizers=None, fd=True, note=None, **config):
    """One MultiHeadAttention (kind "mha") or GroupQueryAttention ("gqa") case. Masks: arrays or
    True for a random mask of Keras's shape (value/key_mask v_shape[:-1]; attention_mask
    (B, T, S) or an array). regularizers: {kernel, bias, activity} Keras regularizer objects;
    then L includes sum(layer.losses)."""
    group, layer_kind, defaults = {
        "mha": ("multi_head_attention", "MultiHeadAttention", MHA_DEFAULTS),
        "gqa": ("group_query_attention", "GroupQueryAttention", GQA_DEFAULTS)}[kind]
    config = {**defaults, **config}
    regularization = regularizers is not None
    reg_objects, reg_config = regularizer_config(**(regularizers or {}))
    if regularization:
        config.update(reg_config)
    fused = (not scores and config["dropout"] == 0
             and (kind == "gqa" or len(q_shape) == 3))
    for dtype in DTYPES:
        rng = generator(f"{ROOT}/{group}", name)
        q = rng.normal(size=q_shape).astype(dtype)
        v = q.copy() if self_attention else rng.normal(size=v_shape).astype(dtype)
        k = None if k_dim is None else rng.normal(size=v.shape[:-1] + (k_dim,)).astype(dtype)
        vm = bool_mask(rng, v.shape[:-1]) if value_mask is True else value_mask
        km = bool_mask(rng, v.shape[:-1]) if key_mask is True else key_mask
        am = (bool_mask(rng, (B, q.shape[1], v.shape[1])) if attention_mask is True
              else attention_mask)
        keras_config = {key: value for key, value in config.items() if key not in reg_config}
        if kind == "mha":
            layer = keras.layers.MultiHeadAttention(**keras_config, **reg_objects, dtype=dtype)
        else:
            layer = keras.layers.GroupQueryAttention(**keras_config, **reg_objects, dtype=dtype)
        layer.build(q.shape, v.shape, None if k is None else k.shape)
        weights = set_random_weights(layer, rng, dtype,
                                     lambda r, shape: r.normal(size=shape) * 0.5)

        def call(query, value, key=None):
            return layer(query, value, key=key, value_mask=vm, key_mask=km, attention_mask=am,
                         use_causal_mask=causal, return_attention_scores=scores,
                         training=False)

        probe = layer(q, v, key=k, value_mask=vm, key_mask=km, attention_mask=am,
                      use_causal_mask=causal, return_attention_scores=True, training=False)
        upstream = draw_upstream(rng, dtype, probe[0].shape, probe[1].shape if scores else None)
        expected, losses, directional = keras_step(
            layer, call, {"query": q, "value": v, "key": k}, *upstream, regularization)
        if fd:
            check_directional(directional, dtype, fused, f"{group}/{name}_{dtype}")
        activity_note = regularizers and regularizers.get("activity") is not None and (
            MHA_ACTIVITY_NOTE if kind == "mha" else GQA_ACTIVITY_NOTE)
        weight_note = regularizers and (regularizers.get("kernel") is not None
                                        or regularizers.get("bias") is not None) \
            and WEIGHT_PENALTY_NOTE
        finish(group, name, dtype, layer_kind, config, {"use_causal_mask": causal}, weights,
               {"query": q, "value": v, "key": k, "value_mask": vm, "key_mask": km,
                "attention_mask": am},
               upstream, expected, losses, regularization, softmax_in_float32=fused,
               float32_compute=fused,
               notes=(note, activity_note, weight_note,
                      fused and (FUSED_NOTE if kind == "mha" else GQA_FUSED_NOTE),
                      self_attention and "Self-attention: value holds the query's numbers "
                      "(differentiated as a separate input)."))


def mha_case(name, *, q_shape=(B, 4, 4), v_shape=(B, 5, 3), **kwargs):
    projected_case("mha", name, q_shape=q_shape, v_shape=v_shape, **kwargs)


def gqa_case(name, *, t=4, s=5, dq=4, dv=None, dk=None, **kwargs):
    projected_case("gqa", name, q_shape=(B, t, dq), v_shape=(B, s, dv or dq), k_dim=dk,
                   **kwargs)


def l1(v):
    return keras.regularizers.L1(l1=v)


def l2(v):
    return keras.regularizers.L2(l2=v)


def l1_l2(a, b):
    return keras.regularizers.L1L2(l1=a, l2=b)


REGULARIZER_SETS = {
    "reg_kernel_l1": {"kernel": l1(0.05)},
    "reg_bias_l2": {"bias": l2(0.3)},
    "reg_activity_l1_l2": {"activity": l1_l2(0.02, 0.04)},
    "reg_all": {"kernel": l1(0.05), "bias": l2(0.3), "activity": l1_l2(0.02, 0.04)},
}


def multi_head_attention_cases():
    square = {"q_shape": (B, 5, 4), "v_shape": (B, 5, 3)}
    mha_case("self", q_shape=(B, 4, 4), v_shape=(B, 4, 4), self_attention=True)
    mha_case("self_scores", q_shape=(B, 4, 4), v_shape=(B, 4, 4), self_attention=True,
             scores=True)
    mha_case("cross")
    mha_case("cross_scores", scores=True)
    mha_case("key", k_dim=2)
    mha_case("key_scores", k_dim=2, scores=True)
    mha_case("value_dim_scores", value_dim=4, scores=True, note=VALUE_DIM_NOTE)
    mha_case("value_dim_r4", value_dim=4, attention_axes=(2,), q_shape=(B, 2, 4, 4),
             v_shape=(B, 2, 5, 3), note=VALUE_DIM_NOTE)
    mha_case("output_shape_int", output_shape=5)
    mha_case("output_shape_tuple_scores", output_shape=(2, 3), scores=True)
    mha_case("gate", use_gate=True)
    mha_case("gate_value_dim_scores", use_gate=True, value_dim=2, scores=True,
             note=VALUE_DIM_NOTE)
    mha_case("no_bias", use_bias=False)
    mha_case("no_bias_scores", use_bias=False, scores=True)
    mha_case("r4_axes_12_scores", attention_axes=(1, 2), q_shape=(B, 2, 3, 4),
             v_shape=(B, 3, 2, 3), scores=True)
    mha_case("r4_axes_12", attention_axes=(1, 2), q_shape=(B, 2, 3, 4), v_shape=(B, 3, 2, 3))
    mha_case("r4_axes_2", attention_axes=(2,), q_shape=(B, 2, 4, 4), v_shape=(B, 2, 5, 3))
    mha_case("r4_axes_2_key_scores", attention_axes=(2,), q_shape=(B, 2, 4, 4),
             v_shape=(B, 2, 5, 3), k_dim=2, scores=True)
    mha_case("causal", causal=True, **square)
    mha_case("causal_scores", causal=True, scores=True, **square)
    mha_case("causal_tq_gt_tv_scores", causal=True, scores=True, q_shape=(B, 5, 4),
             v_shape=(B, 3, 3))
    mha_case("attention_mask", attention_mask=True)
    mha_case("attention_mask_scores", attention_mask=True, scores=True)
    mha_case("value_key_masks_scores", k_dim=2, value_mask=True, key_mask=True, scores=True)
    mha_case("sliding_window", sliding_window=2, **square)
    mha_case("sliding_window_causal_scores", sliding_window=2, causal=True, scores=True,
             **square)
    full = {"value_mask": rows_masked((B, 5), 1),
            "attention_mask": rows_masked((B, 4, 5), (0, 2))}
    mha_case("fully_masked", note=FULLY_MASKED_MHA_NOTE, **full)
    mha_case("fully_masked_scores", scores=True, note=FULLY_MASKED_MHA_NOTE, **full)
    for name, regs in REGULARIZER_SETS.items():
        mha_case(name, regularizers=regs)
    mha_case("reg_all_gate_key_scores", regularizers=REGULARIZER_SETS["reg_all"],
             use_gate=True, k_dim=2, scores=True)
    mha_case("reg_all_r4_output_shape", regularizers=REGULARIZER_SETS["reg_all"],
             attention_axes=(2,), output_shape=(2, 3), q_shape=(B, 2, 4, 4),
             v_shape=(B, 2, 5, 3))


def group_query_attention_cases():
    gqa_case("kv1", num_key_value_heads=1)
    gqa_case("kv1_scores", num_key_value_heads=1, scores=True)
    gqa_case("kv2")
    gqa_case("kv2_scores", scores=True)
    gqa_case("kv2_key_scores", dk=3, dv=5, scores=True)
    gqa_case("gate", use_gate=True)
    gqa_case("gate_kv1_scores", use_gate=True, num_key_value_heads=1, scores=True)
    gqa_case("no_bias_scores", use_bias=False, scores=True)
    # Causal alone takes Keras's is_causal kernel on the fused path.
    gqa_case("causal", causal=True, t=5, s=5)
    gqa_case("causal_scores", causal=True, t=5, s=5, scores=True)
    gqa_case("masks_scores", value_mask=True, attention_mask=True, scores=True)
    gqa_case("sliding_window_causal", sliding_window=2, causal=True, t=5, s=5)
    for name, regs in REGULARIZER_SETS.items():
        gqa_case(name, regularizers=regs)
    gqa_case("reg_activity_l1_l2_scores", regularizers=REGULARIZER_SETS["reg_activity_l1_l2"],
             scores=True)
    gqa_case("reg_all_gate_kv1_scores", regularizers=REGULARIZER_SETS["reg_all"],
             use_gate=True, num_key_value_heads=1, dk=3, scores=True)


# --------------------------------------------------------------------------------------------
# Constraints: what Keras's optimizer does after an update, variable.assign(constraint(variable))
# --------------------------------------------------------------------------------------------

CONSTRAINT_NOTE = (
    "After: for every weight with a constraint, variable.assign(variable.constraint(variable)), "
    "as Keras's optimizer does after applying gradients. MaxNorm / UnitNorm / MinMaxNorm divide "
    "by (keras.config.epsilon() + norm) with epsilon 1e-7, so even weights whose norms are "
    "within bounds change by a factor norm / (1e-7 + norm).")


def constraint_case(kind, name, *, kernel=None, bias=None, q_shape=(B, 4, 4),
                    v_shape=(B, 5, 3), k_dim=None, **config):
    """Weights before and after the layer's kernel_constraint / bias_constraint."""
    layer_kind, defaults, cls = {
        "mha": ("MultiHeadAttention", MHA_DEFAULTS, keras.layers.MultiHeadAttention),
        "gqa": ("GroupQueryAttention", GQA_DEFAULTS, keras.layers.GroupQueryAttention)}[kind]
    config = {**defaults, **config}
    serialized = {"kernel_constraint": serialize(kernel, keras.constraints),
                  "bias_constraint": serialize(bias, keras.constraints)}
    for dtype in DTYPES:
        rng = generator(f"{ROOT}/constraints", name)
        q = rng.normal(size=q_shape).astype(dtype)
        v = rng.normal(size=v_shape).astype(dtype)
        k = None if k_dim is None else rng.normal(size=v_shape[:-1] + (k_dim,)).astype(dtype)
        layer = cls(**config, kernel_constraint=kernel, bias_constraint=bias, dtype=dtype)
        layer.build(q.shape, v.shape, None if k is None else k.shape)
        # Around norm 1 per unit, so MaxNorm(1) clips some and leaves others.
        before = set_random_weights(layer, rng, dtype,
                                    lambda r, shape: r.normal(size=shape) * 0.6)
        for variable in layer.weights:
            if variable.constraint is not None:
                variable.assign(variable.constraint(variable))
        after = [np.asarray(w) for w in layer.get_weights()]
        for b, a in zip(before, after):
            if a.dtype != np.dtype(dtype) or not np.all(np.isfinite(a)):
                raise RuntimeError(f"constraints/{name}_{dtype}: bad constrained weight")
        save("constraints", name, dtype, layer_kind, {**config, **serialized},
             {"use_causal_mask": False, "return_attention_scores": False}, before,
             {"query": q, "value": v, "key": k},
             {f"constrained_weight_{i}": a for i, a in enumerate(after)},
             softmax_in_float32=False, float32_compute=False, notes=(CONSTRAINT_NOTE,))


def constraint_cases():
    c = keras.constraints
    constraint_case("mha", "mha_max_norm_axis0", kernel=c.MaxNorm(1.0, axis=0),
                    bias=c.MaxNorm(1.0, axis=0))
    constraint_case("mha", "mha_max_norm_default", kernel=c.MaxNorm(), bias=c.MaxNorm())
    constraint_case("mha", "mha_max_norm_axis1_kernel", kernel=c.MaxNorm(0.8, axis=1))
    constraint_case("mha", "mha_max_norm_axis_neg1", kernel=c.MaxNorm(1.0, axis=-1),
                    bias=c.MaxNorm(0.5, axis=-1))
    constraint_case("mha", "mha_max_norm_axis2_output_shape", kernel=c.MaxNorm(0.7, axis=2),
                    bias=c.MaxNorm(0.7, axis=1), output_shape=(2, 3))
    constraint_case("mha", "mha_non_neg", kernel=c.NonNeg(), bias=c.NonNeg())
    constraint_case("mha", "mha_non_neg_kernel_gate", kernel=c.NonNeg(), use_gate=True)
    constraint_case("mha", "mha_unit_norm_axis0", kernel=c.UnitNorm(axis=0),
                    bias=c.UnitNorm(axis=0))
    constraint_case("mha", "mha_unit_norm_axis1_kernel", kernel=c.UnitNorm(axis=1))
    constraint_case("mha", "mha_min_max_norm_rate", kernel=c.MinMaxNorm(0.8, 1.2, rate=0.5),
                    bias=c.MinMaxNorm(0.8, 1.2, rate=0.5))
    constraint_case("mha", "mha_min_max_norm_axis_neg1",
                    kernel=c.MinMaxNorm(0.5, 0.9, rate=1.0, axis=-1),
                    bias=c.MinMaxNorm(0.2, 0.6, rate=0.25, axis=-1))
    constraint_case("mha", "mha_min_max_norm_r4_key", kernel=c.MinMaxNorm(0.6, 1.0, axis=1),
                    attention_axes=(2,), q_shape=(B, 2, 4, 4), v_shape=(B, 2, 5, 3), k_dim=2)
    constraint_case("gqa", "gqa_max_norm_non_neg", kernel=c.MaxNorm(1.0, axis=0),
                    bias=c.NonNeg(), use_gate=True)


GROUPS = {
    "attention": attention_cases,
    "additive_attention": additive_attention_cases,
    "multi_head_attention": multi_head_attention_cases,
    "group_query_attention": group_query_attention_cases,
    "constraints": constraint_cases,
}


def main(groups):
    unknown = set(groups) - set(GROUPS)
    if unknown:
        sys.exit(f"unknown group(s) {sorted(unknown)}; the groups are {list(GROUPS)}")
    for group in groups or GROUPS:
        # The Reuse files in constraints/ belong to make_reuse_grad_golden.py.
        for stale in (OUT / ROOT / group).glob("*.npz"):
            if not stale.name.startswith("reuse_"):
                stale.unlink()
        GROUPS[group]()
    files = sorted(f for group in groups or GROUPS for f in (OUT / ROOT / group).glob("*.npz"))
    size = sum(f.stat().st_size for f in files)
    print(f"wrote {len(files)} gradient golden files ({size / 1e6:.2f} MB) under {OUT / ROOT}")


if __name__ == "__main__":
    main(sys.argv[1:])
