"""Gradients (issue 6): layer.gradients(...) of every layer and option against float64 central
finite differences of the forward, layer(...).

The loss of one step is L = sum(output * dO) [+ sum(scores * dS)] [+ sum(layer.losses)] with
random dO (and dS when a scores_gradient is given). Each element of query, value, key,
reuse_attention_scores and of every weight (through set_weights of perturbed copies) is moved
by ±h and L re-evaluated through layer.__call__ (the dropout stream reset before every call, so
every call draws the same dropout mask; layer.losses re-read after every call). The error of a
gradient is max|g - fd| / max(floor, max|fd|), the floor set by the rounding of L (see
noise_floor).

Also: exact zeros at masked positions, `.key is None` without a key, `.output`/`.scores` equal
to layer(...)'s, the dropout stream, training without dropout, first use builds the layer,
float32 against float64, regularizer penalties (layer.losses) and their gradients,
apply_constraints, and bad output/scores gradients.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import attention
from conftest import assert_close

# -- finite differences -----------------------------------------------------------------------

H = 1e-6    # central step: truncation error ~h² (third derivative), rounding ~eps·M/h
TOL = 1e-6  # on max|g - fd| / max(floor, max|fd|)
NOISE = 8   # the rounding of L in units of eps·M (M = Σ|terms of L|); measured below 1 here

EPS = float(np.finfo(np.float64).eps)


def noise_floor(magnitude, h=H, tol=TOL):
    """The max|fd| below which a tensor's differences are mostly rounding: a gradient that is
    exactly 0 (e.g. d/dkey/bias: softmax ignores a shift of a whole row) gives |fd| up to
    ~eps·M/h of pure noise. Such a tensor's error is measured against this floor, i.e. an
    absolute allowance of NOISE·eps·M/h."""
    return max(1e-8, NOISE * EPS * magnitude / (h * tol))


def central_differences(f, x, h=H):
    """dF/dx of a scalar function f() of the float64 array x, by central differences: each
    element of x is moved in place to x+h and x-h (f reads x) and restored exactly."""
    assert x.dtype == np.float64
    grad = np.zeros(x.shape)
    flat = x.reshape(-1)
    assert np.shares_memory(flat, x) or x.size == 0
    for i in range(flat.size):
        old = flat[i]
        up, down = old + h, old - h
        flat[i] = up
        f_up = f()
        flat[i] = down
        f_down = f()
        flat[i] = old
        grad.flat[i] = (f_up - f_down) / (up - down)  # the step actually taken
    return grad


def relative_error(got, fd, floor=1e-8):
    """max|got - fd| / max(floor, max|fd|)."""
    got, fd = np.asarray(got, np.float64), np.asarray(fd, np.float64)
    if fd.size == 0:
        return 0.0
    return float(np.max(np.abs(got - fd))) / max(floor, float(np.max(np.abs(fd))))


def assert_gradient(got, fd, what, tol=TOL, floor=1e-8):
    assert got is not None, f"{what}: no gradient returned"
    got = np.asarray(got)
    assert got.shape == fd.shape, f"{what}: gradient shape {got.shape} != {fd.shape}"
    assert np.all(np.isfinite(got)), f"{what}: non-finite gradient"
    error = relative_error(got, fd, floor)
    assert error < tol, (f"{what}: relative error {error:.3g} >= {tol:g} (max|fd| "
                         f"{np.max(np.abs(fd)):.3g}, max|g| {np.max(np.abs(got)):.3g}, "
                         f"floor {floor:.3g})")


def _inner(a, b):
    """sum(a * b) in float64 with one rounding of the sum (math.fsum)."""
    return math.fsum((np.asarray(a, np.float64) * np.asarray(b, np.float64)).ravel())


INPUTS = ("query", "value", "key", "reuse_attention_scores")


class Problem:
    """One layer call: `inputs` (query, value, key, reuse_attention_scores -> float64 array or
    None), `forward(inputs, return_scores)` through layer(...) and `gradients(inputs, **kw)`
    through layer.gradients(...), both with the same masks and flags."""

    def __init__(self, layer, inputs, forward, gradients):
        self.layer, self.inputs, self.forward, self.gradients = layer, inputs, forward, gradients


def luong_problem(layer, query, value, key=None, mask=None, training=False, use_causal_mask=False):
    """Attention / AdditiveAttention called on [query, value(, key)]."""
    def listed(x):
        return [x["query"], x["value"]] + ([] if x["key"] is None else [x["key"]])

    def forward(x, return_scores):
        return layer(listed(x), mask=mask, training=training, use_causal_mask=use_causal_mask,
                     return_attention_scores=return_scores)

    def gradients(x, **kw):
        return layer.gradients(listed(x), mask=mask, training=training,
                               use_causal_mask=use_causal_mask, **kw)

    inputs = {"query": query, "value": value, "key": key, "reuse_attention_scores": None}
    return Problem(layer, inputs, forward, gradients)


def multi_head_problem(layer, query, value, key=None, reuse_attention_scores=None, **call):
    """MultiHeadAttention / GroupQueryAttention / ReuseMultiHeadAttention called on
    (query, value, key) with the keywords `call` (masks, training, use_causal_mask)."""
    def arguments(x):
        extra = {}
        if x["reuse_attention_scores"] is not None:
            extra["reuse_attention_scores"] = x["reuse_attention_scores"]
        return (x["query"], x["value"], x["key"]), {**call, **extra}

    def forward(x, return_scores):
        args, kwargs = arguments(x)
        return layer(*args, **kwargs, return_attention_scores=return_scores)

    def gradients(x, **kw):
        args, kwargs = arguments(x)
        return layer.gradients(*args, **kwargs, **kw)

    inputs = {"query": query, "value": value, "key": key,
              "reuse_attention_scores": reuse_attention_scores}
    return Problem(layer, inputs, forward, gradients)


def check_gradients(problem, *, scores=False, regularization=False, seed=0, tol=TOL, h=H,
                    inputs=INPUTS, weights=True):
    """layer.gradients of `problem` (scores_gradient given when `scores`; regularization=True
    when `regularization`) against central differences of the loss for every element of the
    inputs named in `inputs` and (when `weights`) of every weight. Also checks .output,
    .scores, .key / .reuse_attention_scores None-ness, dtypes and the dropout stream. Returns
    the Gradients."""
    layer, x = problem.layer, problem.inputs
    rng = np.random.default_rng(1000 + seed)
    stream = layer.dropout_stream

    def run():
        layer.dropout_stream = stream  # the same dropout mask on every call
        result = problem.forward(x, scores)
        return result if scores else (result, None)

    out, sc = run()
    stream_after = layer.dropout_stream
    d_out = rng.normal(size=out.shape)
    d_scores = rng.normal(size=sc.shape) if scores else None

    def terms(o, s):
        parts = [np.ravel(np.asarray(o, np.float64) * d_out)]
        if scores:
            parts.append(np.ravel(np.asarray(s, np.float64) * d_scores))
        if regularization:
            parts.append(np.asarray(layer.losses, np.float64).ravel())
        return np.concatenate(parts)

    def loss():
        return math.fsum(terms(*run()))

    floor = noise_floor(math.fsum(np.abs(terms(out, sc))), h, tol)

    layer.dropout_stream = stream
    kw = {"regularization": True} if regularization else {}
    res = problem.gradients(x, output_gradient=d_out, scores_gradient=d_scores, **kw)
    assert isinstance(res, attention.Gradients)
    assert layer.dropout_stream == stream_after, "the stream must advance as a training call's"
    dtype = np.dtype(layer.dtype)
    assert res.output.dtype == dtype
    assert_close(res.output, out, what="Gradients.output vs layer(...)")
    if scores:
        assert res.scores.dtype == dtype
        assert_close(res.scores, sc, what="Gradients.scores vs layer(...)")
    else:
        assert res.scores is None
    for name in INPUTS:
        got = getattr(res, name)
        if x[name] is None:
            assert got is None, f"Gradients.{name} must be None: no {name} was passed"
            continue
        assert got is not None and got.dtype == dtype, f"Gradients.{name}"
        if name in inputs:
            assert_gradient(got, central_differences(loss, x[name], h), f"d/d{name}", tol,
                            floor)
    current = layer.get_weights()
    assert len(res.weights) == len(current)
    for g, w in zip(res.weights, current):
        assert g.shape == w.shape and g.dtype == dtype
    if weights:
        for i, name in enumerate(layer.weight_names):
            trial = [w.copy() for w in current]

            def weight_loss():
                layer.set_weights(trial)
                return loss()

            fd = central_differences(weight_loss, trial[i], h)
            layer.set_weights(current)
            assert_gradient(res.weights[i], fd, f"d/d{name}", tol, floor)
    layer.dropout_stream = stream_after
    return res


# -- inputs, masks, weights -------------------------------------------------------------------

def _random_weights(layer, rng, low=-1.0, high=1.0):
    weights = [rng.uniform(low, high, size=w.shape) for w in layer.get_weights()]
    layer.set_weights(weights)
    return layer.get_weights()


def _weights_away_from_zero(layer, rng, low=0.3, high=1.0):
    """Random weights with |w| in [low, high] and random signs (l1 is smooth there)."""
    weights = [rng.uniform(low, high, size=w.shape) * rng.choice([-1.0, 1.0], size=w.shape)
               for w in layer.get_weights()]
    layer.set_weights(weights)
    return layer.get_weights()


def _mask(rng, shape, keep=0.7):
    return rng.random(shape) < keep


def _mask_rows(rng, shape, keep=0.7):
    """A random mask keeping at least one position along the last axis of every row."""
    m = _mask(rng, shape, keep)
    rows = m.reshape(-1, shape[-1])
    for row in rows:
        if not row.any():
            row[rng.integers(shape[-1])] = True
    return rows.reshape(shape)


def _scores_shape(query_shape, value_shape, axes, heads):
    """MultiHeadAttention's scores layout (B, <other axes>, heads, <query attention axes>,
    <key attention axes>)."""
    others = [a for a in range(1, len(query_shape) - 1) if a not in axes]
    return ((query_shape[0], *[query_shape[a] for a in others], heads)
            + tuple(query_shape[a] for a in axes) + tuple(value_shape[a] for a in axes))


# -- Attention and AdditiveAttention ----------------------------------------------------------

# id -> (layer kwargs, Tq, Tv, with key, masks, use_causal_mask, training)
LUONG_CASES = {
    "dot": ({}, 3, 4, False, False, False, False),
    "dot_scale": ({"use_scale": True}, 3, 4, False, False, False, False),
    "concat": ({"score_mode": "concat"}, 3, 4, False, False, False, False),
    "concat_scale": ({"score_mode": "concat", "use_scale": True}, 3, 4, False, False, False, False),
    "dot_scale_key": ({"use_scale": True}, 4, 3, True, False, False, False),
    "concat_scale_key": ({"score_mode": "concat", "use_scale": True}, 2, 5, True, False, False,
                         False),
    "dot_masks": ({"use_scale": True}, 4, 5, True, True, False, False),
    "concat_masks": ({"score_mode": "concat", "use_scale": True}, 4, 5, False, True, False, False),
    "causal_call": ({"use_scale": True}, 4, 3, False, False, True, False),
    "causal_call_concat": ({"score_mode": "concat"}, 3, 5, True, False, True, False),
    "causal_config": ({"use_scale": True, "causal": True}, 4, 4, False, False, False, False),
    "causal_masks": ({"use_scale": True}, 5, 4, True, True, True, False),
    "dropout": ({"use_scale": True, "dropout": 0.3}, 4, 5, False, False, False, True),
    "dropout_concat_masks": ({"score_mode": "concat", "dropout": 0.4}, 4, 5, True, True, False,
                             True),
    "dropout_causal": ({"dropout": 0.3, "causal": True}, 5, 5, False, True, False, True),
}

ADDITIVE_CASES = {
    "scale": ({"use_scale": True}, 3, 4, False, False, False, False),
    "no_scale": ({"use_scale": False}, 3, 4, False, False, False, False),
    "key": ({"use_scale": True}, 4, 3, True, False, False, False),
    "masks": ({"use_scale": True}, 4, 5, True, True, False, False),
    "no_scale_masks": ({"use_scale": False}, 4, 5, False, True, False, False),
    "causal": ({"use_scale": True}, 5, 4, False, True, True, False),
    "dropout": ({"use_scale": True, "dropout": 0.3}, 4, 5, False, False, False, True),
    "dropout_masks_key": ({"use_scale": False, "dropout": 0.4}, 4, 5, True, True, False, True),
}


def _luong_masks(rng, b, tq, tv):
    """query_mask and value_mask with no fully masked row, also under the causal mask: value
    position 0 is always kept (a fully masked row is softmax(s - 1e9), which central
    differences cannot resolve at h = 1e-6: see test_attention_fully_masked_row)."""
    query_mask = _mask(rng, (b, tq), 0.7)
    value_mask = _mask(rng, (b, tv), 0.6)
    value_mask[:, 0] = True
    return [query_mask, value_mask]


def _luong_problem(kind, case, seed, dtype="float64"):
    kwargs, tq, tv, with_key, masked, causal, training = case
    rng = np.random.default_rng(seed)
    b, d, dv = 2, 3, 4 if with_key else 3
    q = rng.normal(size=(b, tq, d))
    v = rng.normal(size=(b, tv, dv))
    k = rng.normal(size=(b, tv, d)) if with_key else None
    layer = getattr(attention, kind)(**kwargs, seed=77 + seed, dtype=dtype)
    layer.build([q.shape, v.shape] + ([k.shape] if with_key else []))
    if kind == "Attention":
        _random_weights(layer, rng, 0.5, 1.5)  # scale, concat_score_weight: away from 0
    else:
        _random_weights(layer, rng, -1.0, 1.0)
    mask = _luong_masks(rng, b, tq, tv) if masked else None
    return luong_problem(layer, q, v, k, mask=mask, training=training, use_causal_mask=causal)


@pytest.mark.parametrize("scores", [False, True], ids=["out", "out+scores"])
@pytest.mark.parametrize("case", LUONG_CASES.values(), ids=LUONG_CASES.keys())
def test_attention_gradients(case, scores):
    check_gradients(_luong_problem("Attention", case, seed=1), scores=scores, seed=1)


@pytest.mark.parametrize("scores", [False, True], ids=["out", "out+scores"])
@pytest.mark.parametrize("case", ADDITIVE_CASES.values(), ids=ADDITIVE_CASES.keys())
def test_additive_attention_gradients(case, scores):
    check_gradients(_luong_problem("AdditiveAttention", case, seed=2), scores=scores, seed=2)


@pytest.mark.parametrize("kind", ["Attention", "AdditiveAttention"])
def test_luong_masked_positions_get_zero_gradient(kind):
    """A value/key row no query sees gets exactly zero gradient; so does a query row whose
    query_mask is 0 (its output row is 0 and no scores gradient is given)."""
    rng = np.random.default_rng(3)
    q, v, k = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 4))
    layer = getattr(attention, kind)(dtype="float64")
    value_mask = np.ones((2, 5), bool)
    value_mask[0, 2] = value_mask[1, 4] = value_mask[1, 0] = False
    query_mask = np.ones((2, 3), bool)
    query_mask[1, 1] = False
    d_out = rng.normal(size=(2, 3, 3))
    res = layer.gradients([q, v, k], mask=[query_mask, value_mask], output_gradient=d_out)
    for name, g in (("value", res.value), ("key", res.key)):
        assert np.all(g[~value_mask] == 0), f"d/d{name} at masked positions: {g[~value_mask]}"
        assert np.all(np.any(g[value_mask] != 0, axis=-1)), f"d/d{name} at kept positions"
    assert np.all(res.query[1, 1] == 0)
    assert np.all(np.any(res.query[query_mask] != 0, axis=-1))
    # The causal mask too: with Tq = 3 < Tv = 5, keys 3 and 4 are seen by no query.
    res = layer.gradients([q, v, k], use_causal_mask=True, output_gradient=d_out)
    assert np.all(res.value[:, 3:] == 0) and np.all(res.key[:, 3:] == 0)
    assert np.all(np.any(res.value[:, :3] != 0, axis=-1))


def test_attention_fully_masked_row():
    """A row whose every key is masked is softmax(s - 1e9) in the layer's dtype: in float64 the
    scores are rounded to ulp(1e9) ≈ 1.2e-7, so central differences need a larger step
    (h = 3e-3: truncation and rounding both ~1e-5 relative). Mathematically that row is
    softmax(s), so its gradient must also match, to the 1e-7 relative rounding of the
    forward, the gradient of the same call with those keys unmasked."""
    rng = np.random.default_rng(4)
    q, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4, 4))
    value_mask = np.ones((2, 4), bool)
    value_mask[1] = False  # batch 1: every row fully masked
    value_mask[0, 1] = False
    layer = attention.Attention(use_scale=True, dtype="float64")
    layer.build([q.shape, v.shape])
    layer.set_weights([np.array(0.8)])
    masked = check_gradients(luong_problem(layer, q, v, mask=[None, value_mask]), seed=4,
                             h=3e-3, tol=2e-4)
    unmasked_mask = value_mask.copy()
    unmasked_mask[1] = True
    unmasked = check_gradients(luong_problem(layer, q, v, mask=[None, unmasked_mask]), seed=4)
    for name in ("query", "value"):
        assert relative_error(getattr(masked, name)[1], getattr(unmasked, name)[1]) < 1e-5, name


# -- MultiHeadAttention -----------------------------------------------------------------------

def _mha_spec(config=None, query=(2, 3, 4), value=(2, 4, 4), key=None, masks=None,
              causal=False, training=None, axes=None):
    """A multi-head case: layer config, input shapes (key: its last dim or None), masks
    {name: True (the default shape, random), a shape (random, every row keeping one), or an
    explicit bool array}, use_causal_mask, training, and (Reuse) the attention axes."""
    return {"config": {"num_heads": 2, "key_dim": 3, **(config or {})}, "query": query,
            "value": value, "key": key, "masks": masks or {}, "causal": causal,
            "training": training, "axes": axes}


def _fully_masked_attention_mask():
    m = np.ones((2, 3, 4), bool)
    m[0, 1, :] = False  # batch 0, query 1: no key
    m[1, 2, 1] = False
    return m


def _fully_masked_key_mask():
    m = np.ones((2, 4), bool)
    m[1, :] = False  # batch 1: no key at all
    m[0, 3] = False
    return m


MHA_CASES = {
    "basic": _mha_spec(),
    "cross_key": _mha_spec(value=(2, 4, 3), key=5),
    "value_dim": _mha_spec({"key_dim": 2, "value_dim": 3}, key=2),
    "output_shape_int": _mha_spec({"output_shape": 5}),
    "output_shape_tuple": _mha_spec({"output_shape": (2, 3), "value_dim": 2}, value=(2, 4, 3)),
    "gate": _mha_spec({"use_gate": True}),
    "gate_value_dim": _mha_spec({"use_gate": True, "value_dim": 4, "num_heads": 3, "key_dim": 2},
                                key=3),
    "no_bias": _mha_spec({"use_bias": False}, key=3),
    "no_bias_gate_output": _mha_spec({"use_bias": False, "use_gate": True, "output_shape": (3,)}),
    "one_head": _mha_spec({"num_heads": 1, "key_dim": 2}, query=(2, 5, 3), value=(2, 2, 3)),
    "rank4_axes_1_2": _mha_spec({"attention_axes": (1, 2)}, query=(2, 2, 3, 3),
                                value=(2, 3, 2, 3)),
    "rank4_axes_2": _mha_spec({"attention_axes": (2,)}, query=(2, 2, 3, 4), value=(2, 2, 4, 3)),
    "rank4_axes_-2": _mha_spec({"attention_axes": (-2,)}, query=(2, 2, 3, 4), value=(2, 2, 4, 3),
                               key=2),
    "rank4_axes_1": _mha_spec({"attention_axes": 1, "use_gate": True}, query=(2, 3, 2, 3),
                              value=(2, 4, 2, 3)),
    "rank4_axes_2_masks": _mha_spec(
        {"attention_axes": (2,)}, query=(2, 2, 3, 4), value=(2, 2, 4, 3),
        masks={"query_mask": True, "value_mask": True, "key_mask": True,
               "attention_mask": (2, 2, 3, 4)}),
    "rank5_default_axes": _mha_spec({"key_dim": 2}, query=(2, 2, 2, 2, 3), value=(2, 1, 2, 2, 3)),
    "rank5_axes_2_3": _mha_spec({"attention_axes": (2, 3), "output_shape": 2},
                                query=(2, 2, 2, 2, 3), value=(2, 2, 3, 1, 2)),
    "rank5_axes_-2_masks": _mha_spec(
        {"attention_axes": (-2,), "key_dim": 2}, query=(2, 2, 2, 3, 3), value=(2, 2, 2, 2, 3),
        masks={"query_mask": True, "value_mask": True, "key_mask": True}),
    "query_mask": _mha_spec(masks={"query_mask": True}),
    "value_mask": _mha_spec(masks={"value_mask": True}),
    "key_mask": _mha_spec(key=3, masks={"key_mask": True}),
    "attention_mask": _mha_spec(masks={"attention_mask": (2, 3, 4)}),
    "attention_mask_broadcast": _mha_spec(masks={"attention_mask": (3, 4)}),
    "attention_mask_broadcast_batch": _mha_spec(masks={"attention_mask": (2, 1, 4)}),
    "all_masks": _mha_spec(key=3, masks={"query_mask": True, "value_mask": True,
                                         "key_mask": True, "attention_mask": (2, 3, 4)}),
    "causal": _mha_spec(query=(2, 4, 4), value=(2, 4, 4), causal=True),
    "causal_cross": _mha_spec(query=(2, 3, 4), value=(2, 5, 3), causal=True, key=2),
    "causal_masks": _mha_spec(query=(2, 4, 4), value=(2, 4, 4), causal=True,
                              masks={"value_mask": True, "query_mask": True}),
    "sliding_window": _mha_spec({"sliding_window": 2}, query=(2, 4, 4), value=(2, 5, 4)),
    "sliding_window_causal": _mha_spec({"sliding_window": 2}, query=(2, 5, 4), value=(2, 5, 4),
                                       causal=True),
    "dropout": _mha_spec({"dropout": 0.3}, training=True),
    "dropout_masks_gate": _mha_spec({"dropout": 0.4, "use_gate": True}, key=3, training=True,
                                    masks={"value_mask": True, "attention_mask": (2, 3, 4)}),
    "dropout_rank4": _mha_spec({"dropout": 0.3, "attention_axes": (1, 2)}, query=(2, 2, 3, 3),
                               value=(2, 3, 2, 3), training=True),
    "dropout_not_training": _mha_spec({"dropout": 0.3}, training=False),
    "fully_masked_attention_mask": _mha_spec(
        masks={"attention_mask": _fully_masked_attention_mask()}),
    "fully_masked_key_mask": _mha_spec(masks={"key_mask": _fully_masked_key_mask()}, key=3),
    "fully_masked_causal_value_mask": _mha_spec(
        query=(2, 4, 4), value=(2, 4, 4), causal=True,
        masks={"value_mask": np.array([[0, 1, 1, 1], [1, 0, 1, 0]], bool)}),
    "fully_masked_dropout": _mha_spec({"dropout": 0.3}, training=True,
                                      masks={"attention_mask": _fully_masked_attention_mask()}),
}


def _masks(rng, spec, q_shape, v_shape):
    masks = {}
    for name, m in spec["masks"].items():
        if m is True:
            m = _mask(rng, q_shape[:-1] if name == "query_mask" else v_shape[:-1])
        elif isinstance(m, tuple):
            m = _mask_rows(rng, m)
        masks[name] = np.asarray(m, bool)
    return masks


def _multi_head_problem(layer_class, spec, seed, dtype="float64", weights_low=-1.0,
                        weights_high=1.0, reuse_heads=None, **layer_kwargs):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=spec["query"])
    v = rng.normal(size=spec["value"])
    k = None if spec["key"] is None else rng.normal(size=spec["value"][:-1] + (spec["key"],))
    layer = layer_class(**spec["config"], **layer_kwargs, seed=500 + seed, dtype=dtype)
    layer.build(q.shape, v.shape, None if k is None else k.shape)
    _random_weights(layer, rng, weights_low, weights_high)
    call = dict(_masks(rng, spec, q.shape, v.shape))
    if spec["training"] is not None:
        call["training"] = spec["training"]
    if spec["causal"]:
        call["use_causal_mask"] = True
    reuse = None
    if layer_class is attention.ReuseMultiHeadAttention and layer.reuse_attention > 0:
        axes = spec["axes"] or tuple(range(1, len(q.shape) - 1))
        heads = reuse_heads or layer.num_heads
        reuse = rng.uniform(0.0, 1.0, size=_scores_shape(q.shape, v.shape, axes, heads))
    return multi_head_problem(layer, q, v, k, reuse, **call)


@pytest.mark.parametrize("scores", [False, True], ids=["out", "out+scores"])
@pytest.mark.parametrize("spec", MHA_CASES.values(), ids=MHA_CASES.keys())
def test_multi_head_attention_gradients(spec, scores):
    problem = _multi_head_problem(attention.MultiHeadAttention, spec, seed=5)
    check_gradients(problem, scores=scores, seed=5)


def test_multi_head_self_attention_total_derivative():
    """layer(x, x): dL/dx = .query + .value (key defaults to value, summed into .value)."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 4, 5))
    layer = attention.MultiHeadAttention(num_heads=2, key_dim=3, use_gate=True, dtype="float64")
    layer.build(x.shape, x.shape)
    _random_weights(layer, rng)
    d_out = rng.normal(size=(2, 4, 5))
    res = layer.gradients(x, x, use_causal_mask=True, output_gradient=d_out)
    assert res.key is None
    fd = central_differences(lambda: _inner(layer(x, x, use_causal_mask=True), d_out), x)
    assert_gradient(res.query + res.value, fd, "d/dx of layer(x, x)")


