"""Tests of python/attention/reference.py on its own, independently of the library.

Each reference formula is checked against a second, independent formulation: known-answer
vectors and a scalar Philox for the RNG, explicit Python loops for the attention layers, a
per-head loop and a transpose/reshape formulation for MultiHeadAttention, repeated kv heads for
grouped dot_product_attention. The reference is loaded by file path so these tests need neither
the built library nor the rest of the package.
"""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

_PATH = Path(__file__).resolve().parents[2] / "python" / "attention" / "reference.py"
_SPEC = importlib.util.spec_from_file_location("attention_reference_under_test", _PATH)
ref = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ref)

FILL = -0.7 * float(np.finfo(np.float32).max)


def close(actual, expected, tol=1e-10):
    """The project's contract: |a - e| <= tol + tol' * max|e| (float64 1e-10; float32 1e-5/1e-4)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    if tol == "f32":
        atol, rtol = 1e-5, 1e-4
    else:
        atol = rtol = tol
    bound = atol + rtol * (np.max(np.abs(expected)) if expected.size else 0.0)
    np.testing.assert_array_less(np.abs(actual - expected), bound + 1e-300)


# ---------------------------------------------------------------------------------------------
# Philox-4x32-10
# ---------------------------------------------------------------------------------------------

def scalar_philox(counter, key):
    """Philox-4x32-10 on Python ints, written out independently of the vectorised one."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0, p1 & 0xFFFFFFFF, (p0 >> 32) ^ c3 ^ k1,
                          p0 & 0xFFFFFFFF)
        k0 = (k0 + 0x9E3779B9) & 0xFFFFFFFF
        k1 = (k1 + 0xBB67AE85) & 0xFFFFFFFF
    return [c0, c1, c2, c3]


# Random123 known-answer vectors for philox4x32_10.
KATS = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
     [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
]


@pytest.mark.parametrize("counter, key, expected", KATS)
def test_philox_known_answers(counter, key, expected):
    out = ref.philox4x32_10(np.array(counter, dtype=np.uint32), np.array(key, dtype=np.uint32))
    assert out.dtype == np.uint32
    assert out.tolist() == expected
    assert scalar_philox(counter, key) == expected


def test_philox_vectorised_matches_scalar():
    rng = np.random.default_rng(1)
    counters = rng.integers(0, 2**32, size=(3, 5, 4), dtype=np.uint64).astype(np.uint32)
    key = rng.integers(0, 2**32, size=2, dtype=np.uint64).astype(np.uint32)
    out = ref.philox4x32_10(counters, key)
    assert out.shape == (3, 5, 4)
    for index in np.ndindex(3, 5):
        expected = scalar_philox([int(x) for x in counters[index]], [int(x) for x in key])
        assert out[index].tolist() == expected


@pytest.mark.parametrize("counter, key, error", [
    (np.zeros(3, np.uint32), np.zeros(2, np.uint32), ValueError),
    (np.zeros(4, np.uint32), np.zeros(3, np.uint32), ValueError),
    (np.zeros(4), np.zeros(2, np.uint32), TypeError),
    (np.array([2**32, 0, 0, 0]), np.zeros(2, np.uint32), ValueError),
])
def test_philox_rejects_bad_arguments(counter, key, error):
    with pytest.raises(error):
        ref.philox4x32_10(counter, key)


# ---------------------------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_keeps_about_one_minus_rate(rate):
    n = 200_000
    keep = ref.dropout_keep((400, 500), rate, seed=12345, stream=3)
    assert keep.dtype == bool and keep.shape == (400, 500)
    sigma = math.sqrt(rate * (1 - rate) / n)
    assert abs(keep.mean() - (1 - rate)) < 5 * sigma


def test_dropout_is_deterministic_and_depends_on_seed_and_stream():
    base = ref.dropout_keep((64, 64), 0.5, seed=7, stream=11)
    assert np.array_equal(base, ref.dropout_keep((64, 64), 0.5, seed=7, stream=11))
    for other in (ref.dropout_keep((64, 64), 0.5, seed=8, stream=11),
                  ref.dropout_keep((64, 64), 0.5, seed=7, stream=12),
                  ref.dropout_keep((64, 64), 0.5, seed=7 + 2**32, stream=11),
                  ref.dropout_keep((64, 64), 0.5, seed=7, stream=11 + 2**32)):
        assert 0.3 < np.mean(base != other) < 0.7
    # The mask depends on the flat index only, not on how the shape is split.
    assert np.array_equal(base.reshape(-1), ref.dropout_keep(4096, 0.5, seed=7, stream=11))
    assert ref.dropout_keep((10, 10), 0.0, seed=1, stream=2).all()


def test_dropout_keep_follows_its_definition():
    seed, stream, rate = 0x1234_5678_9ABC_DEF0, 0x0FED_CBA9_8765_4321, 0.37
    keep = ref.dropout_keep((5, 7), rate, seed, stream)
    for f in range(35):
        word = scalar_philox([f, 0, stream & 0xFFFFFFFF, stream >> 32],
                             [seed & 0xFFFFFFFF, seed >> 32])[0]
        assert keep.reshape(-1)[f] == ((word >> 8) * 2.0**-24 >= rate)


def test_dropout_scales_kept_weights():
    rng = np.random.default_rng(2)
    weights = rng.random((3, 4, 5)).astype(np.float32)
    out = ref.dropout(weights, 0.25, seed=9, stream=1)
    keep = ref.dropout_keep(weights.shape, 0.25, seed=9, stream=1)
    assert out.dtype == np.float32
    assert np.all(out[~keep] == 0)
    close(out[keep], weights[keep] / np.float32(0.75), "f32")
    assert 0 < keep.sum() < keep.size


@pytest.mark.parametrize("rate, seed, stream", [(1.0, 0, 0), (-0.1, 0, 0), (0.5, -1, 0),
                                                (0.5, 0, 2**64)])
def test_dropout_rejects_bad_arguments(rate, seed, stream):
    with pytest.raises(ValueError):
        ref.dropout_keep((3,), rate, seed, stream)


# ---------------------------------------------------------------------------------------------
# Attention and AdditiveAttention against explicit loops
# ---------------------------------------------------------------------------------------------

def loop_attention(q, v, k, score, query_mask=None, value_mask=None, causal=False):
    """Keras Attention by explicit loops in Python floats (float64)."""
    batch, tq, _ = q.shape
    tv = v.shape[1]
    out = np.zeros((batch, tq, v.shape[2]))
    weights = np.zeros((batch, tq, tv))
    for b in range(batch):
        for i in range(tq):
            row = []
            for j in range(tv):
                s = score(q[b, i], k[b, j])
                masked = (value_mask is not None and not value_mask[b, j]) or (causal and j > i)
                row.append(s - 1e9 if masked else s)
            top = max(row)
            e = [math.exp(s - top) for s in row]
            for j in range(tv):
                weights[b, i, j] = e[j] / sum(e)
                out[b, i] += weights[b, i, j] * v[b, j]
            if query_mask is not None and not query_mask[b, i]:
                out[b, i] = 0
    return out, weights


def dot_score(scale):
    return lambda qi, kj: sum(float(a) * float(c) for a, c in zip(qi, kj)) * scale


def concat_score(scale, weight):
    return lambda qi, kj: weight * sum(math.tanh(scale * (float(a) + float(c)))
                                       for a, c in zip(qi, kj))


def additive_score(scale):
    return lambda qi, kj: sum(float(s) * math.tanh(float(a) + float(c))
                              for s, a, c in zip(scale, qi, kj))


