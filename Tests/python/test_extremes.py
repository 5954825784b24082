"""Numeric extremes: NaN, ±Inf, subnormals and huge scores (±1e30, the ±1e38 edge) in inputs
and weights, alone and in masked rows.

Golden cases (Tests/golden/extremes, real Keras 3.15 on JAX, make_golden.py's `extremes`
group; each file's note says what was written where) run through our layers: NaN and ±Inf
where Keras has them, finite values within the contract tolerance. The cases in OURS differ
from Keras for a stated reason; for them the test asserts what we compute instead.
A hypothesis test then throws such values at random positions of every layer kind's inputs
and weights: each call returns an output of the right shape, or the documented ValueError
(a non-finite dot_product_attention scale), and the process survives."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import attention
from attention import reference
from conftest import assert_close
from test_golden import FLOAT32_FLAGS, _keras_scores_were_float32, _run

EXTREMES = Path(__file__).resolve().parents[1] / "golden" / "extremes"
FILES = sorted(EXTREMES.glob("*.npz"))


class _Case(dict):
    """A golden case as a dict of arrays (what _run reads: case[name], case.files)."""

    @property
    def files(self):
        return list(self)


def _load(path):
    with np.load(path) as case:
        return _Case({name: case[name] for name in case.files})


def _with(case, entries, value):
    """The case with case[name][index] = value for each (name, index) in entries."""
    changed = _Case(case)
    for name, index in entries:
        changed[name] = np.array(changed[name])
        changed[name][index] = value
    return changed


def _positions(flags):
    return np.argwhere(flags).tolist()[:6]


def _check(got, expected, dtype, what):
    """NaN, +Inf and -Inf exactly where `expected` has them; finite values within tolerance."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    for name, test in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        ours, theirs = test(got), test(expected)
        assert np.array_equal(ours, theirs), (
            f"{what}: {name} in ours only at {_positions(ours & ~theirs)}, in the expected "
            f"only at {_positions(theirs & ~ours)}")
    finite = np.isfinite(expected)
    assert_close(got[finite], expected[finite], dtype, what)


def _results(case):
    """(ours as (output, scores), Keras's as (output, scores), the tolerance's dtype)."""
    computed_in = "float32" if _keras_scores_were_float32(case) else str(case["dtype"])
    in_float32 = any(bool(case[key]) for key in FLOAT32_FLAGS if key in case.files)
    dtype = np.float32 if in_float32 else np.dtype(str(case["dtype"]))
    keras = (case["output"], case["scores"] if "scores" in case.files else None)
    return _run(case, computed_in), keras, dtype


# -- Where we differ from Keras, and what we compute instead ----------------------------------

def masked_entries_never_read(*entries):
    """NaN/Inf written at a key or value position that is masked in every row that could
    read it, each such row keeping some other key. Keras gives the masked position weight 0,
    but still computes with it: Attention's masked score NaN - 1e9 is NaN (so is its softmax
    row), and weights @ value has 0·NaN = NaN and 0·Inf = NaN. Ours gives masked keys of a
    row that keeps a key weight exactly 0 (AttentionProblem.swift, FullyMaskedRow) and never
    reads their key entries; their value entries it skips on the fused paths (Attention dot
    without scores, MultiHeadAttention/GroupQueryAttention without scores and dropout,
    dot_product_attention) and multiplies by 0 elsewhere, as Keras. Expected: Keras's result,
    except where Keras's is non-finite and ours on the case with those entries set to 0 is
    finite: there, that clean result."""
    def expect(case, ours, keras, dtype):
        clean, _, _ = _results(_with(case, entries, 0.0))
        rescued = False
        for what, got, want, without in zip(("output", "scores"), ours, keras, clean):
            if want is None:
                continue
            differs = ~np.isfinite(want) & np.isfinite(without)
            rescued |= bool(differs.any())
            _check(got, np.where(differs, without, want), dtype, what)
        assert rescued, "ours now matches Keras: remove this case from OURS"
    return expect