def test_multi_head_masked_positions_get_zero_gradient():
    """A key/value position that key_mask/value_mask removes for every query gets exactly zero
    gradient (its weights are exactly 0)."""
    rng = np.random.default_rng(7)
    q, v, k = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 5, 3))
    layer = attention.MultiHeadAttention(num_heads=2, key_dim=3, dtype="float64")
    layer.build(q.shape, v.shape, k.shape)
    _random_weights(layer, rng)
    key_mask = np.ones((2, 5), bool)
    key_mask[0, 1] = key_mask[1, 4] = False
    value_mask = np.ones((2, 5), bool)
    value_mask[1, 2] = False
    gone = ~(key_mask & value_mask)
    for scores in (False, True):
        res = layer.gradients(q, v, k, key_mask=key_mask, value_mask=value_mask,
                              output_gradient=rng.normal(size=(2, 3, 4)),
                              scores_gradient=rng.normal(size=(2, 2, 3, 5)) if scores else None)
        assert np.all(res.value[gone] == 0) and np.all(res.key[gone] == 0)
        assert np.all(np.any(res.value[~gone] != 0, axis=-1))
        assert np.all(np.any(res.key[~gone] != 0, axis=-1))


@settings(max_examples=15)
@given(st.data())
def test_multi_head_attention_random_configs(data):
    """Random small rank-3 configurations (heads, dims, bias, gate, output_shape, masks,
    causal, window, dropout, scores): input gradients and two weights against differences."""
    draw = data.draw
    t, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    config = {"num_heads": draw(st.integers(1, 3)), "key_dim": draw(st.integers(1, 3)),
              "value_dim": draw(st.sampled_from([None, 1, 2])), "use_bias": draw(st.booleans()),
              "use_gate": draw(st.booleans()),
              "output_shape": draw(st.sampled_from([None, 2, (2, 2)])),
              "sliding_window": draw(st.sampled_from([None, 1, 2])),
              "dropout": draw(st.sampled_from([0.0, 0.3]))}
    masks = {name: True for name in ("query_mask", "value_mask", "key_mask")
             if draw(st.booleans())}
    if draw(st.booleans()):
        masks["attention_mask"] = (2, t, s)
    spec = _mha_spec(config, query=(2, t, draw(st.integers(1, 4))),
                     value=(2, s, draw(st.integers(1, 4))),
                     key=draw(st.sampled_from([None, 2])), masks=masks,
                     causal=draw(st.booleans()), training=draw(st.booleans()))
    seed = draw(st.integers(0, 2**16))
    problem = _multi_head_problem(attention.MultiHeadAttention, spec, seed=seed)
    check_gradients(problem, scores=draw(st.booleans()), seed=seed)