def tiny_inputs(seed, tq=3, tv=4, dim=4, dv=3):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(2, tq, dim))
    v = rng.normal(size=(2, tv, dv))
    k = rng.normal(size=(2, tv, dim))
    query_mask = np.array([[1, 0, 1], [1, 1, 1]])[:, :tq]
    value_mask = np.array([[1, 1, 0, 1], [0, 1, 1, 1]])[:, :tv]
    return q, v, k, query_mask, value_mask


@pytest.mark.parametrize("use_key", [False, True])
@pytest.mark.parametrize("masks", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mode, scale, weight", [("dot", None, None), ("dot", 0.7, None),
                                                 ("concat", None, None), ("concat", 1.3, -0.8)])
def test_attention_matches_loops(use_key, masks, causal, mode, scale, weight):
    q, v, k, qm, vm = tiny_inputs(3)
    k_used = k if use_key else v
    q = q[..., :k_used.shape[-1]]
    if mode == "dot":
        score = dot_score(1.0 if scale is None else scale)
    else:
        score = concat_score(1.0 if scale is None else scale, 1.0 if weight is None else weight)
    qm, vm = (qm, vm) if masks else (None, None)
    out, scores = ref.attention(q, v, k if use_key else None, qm, vm, score_mode=mode,
                                scale=scale, concat_score_weight=weight, use_causal_mask=causal)
    expected_out, expected_scores = loop_attention(q, v, k_used, score, qm, vm, causal)
    close(out, expected_out)
    close(scores, expected_scores)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("scale", [None, [0.5, -1.0, 2.0, 0.25]])
def test_additive_attention_matches_loops(causal, scale):
    q, v, k, qm, vm = tiny_inputs(4)
    out, scores = ref.additive_attention(q, v, k, qm, vm, scale=scale, use_causal_mask=causal)
    expected = loop_attention(q, v, k, additive_score([1.0] * 4 if scale is None else scale),
                              qm, vm, causal)
    close(out, expected[0])
    close(scores, expected[1])


def test_attention_causal_is_top_left_when_lengths_differ():
    q, v, _, _, _ = tiny_inputs(5, tq=3, tv=4, dim=3)
    _, scores = ref.attention(q, v, use_causal_mask=True)
    assert np.all(scores[:, 0, 1:] < 1e-30) and np.all(scores[:, 2, :3] > 0)
    assert np.all(scores[:, 2, 3] < 1e-30)


def test_attention_query_mask_zeroes_output_rows_only():
    q, v, _, qm, _ = tiny_inputs(6, dim=3)
    out, scores = ref.attention(q, v, query_mask=qm)
    plain_out, plain_scores = ref.attention(q, v)
    assert np.array_equal(scores, plain_scores)
    assert np.all(out[0, 1] == 0)
    close(out[qm != 0], plain_out[qm != 0])


def test_attention_fully_masked_row_float32_arithmetic():
    # Integer scores (exact in float32): q . k = 10 * key[0].
    q = np.array([[[10, 0], [1, 0]]], dtype=np.float32)
    v = np.arange(6, dtype=np.float32).reshape(1, 3, 2)
    k = np.array([[[10, 0], [3, 0], [-5, 0]]], dtype=np.float32)
    mask = np.zeros((1, 3))
    out, scores = ref.attention(q, v, k, value_mask=mask)
    assert out.dtype == scores.dtype == np.float32
    for i, raw in enumerate(([100, 30, -50], [10, 3, -5])):
        shifted = [float(np.float32(s) - np.float32(1e9)) for s in raw]
        e = np.exp(np.array(shifted) - max(shifted))
        close(scores[0, i], e / e.sum(), "f32")
    # |s| > 64: s - 1e9 rounds to distinct multiples of 64 so the row is far from uniform;
    # |s| < 32: every s - 1e9 rounds to -1e9 and the row is exactly uniform.
    assert scores[0, 0, 0] > 0.99
    assert np.all(scores[0, 1] == np.float32(1 / 3))
    # float64 keeps s - 1e9 nearly exact: the row is close to the unmasked softmax.
    out64, scores64 = ref.attention(q.astype(np.float64), v.astype(np.float64),
                                    k.astype(np.float64), value_mask=mask)
    _, unmasked = ref.attention(q.astype(np.float64), v.astype(np.float64), k.astype(np.float64))
    assert scores64.dtype == np.float64
    close(scores64, unmasked, 1e-6)


def test_attention_dropout_applies_to_returned_scores():
    q, v, _, qm, vm = tiny_inputs(7, dim=3)
    plain_out, plain = ref.attention(q, v, query_mask=qm, value_mask=vm, dropout=0.4)
    out, scores = ref.attention(q, v, query_mask=qm, value_mask=vm, dropout=0.4, training=True,
                                seed=5, stream=6)
    keep = ref.dropout_keep(plain.shape, 0.4, 5, 6)
    assert 0 < keep.sum() < keep.size
    close(scores, np.where(keep, plain / 0.6, 0))
    close(out, np.where(qm[..., None] != 0, scores @ v, 0))
    _, inference = ref.attention(q, v, query_mask=qm, value_mask=vm, dropout=0.4, training=False)
    assert np.array_equal(inference, plain)


def test_attention_rejects_bad_arguments():
    q, v, _, _, _ = tiny_inputs(8, dim=3)
    with pytest.raises(ValueError):
        ref.attention(q, v, score_mode="general")
    with pytest.raises(ValueError):
        ref.attention(q, v[:1])
    with pytest.raises(ValueError):
        ref.attention(q, v, value_mask=np.ones((2, 3)))
    with pytest.raises(TypeError):
        ref.attention(q.astype(int), v)
    with pytest.raises(ValueError):
        ref.additive_attention(q, v, scale=np.ones(4))


# ---------------------------------------------------------------------------------------------
# MultiHeadAttention
# ---------------------------------------------------------------------------------------------

def mha_weights(rng, dq, dk, dv, heads, hk, hv, out_shape, use_bias=True, use_gate=False):
    shapes = [((dq, heads, hk), (heads, hk)), ((dk, heads, hk), (heads, hk))]
    if use_gate:
        shapes.append(((dq, heads, hv), (heads, hv)))
    shapes += [((dv, heads, hv), (heads, hv)), ((heads, hv, *out_shape), tuple(out_shape))]
    weights = []
    for kernel, bias in shapes:
        weights.append(rng.normal(size=kernel) * 0.5)
        if use_bias:
            weights.append(rng.normal(size=bias) * 0.5)
    return weights


def split_weights(weights, use_bias, use_gate):
    per = 2 if use_bias else 1
    names = ["q", "k"] + (["g"] if use_gate else []) + ["v", "o"]
    return {n: (weights[i * per], weights[i * per + 1] if use_bias else 0.0)
            for i, n in enumerate(names)}


def loop_mha(query, value, key, weights, heads, key_dim, use_bias=True, use_gate=False,
             mask=None, fused=False, dropout_keep=None):
    """Rank-3 MultiHeadAttention one head at a time, rows normalised one by one.

    mask: (B, T, S) bool or None. fused: masked logits filled with -0.7 * float32 max (a fully
    masked row is uniform); otherwise softmax over kept entries, fully masked rows zero.
    dropout_keep: (B, N, T, S) bool applied with 1/(1-rate) already folded in as a float factor.
    """
    w = split_weights(weights, use_bias, use_gate)
    batch, t, _ = query.shape
    s = value.shape[1]
    out_shape = w["o"][0].shape[2:]
    output = np.zeros((batch, t, *out_shape))
    scores = np.zeros((batch, heads, t, s))
    for b in range(batch):
        for h in range(heads):
            qh = query[b] @ w["q"][0][:, h, :] + (w["q"][1][h] if use_bias else 0)
            kh = key[b] @ w["k"][0][:, h, :] + (w["k"][1][h] if use_bias else 0)
            vh = value[b] @ w["v"][0][:, h, :] + (w["v"][1][h] if use_bias else 0)
            logits = (qh @ kh.T) / math.sqrt(key_dim)
            for i in range(t):
                kept = np.ones(s, bool) if mask is None else mask[b, i]
                if fused:
                    row = np.where(kept, logits[i], FILL)
                    e = np.exp(row - row.max())
                    scores[b, h, i] = e / e.sum()
                elif kept.any():
                    e = np.where(kept, np.exp(logits[i] - logits[i][kept].max()), 0)
                    scores[b, h, i] = e / e.sum()
            used = scores[b, h] if dropout_keep is None else scores[b, h] * dropout_keep[b, h]
            oh = used @ vh
            if use_gate:
                gh = query[b] @ w["g"][0][:, h, :] + (w["g"][1][h] if use_bias else 0)
                oh = oh / (1 + np.exp(-gh))
            output[b] += np.tensordot(oh, w["o"][0][h], axes=1)
    return output + w["o"][1], scores


