"""Write the ReuseMultiHeadAttention gradient golden files: TF Model Garden under tf.GradientTape.

Each case is one .npz under Tests/golden/gradients/reuse_multi_head_attention/<case>_<dtype>.npz,
constraint cases under Tests/golden/gradients/constraints/reuse_<case>_<dtype>.npz (format:
README.md, "Gradient files"). Run where TensorFlow, tf-keras and tf-models-official are
installed:  <python with them> Tests/golden/make_reuse_grad_golden.py

A case is one training step of L = sum(output * output_gradient)
[+ sum(scores * scores_gradient)] [+ sum(layer.losses)], differentiated by tf.GradientTape
with respect to query, value, key, reuse_attention_scores and every trainable weight.
Every call runs with training=False: dropout cannot match a framework RNG. Inputs, weights
and upstream gradients come from numpy generators seeded by the case name. Checks before
writing: finite gradients, layer.losses after an eager call equal to the taped ones, and
(float64) a central difference of L along a random direction.
"""

from golden_npz import (B, DTYPES, OUT, bool_mask, generator, rows_masked, trainable_order,
                        write_case)
from model_garden import (DEFAULTS, GROUP, PE_FLOAT32_NOTE, STAMPS, ReuseMultiHeadAttention, heads,
                          np, tf, tf_keras)

ROOT = "gradients"
ACTIVITY_NOTE = (
    "Model Garden's ReuseMultiHeadAttention takes activity_regularizer as a named constructor "
    "argument and never stores it: tf_keras's base Layer sets _activity_regularizer = None, the "
    "EinsumDense sublayers get activity_regularizer=None and get_config reports null. It has no "
    "effect: no activity penalty on any tensor.")
WEIGHT_PENALTY_NOTE = (
    "kernel_regularizer / bias_regularizer penalise every EinsumDense kernel / bias (not "
    "relative_position_embeddings, a plain tf.Variable), not divided by anything.")
FULLY_MASKED_NOTE = (
    "Fully masked rows: tf_keras's Softmax adds (1 - mask) * -1e9 to the logits (nothing is "
    "zeroed) and differentiates through it as if exact, so a fully masked row (uniform in "
    "float32 for small logits, close to softmax(s) in float64) sends gradient to query, key "
    "and the weights.")
REUSE_MORE_HEADS_NOTE = (
    "reuse_attention_scores has 3 heads; the layer slices the first 2 (the returned scores hold "
    "only those), so the last head's gradient is zero.")


def save(group, name, dtype, config, call, weights, inputs, outputs, notes):
    (OUT / ROOT).mkdir(exist_ok=True)
    write_case(f"{ROOT}/{group}", name, dtype, "ReuseMultiHeadAttention", config, call, weights,
               inputs, outputs, stamps=STAMPS, softmax_in_float32=False, float32_compute=False,
               notes=notes)


def regularizer(spec):
    """A tf_keras regularizer from {"class_name", "config"}, made under the current floatx
    (tf_keras casts the coefficients to floatx when it creates the object)."""
    return None if spec is None else tf_keras.regularizers.get(spec)


def make_layer(config, dtype, q, v, k, rs, extra=None):
    """A built layer (Model Garden's sub-layers take the global floatx, set here)."""
    tf_keras.backend.set_floatx(dtype)
    layer = ReuseMultiHeadAttention(**config, **(extra or {}), dtype=dtype)
    layer(q, v, key=k, reuse_attention_scores=rs)  # creates the weights
    return layer


def reuse_scores_for(rng, config, dtype, q, v, k, reuse_scores_heads):
    reused, _ = heads(config)
    if not reused:
        return None
    tf_keras.backend.set_floatx(dtype)
    probe = ReuseMultiHeadAttention(
        **{**config, "reuse_attention": 0, "use_relative_pe": False}, dtype=dtype)
    shape = list(probe(q, v, key=k, return_attention_scores=True)[1].shape)
    if reuse_scores_heads is not None:
        shape[1] = reuse_scores_heads
    rs = rng.random(shape) + 0.1
    return (rs / rs.sum(axis=-1, keepdims=True)).astype(dtype)