# -- GroupQueryAttention ----------------------------------------------------------------------

def _gqa_spec(config=None, **kw):
    spec = _mha_spec(**kw)
    spec["config"] = {"head_dim": 2, "num_query_heads": 4, "num_key_value_heads": 2,
                      **(config or {})}
    return spec


GQA_CASES = {
    "kv1": _gqa_spec({"num_key_value_heads": 1}),
    "kv2": _gqa_spec(),
    "kv4": _gqa_spec({"num_key_value_heads": 4}),
    "kv2_key": _gqa_spec(key=3),
    "kv1_gate": _gqa_spec({"num_key_value_heads": 1, "use_gate": True}),
    "kv2_gate_no_bias": _gqa_spec({"use_gate": True, "use_bias": False}, key=2),
    "heads3_kv1": _gqa_spec({"num_query_heads": 3, "num_key_value_heads": 1, "head_dim": 3}),
    "causal": _gqa_spec(query=(2, 4, 4), value=(2, 4, 4), causal=True),
    "causal_kv1_cross": _gqa_spec({"num_key_value_heads": 1}, query=(2, 3, 4), value=(2, 5, 4),
                                  causal=True),
    "sliding_window": _gqa_spec({"sliding_window": 2}, query=(2, 4, 4), value=(2, 5, 4)),
    "masks": _gqa_spec(key=3, masks={"query_mask": True, "value_mask": True, "key_mask": True,
                                     "attention_mask": (2, 3, 4)}),
    "fully_masked": _gqa_spec(masks={"attention_mask": _fully_masked_attention_mask()}),
    "dropout": _gqa_spec({"dropout": 0.3}, training=True),
    "dropout_kv1_gate_causal": _gqa_spec({"dropout": 0.4, "num_key_value_heads": 1,
                                          "use_gate": True}, query=(2, 4, 4), value=(2, 4, 4),
                                         causal=True, training=True),
}