def rank3_case(seed, batch=2, t=5, s=4, dq=6, dk=5, dv=3, heads=3, hk=2, hv=4,
               out_shape=(6,), use_bias=True, use_gate=False, distinct_key=True):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(batch, t, dq))
    value = rng.normal(size=(batch, s, dv))
    key = rng.normal(size=(batch, s, dk)) if distinct_key else None
    weights = mha_weights(rng, dq, dk if distinct_key else dv, dv, heads, hk, hv, out_shape,
                          use_bias, use_gate)
    return rng, query, value, key, weights


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("use_gate", [False, True])
@pytest.mark.parametrize("out_shape", [None, (2, 3)])
def test_mha_rank3_matches_per_head_loop(use_bias, use_gate, out_shape):
    shape = (6,) if out_shape is None else out_shape
    _, query, value, key, weights = rank3_case(10, out_shape=shape, use_bias=use_bias,
                                               use_gate=use_gate)
    out, scores = ref.multi_head_attention(
        query, value, key, weights=weights, num_heads=3, key_dim=2, value_dim=4,
        use_bias=use_bias, use_gate=use_gate, output_shape=out_shape,
        return_attention_scores=True)
    expected_out, expected_scores = loop_mha(query, value, key, weights, 3, 2, use_bias, use_gate)
    assert out.shape == (2, 5, *shape) and scores.shape == (2, 3, 5, 4)
    close(out, expected_out)
    close(scores, expected_scores)
    fused_out, none = ref.multi_head_attention(
        query, value, key, weights=weights, num_heads=3, key_dim=2, value_dim=4,
        use_bias=use_bias, use_gate=use_gate, output_shape=out_shape)
    assert none is None
    close(fused_out, expected_out)


def test_mha_key_defaults_to_value():
    _, query, value, _, weights = rank3_case(11, distinct_key=False)
    out, _ = ref.multi_head_attention(query, value, weights=weights, num_heads=3, key_dim=2,
                                      value_dim=4)
    close(out, loop_mha(query, value, value, weights, 3, 2)[0])


def explicit_mask(batch, t, s, query_mask=None, value_mask=None, key_mask=None, causal=False,
                  window=None, attention_mask=None):
    mask = np.ones((batch, t, s), bool)
    for b, i, j in np.ndindex(batch, t, s):
        mask[b, i, j] = ((query_mask is None or query_mask[b, i] != 0)
                         and (value_mask is None or value_mask[b, j] != 0)
                         and (key_mask is None or key_mask[b, j] != 0)
                         and (not causal or j <= i)
                         and (window is None or abs(i - j) < window)
                         and (attention_mask is None or attention_mask[b, i, j] != 0))
    return mask


# Each mask as (argument of explicit_mask, argument of multi_head_attention, value).
MHA_MASKS = {
    "query": ("query_mask", "query_mask", np.array([[1, 1, 0, 1, 1], [1, 1, 1, 1, 0]])),
    "value": ("value_mask", "value_mask", np.array([[1, 0, 1, 1, 1], [1, 1, 1, 0, 1]])),
    "key": ("key_mask", "key_mask", np.array([[1, 1, 1, 1, 0], [0, 1, 1, 1, 1]])),
    "causal": ("causal", "use_causal_mask", True),
    "window": ("window", "sliding_window", 2),
    "attention": ("attention_mask", "attention_mask",
                  np.random.default_rng(24).random((2, 5, 5)) > 0.3),
}


@pytest.mark.parametrize("scores_requested", [False, True])
@pytest.mark.parametrize("which", [[name] for name in MHA_MASKS] + [list(MHA_MASKS)])
def test_mha_masks_combine_as_keras(which, scores_requested):
    _, query, value, key, weights = rank3_case(12, t=5, s=5)
    mask = explicit_mask(2, 5, 5, **{MHA_MASKS[n][0]: MHA_MASKS[n][2] for n in which})
    call = {MHA_MASKS[n][1]: MHA_MASKS[n][2] for n in which}
    out, scores = ref.multi_head_attention(query, value, key, weights=weights, num_heads=3,
                                           key_dim=2, value_dim=4,
                                           return_attention_scores=scores_requested, **call)
    expected_out, expected_scores = loop_mha(query, value, key, weights, 3, 2, mask=mask,
                                             fused=not scores_requested)
    close(out, expected_out)
    if scores_requested:
        close(scores, expected_scores)


def test_mha_key_mask_applies_when_key_is_none():
    _, query, value, _, weights = rank3_case(13, distinct_key=False)
    key_mask = np.array([[1, 0, 1, 1], [1, 1, 0, 0]])
    out, _ = ref.multi_head_attention(query, value, weights=weights, num_heads=3, key_dim=2,
                                      value_dim=4, key_mask=key_mask)
    mask = explicit_mask(2, 5, 4, key_mask=key_mask)
    close(out, loop_mha(query, value, value, weights, 3, 2, mask=mask, fused=True)[0])


def test_mha_attention_mask_shapes_broadcast():
    rng, query, value, key, weights = rank3_case(14)
    pattern = rng.random((5, 4)) > 0.4
    pattern[:, 0] = True
    kwargs = dict(weights=weights, num_heads=3, key_dim=2, value_dim=4,
                  return_attention_scores=True)
    full = ref.multi_head_attention(query, value, key, attention_mask=np.stack([pattern] * 2),
                                    **kwargs)
    expected = loop_mha(query, value, key, weights, 3, 2, mask=np.stack([pattern] * 2))
    close(full[0], expected[0])
    close(full[1], expected[1])
    for shaped in (pattern, pattern[None], pattern.astype(np.float32) * 3):
        out, scores = ref.multi_head_attention(query, value, key, attention_mask=shaped, **kwargs)
        close(out, full[0])
        close(scores, full[1])
    row_mask = np.array([[1, 0, 1, 1], [0, 1, 1, 1]])
    via_value = ref.multi_head_attention(query, value, key, value_mask=row_mask, **kwargs)
    via_attention = ref.multi_head_attention(query, value, key, attention_mask=row_mask[:, None],
                                             **kwargs)
    close(via_attention[1], via_value[1])
    with pytest.raises(ValueError):
        ref.multi_head_attention(query, value, key, attention_mask=np.ones((2, 5, 3)), **kwargs)