def masked_keys_outweighed_by_huge_scores(case, ours, keras, dtype):
    """Scores of ±1e30 (concat_score_weight 1e30): Keras's masked score s - 1e9 rounds to s,
    so a masked key competes as if kept, and takes the row's whole weight when its score is
    the largest. Ours gives masked keys of a row that keeps a key weight exactly 0 whatever
    the scores (fully masked rows do follow softmax(s - 1e9), as Keras's). Expected: scores
    exactly 0 on those masked keys; ours unchanged when they hold 100 (the largest score,
    4e30, which Keras's row would take); equal to Keras's on the rows where Keras's masked
    weights are 0, and different on some other row."""
    output, scores = ours
    kept = case["value_mask"].astype(bool)[:, None, :]          # (B, 1, Tv)
    keeps_one = kept.any(axis=-1, keepdims=True)
    masked_here = ~kept & keeps_one
    assert np.all(np.where(masked_here, scores, 0) == 0)
    keys = [("value", (b, j)) for b, j in np.argwhere(~kept[:, 0] & keeps_one[:, 0])]
    again, _, _ = _results(_with(case, keys, 100.0))
    np.testing.assert_array_equal(again[0], output)
    np.testing.assert_array_equal(again[1], scores)
    keras_rows_agree = np.all(np.where(masked_here, keras[1], 0) == 0, axis=-1)  # (B, Tq)
    assert not keras_rows_agree.all(), "ours now matches Keras: remove this case from OURS"
    _check(output[keras_rows_agree], keras[0][keras_rows_agree], dtype, "output")
    _check(scores[keras_rows_agree], keras[1][keras_rows_agree], dtype, "scores")


def kept_logits_below_the_mask_fill(case, ours, keras, dtype):
    """Bias -3e38 on every logit: the kept logits lie below Keras's fill -0.7·FLT_MAX
    (-2.38e38), so Keras's softmax puts the weight on the masked keys. Ours gives masked keys
    of a row that keeps a key weight exactly 0. The logits round to -3e38 (|q·k| ~ 1 is below
    half an ulp there), so our rows are the mean of the kept values; a fully masked row is
    uniform over all keys, as Keras's. Expected: exactly that."""
    value, mask = case["value"], case["mask"].astype(bool)
    b, t, n, _ = case["query"].shape
    keep = np.broadcast_to(mask, (b, n, t, value.shape[1]))
    keep = np.where(keep.any(axis=-1, keepdims=True), keep, True)
    heads = np.arange(n) // (n // value.shape[2])
    mean = np.einsum("bnts,bsnh->btnh", keep / keep.sum(-1, keepdims=True),
                     value[:, :, heads].astype(np.float64))
    assert not np.allclose(mean, keras[0]), "ours now matches Keras: remove this case from OURS"
    _check(ours[0], mean, dtype, "output")


def float64_throughout(case, ours, keras, dtype):
    """Logits about 1e40 in float64: Keras-on-JAX's dot_product_attention (also MHA's fused
    path) casts float64 to float32, where they overflow to Inf and the rows become NaN. Ours
    computes float64 throughout (README, "Numerics contract"). Expected: reference.py in
    float64, at the float64 tolerance."""
    config = json.loads(str(case["config"]))
    if str(case["layer"]) == "dot_product_attention":
        expected = reference.dot_product_attention(case["query"], case["key"], case["value"],
                                                   case.get("bias"), case.get("mask"), **config)
    else:
        weights = [case[f"weight_{i}"] for i in range(int(case["weight_count"]))]
        expected, _ = reference.multi_head_attention(case["query"], case["value"],
                                                     weights=weights, **config)
    assert np.all(np.isfinite(expected)) and not np.all(np.isfinite(keras[0]))
    _check(ours[0], expected, np.float64, "output")