@pytest.mark.parametrize("scores", [False, True], ids=["out", "out+scores"])
@pytest.mark.parametrize("spec", GQA_CASES.values(), ids=GQA_CASES.keys())
def test_group_query_attention_gradients(spec, scores):
    problem = _multi_head_problem(attention.GroupQueryAttention, spec, seed=8)
    check_gradients(problem, scores=scores, seed=8)


# -- ReuseMultiHeadAttention ------------------------------------------------------------------

def _reuse_spec(config=None, **kw):
    spec = _mha_spec(**kw)
    spec["config"] = {"num_heads": 3, "key_dim": 2, **(config or {})}
    return spec


REUSE_CASES = {
    "none": _reuse_spec({"reuse_attention": 0}),
    "partial": _reuse_spec({"reuse_attention": 1}),
    "partial_2": _reuse_spec({"reuse_attention": 2}, key=3),
    "full": _reuse_spec({"reuse_attention": 3}),
    "minus_one": _reuse_spec({"reuse_attention": -1}, key=3),
    "pe_none": _reuse_spec({"reuse_attention": 0, "use_relative_pe": True,
                            "pe_max_seq_length": 2}, query=(2, 4, 4), value=(2, 5, 4)),
    "pe_partial": _reuse_spec({"reuse_attention": 1, "use_relative_pe": True,
                               "pe_max_seq_length": 2}, query=(2, 5, 3), value=(2, 4, 3)),
    "pe_partial_p3_mask": _reuse_spec({"reuse_attention": 2, "use_relative_pe": True,
                                       "pe_max_seq_length": 3}, query=(2, 5, 3),
                                      value=(2, 5, 3), masks={"attention_mask": (2, 5, 5)}),
    "attention_mask_none": _reuse_spec({"reuse_attention": 0},
                                       masks={"attention_mask": (2, 3, 4)}),
    "attention_mask_partial": _reuse_spec({"reuse_attention": 1}, key=2,
                                          masks={"attention_mask": (2, 3, 4)}),
    "attention_mask_full": _reuse_spec({"reuse_attention": -1},
                                       masks={"attention_mask": (3, 4)}),
    "dropout_none": _reuse_spec({"reuse_attention": 0, "dropout": 0.3}, training=True),
    "dropout_partial": _reuse_spec({"reuse_attention": 1, "dropout": 0.3}, training=True),
    "dropout_full_mask": _reuse_spec({"reuse_attention": 3, "dropout": 0.4}, training=True,
                                     masks={"attention_mask": (2, 3, 4)}),
    "no_bias_none": _reuse_spec({"reuse_attention": 0, "use_bias": False}),
    "no_bias_partial": _reuse_spec({"reuse_attention": 2, "use_bias": False}, key=3),
    "output_shape_partial": _reuse_spec({"reuse_attention": 1, "output_shape": (2, 2),
                                         "value_dim": 3}),
    "value_dim_full": _reuse_spec({"reuse_attention": 3, "value_dim": 1, "output_shape": 3}),
    "rank4_axes_2_none": _reuse_spec({"reuse_attention": 0, "attention_axes": (2,)},
                                     query=(2, 2, 3, 3), value=(2, 2, 4, 3), axes=(2,)),
    "rank4_full": _reuse_spec({"reuse_attention": -1}, query=(2, 2, 2, 3), value=(2, 3, 2, 3),
                              axes=(1, 2)),
}