def test_mha_fully_masked_row_depends_on_keras_path():
    _, query, value, key, weights = rank3_case(15)
    w = split_weights(weights, True, False)
    attention_mask = np.ones((2, 5, 4))
    attention_mask[0, 2] = 0
    common = dict(weights=weights, num_heads=3, key_dim=2, value_dim=4,
                  attention_mask=attention_mask)
    # Fused path (rank 3, no scores, dropout 0): the row is uniform over the values.
    fused, _ = ref.multi_head_attention(query, value, key, **common)
    projected_values = np.tensordot(value[0], w["v"][0], axes=1) + w["v"][1]  # (S, N, Hv)
    uniform_row = np.tensordot(projected_values.mean(axis=0), w["o"][0], axes=2) + w["o"][1]
    close(fused[0, 2], uniform_row)
    # Softmax path (scores requested, or dropout > 0 even in inference): the row's weights
    # are 0, so the output row is the output bias.
    with_scores, scores = ref.multi_head_attention(query, value, key, **common,
                                                   return_attention_scores=True)
    assert np.all(scores[0, :, 2] == 0)
    close(with_scores[0, 2], w["o"][1])
    with_dropout, _ = ref.multi_head_attention(query, value, key, **common, dropout=0.2)
    close(with_dropout[0, 2], w["o"][1])
    # Elsewhere the two paths agree.
    close(np.delete(fused[0], 2, axis=0), np.delete(with_scores[0], 2, axis=0))
    close(fused[1], with_scores[1])


def test_mha_fully_masked_rank4_row_is_zero():
    rng = np.random.default_rng(16)
    x = rng.normal(size=(2, 3, 4, 5))
    weights = mha_weights(rng, 5, 5, 5, 2, 3, 3, (5,))
    w = split_weights(weights, True, False)
    attention_mask = np.ones((2, 3, 4, 3, 4))
    attention_mask[1, 2, 3] = 0
    out, _ = ref.multi_head_attention(x, x, weights=weights, num_heads=2, key_dim=3,
                                      attention_mask=attention_mask)
    close(out[1, 2, 3], w["o"][1])
    # Keras's rule puts the new axes of a (B, T1, T2, 1) query mask before B: no broadcast.
    with pytest.raises(ValueError):
        ref.multi_head_attention(x, x, weights=weights, num_heads=2, key_dim=3,
                                 query_mask=np.ones((2, 3, 4)))


def test_mha_dropout_uses_pre_dropout_scores_for_return():
    _, query, value, key, weights = rank3_case(17)
    kwargs = dict(weights=weights, num_heads=3, key_dim=2, value_dim=4, dropout=0.3,
                  return_attention_scores=True)
    plain_out, plain_scores = ref.multi_head_attention(query, value, key, **kwargs)
    out, scores = ref.multi_head_attention(query, value, key, **kwargs, training=True, seed=21,
                                           stream=4)
    assert np.array_equal(scores, plain_scores)
    keep = ref.dropout_keep(scores.shape, 0.3, 21, 4)
    expected = loop_mha(query, value, key, weights, 3, 2, dropout_keep=keep / 0.7)
    close(out, expected[0])
    assert np.max(np.abs(out - plain_out)) > 1e-3


def transposed_mha(query, value, key, weights, heads, key_dim, axes, mask=None):
    """N-D MultiHeadAttention by moving the attention axes together and flattening them."""
    w = split_weights(weights, True, False)
    rank = query.ndim
    others = [a for a in range(1, rank - 1) if a not in axes]
    q = (np.tensordot(query, w["q"][0], axes=1) + w["q"][1]) / math.sqrt(key_dim)
    k = np.tensordot(key, w["k"][0], axes=1) + w["k"][1]
    v = np.tensordot(value, w["v"][0], axes=1) + w["v"][1]
    order = [0] + others + [rank - 1] + list(axes) + [rank]  # (B, others, N, attention, H)

    def flatten(x):
        x = np.transpose(x, order)
        lead = x.shape[:len(others) + 2]
        return x.reshape(-1, heads, math.prod(x.shape[len(others) + 2:-1]), x.shape[-1]), lead

    qf, lead = flatten(q)
    kf, _ = flatten(k)
    vf, _ = flatten(v)
    logits = qf @ np.swapaxes(kf, -1, -2)
    q_lengths = [query.shape[a] for a in axes]
    k_lengths = [key.shape[a] for a in axes]
    if mask is not None:
        keep = mask.reshape(logits.shape)
        e = np.where(keep, np.exp(logits - np.where(keep, logits, -np.inf).max(-1, keepdims=True)),
                     0)
        total = e.sum(-1, keepdims=True)
        weights_flat = np.where(total > 0, e / np.where(total > 0, total, 1), 0)
    else:
        e = np.exp(logits - logits.max(-1, keepdims=True))
        weights_flat = e / e.sum(-1, keepdims=True)
    attended = (weights_flat @ vf).reshape(*lead, *q_lengths, vf.shape[-1])
    attended = np.transpose(attended, np.argsort(order))
    out = np.tensordot(attended, w["o"][0], axes=2) + w["o"][1]
    return out, weights_flat.reshape(*lead, *q_lengths, *k_lengths)


@pytest.mark.parametrize("shape, axes, given_axes", [
    ((2, 3, 4, 5), (1,), 1),
    ((2, 3, 4, 5), (2,), (-2,)),
    ((2, 3, 4, 5), (1, 2), None),
    ((2, 2, 3, 4, 5), (2, 3), (2, 3)),
    ((2, 2, 3, 4, 5), (1, 3), (1, -2)),
    ((2, 2, 3, 4, 5), (1, 2, 3), None),
])
def test_mha_attention_axes_match_transposed_formulation(shape, axes, given_axes):
    rng = np.random.default_rng(18)
    query = rng.normal(size=shape)
    key_shape = list(shape)
    for a in axes:
        key_shape[a] += 1  # keys may have other lengths on the attention axes
    value = rng.normal(size=key_shape)
    key = rng.normal(size=key_shape[:-1] + [3])
    weights = mha_weights(rng, shape[-1], 3, shape[-1], 2, 3, 3, (shape[-1],))
    out, scores = ref.multi_head_attention(query, value, key, weights=weights, num_heads=2,
                                           key_dim=3, attention_axes=given_axes,
                                           return_attention_scores=True)
    expected_out, expected_scores = transposed_mha(query, value, key, weights, 2, 3, axes)
    close(out, expected_out)
    close(scores, expected_scores)


def test_mha_attention_mask_gains_axes_before_the_heads():
    rng = np.random.default_rng(19)
    x = rng.normal(size=(2, 3, 4, 5))
    weights = mha_weights(rng, 5, 5, 5, 2, 3, 3, (5,))
    # attention_axes=(2,): scores (B, 3, N, 4, 4); a (B, 4, 4) mask broadcasts over axes 1, N.
    mask = rng.random((2, 4, 4)) > 0.3
    mask[1, 2] = False  # a fully masked row: zero on this (non-fused) path
    out, scores = ref.multi_head_attention(x, x, weights=weights, num_heads=2, key_dim=3,
                                           attention_axes=(2,), attention_mask=mask,
                                           return_attention_scores=True)
    full = np.broadcast_to(mask[:, None, None], (2, 3, 2, 4, 4))
    expected_out, expected_scores = transposed_mha(x, x, x, weights, 2, 3, (2,), mask=full)
    close(out, expected_out)
    close(scores, expected_scores)
    assert np.all(scores[1, :, :, 2] == 0)
    # attention_axes=(1, 2): scores (B, N, 3, 4, 3, 4); a (B, 3, 4, 3, 4) mask gains the N axis.
    mask = rng.random((2, 3, 4, 3, 4)) > 0.3
    out, scores = ref.multi_head_attention(x, x, weights=weights, num_heads=2, key_dim=3,
                                           attention_mask=mask, return_attention_scores=True)
    full = np.broadcast_to(mask[:, None], (2, 2, 3, 4, 3, 4))
    expected_out, expected_scores = transposed_mha(x, x, x, weights, 2, 3, (1, 2), mask=full)
    close(out, expected_out)
    close(scores, expected_scores)


