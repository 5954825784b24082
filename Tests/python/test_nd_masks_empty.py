"""Issue 16: masks of every shape Keras accepts on N-D inputs, Attention / AdditiveAttention on
inputs of any rank >= 2, and empty tensors — forward against reference.py (written from
Keras's rules), gradients against central differences (test_gradients' helpers).

Accepted mask shapes (the library's contract, Keras 3.15's rule):
- MultiHeadAttention / GroupQueryAttention: query_mask m -> m[..., None], value_mask and
  key_mask m -> m[..., None, :], ANDed (numpy broadcasting) with the causal / sliding-window
  (1, T, S) masks and attention_mask, then given size-1 axes at -2·len(attention_axes)-1 up to
  the scores' rank and broadcast to the scores: any shapes for which this works.
- Attention / AdditiveAttention on (L..., Tq, D) / (L..., Tv, Dv): query_mask broadcasts to
  (L..., Tq); value_mask of lower rank than the inputs broadcasts to (L..., Tv) (a padding
  mask, expanded at -2); value_mask of the inputs' rank broadcasts to the scores (L..., Tq, Tv).
"""

import numpy as np
import pytest

import attention
from attention import reference
from conftest import assert_close
from test_gradients import (_random_weights, check_gradients, luong_problem,
                            multi_head_problem)

RNG = np.random.default_rng(16)


def _keep(shape, p=0.7):
    return RNG.random(shape) < p


def _mha(dtype="float64", **config):
    config = {"num_heads": 2, "key_dim": 3, **config}
    return attention.MultiHeadAttention(**config, seed=3, dtype=dtype)


def _mha_reference(layer, q, v, k=None, **call):
    return reference.multi_head_attention(
        q, v, k, weights=layer.get_weights(), num_heads=layer.num_heads, key_dim=layer.key_dim,
        value_dim=layer.value_dim, use_bias=layer.use_bias, attention_axes=layer.attention_axes,
        dropout=layer.dropout, **call)


# -- MultiHeadAttention: padding masks on a rank-4 query over axis 1 ---------------------------

RANK4_AXIS1_MASKS = {
    "query_B_T": {"query_mask": (2, 3)},
    "value_B_S": {"value_mask": (2, 4)},
    "key_B_S": {"key_mask": (2, 4)},
    "value_1_S": {"value_mask": (1, 4)},
    "value_S": {"value_mask": (4,)},
    "all_B_T_B_S": {"query_mask": (2, 3), "value_mask": (2, 4), "key_mask": (1, 4)},
    "query_B_1": {"query_mask": (2, 1), "value_mask": (2, 4)},
    "query_T": {"query_mask": (3,)},
    "with_attention_mask": {"query_mask": (2, 3), "attention_mask": (2, 1, 1, 3, 4)},
    "attention_mask_T_S": {"value_mask": (2, 4), "attention_mask": (3, 4)},
}