@pytest.mark.parametrize("scores", [False, True], ids=["out", "out+scores"])
@pytest.mark.parametrize("spec", REUSE_CASES.values(), ids=REUSE_CASES.keys())
def test_reuse_multi_head_attention_gradients(spec, scores):
    problem = _multi_head_problem(attention.ReuseMultiHeadAttention, spec, seed=9)
    res = check_gradients(problem, scores=scores, seed=9)
    if problem.layer.reuse_attention == 0:
        assert res.reuse_attention_scores is None


@pytest.mark.parametrize("heads", [1, 4], ids=["r_heads", "more_heads"])
def test_reuse_partial_scores_with_other_head_counts(heads):
    """Partial reuse (1 of 3) with reuse_attention_scores holding r = 1 or 4 > 3 heads: the
    gradient has the given shape, and the unused heads get exactly 0."""
    spec = _reuse_spec({"reuse_attention": 1}, masks={"attention_mask": (2, 3, 4)})
    problem = _multi_head_problem(attention.ReuseMultiHeadAttention, spec, seed=10,
                                  reuse_heads=heads)
    res = check_gradients(problem, scores=True, seed=10, weights=False)
    assert res.reuse_attention_scores.shape == (2, heads, 3, 4)
    assert np.all(res.reuse_attention_scores[:, 1:] == 0)