def reuse_case(name, *, q_shape=(B, 4, 4), v_shape=(B, 5, 3), k_dim=None, attention_mask=None,
               reuse_scores_heads=None, scores=False, weight_gain=0.5, regularizers=None,
               fd=True, note=None, **config):
    """One case. attention_mask: an array or True for a random (B, T, S) mask. With reuse,
    reuse_attention_scores are random softmax rows (reuse_scores_heads heads when given).
    regularizers: {"kernel_regularizer": spec, ...} Keras config dicts; then L includes
    sum(layer.losses)."""
    config = {**DEFAULTS, **config}
    reused, new = heads(config)
    with_pe = config["use_relative_pe"] and new > 0
    regularization = regularizers is not None
    reg_specs = {key: (regularizers or {}).get(key) for key in
                 ("kernel_regularizer", "bias_regularizer", "activity_regularizer")}
    for dtype in ("float32",) if with_pe else DTYPES:
        # Model Garden's sub-layers take the global floatx, and tf_keras casts a regularizer's
        # coefficients to the floatx current when it is made: set it first.
        tf_keras.backend.set_floatx(dtype)
        rng = generator(f"{ROOT}/{GROUP}", name)
        q = rng.normal(size=q_shape).astype(dtype)
        v = rng.normal(size=v_shape).astype(dtype)
        k = None if k_dim is None else rng.normal(size=v_shape[:-1] + (k_dim,)).astype(dtype)
        am = (bool_mask(rng, (B, q_shape[1], v_shape[1])) if attention_mask is True
              else attention_mask)
        rs = reuse_scores_for(rng, config, dtype, q, v, k, reuse_scores_heads)
        layer = make_layer(config, dtype, q, v, k, rs,
                           {key: regularizer(spec) for key, spec in reg_specs.items()}
                           if regularization else None)
        weights = [(rng.normal(size=w.shape) * weight_gain).astype(w.dtype)
                   for w in layer.get_weights()]
        layer.set_weights(weights)
        weights = [np.asarray(w) for w in layer.get_weights()]
        probe = layer(q, v, key=k, attention_mask=am, reuse_attention_scores=rs,
                      return_attention_scores=True, training=False)
        og = rng.normal(size=probe[0].shape).astype(dtype)
        sg = rng.normal(size=probe[1].shape).astype(dtype) if scores else None

        inputs = {"query": q, "value": v, "key": k, "reuse_attention_scores": rs}
        names = [n for n, x in inputs.items() if x is not None]
        trainable = list(layer.trainable_weights)
        order = trainable_order(layer, trainable)

        def loss(xs):
            """L and (output, scores, losses) at inputs xs (tf tensors), current weights."""
            result = layer(xs["query"], xs["value"], key=xs.get("key"), attention_mask=am,
                           reuse_attention_scores=xs.get("reuse_attention_scores"),
                           return_attention_scores=scores, training=False)
            out, sc = result if scores else (result, None)
            total = tf.reduce_sum(out * og)
            if sc is not None:
                total += tf.reduce_sum(sc * sg)
            losses = list(layer.losses)
            if regularization and losses:
                total += tf.add_n(losses)
            return total, out, sc, losses

        xs = {n: tf.constant(inputs[n]) for n in names}
        with tf.GradientTape() as tape:
            tape.watch(list(xs.values()))
            total, out, sc, losses = loss(xs)
        grads = tape.gradient(total, [xs[n] for n in names] + trainable,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        g_x = dict(zip(names, grads[:len(names)]))
        g_w = grads[len(names):]
        eager = layer(q, v, key=k, attention_mask=am, reuse_attention_scores=rs,
                      return_attention_scores=scores, training=False)
        eager_losses = [float(x) for x in layer.losses]
        if not np.allclose(sorted(eager_losses), sorted(float(x) for x in losses), rtol=1e-6):
            raise RuntimeError(f"{name}_{dtype}: taped and eager losses differ")
        if not np.array_equal(np.asarray(eager[0] if scores else eager), np.asarray(out)):
            raise RuntimeError(f"{name}_{dtype}: taped and eager outputs differ")
        if np.asarray(out).dtype != np.dtype(dtype):
            raise RuntimeError(f"{name}_{dtype}: upstream computed in {np.asarray(out).dtype}")

        expected = {"output": np.asarray(out), "scores": None if sc is None else np.asarray(sc),
                    "loss": np.asarray(float(total)), "output_gradient": og,
                    "scores_gradient": sg}
        for n in inputs:
            expected["grad_" + n] = np.asarray(g_x[n]) if n in g_x else None
        for i, j in enumerate(order):
            expected[f"grad_weight_{i}"] = np.asarray(g_w[j])
        for key_, value in expected.items():
            if value is not None and not np.all(np.isfinite(value)):
                raise RuntimeError(f"{name}_{dtype}: non-finite {key_}")
        if regularization or eager_losses:
            expected["losses"] = np.asarray(eager_losses, np.float64)

        if fd and dtype == "float64":
            check_directional(layer, trainable, g_w, xs, g_x, loss, f"{name}_{dtype}")

        save(GROUP, name, dtype, {**config, **reg_specs} if regularization else config,
             {"use_causal_mask": False, "return_attention_scores": scores,
              "regularization": regularization},
             weights, {**inputs, "attention_mask": am}, expected,
             notes=(note, with_pe and PE_FLOAT32_NOTE,
                    reg_specs["activity_regularizer"] is not None and ACTIVITY_NOTE,
                    (reg_specs["kernel_regularizer"] or reg_specs["bias_regularizer"])
                    and WEIGHT_PENALTY_NOTE))


def check_directional(layer, trainable, g_w, xs, g_x, loss, what, step=1e-5, rtol=1e-6):
    """L's central difference along a random direction of every input and weight."""
    rng = np.random.default_rng(7)
    saved = [w.numpy() for w in trainable]
    dw = [rng.normal(size=w.shape) for w in saved]
    dx = {n: rng.normal(size=x.shape) for n, x in xs.items()}

    def at(sign):
        for w, s, d in zip(trainable, saved, dw):
            w.assign(s + sign * step * d)
        return float(loss({n: x + sign * step * dx[n] for n, x in xs.items()})[0])

    fd = (at(1) - at(-1)) / (2 * step)
    for w, s in zip(trainable, saved):
        w.assign(s)
    predicted = sum(float(np.sum(np.asarray(g) * d)) for g, d in zip(g_w, dw))
    predicted += sum(float(np.sum(np.asarray(g_x[n]) * dx[n])) for n in xs)
    if abs(fd - predicted) > rtol * (1 + abs(predicted)):
        raise RuntimeError(f"{what}: central difference {fd!r} != gradients' {predicted!r}")


REGULARIZER_SETS = {
    "reg_kernel_l1": {"kernel_regularizer": {"class_name": "L1", "config": {"l1": 0.05}}},
    "reg_bias_l2": {"bias_regularizer": {"class_name": "L2", "config": {"l2": 0.3}}},
    "reg_activity_l1_l2": {"activity_regularizer": {"class_name": "L1L2",
                                                    "config": {"l1": 0.02, "l2": 0.04}}},
}
REGULARIZER_SETS["reg_all"] = {k: v for regs in REGULARIZER_SETS.values()
                               for k, v in regs.items()}


def reuse_cases():
    reuse_case("r0")
    reuse_case("r0_scores", scores=True)
    reuse_case("r0_key_scores", k_dim=2, scores=True)
    reuse_case("r0_no_bias", use_bias=False)
    reuse_case("r0_value_dim_output_shape", value_dim=4, output_shape=(2, 3), scores=True)
    reuse_case("r0_attention_mask_scores", attention_mask=True, scores=True)
    # Partial reuse: the returned scores are [new heads, reused heads].
    reuse_case("r1", reuse_attention=1)
    reuse_case("r1_scores", reuse_attention=1, scores=True)
    reuse_case("r2_more_heads_scores", reuse_attention=2, reuse_scores_heads=3, scores=True,
               note=REUSE_MORE_HEADS_NOTE)
    reuse_case("r1_key_value_dim_mask", reuse_attention=1, k_dim=3, value_dim=4,
               attention_mask=True)
    reuse_case("r2_no_bias_scores", reuse_attention=2, use_bias=False, scores=True)
    # Full reuse: the returned scores are reuse_attention_scores itself.
    reuse_case("full", reuse_attention=3)
    reuse_case("full_scores", reuse_attention=-1, scores=True)
    reuse_case("full_mask_ignored", reuse_attention=3, attention_mask=True)
    pe = {"use_relative_pe": True, "pe_max_seq_length": 3, "q_shape": (B, 5, 4),
          "v_shape": (B, 6, 3)}
    reuse_case("pe_r0_scores", scores=True, **pe)
    reuse_case("pe_r1", reuse_attention=1, **pe)
    reuse_case("pe_r2_mask_scores", reuse_attention=2, attention_mask=True, scores=True, **pe)
    reuse_case("pe_unclamped", use_relative_pe=True, pe_max_seq_length=8)
    reuse_case("pe_full", reuse_attention=-1, use_relative_pe=True, pe_max_seq_length=3,
               note="With full reuse no position embeddings exist.")
    r4 = {"q_shape": (B, 2, 4, 4), "v_shape": (B, 2, 5, 3), "attention_axes": (2,)}
    reuse_case("r4_axes_2_scores", scores=True, **r4)
    reuse_case("r4_axes_2_full_scores", reuse_attention=-1, scores=True, **r4)
    full = rows_masked((B, 4, 5), (1, 2))
    full[0, 0] = False
    reuse_case("fully_masked_scores", attention_mask=full, scores=True, fd=False,
               note=FULLY_MASKED_NOTE)
    for name, regs in REGULARIZER_SETS.items():
        reuse_case(name, regularizers=regs)
    reuse_case("reg_all_r1_scores", regularizers=REGULARIZER_SETS["reg_all"],
               reuse_attention=1, scores=True)
    reuse_case("reg_all_pe_r1", regularizers=REGULARIZER_SETS["reg_all"], reuse_attention=1,
               **pe)


CONSTRAINT_NOTE = (
    "After: for every weight with a constraint, variable.assign(variable.constraint(variable)), "
    "as tf_keras's optimizer does after applying gradients. relative_position_embeddings is a "
    "plain tf.Variable without constraint. MaxNorm / UnitNorm / MinMaxNorm divide by "
    "(epsilon + norm) with epsilon 1e-7.")


def constraint_case(name, kernel=None, bias=None, *, q_shape=(B, 4, 4), v_shape=(B, 5, 3),
                    **config):
    """Weights before and after the kernel/bias constraints (Keras config dicts)."""
    config = {**DEFAULTS, **config}
    reused, new = heads(config)
    with_pe = config["use_relative_pe"] and new > 0
    for dtype in ("float32",) if with_pe else DTYPES:
        tf_keras.backend.set_floatx(dtype)
        rng = generator(f"{ROOT}/constraints", "reuse_" + name)
        q = rng.normal(size=q_shape).astype(dtype)
        v = rng.normal(size=v_shape).astype(dtype)
        rs = reuse_scores_for(rng, config, dtype, q, v, None, None)
        layer = make_layer(config, dtype, q, v, None, rs, {
            "kernel_constraint": kernel and tf_keras.constraints.get(kernel),
            "bias_constraint": bias and tf_keras.constraints.get(bias)})
        before = [(rng.normal(size=w.shape) * 0.6).astype(w.dtype) for w in layer.get_weights()]
        layer.set_weights(before)
        before = [np.asarray(w) for w in layer.get_weights()]
        for variable in layer.weights:
            if getattr(variable, "constraint", None) is not None:
                variable.assign(variable.constraint(variable))
        after = [np.asarray(w) for w in layer.get_weights()]
        save("constraints", "reuse_" + name, dtype,
             {**config, "kernel_constraint": kernel, "bias_constraint": bias},
             {"use_causal_mask": False, "return_attention_scores": False}, before,
             {"query": q, "value": v, "reuse_attention_scores": rs},
             {f"constrained_weight_{i}": a for i, a in enumerate(after)},
             notes=(CONSTRAINT_NOTE, with_pe and PE_FLOAT32_NOTE))


def constraint_cases():
    constraint_case("max_norm_non_neg_r1",
                    {"class_name": "MaxNorm", "config": {"max_value": 1.0, "axis": 0}},
                    {"class_name": "NonNeg", "config": {}}, reuse_attention=1)
    constraint_case("unit_norm_min_max_norm_pe",
                    {"class_name": "UnitNorm", "config": {"axis": -1}},
                    {"class_name": "MinMaxNorm",
                     "config": {"min_value": 0.5, "max_value": 1.0, "rate": 0.5, "axis": 0}},
                    use_relative_pe=True, pe_max_seq_length=3)


def main():
    for stale in (OUT / ROOT / GROUP).glob("*.npz"):
        stale.unlink()
    for stale in (OUT / ROOT / "constraints").glob("reuse_*.npz"):
        stale.unlink()
    reuse_cases()
    constraint_cases()
    files = sorted(list((OUT / ROOT / GROUP).glob("*.npz"))
                   + list((OUT / ROOT / "constraints").glob("reuse_*.npz")))
    size = sum(f.stat().st_size for f in files)
    print(f"wrote {len(files)} gradient golden files ({size / 1e6:.2f} MB) under {OUT / ROOT}")


if __name__ == "__main__":
    main()