def test_mha_keras_docs_examples_shapes():
    rng = np.random.default_rng(20)
    target, source = rng.normal(size=(3, 8, 16)), rng.normal(size=(3, 4, 16))
    weights = mha_weights(rng, 16, 16, 16, 2, 2, 2, (16,))
    out, scores = ref.multi_head_attention(target, source, weights=weights, num_heads=2,
                                           key_dim=2, return_attention_scores=True)
    assert out.shape == (3, 8, 16) and scores.shape == (3, 2, 8, 4)
    x = rng.normal(size=(3, 5, 3, 4, 16))
    out, scores = ref.multi_head_attention(x, x, weights=weights, num_heads=2, key_dim=2,
                                           attention_axes=(2, 3), return_attention_scores=True)
    assert out.shape == (3, 5, 3, 4, 16) and scores.shape == (3, 5, 2, 3, 4, 3, 4)
    close(scores.sum(axis=(-2, -1)), np.ones((3, 5, 2, 3, 4)))


def test_mha_float32_computes_in_float32():
    _, query, value, key, weights = rank3_case(22)
    f32 = [w.astype(np.float32) for w in weights]
    out32, scores32 = ref.multi_head_attention(
        query.astype(np.float32), value.astype(np.float32), key.astype(np.float32), weights=f32,
        num_heads=3, key_dim=2, value_dim=4, return_attention_scores=True)
    out64, scores64 = ref.multi_head_attention(query, value, key, weights=weights, num_heads=3,
                                               key_dim=2, value_dim=4,
                                               return_attention_scores=True)
    assert out32.dtype == scores32.dtype == np.float32
    close(out32, out64, "f32")
    close(scores32, scores64, "f32")


def test_mha_rejects_bad_arguments():
    _, query, value, key, weights = rank3_case(23)
    kwargs = dict(num_heads=3, key_dim=2, value_dim=4)
    with pytest.raises(ValueError):  # a missing weight
        ref.multi_head_attention(query, value, key, weights=weights[:-1], **kwargs)
    with pytest.raises(ValueError):  # wrong key_dim for these kernels
        ref.multi_head_attention(query, value, key, weights=weights, num_heads=3, key_dim=3,
                                 value_dim=4)
    with pytest.raises(ValueError):  # the batch axis is not an attention axis
        ref.multi_head_attention(query, value, key, weights=weights, attention_axes=0, **kwargs)
    with pytest.raises(ValueError):
        ref.multi_head_attention(query[0], value[0], key[0], weights=weights, **kwargs)
    with pytest.raises(ValueError):
        ref.multi_head_attention(query, value, key, weights=weights, query_mask=np.ones((2, 4)),
                                 **kwargs)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 2), t=st.integers(1, 4), s=st.integers(1, 4),
       heads=st.integers(1, 3), hk=st.integers(1, 3), hv=st.integers(1, 3),
       use_bias=st.booleans(), use_gate=st.booleans(), scores_requested=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_mha_rank3_property(batch, t, s, heads, hk, hv, use_bias, use_gate, scores_requested,
                            seed):
    rng, query, value, key, weights = rank3_case(seed, batch, t, s, 3, 2, 4, heads, hk, hv, (5,),
                                                 use_bias, use_gate)
    mask = rng.random((batch, t, s)) > 0.4
    out, scores = ref.multi_head_attention(
        query, value, key, weights=weights, num_heads=heads, key_dim=hk, value_dim=hv,
        use_bias=use_bias, use_gate=use_gate, output_shape=5, attention_mask=mask,
        return_attention_scores=scores_requested)
    expected_out, expected_scores = loop_mha(query, value, key, weights, heads, hk, use_bias,
                                             use_gate, mask=mask, fused=not scores_requested)
    close(out, expected_out)
    if scores_requested:
        close(scores, expected_scores)


# ---------------------------------------------------------------------------------------------
# dot_product_attention
# ---------------------------------------------------------------------------------------------

def loop_dot_product_attention(q, k, v, bias, mask, scale, causal):
    b_, t, n, h = q.shape
    s, kv = k.shape[1], k.shape[2]
    out = np.zeros((b_, t, n, v.shape[3]))
    for b, head, i in np.ndindex(b_, n, t):
        g = head // (n // kv)
        row = np.array([scale * float(q[b, i, head] @ k[b, j, g]) for j in range(s)])
        if bias is not None:
            row = row + bias[b, head, i]
        kept = np.ones(s, bool) if mask is None else mask[b, head, i].copy()
        if causal:
            kept &= np.arange(s) <= i
        row = np.where(kept, row, FILL)
        e = np.exp(row - row.max())
        out[b, i, head] = (e / e.sum()) @ v[b, :, g]
    return out


def dpa_inputs(seed, b=2, t=3, s=4, n=4, kv=2, h=3, hv=5):
    rng = np.random.default_rng(seed)
    return (rng, rng.normal(size=(b, t, n, h)), rng.normal(size=(b, s, kv, h)),
            rng.normal(size=(b, s, kv, hv)))


@pytest.mark.parametrize("kv", [1, 2, 4])
@pytest.mark.parametrize("causal", [False, True])
def test_dot_product_attention_matches_loops(kv, causal):
    rng, q, k, v = dpa_inputs(30, kv=kv)
    bias = rng.normal(size=(2, 4, 3, 4))
    mask = rng.random((2, 4, 3, 4)) > 0.3
    out = ref.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=0.8, is_causal=causal)
    close(out, loop_dot_product_attention(q, k, v, bias, mask, 0.8, causal))
    out = ref.dot_product_attention(q, k, v)
    close(out, loop_dot_product_attention(q, k, v, None, None, 1 / math.sqrt(3), False))


@pytest.mark.parametrize("kv", [1, 2])
def test_dot_product_attention_grouped_equals_repeated_heads(kv):
    rng, q, k, v = dpa_inputs(31, kv=kv)
    mask = rng.random((2, 1, 3, 4)) > 0.3
    group = 4 // kv
    grouped = ref.dot_product_attention(q, k, v, mask=mask, is_causal=True)
    repeated = ref.dot_product_attention(q, np.repeat(k, group, axis=2),
                                         np.repeat(v, group, axis=2), mask=mask, is_causal=True)
    close(grouped, repeated)


def test_dot_product_attention_bias_and_mask_broadcast():
    rng, q, k, v = dpa_inputs(32)
    bias = rng.normal(size=(3, 4))
    mask = rng.random((1, 3, 4)) > 0.3
    out = ref.dot_product_attention(q, k, v, bias=bias, mask=mask)
    full = ref.dot_product_attention(q, k, v, bias=np.broadcast_to(bias, (2, 4, 3, 4)),
                                     mask=np.broadcast_to(mask, (2, 4, 3, 4)))
    close(out, full)
    # A 3-D mask gets a leading 1, so (B, T, S) lines B up with the heads axis here (B == 2).
    mask3 = rng.random((4, 3, 4)) > 0.3
    close(ref.dot_product_attention(q, k, v, mask=mask3),
          ref.dot_product_attention(q, k, v, mask=np.broadcast_to(mask3[None], (2, 4, 3, 4))))
    with pytest.raises(ValueError):
        ref.dot_product_attention(q, k, v, bias=np.ones((3, 5)))


def test_dot_product_attention_causal_and_fully_masked_row():
    rng, q, k, v = dpa_inputs(33, t=4, s=4)
    tril = np.tril(np.ones((4, 4), bool))
    close(ref.dot_product_attention(q, k, v, is_causal=True),
          ref.dot_product_attention(q, k, v, mask=tril))
    mask = np.ones((2, 4, 4, 4), bool)
    mask[1, 3, 2] = False  # batch 1, head 3, query row 2: every key masked
    out = ref.dot_product_attention(q, k, v, mask=mask)
    close(out[1, 2, 3], v[1, :, 1].mean(axis=0))  # head 3 uses kv head 3 // 2 = 1