def no_flush_to_zero(case, ours, keras, dtype):
    """A subnormal query times a -Inf key: -Inf in IEEE arithmetic, so that key gets weight 0.
    XLA on CPU flushes subnormals to zero (checked: jnp 1e-40·1e30 == 0), so Keras computes
    0·(-Inf) = NaN and the rows become NaN. Ours keeps subnormals. Expected: reference.py
    (numpy, IEEE)."""
    expected = reference.attention(case["query"], case["value"], case["key"])
    assert np.all(np.isfinite(expected[0])) and not np.all(np.isfinite(keras[0]))
    for what, got, want in zip(("output", "scores"), ours, expected):
        _check(got, want, dtype, what)


_FLOAT_DTYPES = ("float32", "float64")
OURS = {
    **{f"attention_dot_masked_nan_key_{d}": masked_entries_never_read(("key", (0, 1)))
       for d in _FLOAT_DTYPES},
    **{f"attention_dot_causal_nan_key_{d}": masked_entries_never_read(("key", (0, 3)))
       for d in _FLOAT_DTYPES},
    **{f"attention_dot_masked_inf_value_output_only_{d}":
       masked_entries_never_read(("value", (0, 1))) for d in _FLOAT_DTYPES},
    # Fused path only: on the scores path ours computes 0·NaN = NaN, as Keras does.
    **{f"{layer}_masked_nan_value_{d}": masked_entries_never_read(("value", (0, 1)))
       for layer in ("mha", "gqa") for d in _FLOAT_DTYPES},
    **{f"dot_product_attention_masked_nan_value_{d}":
       masked_entries_never_read(("value", (1, 1))) for d in _FLOAT_DTYPES},
    **{f"attention_concat_fully_masked_weight_1e30_{d}": masked_keys_outweighed_by_huge_scores
       for d in _FLOAT_DTYPES},
    **{f"dot_product_attention_bias_below_mask_fill_{d}": kept_logits_below_the_mask_fill
       for d in _FLOAT_DTYPES},
    "mha_scores_1e40_float64": float64_throughout,
    "dot_product_attention_scores_1e40_float64": float64_throughout,
    **{f"attention_dot_denormal_query_neginf_key_{d}": no_flush_to_zero for d in _FLOAT_DTYPES},
}


def test_extremes_files_exist():
    assert len(FILES) >= 200, f"expected the extremes golden files under {EXTREMES}"
    assert set(OURS) <= {f.stem for f in FILES}, set(OURS) - {f.stem for f in FILES}


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_extremes_against_keras(path):
    case = _load(path)
    ours, keras, dtype = _results(case)
    if path.stem in OURS:
        OURS[path.stem](case, ours, keras, dtype)
        return
    for what, got, want in zip(("output", "scores"), ours, keras):
        if want is not None:
            _check(got, want, dtype, what)


# -- Random extremes in every layer kind: the call survives -----------------------------------

def _extreme_values(dtype):
    info = np.finfo(dtype)
    return [np.nan, np.inf, -np.inf, info.max, -info.max, 1e30, -1e30,
            info.smallest_subnormal, -info.smallest_subnormal * 3, 0.0]


def _sprinkle(data, array, dtype):
    """A copy of `array` (as dtype) with up to 4 random entries set to extreme values."""
    array = np.array(array, dtype=dtype)
    for _ in range(data.draw(st.integers(0, 4)) if array.size else 0):
        array.flat[data.draw(st.integers(0, array.size - 1))] = data.draw(
            st.sampled_from(_extreme_values(dtype)))
    return array


def _normal(data, shape, dtype):
    seed = data.draw(st.integers(0, 2**32 - 1))
    return _sprinkle(data, np.random.default_rng(seed).normal(size=shape), dtype)


def _maybe_mask(data, shape):
    """None or a random bool mask (fully masked rows included)."""
    if not data.draw(st.booleans()):
        return None
    seed = data.draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).random(shape) < data.draw(st.sampled_from([0.0, 0.5, 1.0]))


def _set_extreme_weights(data, layer, dtype):
    layer.set_weights([_sprinkle(data, w, dtype) for w in layer.get_weights()])


def _check_shapes(result, scores_wanted, output_shape, scores_shape, dtype):
    output, scores = result if scores_wanted else (result, None)
    assert output.shape == output_shape and output.dtype == dtype
    if scores_wanted:
        assert scores.shape == scores_shape and scores.dtype == dtype