def test_reuse_gradient_wrt_scores_of_an_earlier_layer():
    """Two chained layers: d/dx of the second's loss through the first's scores is the first
    layer's gradients with scores_gradient = the second's .reuse_attention_scores."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 4, 4))
    first = attention.ReuseMultiHeadAttention(num_heads=2, key_dim=2, dtype="float64")
    second = attention.ReuseMultiHeadAttention(num_heads=2, key_dim=2, reuse_attention=1,
                                               dtype="float64")
    for layer in (first, second):
        layer.build(x.shape, x.shape)
        _random_weights(layer, rng)
    y = rng.normal(size=(2, 4, 4))
    d_out = rng.normal(size=(2, 4, 4))

    def loss():
        _, scores = first(x, x, return_attention_scores=True)
        return _inner(second(y, y, reuse_attention_scores=scores), d_out)

    _, scores = first(x, x, return_attention_scores=True)
    upstream = second.gradients(y, y, reuse_attention_scores=scores, output_gradient=d_out)
    res = first.gradients(x, x, output_gradient=np.zeros((2, 4, 4)),
                          scores_gradient=upstream.reuse_attention_scores)
    assert_gradient(res.query + res.value, central_differences(loss, x), "d/dx through scores")


# -- dropout stream, training, first use, float32 ---------------------------------------------

def _call_kwargs_and_layers(dtype="float64", dropout=0.0, seed=21):
    """One small layer of each kind with (q, v) inputs and a function giving gradients."""
    rng = np.random.default_rng(seed)
    q, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4, 4))
    layers = {
        "Attention": attention.Attention(use_scale=True, dropout=dropout, seed=seed, dtype=dtype),
        "AdditiveAttention": attention.AdditiveAttention(dropout=dropout, seed=seed, dtype=dtype),
        "MultiHeadAttention": attention.MultiHeadAttention(2, 3, use_gate=True, dropout=dropout,
                                                           seed=seed, dtype=dtype),
        "GroupQueryAttention": attention.GroupQueryAttention(2, 4, 2, dropout=dropout, seed=seed,
                                                             dtype=dtype),
        "ReuseMultiHeadAttention": attention.ReuseMultiHeadAttention(
            3, 2, reuse_attention=1, use_relative_pe=True, pe_max_seq_length=2,
            dropout=dropout, seed=seed, dtype=dtype),
    }
    return rng, q, v, layers


def _reuse_scores(rng):
    return rng.uniform(0, 1, size=(2, 3, 3, 4))


def _gradients(kind, layer, q, v, d_out, training=None, scores_gradient=None, reuse=None):
    if kind in ("Attention", "AdditiveAttention"):
        return layer.gradients([q, v], training=bool(training), output_gradient=d_out,
                               scores_gradient=scores_gradient)
    extra = {"reuse_attention_scores": reuse} if kind == "ReuseMultiHeadAttention" else {}
    return layer.gradients(q, v, training=training, output_gradient=d_out,
                           scores_gradient=scores_gradient, **extra)


def _call(kind, layer, q, v, training=None, reuse=None, scores=False):
    if kind in ("Attention", "AdditiveAttention"):
        return layer([q, v], training=bool(training), return_attention_scores=scores)
    extra = {"reuse_attention_scores": reuse} if kind == "ReuseMultiHeadAttention" else {}
    return layer(q, v, training=training, return_attention_scores=scores, **extra)


KINDS = ["Attention", "AdditiveAttention", "MultiHeadAttention", "GroupQueryAttention",
         "ReuseMultiHeadAttention"]


def _output_shape(kind, q, v):
    return q.shape[:-1] + ((v.shape[-1],) if kind in ("Attention", "AdditiveAttention")
                           else (q.shape[-1],))


@pytest.mark.parametrize("kind", KINDS)
def test_first_use_builds_and_output_matches_call(kind):
    rng, q, v, layers = _call_kwargs_and_layers()
    layer, reuse = layers[kind], _reuse_scores(rng)
    assert not layer.built
    d_out = rng.normal(size=_output_shape(kind, q, v))
    res = _gradients(kind, layer, q, v, d_out, reuse=reuse)
    assert layer.built
    assert res.key is None
    assert [w.shape for w in res.weights] == [w.shape for w in layer.get_weights()]
    assert_close(res.output, _call(kind, layer, q, v, reuse=reuse), what="output")


@pytest.mark.parametrize("kind", KINDS)
def test_training_without_dropout_equals_inference(kind):
    rng, q, v, layers = _call_kwargs_and_layers(dropout=0.0)
    layer, reuse = layers[kind], _reuse_scores(rng)
    d_out = rng.normal(size=_output_shape(kind, q, v))
    inference = _gradients(kind, layer, q, v, d_out, training=False, reuse=reuse)
    training = _gradients(kind, layer, q, v, d_out, training=True, reuse=reuse)
    assert layer.dropout_stream == 0
    for name in ("output", "query", "value", "reuse_attention_scores"):
        a, b = getattr(inference, name), getattr(training, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_array_equal(a, b, err_msg=name)
    for a, b in zip(inference.weights, training.weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_stream_advances_like_a_training_call(kind):
    """gradients(training=True) uses (dropout_seed, dropout_stream) as layer(...) would and
    advances the stream by one; inference leaves it. Two steps draw two masks."""
    rng, q, v, layers = _call_kwargs_and_layers(dropout=0.4, seed=22)
    layer, reuse = layers[kind], _reuse_scores(rng)
    d_out = rng.normal(size=_output_shape(kind, q, v))
    _gradients(kind, layer, q, v, d_out, training=False, reuse=reuse)
    assert layer.dropout_stream == 0
    first = _gradients(kind, layer, q, v, d_out, training=True, reuse=reuse)
    assert layer.dropout_stream == 1
    second = _gradients(kind, layer, q, v, d_out, training=True, reuse=reuse)
    assert layer.dropout_stream == 2
    assert not np.array_equal(first.output, second.output)
    layer.dropout_stream = 1
    assert_close(second.output, _call(kind, layer, q, v, training=True, reuse=reuse),
                 what="output of the second step")
    assert layer.dropout_stream == 2
    layer.dropout_stream = 0
    again = _gradients(kind, layer, q, v, d_out, training=True, reuse=reuse)
    np.testing.assert_array_equal(again.query, first.query)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_gradients_match_float64(kind):
    rng, q, v, layers64 = _call_kwargs_and_layers("float64", dropout=0.2)
    _, _, _, layers32 = _call_kwargs_and_layers("float32", dropout=0.2)
    layer64, layer32 = layers64[kind], layers32[kind]
    q = q.astype(np.float32).astype(np.float64)
    v = v.astype(np.float32).astype(np.float64)
    reuse = _reuse_scores(rng).astype(np.float32).astype(np.float64)
    layer64.build(*([[q.shape, v.shape]] if kind in KINDS[:2] else [q.shape, v.shape]))
    weights = [w.astype(np.float32).astype(np.float64)
               for w in _random_weights(layer64, rng, -1.0, 1.0)]
    layer64.set_weights(weights)
    layer32.build(*([[q.shape, v.shape]] if kind in KINDS[:2] else [q.shape, v.shape]))
    layer32.set_weights(weights)
    d_out = rng.normal(size=_output_shape(kind, q, v)).astype(np.float32).astype(np.float64)
    _, scores = _call(kind, layer64, q, v, reuse=reuse, scores=True)
    layer64.dropout_stream = 0
    d_scores = rng.normal(size=scores.shape).astype(np.float32).astype(np.float64)
    g64 = _gradients(kind, layer64, q, v, d_out, training=True, scores_gradient=d_scores,
                     reuse=reuse)
    g32 = _gradients(kind, layer32, q.astype(np.float32), v.astype(np.float32),
                     d_out.astype(np.float32), training=True,
                     scores_gradient=d_scores.astype(np.float32),
                     reuse=reuse.astype(np.float32))
    pairs = [(name, getattr(g32, name), getattr(g64, name))
             for name in ("output", "scores", "query", "value", "reuse_attention_scores")]
    pairs += [(f"weight {i}", a, b) for i, (a, b) in enumerate(zip(g32.weights, g64.weights))]
    for name, a, b in pairs:
        assert (a is None) == (b is None), name
        if b is None:
            continue
        assert a.dtype == np.float32, name
        error = float(np.max(np.abs(a.astype(np.float64) - b))) if b.size else 0.0
        limit = 1e-5 + 1e-4 * float(np.max(np.abs(b), initial=0.0))
        assert error <= limit, f"{name}: float32 differs by {error:.3g} > {limit:.3g}"


# -- regularizers and constraints -------------------------------------------------------------

REGULARIZED = {
    "kernel_l1": {"kernel_regularizer": {"class_name": "L1", "config": {"l1": 0.03}}},
    "bias_l2": {"bias_regularizer": {"class_name": "L2", "config": {"l2": 0.05}}},
    "activity_l1_l2": {"activity_regularizer": {"class_name": "L1L2",
                                                "config": {"l1": 0.02, "l2": 0.04}}},
    "all": {"kernel_regularizer": {"class_name": "L1L2", "config": {"l1": 0.01, "l2": 0.02}},
            "bias_regularizer": "l2",
            "activity_regularizer": {"class_name": "L1L2", "config": {"l1": 0.02, "l2": 0.01}}},
}

REGULARIZED_LAYERS = {
    "MultiHeadAttention": (attention.MultiHeadAttention,
                           _mha_spec({"use_gate": True}, key=3,
                                     masks={"attention_mask": (2, 3, 4)})),
    "MultiHeadAttention_rank4": (attention.MultiHeadAttention,
                                 _mha_spec({"attention_axes": (2,), "output_shape": (2, 2)},
                                           query=(2, 2, 3, 4), value=(2, 2, 4, 3))),
    "GroupQueryAttention": (attention.GroupQueryAttention, _gqa_spec({"use_gate": True})),
    "ReuseMultiHeadAttention": (attention.ReuseMultiHeadAttention,
                                _reuse_spec({"reuse_attention": 1, "use_relative_pe": True,
                                             "pe_max_seq_length": 2}, query=(2, 4, 3),
                                            value=(2, 3, 3))),
}


@pytest.mark.parametrize("scores", [False, True], ids=["out", "out+scores"])
@pytest.mark.parametrize("regularizers", REGULARIZED.values(), ids=REGULARIZED.keys())
@pytest.mark.parametrize("layer_case", REGULARIZED_LAYERS.values(), ids=REGULARIZED_LAYERS.keys())
def test_regularized_gradients(layer_case, regularizers, scores):
    """regularization=True: differences of L + sum(layer.losses), layer.losses re-read after
    every perturbed call (weights kept away from 0, where l1 has its kink)."""
    layer_class, spec = layer_case
    problem = _multi_head_problem(layer_class, spec, seed=12, **regularizers)
    _weights_away_from_zero(problem.layer, np.random.default_rng(13))
    out = problem.forward(problem.inputs, False)
    assert np.min(np.abs(out)) > 1e-4  # activity l1: outputs away from its kink too
    check_gradients(problem, scores=scores, regularization=True, seed=12)


@pytest.mark.parametrize("layer_case", REGULARIZED_LAYERS.values(), ids=REGULARIZED_LAYERS.keys())
def test_regularization_false_leaves_the_penalties_out(layer_case):
    layer_class, spec = layer_case
    problem = _multi_head_problem(layer_class, spec, seed=14, **REGULARIZED["all"])
    _weights_away_from_zero(problem.layer, np.random.default_rng(15))
    check_gradients(problem, scores=True, regularization=False, seed=14)


def _kernel_and_bias_indices(layer):
    names = layer.weight_names
    kernels = [i for i, n in enumerate(names) if n.endswith("/kernel")]
    biases = [i for i, n in enumerate(names) if n.endswith("/bias")]
    return kernels, biases


@pytest.mark.parametrize("layer_case", REGULARIZED_LAYERS.values(), ids=REGULARIZED_LAYERS.keys())
def test_weight_penalty_gradients_are_analytic(layer_case):
    """With output_gradient 0: kernel l1 gives l1·sign(w), bias l2 gives 2·l2·b, the inputs
    get 0; without regularization everything is 0."""
    layer_class, spec = layer_case
    l1, l2 = 0.03, 0.05
    problem = _multi_head_problem(
        layer_class, spec, seed=16, kernel_regularizer={"class_name": "L1", "config": {"l1": l1}},
        bias_regularizer={"class_name": "L2", "config": {"l2": l2}})
    layer = problem.layer
    weights = _weights_away_from_zero(layer, np.random.default_rng(17))
    out = problem.forward(problem.inputs, False)
    kernels, biases = _kernel_and_bias_indices(layer)
    assert kernels
    for regularization in (True, False):
        res = problem.gradients(problem.inputs, output_gradient=np.zeros(out.shape),
                                regularization=regularization)
        for name in ("query", "value", "key", "reuse_attention_scores"):
            g = getattr(res, name)
            assert g is None or np.all(g == 0), name
        for i, (name, g) in enumerate(zip(layer.weight_names, res.weights)):
            if not regularization:
                want = np.zeros_like(weights[i])
            elif i in kernels:
                want = l1 * np.sign(weights[i])
            elif i in biases:
                want = 2 * l2 * weights[i]
            else:  # relative_position_embeddings: whether a kernel regularizer applies is
                continue  # upstream's choice; the differences test covers it
            np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-15, err_msg=name)


def test_losses_are_the_weight_penalties_and_the_last_calls_activity():
    rng = np.random.default_rng(18)
    l2, l1 = 0.03, 0.02
    layer = attention.MultiHeadAttention(
        2, 3, use_gate=True, dtype="float64", kernel_regularizer={"class_name": "L2",
                                                                  "config": {"l2": l2}},
        bias_regularizer={"class_name": "L1", "config": {"l1": l1}})
    q, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4, 4))
    layer.build(q.shape, v.shape)
    weights = _random_weights(layer, rng)
    kernels, biases = _kernel_and_bias_indices(layer)
    expected = sorted([l2 * float(np.sum(weights[i] ** 2)) for i in kernels]
                      + [l1 * float(np.sum(np.abs(weights[i]))) for i in biases])
    for when in ("before a call", "after a call", "after gradients"):
        if when == "after a call":
            layer(q, v)
        elif when == "after gradients":
            layer.gradients(q, v, output_gradient=np.ones((2, 3, 4)))
        losses = layer.losses
        assert all(isinstance(x, float) for x in losses), when
        np.testing.assert_allclose(sorted(losses), expected, rtol=1e-12, err_msg=when)
    no_penalty = attention.MultiHeadAttention(2, 3, dtype="float64")
    no_penalty(q, v)
    assert list(no_penalty.losses) == []


def test_activity_losses_follow_the_last_call():
    rng = np.random.default_rng(19)
    layer = attention.GroupQueryAttention(2, 4, 2, dtype="float64", activity_regularizer="l2")
    q1, q2, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))
    layer(q1, v)
    first = sorted(layer.losses)
    assert first and math.fsum(first) > 0
    layer(q2, v)
    second = sorted(layer.losses)
    assert second != first
    layer.gradients(q1, v, output_gradient=np.ones((2, 3, 4)))
    np.testing.assert_allclose(sorted(layer.losses), first, rtol=1e-12)
    layer.gradients(q2, v, output_gradient=np.ones((2, 3, 4)), regularization=True)
    np.testing.assert_allclose(sorted(layer.losses), second, rtol=1e-12)


def _keras_max_norm(w, max_value, axis):
    norms = np.sqrt(np.sum(w * w, axis=axis, keepdims=True))
    return w * np.clip(norms, 0, max_value) / (1e-7 + norms)  # Keras's epsilon, 1e-7


@pytest.mark.parametrize("kind", ["MultiHeadAttention", "GroupQueryAttention",
                                  "ReuseMultiHeadAttention"])
def test_apply_constraints(kind):
    rng = np.random.default_rng(20)
    make = {
        "MultiHeadAttention": lambda **kw: attention.MultiHeadAttention(2, 3, use_gate=True, **kw),
        "GroupQueryAttention": lambda **kw: attention.GroupQueryAttention(2, 4, 2, **kw),
        "ReuseMultiHeadAttention": lambda **kw: attention.ReuseMultiHeadAttention(
            3, 2, reuse_attention=1, **kw),
    }[kind]
    q, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4, 4))

    def constrained(**kw):
        layer = make(dtype="float64", **kw)
        layer.build(q.shape, v.shape)
        return layer, _random_weights(layer, rng, -2.0, 2.0)

    layer, weights = constrained()
    layer.apply_constraints()
    for a, b in zip(layer.get_weights(), weights):
        np.testing.assert_array_equal(a, b)

    layer, weights = constrained(kernel_constraint="non_neg")
    kernels, biases = _kernel_and_bias_indices(layer)
    layer.apply_constraints()
    for i, (a, b) in enumerate(zip(layer.get_weights(), weights)):
        np.testing.assert_array_equal(a, np.maximum(b, 0) if i in kernels else b)

    layer, weights = constrained(bias_constraint="non_neg",
                                 kernel_constraint={"class_name": "MaxNorm",
                                                    "config": {"max_value": 1.5, "axis": 0}})
    layer.apply_constraints()
    for i, (a, b) in enumerate(zip(layer.get_weights(), weights)):
        if i in kernels:
            np.testing.assert_allclose(a, _keras_max_norm(b, 1.5, 0), rtol=1e-12, atol=1e-15)
        elif i in biases:
            np.testing.assert_array_equal(a, np.maximum(b, 0))

    # The output bias has rank 1, the other biases rank 2: axis 1 fits only some of them,
    # so the call is refused before any weight changes.
    layer, weights = constrained(bias_constraint={"class_name": "UnitNorm", "config": {"axis": 1}})
    with pytest.raises(ValueError, match="axis"):
        layer.apply_constraints()
    for a, b in zip(layer.get_weights(), weights):
        np.testing.assert_array_equal(a, b)


# -- bad gradients ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_bad_output_and_scores_gradients(kind):
    rng, q, v, layers = _call_kwargs_and_layers()
    layer, reuse = layers[kind], _reuse_scores(rng)
    out, scores = _call(kind, layer, q, v, reuse=reuse, scores=True)
    good = np.ones(out.shape)
    for bad in (np.ones(out.shape[:-1]), np.ones(out.shape[:-1] + (out.shape[-1] + 1,)),
                np.ones((1,) + out.shape), np.ones((3,) + out.shape[1:])):
        with pytest.raises(ValueError):
            _gradients(kind, layer, q, v, bad, reuse=reuse)
    for bad in (np.full(out.shape, "x"), np.full(out.shape, 1 + 2j)):
        with pytest.raises(TypeError):
            _gradients(kind, layer, q, v, bad, reuse=reuse)
    for bad in (np.ones(scores.shape[:-1]), np.ones(scores.shape[:-1] + (scores.shape[-1] + 1,)),
                np.ones(scores.shape + (1,))):
        with pytest.raises(ValueError):
            _gradients(kind, layer, q, v, good, scores_gradient=bad, reuse=reuse)
    with pytest.raises(TypeError):
        _gradients(kind, layer, q, v, good, scores_gradient=np.full(scores.shape, "x"),
                   reuse=reuse)
    with pytest.raises(TypeError):  # output_gradient is a required keyword
        if kind in KINDS[:2]:
            layer.gradients([q, v])
        else:
            layer.gradients(q, v, reuse_attention_scores=reuse)
    # The layer still works.
    res = _gradients(kind, layer, q, v, good, scores_gradient=np.ones(scores.shape), reuse=reuse)
    assert_close(res.output, out)


def test_concat_scalar_weights_with_feature_dim_1():
    """Concat scores have two scalar weights: with dim 1 their gradients still fit (a fuzzed
    input once overflowed the buffer sized by the dim)."""
    rng = np.random.default_rng(5)
    layer = attention.Attention(use_scale=True, score_mode="concat", dtype="float64")
    q, v = rng.normal(size=(2, 3, 1)), rng.normal(size=(2, 4, 1))
    d_out = rng.normal(size=(2, 3, 1))
    g = layer.gradients([q, v], output_gradient=d_out)
    weights = layer.get_weights()
    for i, w in enumerate(weights):
        shifted = []
        for step in (1e-6, -1e-6):
            layer.set_weights([x + (step if j == i else 0) for j, x in enumerate(weights)])
            shifted.append(float((layer([q, v]) * d_out).sum()))
        layer.set_weights(weights)
        assert abs(g.weights[i] - (shifted[0] - shifted[1]) / 2e-6) < 1e-7 * max(1.0, abs(g.weights[i]))