def test_dot_product_attention_dtype_and_errors():
    _, q, k, v = dpa_inputs(34)
    out = ref.dot_product_attention(q.astype(np.float32), k.astype(np.float32),
                                    v.astype(np.float32))
    assert out.dtype == np.float32 and out.shape == (2, 3, 4, 5)
    close(out, ref.dot_product_attention(q, k, v), "f32")
    with pytest.raises(ValueError):  # 3 kv heads do not divide 4 query heads
        ref.dot_product_attention(q, np.ones((2, 4, 3, 3)), np.ones((2, 4, 3, 5)))
    with pytest.raises(ValueError):
        ref.dot_product_attention(q[0], k[0], v[0])


# ---------------------------------------------------------------------------------------------
# GroupQueryAttention
# ---------------------------------------------------------------------------------------------

def gqa_case(seed, nq=4, nkv=2, head_dim=3, use_bias=True, use_gate=False, t=5, s=5, dq=6,
             dk=4, dv=3):
    """Inputs, GQA weights (Keras order) and the MHA weights with the kv heads repeated."""
    rng = np.random.default_rng(seed)
    query, value, key = (rng.normal(size=shape) for shape in ((2, t, dq), (2, s, dv), (2, s, dk)))
    shapes = [((dq, nq, head_dim), (nq, head_dim)), ((dk, nkv, head_dim), (nkv, head_dim))]
    shapes += [((dq, nq, head_dim), (nq, head_dim))] if use_gate else []
    shapes += [((dv, nkv, head_dim), (nkv, head_dim)), ((nq, head_dim, dq), (dq,))]
    weights, repeated = [], []
    for index, (kernel, bias) in enumerate(shapes):
        kv = index in (1, len(shapes) - 2)  # the key and value projections
        pair = [rng.normal(size=kernel) * 0.5]
        pair += [rng.normal(size=bias) * 0.5] if use_bias else []
        weights += pair
        repeated += [np.repeat(w, nq // nkv, axis=w.ndim - 2) if kv else w for w in pair]
    return rng, query, value, key, weights, repeated


@pytest.mark.parametrize("nkv", [1, 2, 4])
@pytest.mark.parametrize("use_bias, use_gate", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("scores_requested", [False, True])
def test_gqa_equals_mha_loop_with_repeated_kv_heads(nkv, use_bias, use_gate, scores_requested):
    _, query, value, key, weights, repeated = gqa_case(40, nkv=nkv, use_bias=use_bias,
                                                       use_gate=use_gate)
    masks = {n: MHA_MASKS[n][2] for n in ("query", "value", "key", "attention")}
    mask = explicit_mask(2, 5, 5, masks["query"], masks["value"], masks["key"], causal=True,
                         window=3, attention_mask=masks["attention"])
    out, scores = ref.group_query_attention(
        query, value, key, weights=weights, head_dim=3, num_query_heads=4,
        num_key_value_heads=nkv, use_bias=use_bias, use_gate=use_gate, sliding_window=3,
        query_mask=masks["query"], value_mask=masks["value"], key_mask=masks["key"],
        attention_mask=masks["attention"], use_causal_mask=True,
        return_attention_scores=scores_requested)
    expected_out, expected_scores = loop_mha(query, value, key, repeated, 4, 3, use_bias,
                                             use_gate, mask=mask, fused=not scores_requested)
    close(out, expected_out)
    if scores_requested:
        assert scores.shape == (2, 4, 5, 5)
        close(scores, expected_scores)
    else:
        assert scores is None


def test_gqa_head_h_uses_kv_head_h_over_group():
    _, query, value, key, weights, _ = gqa_case(41, nq=6, nkv=2)
    kwargs = dict(head_dim=3, num_query_heads=6, num_key_value_heads=2,
                  return_attention_scores=True)
    _, scores = ref.group_query_attention(query, value, key, weights=weights, **kwargs)
    # Zeroing kv head 1's key projection makes its heads (3, 4, 5) uniform, and only those.
    flat = [w.copy() for w in weights]
    flat[2][:, 1], flat[3][1] = 0, 0
    _, changed = ref.group_query_attention(query, value, key, weights=flat, **kwargs)
    close(changed[:, 3:], np.full((2, 3, 5, 5), 0.2))
    close(changed[:, :3], scores[:, :3])


def test_gqa_fully_masked_rows_and_dropout():
    _, query, value, key, weights, repeated = gqa_case(42, nkv=1)
    attention_mask = np.ones((2, 5, 5), bool)
    attention_mask[1, 3] = False
    common = dict(weights=weights, head_dim=3, num_query_heads=4, num_key_value_heads=1,
                  attention_mask=attention_mask)
    for kwargs, fused in (({}, True), ({"return_attention_scores": True}, False),
                          ({"dropout": 0.25}, False)):
        out, _ = ref.group_query_attention(query, value, key, **common, **kwargs)
        expected, _ = loop_mha(query, value, key, repeated, 4, 3, mask=attention_mask,
                               fused=fused)
        close(out, expected)
    out, scores = ref.group_query_attention(query, value, key, **common, dropout=0.25,
                                            training=True, seed=5, stream=9,
                                            return_attention_scores=True)
    keep = ref.dropout_keep((2, 4, 5, 5), 0.25, 5, 9)
    expected_out, expected_scores = loop_mha(query, value, key, repeated, 4, 3,
                                             mask=attention_mask, dropout_keep=keep / 0.75)
    close(out, expected_out)
    close(scores, expected_scores)  # returned before dropout


def test_gqa_float32_and_errors():
    _, query, value, key, weights, _ = gqa_case(43)
    kwargs = dict(head_dim=3, num_query_heads=4, num_key_value_heads=2)
    out32, _ = ref.group_query_attention(query.astype(np.float32), value.astype(np.float32),
                                         key.astype(np.float32),
                                         weights=[w.astype(np.float32) for w in weights], **kwargs)
    assert out32.dtype == np.float32
    close(out32, ref.group_query_attention(query, value, key, weights=weights, **kwargs)[0], "f32")
    with pytest.raises(ValueError):  # 3 kv heads do not divide 4 query heads
        ref.group_query_attention(query, value, key, weights=weights, head_dim=3,
                                  num_query_heads=4, num_key_value_heads=3)
    with pytest.raises(ValueError):  # key kernel has 2 kv heads, not 4
        ref.group_query_attention(query, value, key, weights=weights, head_dim=3,
                                  num_query_heads=4, num_key_value_heads=4)
    with pytest.raises(ValueError):
        ref.group_query_attention(query, value, key, weights=weights, sliding_window=0, **kwargs)
    with pytest.raises(ValueError):
        ref.group_query_attention(query[..., None], value, key, weights=weights, **kwargs)


# ---------------------------------------------------------------------------------------------
# ReuseMultiHeadAttention (TF Model Garden)
# ---------------------------------------------------------------------------------------------

def reuse_weights(rng, heads, reused, dq, dk, dv, hk, hv, out_dim, use_bias=True, pe_length=None):
    """Random weights in upstream order (see reference.reuse_multi_head_attention)."""
    new = heads - reused
    dense = []  # (kernel shape, bias shape or None)
    if new:
        dense += [((dq, new, hk), (new, hk)), ((dk, new, hk), (new, hk))]
    if reused:
        dense += [((dv, reused, hv), (reused, hv))]
    if new:
        dense += [((dv, new, hv), (new, hv))]
    if reused:
        dense += [((reused, hv, out_dim), (out_dim,))]
    if new:
        dense += [((new, hv, out_dim), (out_dim,) if not reused else None)]
    weights = [rng.normal(size=(1, new, 2 * pe_length - 1)) * 0.5] if pe_length and new else []
    for kernel, bias in dense:
        weights.append(rng.normal(size=kernel) * 0.5)
        if use_bias and bias is not None:
            weights.append(rng.normal(size=bias) * 0.5)
    return weights


def loop_reuse(query, value, key, weights, heads, reused, key_dim, use_bias=True,
               pe_length=None, mask=None, given=None, dropout_factor=None):
    """Rank-3 ReuseMultiHeadAttention one batch, head and score at a time."""
    new = heads - reused
    it = iter(weights)

    def take(has_bias=use_bias):
        kernel = next(it)
        return kernel, (next(it) if has_bias else 0.0)

    pe = next(it) if pe_length and new else None
    wq, wk = (take(), take()) if new else (None, None)
    wvr = take() if reused else None
    wvn = take() if new else None
    wor = take() if reused else None
    won = take(use_bias and not reused) if new else None
    batch, t, _ = query.shape
    s = value.shape[1]
    out = np.zeros((batch, t, (wor or won)[0].shape[-1]))
    scores = np.zeros((batch, heads, t, s))
    for b in range(batch):
        for h in range(heads):
            if h < new:
                qh = (query[b] @ wq[0][:, h] + (wq[1][h] if use_bias else 0)) / math.sqrt(key_dim)
                kh = key[b] @ wk[0][:, h] + (wk[1][h] if use_bias else 0)
                for i in range(t):
                    row = np.array([float(qh[i] @ kh[j]) for j in range(s)])
                    for j in range(s):
                        if pe is not None:
                            index = j - i + pe_length - 1
                            index = 0 if index < 0 else min(index, 2 * pe_length - 2)
                            row[j] += pe[0, h, index]
                        if mask is not None and not mask[b, i, j]:
                            row[j] -= 1e9
                    e = np.exp(row - row.max())
                    scores[b, h, i] = e / e.sum()
                kernel, bias, r = wvn[0], wvn[1], h
                out_kernel = won[0][r]
            else:
                r = h - new
                scores[b, h] = given[b, r]
                kernel, bias = wvr
                out_kernel = wor[0][r]
            vh = value[b] @ kernel[:, r] + (bias[r] if use_bias else 0)
            used = scores[b, h] if dropout_factor is None else scores[b, h] * dropout_factor[b, h]
            out[b] += (used @ vh) @ out_kernel
    out += (wor[1] if reused else 0) + (won[1] if new and not reused else 0)
    return out, scores


def reuse_case(seed, heads=3, reused=0, t=4, s=5, dq=4, dk=3, dv=2, hk=2, hv=3, out_dim=5,
               use_bias=True, pe_length=None):
    rng = np.random.default_rng(seed)
    query, value, key = (rng.normal(size=shape) for shape in ((2, t, dq), (2, s, dv), (2, s, dk)))
    weights = reuse_weights(rng, heads, reused, dq, dk, dv, hk, hv, out_dim, use_bias, pe_length)
    given = rng.random((2, heads, t, s))
    given /= given.sum(-1, keepdims=True)
    kwargs = dict(weights=weights, num_heads=heads, key_dim=hk, value_dim=hv,
                  reuse_attention=reused, use_relative_pe=pe_length is not None,
                  pe_max_seq_length=pe_length or 512, use_bias=use_bias, output_shape=out_dim,
                  return_attention_scores=True)
    return rng, query, value, key, given, kwargs


def test_reuse_weights_helper_shapes():
    rng = np.random.default_rng(0)
    shapes = [w.shape for w in reuse_weights(rng, 3, 1, 4, 3, 2, 2, 3, 5, True, 3)]
    assert shapes == [(1, 2, 5), (4, 2, 2), (2, 2), (3, 2, 2), (2, 2), (2, 1, 3), (1, 3),
                      (2, 2, 3), (2, 3), (1, 3, 5), (5,), (2, 3, 5)]


@pytest.mark.parametrize("use_bias", [True, False])
def test_reuse_without_reuse_is_mha_plus_position_bias(use_bias):
    rng, query, value, key, _, kwargs = reuse_case(50, use_bias=use_bias)
    mask = rng.random((2, 4, 5)) > 0.3
    mask[:, :, 0] = True  # no fully masked row: -1e9 then vanishes exactly in float64
    out, scores = ref.reuse_multi_head_attention(query, value, key, attention_mask=mask, **kwargs)
    mha_out, mha_scores = ref.multi_head_attention(
        query, value, key, weights=kwargs["weights"], num_heads=3, key_dim=2, value_dim=3,
        use_bias=use_bias, output_shape=5, attention_mask=mask, return_attention_scores=True)
    close(out, mha_out)
    close(scores, mha_scores)
    close(out, loop_reuse(query, value, key, kwargs["weights"], 3, 0, 2, use_bias, mask=mask)[0])
    # With the position bias (T = 4, S = 5 > P = 2: clamped indices), against the loops.
    rng, query, value, key, given, kwargs = reuse_case(51, use_bias=use_bias, pe_length=2)
    out, scores = ref.reuse_multi_head_attention(query, value, key, attention_mask=mask,
                                                 reuse_attention_scores=given, **kwargs)
    expected = loop_reuse(query, value, key, kwargs["weights"], 3, 0, 2, use_bias, 2, mask=mask)
    close(out, expected[0])
    close(scores, expected[1])


@pytest.mark.parametrize("reuse", [3, -1])
def test_reuse_full_uses_the_given_scores(reuse):
    _, query, value, key, given, kwargs = reuse_case(52, reused=3)
    kwargs["reuse_attention"] = reuse
    mask = np.zeros((2, 4, 5))  # ignored: no new heads
    out, scores = ref.reuse_multi_head_attention(query, value, key, attention_mask=mask,
                                                 reuse_attention_scores=given, **kwargs)
    assert np.array_equal(scores, given)
    close(out, loop_reuse(query, value, key, kwargs["weights"], 3, 3, 2, given=given)[0])
    with pytest.raises(ValueError):  # full reuse needs exactly num_heads heads
        ref.reuse_multi_head_attention(query, value, key, reuse_attention_scores=given[:, :2],
                                       **kwargs)
    with pytest.raises(ValueError):
        ref.reuse_multi_head_attention(query, value, key, **kwargs)


@pytest.mark.parametrize("reused", [1, 2])
@pytest.mark.parametrize("use_bias", [True, False])
def test_reuse_partial_concatenates_new_then_reused(reused, use_bias):
    rng, query, value, key, given, kwargs = reuse_case(53, reused=reused, use_bias=use_bias,
                                                       pe_length=3)
    mask = rng.random((2, 4, 5)) > 0.3
    out, scores = ref.reuse_multi_head_attention(query, value, key, attention_mask=mask,
                                                 reuse_attention_scores=given, **kwargs)
    new = 3 - reused
    assert np.array_equal(scores[:, new:], given[:, :reused])
    expected = loop_reuse(query, value, key, kwargs["weights"], 3, reused, 2, use_bias, 3,
                          mask=mask, given=given)
    close(out, expected[0])
    close(scores, expected[1])
    # The new heads alone: a reuse-free layer with the new heads' weights (PE, query, key).
    weights = kwargs["weights"]
    per = 2 if use_bias else 1
    only_new = weights[:1 + 2 * per] + weights[1 + 2 * per + per:1 + 2 * per + 2 * per]
    only_new += [np.zeros((new, 3, 5))] + ([np.zeros(5)] if use_bias else [])
    _, new_scores = ref.reuse_multi_head_attention(
        query, value, key, weights=only_new, num_heads=new, key_dim=2, value_dim=3,
        use_relative_pe=True, pe_max_seq_length=3, use_bias=use_bias, output_shape=5,
        attention_mask=mask, return_attention_scores=True)
    close(scores[:, :new], new_scores)


def test_reuse_position_bias_clamps_beyond_max_length():
    # Zero query/key projections: the logits are the bias alone, so the softmax recovers it.
    p, t, s = 3, 5, 6
    rng, query, value, key, _, kwargs = reuse_case(54, heads=2, t=t, s=s, pe_length=p)
    weights = [w.copy() for w in kwargs["weights"]]
    for w in weights[1:5]:
        w[...] = 0
    _, scores = ref.reuse_multi_head_attention(query, value, key, **{**kwargs,
                                                                     "weights": weights})
    table = weights[0][0]
    for h, i, j in np.ndindex(2, t, s):
        index = max(0, min(j - i + p - 1, 2 * p - 2))
        expected = table[h, index] - table[h, max(0, min(-i + p - 1, 2 * p - 2))]
        assert abs(math.log(scores[0, h, i, j] / scores[0, h, i, 0]) - expected) < 1e-10
    # Clamped offsets share the ends of the table: row 4, keys 0..2 -> index 0; row 0,
    # keys 2..5 -> index 4.
    assert np.all(scores[:, :, 4, :3] == scores[:, :, 4, :1])
    assert np.all(scores[:, :, 0, 2:] == scores[:, :, 0, 2:3])
    assert not np.allclose(scores[:, :, 4, 3], scores[:, :, 4, 2])


def test_reuse_fully_masked_row_adds_minus_1e9_in_the_dtype():
    _, query, value, key, _, kwargs = reuse_case(55)
    mask = np.ones((2, 4, 5), bool)
    mask[1, 2] = False
    _, plain = ref.reuse_multi_head_attention(query, value, key, **kwargs)
    _, masked = ref.reuse_multi_head_attention(query, value, key, attention_mask=mask, **kwargs)
    close(masked[1, :, 2], plain[1, :, 2], 1e-6)  # float64: close to softmax(s)
    f32 = {**kwargs, "weights": [w.astype(np.float32) for w in kwargs["weights"]]}
    _, masked32 = ref.reuse_multi_head_attention(*(x.astype(np.float32) for x in (query, value,
                                                                                  key)),
                                                 attention_mask=mask, **f32)
    assert masked32.dtype == np.float32
    assert np.all(masked32[1, :, 2] == np.float32(0.2))  # |s| < 32: s - 1e9 rounds to -1e9
    # Larger scores (|s| up to a few hundred): s - 1e9 rounds to multiples of 64, not uniform.
    wq, bq, wk, bk = (w.astype(np.float32) * 6 for w in kwargs["weights"][:4])
    big = {**f32, "weights": [wq, bq, wk, bk] + f32["weights"][4:]}
    q32, v32, k32 = (x.astype(np.float32) for x in (query, value, key))
    _, masked32 = ref.reuse_multi_head_attention(q32, v32, k32, attention_mask=mask, **big)
    logits = np.einsum("tnh,snh->nts", (np.tensordot(q32[1], wq, axes=1) + bq)
                       / np.float32(math.sqrt(2)), np.tensordot(k32[1], wk, axes=1) + bk)[:, 2]
    assert 64 < np.abs(logits).max() < 1000
    shifted = logits + np.float32(-1e9)
    e = np.exp(shifted - shifted.max(-1, keepdims=True))
    close(masked32[1, :, 2], e / e.sum(-1, keepdims=True), "f32")
    assert not np.allclose(masked32[1, :, 2], 0.2)


def test_reuse_dropout_uses_the_returned_scores_flat_index():
    rng, query, value, key, given, kwargs = reuse_case(56, reused=1)
    kwargs["dropout"] = 0.3
    plain_out, plain_scores = ref.reuse_multi_head_attention(query, value, key,
                                                             reuse_attention_scores=given,
                                                             **kwargs)
    out, scores = ref.reuse_multi_head_attention(query, value, key, reuse_attention_scores=given,
                                                 training=True, seed=3, stream=8, **kwargs)
    assert np.array_equal(scores, plain_scores)
    keep = ref.dropout_keep((2, 3, 4, 5), 0.3, 3, 8)
    expected = loop_reuse(query, value, key, kwargs["weights"], 3, 1, 2, given=given,
                          dropout_factor=keep / 0.7)
    close(out, expected[0])
    assert np.max(np.abs(out - plain_out)) > 1e-3


def test_reuse_negative_axes_count_from_the_projected_end():
    rng = np.random.default_rng(57)
    x = rng.normal(size=(2, 3, 4, 5))
    weights = reuse_weights(rng, 2, 0, 5, 5, 5, 3, 3, 5)
    kwargs = dict(weights=weights, num_heads=2, key_dim=3, return_attention_scores=True)
    # -3 is input axis 2 (Keras MHA would say -2).
    close(ref.reuse_multi_head_attention(x, x, attention_axes=-3, **kwargs)[1],
          ref.reuse_multi_head_attention(x, x, attention_axes=(2,), **kwargs)[1])
    # -2 attends across the heads: scores (B, 3, 4, Nq, Nk).
    out, scores = ref.reuse_multi_head_attention(x, x, attention_axes=-2, **kwargs)
    wq, bq, wk, bk, wv, bv, wo, bo = weights
    q = (np.tensordot(x, wq, axes=1) + bq) / math.sqrt(3)
    k = np.tensordot(x, wk, axes=1) + bk
    v = np.tensordot(x, wv, axes=1) + bv
    expected_out = np.zeros((2, 3, 4, 5))
    for index in np.ndindex(2, 3, 4):
        logits = q[index] @ k[index].T
        e = np.exp(logits - logits.max(-1, keepdims=True))
        w = e / e.sum(-1, keepdims=True)
        close(scores[index], w)
        expected_out[index] = np.tensordot(w @ v[index], wo, axes=2) + bo
    close(out, expected_out)
    close(ref.reuse_multi_head_attention(x, x, attention_axes=3, **kwargs)[1], scores)


def test_reuse_rejects_bad_arguments():
    rng, query, value, key, given, kwargs = reuse_case(58, reused=1)
    call = ref.reuse_multi_head_attention
    with pytest.raises(ValueError):  # partial reuse needs the scores
        call(query, value, key, **kwargs)
    with pytest.raises(ValueError):  # fewer given heads than reused
        call(query, value, key, reuse_attention_scores=given[:, :0], **kwargs)
    with pytest.raises(ValueError):
        call(query, value, key, reuse_attention_scores=given, **{**kwargs, "reuse_attention": 4})
    with pytest.raises(ValueError):  # weights for r = 1, not r = 2
        call(query, value, key, reuse_attention_scores=given, **{**kwargs, "reuse_attention": 2})
    x = rng.normal(size=(2, 3, 4, 5))
    weights = reuse_weights(rng, 2, 1, 5, 5, 5, 3, 3, 5)
    for axes in (None, 0, -1, (2, -3)):  # partial reuse beyond rank 3; axes 0, -1; duplicates
        with pytest.raises(ValueError):
            call(x, x, weights=weights, num_heads=2, key_dim=3, reuse_attention=1,
                 attention_axes=axes, reuse_attention_scores=np.ones((2, 3, 2, 4, 4)))
    weights = reuse_weights(rng, 2, 0, 5, 5, 5, 3, 3, 5, pe_length=4)
    with pytest.raises(ValueError):  # the position bias only in the rank-3 layout
        call(x, x, weights=weights, num_heads=2, key_dim=3, use_relative_pe=True,
             pe_max_seq_length=4, attention_axes=(2,))