_dims = st.integers(1, 4)
_dtypes = st.sampled_from(["float32", "float64"])


@given(data=st.data(), dtype=_dtypes, additive=st.booleans(), b=_dims, tq=_dims, tv=_dims,
       dim=_dims, dv=_dims)
def test_random_extremes_attention_and_additive(data, dtype, additive, b, tq, tv, dim, dv):
    dropout = data.draw(st.sampled_from([0.0, 0.3]))
    if additive:
        layer = attention.AdditiveAttention(use_scale=data.draw(st.booleans()), dropout=dropout,
                                            seed=1, dtype=dtype)
    else:
        layer = attention.Attention(use_scale=data.draw(st.booleans()), dropout=dropout, seed=1,
                                    score_mode=data.draw(st.sampled_from(["dot", "concat"])),
                                    dtype=dtype)
    inputs = [_normal(data, (b, tq, dim), dtype), _normal(data, (b, tv, dv), dtype)]
    if data.draw(st.booleans()):
        inputs.append(_normal(data, (b, tv, dim), dtype))
    elif dv != dim:
        inputs[1] = _normal(data, (b, tv, dim), dtype)
    layer.build([x.shape for x in inputs])
    _set_extreme_weights(data, layer, dtype)
    masks = [_maybe_mask(data, (b, tq)), _maybe_mask(data, (b, tv))]
    scores_wanted = data.draw(st.booleans())
    result = layer(inputs, mask=masks, training=data.draw(st.booleans()),
                   return_attention_scores=scores_wanted,
                   use_causal_mask=data.draw(st.booleans()))
    _check_shapes(result, scores_wanted, (b, tq, inputs[1].shape[-1]), (b, tq, tv), dtype)


@given(data=st.data(), dtype=_dtypes, b=_dims, t=_dims, s=_dims, dq=_dims, dv=_dims,
       heads=st.integers(1, 3), key_dim=st.integers(1, 3), rank4=st.booleans())
def test_random_extremes_multi_head_attention(data, dtype, b, t, s, dq, dv, heads, key_dim,
                                              rank4):
    value_dim = data.draw(st.sampled_from([None, 1, 2]))
    output_shape = data.draw(st.sampled_from([None, 2]))
    layer = attention.MultiHeadAttention(
        heads, key_dim, value_dim=value_dim, dropout=data.draw(st.sampled_from([0.0, 0.3])),
        use_bias=data.draw(st.booleans()), use_gate=data.draw(st.booleans()),
        output_shape=output_shape, attention_axes=(2,) if rank4 else None, seed=1, dtype=dtype)
    extra = (data.draw(_dims),) if rank4 else ()
    query = _normal(data, (b, *extra, t, dq), dtype)
    value = _normal(data, (b, *extra, s, dv), dtype)
    key = (_normal(data, (b, *extra, s, data.draw(_dims)), dtype) if data.draw(st.booleans())
           else None)
    layer.build(query.shape, value.shape, None if key is None else key.shape)
    _set_extreme_weights(data, layer, dtype)
    scores_wanted = data.draw(st.booleans())
    # Causal masks come from the axis-1 lengths (Keras), which rank 4 here does not attend.
    result = layer(query, value, key=key, query_mask=_maybe_mask(data, query.shape[:-1]),
                   value_mask=_maybe_mask(data, value.shape[:-1]),
                   key_mask=_maybe_mask(data, value.shape[:-1]),
                   attention_mask=_maybe_mask(data, (b, *extra, t, s)),
                   use_causal_mask=not rank4 and data.draw(st.booleans()),
                   training=data.draw(st.booleans()),
                   return_attention_scores=scores_wanted)
    _check_shapes(result, scores_wanted, query.shape[:-1] + (output_shape or dq,),
                  (b, *extra, heads, t, s), dtype)


@given(data=st.data(), dtype=_dtypes, b=_dims, t=_dims, s=_dims, dq=_dims, dv=_dims,
       head_dim=st.integers(1, 3), kv_heads=st.integers(1, 2), group=st.integers(1, 2))