@pytest.mark.parametrize("scores", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masks", RANK4_AXIS1_MASKS.values(), ids=RANK4_AXIS1_MASKS.keys())
def test_mha_rank4_axis1_padding_masks(masks, causal, scores):
    """(B, T, X, dim) over axis 1: (B, T) / (B, S) masks broadcast over X and the heads."""
    q, v = RNG.normal(size=(2, 3, 2, 5)), RNG.normal(size=(2, 4, 2, 5))
    layer = _mha(attention_axes=(1,))
    layer.build(q.shape, v.shape)
    _random_weights(layer, RNG)
    call = {name: _keep(shape) for name, shape in masks.items()}
    got = layer(q, v, **call, use_causal_mask=causal, return_attention_scores=scores)
    want, want_scores = _mha_reference(layer, q, v, **call, use_causal_mask=causal,
                                       return_attention_scores=scores)
    if scores:
        got, got_scores = got
        assert got_scores.shape == (2, 2, 2, 3, 4)  # (B, X, N, T, S)
        assert_close(got_scores, want_scores, what="scores")
    assert_close(got, want)


def test_mha_rank4_padding_masks_equal_the_explicit_attention_mask():
    """The meaning: keep[b, x, n, t, s] = query_mask[b, t] & value_mask[b, s] & key_mask[b, s]."""
    q, v, k = RNG.normal(size=(2, 3, 2, 5)), RNG.normal(size=(2, 4, 2, 5)), RNG.normal(size=(2, 4, 2, 3))
    layer = _mha(attention_axes=(1,))
    qm, vm, km = _keep((2, 3)), _keep((2, 4)), _keep((2, 4))
    explicit = (qm[:, :, None] & vm[:, None, :] & km[:, None, :])[:, None, None]  # (B, 1, 1, T, S)
    for scores in (False, True):
        a = layer(q, v, k, query_mask=qm, value_mask=vm, key_mask=km, return_attention_scores=scores)
        b = layer(q, v, k, attention_mask=explicit, return_attention_scores=scores)
        for x, y in zip(a if scores else [a], b if scores else [b]):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mha_value_mask_broadcasts_over_the_batch(dtype):
    q, v = RNG.normal(size=(3, 4, 6)), RNG.normal(size=(3, 5, 6))
    layer = _mha(dtype)
    vm = _keep((1, 5))
    vm[0, 0] = True
    got = layer(q, v, value_mask=vm)
    np.testing.assert_array_equal(got, layer(q, v, value_mask=np.repeat(vm, 3, axis=0)))
    want, _ = _mha_reference(layer, q, v, value_mask=vm)
    assert_close(got, want, dtype)


@pytest.mark.parametrize("masks, fragment", [
    ({"query_mask": (4,)}, "does not broadcast"),
    ({"value_mask": ()}, "scalar"),
    ({"value_mask": (2, 5)}, "does not broadcast"),
    ({"query_mask": (2, 3, 2, 1, 1, 1)}, "rank"),
    # The query's shape without its last dim, (B, T, X): (B, T, X, 1) gains a size-1 axis at
    # -3, giving (B, T, 1, X, 1), which does not broadcast to the scores (B, X, N, T, S).
    ({"query_mask": (2, 3, 2)}, "does not broadcast"),
    ({"value_mask": (2, 4, 2)}, "does not broadcast"),
])
def test_mha_masks_keras_refuses_are_refused(masks, fragment):
    q, v = RNG.normal(size=(2, 3, 2, 5)), RNG.normal(size=(2, 4, 2, 5))
    layer = _mha(attention_axes=(1,))
    call = {name: _keep(shape) for name, shape in masks.items()}
    with pytest.raises(ValueError, match=fragment):
        layer(q, v, **call)
    with pytest.raises(ValueError):
        _mha_reference(layer, q, v, **call)


# -- GroupQueryAttention: the same rule on rank-3 inputs --------------------------------------

GQA_MASKS = {
    "value_1_S": {"value_mask": (1, 5)},
    "value_S": {"value_mask": (5,)},
    "key_1_S_query_B_1": {"key_mask": (1, 5), "query_mask": (2, 1)},
    "query_B_T_value_1_S": {"query_mask": (2, 3), "value_mask": (1, 5)},
}


@pytest.mark.parametrize("scores", [False, True])
@pytest.mark.parametrize("masks", GQA_MASKS.values(), ids=GQA_MASKS.keys())
def test_gqa_broadcast_masks(masks, scores):
    q, v = RNG.normal(size=(2, 3, 4)), RNG.normal(size=(2, 5, 4))
    layer = attention.GroupQueryAttention(2, 4, 2, seed=4, dtype="float64")
    layer.build(q.shape, v.shape)
    _random_weights(layer, RNG)
    call = {name: _keep(shape) for name, shape in masks.items()}
    got = layer(q, v, **call, return_attention_scores=scores)
    want, want_scores = reference.group_query_attention(
        q, v, weights=layer.get_weights(), head_dim=2, num_query_heads=4, num_key_value_heads=2,
        return_attention_scores=scores, **call)
    if scores:
        got, got_scores = got
        assert_close(got_scores, want_scores, what="scores")
    assert_close(got, want)


# -- gradients of the new mask shapes (central differences) -----------------------------------

def _multi_head_case(layer, q, v, k=None, **call):
    layer.build(q.shape, v.shape, None if k is None else k.shape)
    _random_weights(layer, RNG)
    return multi_head_problem(layer, q, v, k, **call)


def _row_keeping(shape):
    m = _keep(shape)
    m[..., 0] = True
    return m


MASK_GRADIENT_CASES = {
    "mha_rank4_axis1_B_T_B_S": lambda: _multi_head_case(
        _mha(attention_axes=(1,)), RNG.normal(size=(2, 3, 2, 3)), RNG.normal(size=(2, 4, 2, 3)),
        query_mask=_keep((2, 3)), value_mask=_row_keeping((2, 4)), key_mask=_keep((2, 4)) | True),
    "mha_rank4_axis1_value_1_S_causal": lambda: _multi_head_case(
        _mha(attention_axes=(1,), use_gate=True), RNG.normal(size=(2, 3, 2, 3)),
        RNG.normal(size=(2, 3, 2, 3)), value_mask=_row_keeping((1, 3)), use_causal_mask=True),
    "mha_rank4_axis1_dropout": lambda: _multi_head_case(
        _mha(attention_axes=(1,), dropout=0.3), RNG.normal(size=(2, 3, 2, 3)),
        RNG.normal(size=(2, 4, 2, 3)), query_mask=_keep((2, 3)), value_mask=_row_keeping((2, 4)),
        training=True),
    "mha_rank3_value_1_S": lambda: _multi_head_case(
        _mha(), RNG.normal(size=(2, 3, 4)), RNG.normal(size=(2, 4, 4)),
        value_mask=_row_keeping((1, 4)), query_mask=_keep((2, 1))),
    "gqa_value_1_S_key_S": lambda: _multi_head_case(
        attention.GroupQueryAttention(2, 4, 2, seed=5, dtype="float64"),
        RNG.normal(size=(2, 3, 4)), RNG.normal(size=(2, 4, 4)),
        value_mask=_row_keeping((1, 4)), key_mask=_row_keeping((4,)), query_mask=_keep((2, 3))),
}


@pytest.mark.parametrize("scores", [False, True])
@pytest.mark.parametrize("case", MASK_GRADIENT_CASES.values(), ids=MASK_GRADIENT_CASES.keys())
def test_gradients_with_broadcast_masks(case, scores):
    check_gradients(case(), scores=scores, seed=16)


def test_rank4_masked_gradients_equal_the_explicit_attention_mask():
    q, v = RNG.normal(size=(2, 3, 2, 5)), RNG.normal(size=(2, 4, 2, 5))
    layer = _mha(attention_axes=(1,))
    qm, vm = _keep((2, 3)), _row_keeping((2, 4))
    explicit = (qm[:, :, None] & vm[:, None, :])[:, None, None]
    d_out = RNG.normal(size=q.shape)
    a = layer.gradients(q, v, query_mask=qm, value_mask=vm, output_gradient=d_out)
    b = layer.gradients(q, v, attention_mask=explicit, output_gradient=d_out)
    for x, y in zip([a.query, a.value, *a.weights], [b.query, b.value, *b.weights]):
        np.testing.assert_array_equal(x, y)


# -- Attention / AdditiveAttention on N-D inputs ------------------------------------------------

LUONG_ND = {
    "rank4": ((2, 3, 4, 5), (2, 3, 6, 5), None, {}),
    "rank4_key": ((2, 3, 4, 5), (2, 3, 6, 2), 5, {}),
    "rank4_masks": ((2, 3, 4, 5), (2, 3, 6, 5), None, {"q": (2, 3, 4), "v": (2, 3, 6)}),
    "rank4_broadcast_masks": ((2, 3, 4, 5), (2, 3, 6, 5), None, {"q": (4,), "v": (1, 3, 6)}),
    "rank4_scores_mask": ((2, 3, 4, 5), (2, 3, 6, 5), None, {"v": (2, 1, 4, 6)}),
    "rank4_causal": ((2, 3, 4, 5), (2, 3, 4, 5), None, {"causal": True, "v": (2, 3, 4)}),
    "rank5": ((2, 2, 3, 4, 3), (2, 2, 3, 5, 3), None, {"q": (2, 2, 3, 4), "v": (2, 1, 3, 5)}),
    "rank2": ((4, 5), (6, 5), None, {"q": (4,), "v": (6,)}),
    "rank3_scores_mask": ((2, 4, 5), (2, 6, 5), None, {"v": (2, 4, 6)}),
    "rank3_value_1_Tv": ((2, 4, 5), (2, 6, 5), None, {"v": (1, 6)}),
}


def _luong_case(kind, case, dtype="float64", **layer_config):
    q_shape, v_shape, key_dim, masks = case
    q, v = RNG.normal(size=q_shape), RNG.normal(size=v_shape)
    k = None if key_dim is None else RNG.normal(size=v_shape[:-1] + (key_dim,))
    layer = getattr(attention, kind)(seed=6, dtype=dtype, **layer_config)
    layer.build([q.shape, v.shape] + ([] if k is None else [k.shape]))
    _random_weights(layer, RNG, 0.5, 1.5)
    qm = _keep(masks["q"]) if "q" in masks else None
    vm = _row_keeping(masks["v"]) if "v" in masks else None
    mask = None if qm is None and vm is None else [qm, vm]
    return layer, q, v, k, mask, masks.get("causal", False)


def _luong_reference(kind, layer, q, v, k, mask, causal, config):
    qm, vm = mask or (None, None)
    w = layer.get_weights()
    if kind == "Attention":
        scale = w[0] if config.get("use_scale") else None
        weight = w[-1] if config.get("score_mode") == "concat" else None
        return reference.attention(q, v, k, qm, vm, score_mode=config.get("score_mode", "dot"),
                                   scale=scale, concat_score_weight=weight, use_causal_mask=causal)
    return reference.additive_attention(q, v, k, qm, vm, scale=w[0], use_causal_mask=causal)


LUONG_CONFIGS = [("Attention", {}), ("Attention", {"use_scale": True, "score_mode": "concat"}),
                 ("AdditiveAttention", {})]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind, config", LUONG_CONFIGS, ids=["dot", "concat", "additive"])
@pytest.mark.parametrize("case", LUONG_ND.values(), ids=LUONG_ND.keys())
def test_luong_nd_against_reference(case, kind, config, dtype):
    layer, q, v, k, mask, causal = _luong_case(kind, case, dtype, **config)
    inputs = [q, v] + ([] if k is None else [k])
    out, scores = layer(inputs, mask=mask, use_causal_mask=causal, return_attention_scores=True)
    want, want_scores = _luong_reference(kind, layer, *(x.astype(dtype) for x in (q, v)),
                                         None if k is None else k.astype(dtype), mask, causal, config)
    assert out.shape == q.shape[:-1] + v.shape[-1:]
    assert scores.shape == q.shape[:-1] + v.shape[-2:-1]
    assert_close(scores, want_scores, what="scores")
    assert_close(out, want)


def test_luong_rank4_equals_rank3_slices():
    """(B, X, Tq, D): every (b, x) slice is an independent rank-3 call (bitwise, masks too)."""
    layer = attention.AdditiveAttention(seed=1, dtype="float64")
    q, v = RNG.normal(size=(2, 3, 4, 5)), RNG.normal(size=(2, 3, 6, 5))
    qm, vm = _keep((2, 3, 4)), _row_keeping((2, 3, 6))
    out = layer([q, v], mask=[qm, vm], use_causal_mask=True)
    for b in range(2):
        for x in range(3):
            one = layer([q[b, x][None], v[b, x][None]], mask=[qm[b, x][None], vm[b, x][None]],
                        use_causal_mask=True)
            np.testing.assert_array_equal(out[b, x], one[0])


@pytest.mark.parametrize("scores", [False, True])
@pytest.mark.parametrize("kind, config", LUONG_CONFIGS, ids=["dot", "concat", "additive"])
@pytest.mark.parametrize("name", ["rank4_key", "rank4_masks", "rank4_scores_mask", "rank4_causal",
                                  "rank2", "rank5"])
def test_luong_nd_gradients(name, kind, config, scores):
    layer, q, v, k, mask, causal = _luong_case(kind, LUONG_ND[name], **config)
    check_gradients(luong_problem(layer, q, v, k, mask=mask, use_causal_mask=causal),
                    scores=scores, seed=17)


def test_luong_nd_dropout_gradients():
    layer, q, v, k, mask, causal = _luong_case("Attention", LUONG_ND["rank4_masks"], dropout=0.3)
    check_gradients(luong_problem(layer, q, v, k, mask=mask, training=True), scores=True, seed=18)


# -- empty tensors ------------------------------------------------------------------------------

EMPTY = {"batch_0": ((0, 3, 4), (0, 5, 4)), "tq_0": ((2, 0, 4), (2, 5, 4)),
         "tv_0": ((2, 3, 4), (2, 0, 4)), "all_0": ((0, 0, 4), (0, 0, 4))}


def _layer(kind, dtype="float64"):
    """Each layer kind with biases of ones, so an output of no keys shows the bias."""
    ones = {"bias_initializer": "ones"}
    return {
        "Attention": lambda: attention.Attention(use_scale=True, dtype=dtype),
        "AdditiveAttention": lambda: attention.AdditiveAttention(seed=1, dtype=dtype),
        "MultiHeadAttention": lambda: attention.MultiHeadAttention(2, 3, use_gate=True, seed=1,
                                                                   dtype=dtype, **ones),
        "GroupQueryAttention": lambda: attention.GroupQueryAttention(2, 4, 2, seed=1, dtype=dtype,
                                                                     **ones),
        "ReuseMultiHeadAttention": lambda: attention.ReuseMultiHeadAttention(2, 3, seed=1,
                                                                             dtype=dtype, **ones),
    }[kind]()


KINDS = ["Attention", "AdditiveAttention", "MultiHeadAttention", "GroupQueryAttention",
         "ReuseMultiHeadAttention"]


def _call(layer, q, v, **kw):
    if isinstance(layer, attention.Attention):  # AdditiveAttention too
        mask = kw.pop("mask", None)
        return layer([q, v], mask=mask, **kw)
    return layer(q, v, **kw)


def _reference(kind, layer, q, v):
    w = layer.get_weights()
    if kind == "Attention":
        return reference.attention(q, v, scale=w[0])
    if kind == "AdditiveAttention":
        return reference.additive_attention(q, v, scale=w[0])
    if kind == "MultiHeadAttention":
        return reference.multi_head_attention(q, v, weights=w, num_heads=2, key_dim=3, use_gate=True,
                                              return_attention_scores=True)
    if kind == "GroupQueryAttention":
        return reference.group_query_attention(q, v, weights=w, head_dim=2, num_query_heads=4,
                                               num_key_value_heads=2, return_attention_scores=True)
    return reference.reuse_multi_head_attention(q, v, weights=w, num_heads=2, key_dim=3,
                                                return_attention_scores=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shapes", EMPTY.values(), ids=EMPTY.keys())
@pytest.mark.parametrize("kind", KINDS)
def test_empty_forward(kind, shapes, dtype):
    q, v = np.zeros(shapes[0], dtype), np.ones(shapes[1], dtype)
    layer = _layer(kind, dtype)
    out, scores = _call(layer, q, v, return_attention_scores=True)
    want, want_scores = _reference(kind, layer, q, v)
    assert out.dtype == np.dtype(dtype)
    assert_close(out, want)
    assert_close(scores, want_scores, what="scores")
    if shapes[1][1] == 0 and shapes[0][0] * shapes[0][1] > 0:
        # No keys: the attended values are the empty sum 0, so the output is the output bias
        # (Attention, AdditiveAttention: 0).
        expected = 0.0 if kind in ("Attention", "AdditiveAttention") else 1.0
        np.testing.assert_array_equal(out, np.full(out.shape, expected, dtype))


def _nan_backed_empty(shape, dtype):
    """An empty array over a NaN: numpy gives an empty array one never-written element, which
    holds whatever the heap held (a NaN made test_empty_forward's reference NaN, now and then)."""
    return np.lib.stride_tricks.as_strided(np.full(1, np.nan, dtype), shape, (0,) * len(shape))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["MultiHeadAttention", "GroupQueryAttention", "ReuseMultiHeadAttention"])
def test_empty_key_axis_reference_reads_no_element_of_empty_projections(kind, dtype, monkeypatch):
    """With no keys the reference's attended values are exactly 0 (the output is the output
    bias, as the layer's), whatever the buffers of its empty projections hold."""
    dense = reference._dense

    def dense_over_nan(x, kernel, bias, contracted):
        y = dense(x, kernel, bias, contracted)
        return _nan_backed_empty(y.shape, y.dtype) if y.size == 0 else y

    q, v = np.zeros((2, 3, 4), dtype), np.ones((2, 0, 4), dtype)
    layer = _layer(kind, dtype)
    out = _call(layer, q, v)
    monkeypatch.setattr(reference, "_dense", dense_over_nan)
    np.testing.assert_array_equal(_reference(kind, layer, q, v)[0], out)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_empty_key_axis_dot_product_attention_reference_reads_no_element(dtype):
    key = _nan_backed_empty((1, 0, 2, 2), dtype)
    np.testing.assert_array_equal(reference.dot_product_attention(np.ones((1, 3, 4, 2), dtype), key, key), 0)


@pytest.mark.parametrize("shapes", EMPTY.values(), ids=EMPTY.keys())
@pytest.mark.parametrize("kind", KINDS)
def test_empty_gradients(kind, shapes):
    """Gradients of an empty call: input gradients empty or zero; weight gradients zero except
    the output bias's (Σ dO over the rows, as the output is that bias when there are no keys);
    with regularization, exactly the penalties' gradients."""
    q, v = RNG.normal(size=shapes[0]), RNG.normal(size=shapes[1])
    layer = _layer(kind)
    out = _call(layer, q, v)
    d_out = RNG.normal(size=out.shape)
    if isinstance(layer, attention.Attention):
        g = layer.gradients([q, v], output_gradient=d_out)
    else:
        g = layer.gradients(q, v, output_gradient=d_out)
    assert g.query.shape == q.shape and g.value.shape == v.shape
    np.testing.assert_array_equal(g.query, 0)
    np.testing.assert_array_equal(g.value, 0)
    np.testing.assert_array_equal(g.output, out)
    for name, grad in zip(layer.weight_names, g.weights):
        if name.startswith("attention_output") and name.endswith("bias"):
            np.testing.assert_allclose(grad, d_out.reshape(-1, d_out.shape[-1]).sum(0), atol=1e-12)
        else:
            np.testing.assert_array_equal(grad, 0, err_msg=name)


def test_empty_batch_with_regularizers():
    layer = attention.MultiHeadAttention(2, 3, kernel_regularizer="l2", activity_regularizer="l1",
                                         seed=2, dtype="float64")
    q = np.zeros((0, 3, 4))
    out = layer(q, q)
    assert out.shape == (0, 3, 4)
    losses = layer.losses
    assert all(np.isfinite(losses)) and losses[-1] == 0  # an empty batch's activity penalty is 0
    g = layer.gradients(q, q, output_gradient=np.zeros(out.shape), regularization=True)
    for w, grad, name in zip(layer.get_weights(), g.weights, layer.weight_names):
        want = 2 * 0.01 * w if name.endswith("kernel") else np.zeros_like(w)
        np.testing.assert_allclose(grad, want, rtol=1e-12, atol=0, err_msg=name)


@pytest.mark.parametrize("kind", ["MultiHeadAttention", "Attention"])
def test_empty_with_masks_and_causal(kind):
    layer = _layer(kind)
    q, v = np.ones((2, 0, 4)), np.ones((2, 5, 4))
    kw = ({"query_mask": np.ones((2, 0)), "value_mask": np.ones((1, 5))} if kind == "MultiHeadAttention"
          else {"mask": [np.ones((2, 0)), np.ones((1, 5))]})
    out = _call(layer, q, v, use_causal_mask=True, **kw)
    assert out.shape == (2, 0, 4)


def test_empty_rank4_multi_head_and_attention():
    mha = _mha(attention_axes=(1,))
    out, scores = mha(np.ones((2, 3, 0, 4)), np.ones((2, 5, 0, 4)), query_mask=np.ones((2, 3)),
                      return_attention_scores=True)
    assert out.shape == (2, 3, 0, 4) and scores.shape == (2, 0, 2, 3, 5)
    out = attention.Attention()([np.ones((2, 0, 4, 5)), np.ones((2, 0, 6, 5))])
    assert out.shape == (2, 0, 4, 5)


@pytest.mark.parametrize("q_shape, k_shape", [
    ((0, 3, 4, 2), (0, 5, 2, 2)), ((1, 0, 4, 2), (1, 5, 2, 2)), ((1, 3, 4, 2), (1, 0, 2, 2)),
    ((1, 3, 0, 2), (1, 5, 2, 2)),
])
def test_empty_dot_product_attention(q_shape, k_shape):
    q, k = RNG.normal(size=q_shape), RNG.normal(size=k_shape)
    got = attention.dot_product_attention(q, k, k, mask=np.ones(k_shape[1:2], bool))
    want = reference.dot_product_attention(q, k, k, mask=np.ones(k_shape[1:2], bool))
    assert got.shape == q_shape
    assert_close(got, want)
    np.testing.assert_array_equal(got, 0)  # every case is empty or has no keys


@pytest.mark.parametrize("kind", KINDS)
def test_zero_feature_dim_is_refused(kind):
    layer = _layer(kind)
    with pytest.raises(ValueError, match=r"feature|last dim"):
        _call(layer, np.ones((2, 3, 0)), np.ones((2, 5, 0)))


@pytest.mark.parametrize("kind", KINDS)
def test_negative_dims_stay_errors(kind):
    layer = _layer(kind)
    with pytest.raises(ValueError, match="dim -1"):
        layer.build(*([(2, -1, 4), (2, 5, 4)] if not isinstance(layer, attention.Attention)
                      else [[(2, -1, 4), (2, 5, 4)]]))