def test_random_extremes_group_query_attention(data, dtype, b, t, s, dq, dv, head_dim, kv_heads,
                                               group):
    window = data.draw(st.sampled_from([None, 1, 2]))
    layer = attention.GroupQueryAttention(
        head_dim, kv_heads * group, kv_heads, dropout=data.draw(st.sampled_from([0.0, 0.3])),
        use_bias=data.draw(st.booleans()), use_gate=data.draw(st.booleans()),
        sliding_window=window, seed=1, dtype=dtype)
    query, value = _normal(data, (b, t, dq), dtype), _normal(data, (b, s, dv), dtype)
    key = _normal(data, (b, s, data.draw(_dims)), dtype) if data.draw(st.booleans()) else None
    layer.build(query.shape, value.shape, None if key is None else key.shape)
    _set_extreme_weights(data, layer, dtype)
    scores_wanted = data.draw(st.booleans())
    result = layer(query, value, key=key, query_mask=_maybe_mask(data, (b, t)),
                   value_mask=_maybe_mask(data, (b, s)), key_mask=_maybe_mask(data, (b, s)),
                   attention_mask=_maybe_mask(data, (b, t, s)),
                   use_causal_mask=data.draw(st.booleans()), training=data.draw(st.booleans()),
                   return_attention_scores=scores_wanted)
    _check_shapes(result, scores_wanted, (b, t, dq), (b, kv_heads * group, t, s), dtype)


@given(data=st.data(), dtype=_dtypes, b=_dims, t=_dims, s=_dims, dq=_dims, dv=_dims,
       reuse=st.sampled_from([0, 1, -1]), relative=st.booleans())
def test_random_extremes_reuse_multi_head_attention(data, dtype, b, t, s, dq, dv, reuse,
                                                    relative):
    heads = 2
    layer = attention.ReuseMultiHeadAttention(
        heads, 2, dropout=data.draw(st.sampled_from([0.0, 0.3])), reuse_attention=reuse,
        use_relative_pe=relative, pe_max_seq_length=3, use_bias=data.draw(st.booleans()),
        seed=1, dtype=dtype)
    query, value = _normal(data, (b, t, dq), dtype), _normal(data, (b, s, dv), dtype)
    layer.build(query.shape, value.shape)
    _set_extreme_weights(data, layer, dtype)
    reused = _normal(data, (b, heads, t, s), dtype) if reuse else None
    scores_wanted = data.draw(st.booleans())
    result = layer(query, value, attention_mask=_maybe_mask(data, (b, t, s)),
                   training=data.draw(st.booleans()), return_attention_scores=scores_wanted,
                   reuse_attention_scores=reused)
    _check_shapes(result, scores_wanted, (b, t, dq), (b, heads, t, s), dtype)


@given(data=st.data(), dtype=_dtypes, b=_dims, t=_dims, s=_dims, h=_dims, kv_heads=_dims,
       group=st.integers(1, 2))
def test_random_extremes_dot_product_attention(data, dtype, b, t, s, h, kv_heads, group):
    n = kv_heads * group
    query = _normal(data, (b, t, n, h), dtype)
    key, value = (_normal(data, (b, s, kv_heads, h), dtype) for _ in range(2))
    bias_shape = data.draw(st.sampled_from([None, (t, s), (b, n, t, s)]))
    bias = None if bias_shape is None else _normal(data, bias_shape, dtype)
    scale = data.draw(st.sampled_from([None, 0.5, 0.0, 1e38, *_extreme_values(dtype)[:3],
                                       np.finfo(dtype).smallest_subnormal]))
    call = {"bias": bias, "mask": _maybe_mask(data, (b, n, t, s)), "scale": scale,
            "is_causal": data.draw(st.booleans())}
    if scale is not None and not np.isfinite(scale):
        with pytest.raises(ValueError, match="scale"):
            attention.dot_product_attention(query, key, value, **call)
        return
    output = attention.dot_product_attention(query, key, value, **call)
    assert output.shape == (b, t, n, h) and output.dtype == dtype
