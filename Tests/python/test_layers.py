"""The layers against attention.reference: random configurations (hypothesis), dropout,
scores, weights, configs, initializers, threads."""

import concurrent.futures
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import attention
from attention import reference
from conftest import assert_close

DTYPES = ("float32", "float64")


@pytest.fixture
def restore_threads():
    before = attention.get_num_threads()
    yield
    attention.set_num_threads(before)


def _random_weights(layer, rng, low=0.5, high=1.5):
    """Random weights of the layer's shapes (uniform), loaded into the layer and returned."""
    weights = [rng.uniform(low, high, size=w.shape) for w in layer.get_weights()]
    layer.set_weights(weights)
    return layer.get_weights()


def _mask(rng, shape, keep=0.7):
    return rng.random(shape) < keep


# -- Attention and AdditiveAttention ----------------------------------------------------------

@st.composite
def luong_cases(draw):
    with_key = draw(st.booleans())
    dim = draw(st.integers(1, 8))
    return {
        "dtype": draw(st.sampled_from(DTYPES)),
        "batch": draw(st.integers(1, 3)),
        "tq": draw(st.integers(1, 6)),
        "tv": draw(st.integers(1, 6)),
        "dim": dim,
        "value_dim": draw(st.integers(1, 6)) if with_key else dim,
        "with_key": with_key,
        "query_mask": draw(st.booleans()),
        "value_mask": draw(st.booleans()),
        "causal": draw(st.booleans()),
        "scores": draw(st.booleans()),
        "use_scale": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _luong_inputs(case):
    rng = np.random.default_rng(case["seed"])
    b, tq, tv = case["batch"], case["tq"], case["tv"]
    q = rng.normal(size=(b, tq, case["dim"])).astype(case["dtype"])
    v = rng.normal(size=(b, tv, case["value_dim"])).astype(case["dtype"])
    k = rng.normal(size=(b, tv, case["dim"])).astype(case["dtype"]) if case["with_key"] else None
    qm = _mask(rng, (b, tq)) if case["query_mask"] else None
    vm = _mask(rng, (b, tv)) if case["value_mask"] else None
    return rng, q, v, k, qm, vm


def _call_luong(layer, case, q, v, k, qm, vm):
    inputs = [q, v] + ([k] if k is not None else [])
    mask = None if qm is None and vm is None else [qm, vm]
    result = layer(inputs, mask=mask, return_attention_scores=case["scores"],
                   use_causal_mask=case["causal"])
    return result if case["scores"] else (result, None)


def _check(result, expected, dtype):
    output, scores = result
    assert output.dtype == np.dtype(dtype)
    assert_close(output, expected[0], dtype, "output")
    if scores is not None:
        assert_close(scores, expected[1], dtype, "scores")


def _check_fused_and_with_scores(layer, inputs, expected, dtype):
    """The call without scores (the fused path) and the call returning them match `expected`."""
    assert_close(layer(inputs), expected[0], dtype, "fused output")
    _check(layer(inputs, return_attention_scores=True), expected, dtype)


@given(luong_cases(), st.sampled_from(["dot", "concat"]))
def test_attention_matches_reference(case, score_mode):
    rng, q, v, k, qm, vm = _luong_inputs(case)
    layer = attention.Attention(use_scale=case["use_scale"], score_mode=score_mode,
                                dtype=case["dtype"])
    result = _call_luong(layer, case, q, v, k, qm, vm)  # builds on first call
    weights = _random_weights(layer, rng)
    result = _call_luong(layer, case, q, v, k, qm, vm)
    scale = weights.pop(0) if case["use_scale"] else None
    concat_weight = weights.pop(0) if score_mode == "concat" else None
    expected = reference.attention(q, v, k, qm, vm, score_mode=score_mode, scale=scale,
                                   concat_score_weight=concat_weight,
                                   use_causal_mask=case["causal"])
    _check(result, expected, case["dtype"])


@given(luong_cases())
def test_additive_attention_matches_reference(case):
    rng, q, v, k, qm, vm = _luong_inputs(case)
    layer = attention.AdditiveAttention(use_scale=case["use_scale"], dtype=case["dtype"])
    layer.build([q.shape, v.shape] + ([k.shape] if k is not None else []))
    weights = _random_weights(layer, rng, -1.5, 1.5)
    expected = reference.additive_attention(q, v, k, qm, vm, scale=weights[0] if weights else None,
                                            use_causal_mask=case["causal"])
    _check(_call_luong(layer, case, q, v, k, qm, vm), expected, case["dtype"])


@pytest.mark.parametrize("kind", ["concat", "additive"])
@pytest.mark.parametrize("dim", [512, 2048])
def test_tanh_scores_of_wide_features_in_float32(kind, dim):
    """Concat/additive logits sum dim tanh terms; in float32 their rounding must not grow
    with dim past the contract (a sum of Σ 1/(1 + e^{2q}·e^{2k}) ≈ dim/2 once did: 3e-4 at
    dim 2048). Against float64 formulas, fused output and returned scores."""
    rng = np.random.default_rng(dim)
    q, v = (rng.standard_normal((2, 48, dim)).astype(np.float32) for _ in range(2))
    if kind == "concat":
        layer = attention.Attention(score_mode="concat", use_scale=True)
        layer.build([q.shape, v.shape])
        scale, weight = layer.get_weights()
        expected = reference.attention(q.astype(np.float64), v.astype(np.float64), score_mode="concat",
                                       scale=np.float64(scale), concat_score_weight=np.float64(weight))
    else:
        layer = attention.AdditiveAttention()
        layer.build([q.shape, v.shape])
        layer.set_weights([rng.uniform(-1, 1, dim)])
        expected = reference.additive_attention(q.astype(np.float64), v.astype(np.float64),
                                                scale=layer.get_weights()[0].astype(np.float64))
    _check_fused_and_with_scores(layer, [q, v], expected, "float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_heads_wider_than_the_packed_tiles(dtype):
    """A worker packs key tiles of at most 2^22 elements: heads of 2^17 + 3 features (and a
    block of 256 rows × 2^14 + 3 value features) take the row-by-row path instead, with the
    same numbers — dot (causal too), concat, and returned scores."""
    rng = np.random.default_rng(17)
    wide, normal = 2**17 + 3, (lambda *shape: rng.standard_normal(shape).astype(dtype))
    q, k, v = normal(1, 9, 2, wide), normal(1, 11, 1, wide), normal(1, 11, 1, 5)
    for causal in (False, True):
        assert_close(attention.dot_product_attention(q, k, v, is_causal=causal),
                     reference.dot_product_attention(q, k, v, is_causal=causal), dtype, "wide keys")
    q, k, v = normal(1, 300, 1, 8), normal(1, 7, 1, 8), normal(1, 7, 1, 2**14 + 3)
    assert_close(attention.dot_product_attention(q, k, v), reference.dot_product_attention(q, k, v),
                 dtype, "wide values")

    q, v = normal(1, 9, wide), normal(1, 11, wide)
    layer = attention.Attention(score_mode="concat", use_scale=True, dtype=dtype)
    layer.build([q.shape, v.shape])
    layer.set_weights([np.array(0.5), np.array(wide**-0.5)])  # logits of order 1
    expected = reference.attention(q, v, score_mode="concat", scale=0.5, concat_score_weight=wide**-0.5)
    _check_fused_and_with_scores(layer, [q, v], expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_scores_where_the_exponential_tables_end(dtype):
    """q and k of opposite sign near the edge of e^{2x}'s range, in vector lanes and in the
    scalar tail: tanh(q + k) is moderate though e^{2q} underflows (float64's vector e^x is 0
    from −708, short of −708.4 where normals end; such pairs must take the direct tanh)."""
    edge = {"float32": 43.7, "float64": 354.1}[dtype]
    rng = np.random.default_rng(11)
    q = rng.standard_normal((1, 3, 19)).astype(dtype)
    k = rng.standard_normal((1, 5, 19)).astype(dtype)
    q[0, 0, [2, 17]], k[0, 1, [2, 17]] = -edge, edge + 0.05
    q[0, 1, [5, 18]], k[0, 2, [5, 18]] = edge - 0.4, -edge
    layer = attention.AdditiveAttention(dtype=dtype)
    layer.build([q.shape, k.shape])
    layer.set_weights([rng.uniform(-1, 1, 19)])
    expected = reference.additive_attention(q, k, scale=layer.get_weights()[0])
    _check_fused_and_with_scores(layer, [q, k], expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_causal_argument_is_use_causal_mask(dtype):
    rng = np.random.default_rng(3)
    q, v = rng.normal(size=(2, 5, 4)).astype(dtype), rng.normal(size=(2, 4, 4)).astype(dtype)
    old_style = attention.Attention(causal=True, dtype=dtype)
    out, scores = old_style([q, v], return_attention_scores=True)
    expected = reference.attention(q, v, use_causal_mask=True)
    _check((out, scores), expected, dtype)
    assert old_style.get_config()["causal"] is True
    assert "causal" not in attention.Attention().get_config()


def test_attention_accepts_array_likes_and_numeric_masks():
    """Lists, non-contiguous arrays, ints; masks of numbers (nonzero keeps)."""
    rng = np.random.default_rng(4)
    q = rng.normal(size=(2, 6, 3))
    v = np.asfortranarray(rng.normal(size=(2, 4, 3)))
    layer = attention.Attention(dtype="float64")
    value_mask = np.array([[1, 0, 2, -1], [0, 0, 5, 1]])
    out = layer([q[:, ::2].tolist(), v], mask=[None, value_mask.astype(np.float32)])
    expected, _ = reference.attention(q[:, ::2], v, value_mask=value_mask != 0)
    assert_close(out, expected, np.float64)
    ints = layer([np.ones((1, 2, 3), dtype=np.int64), np.ones((1, 2, 3), dtype=np.int64)])
    assert ints.dtype == np.float64
    assert_close(ints, np.ones((1, 2, 3)), np.float64)


@pytest.mark.parametrize("kind", ["Attention", "AdditiveAttention"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_luong_dropout_reproduces_reference(kind, dtype):
    rng = np.random.default_rng(5)
    q, v = rng.normal(size=(3, 7, 5)).astype(dtype), rng.normal(size=(3, 9, 5)).astype(dtype)
    layer = getattr(attention, kind)(dropout=0.3, seed=2024, dtype=dtype)
    ref = reference.attention if kind == "Attention" else reference.additive_attention
    layer.build([q.shape, v.shape])
    extra = {"scale": layer.get_weights()[0]} if kind == "AdditiveAttention" else {}
    for stream in range(3):
        assert layer.dropout_stream == stream
        out, scores = layer([q, v], training=True, return_attention_scores=True)
        exp_out, exp_scores = ref(q, v, dropout=0.3, training=True, seed=2024, stream=stream,
                                  **extra)
        np.testing.assert_array_equal(scores == 0, exp_scores == 0)
        assert 0 < np.mean(scores == 0) < 0.6
        _check((out, scores), (exp_out, exp_scores), dtype)
    inference = layer([q, v], training=False, return_attention_scores=True)
    assert layer.dropout_stream == 3
    _check(inference, ref(q, v, **extra), dtype)


def test_luong_dropout_same_seed_same_result():
    rng = np.random.default_rng(6)
    q, v = rng.normal(size=(2, 8, 4)), rng.normal(size=(2, 8, 4))
    a, b = attention.Attention(dropout=0.5, seed=11), attention.Attention(dropout=0.5, seed=11)
    first = [a([q, v], training=True) for _ in range(2)]
    second = [b([q, v], training=True) for _ in range(2)]
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])  # the stream advanced
    other = attention.Attention(dropout=0.5, seed=12)([q, v], training=True)
    assert not np.array_equal(first[0], other)
    unseeded = attention.Attention(dropout=0.5)
    assert 0 <= unseeded.dropout_seed < 2**64 and unseeded.seed is None


# -- MultiHeadAttention -----------------------------------------------------------------------

@st.composite
def mha_cases(draw):
    rank = draw(st.sampled_from([3, 3, 4, 5]))
    inner = list(range(1, rank - 1))
    if draw(st.booleans()):
        axes, spelled = tuple(inner), None
    else:
        chosen = draw(st.lists(st.sampled_from(inner), min_size=1, max_size=len(inner), unique=True))
        axes = tuple(chosen)
        negative = draw(st.booleans())
        spelled = tuple(a - rank if negative else a for a in axes)
        if len(spelled) == 1 and draw(st.booleans()):
            spelled = spelled[0]
    batch = draw(st.integers(1, 2))
    q_dims = [draw(st.integers(1, 4)) for _ in inner]
    v_dims = [draw(st.integers(1, 4)) if a in axes else q_dims[a - 1] for a in inner]
    masks_fit = rank == 3 or axes == (rank - 2,)  # Keras's masks are meaningful here
    with_key = draw(st.booleans())
    return {
        "dtype": draw(st.sampled_from(DTYPES)),
        "query_shape": (batch, *q_dims, draw(st.integers(1, 5))),
        "value_shape": (batch, *v_dims, draw(st.integers(1, 5))),
        "key_dim_in": draw(st.integers(1, 5)) if with_key else None,
        "config": {
            "num_heads": draw(st.integers(1, 3)),
            "key_dim": draw(st.integers(1, 4)),
            "value_dim": draw(st.sampled_from([None, 1, 2, 3])),
            "use_bias": draw(st.booleans()),
            "output_shape": draw(st.sampled_from([None, 3, (2, 2)])),
            "attention_axes": spelled,
            "use_gate": draw(st.booleans()),
            "sliding_window": draw(st.sampled_from([None, 1, 2])) if rank == 3 else None,
            "dropout": draw(st.sampled_from([0.0, 0.0, 0.25])),
        },
        "axes": axes,
        "query_mask": masks_fit and draw(st.booleans()),
        "value_mask": masks_fit and draw(st.booleans()),
        "key_mask": masks_fit and draw(st.booleans()),
        "attention_mask": draw(st.booleans()),
        "causal": rank == 3 and draw(st.booleans()),
        "scores": draw(st.booleans()),
        "training": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _attention_mask_shape(case, rng):
    """Scores shape without the heads axis, some dims broadcast (1)."""
    q, v, axes = case["query_shape"], case["value_shape"], case["axes"]
    others = [a for a in range(1, len(q) - 1) if a not in axes]
    full = [q[0]] + [q[a] for a in others] + [q[a] for a in axes] + [v[a] for a in axes]
    shape = [d if rng.random() < 0.7 else 1 for d in full]
    # Without other axes the batch axis may be left out (Keras then broadcasts it).
    drop = rng.integers(0, 1 if others else 2)
    return tuple(shape[drop:])


def _check_multi_head_case(case, layer_class, formula):
    """One hypothesis case (shapes, masks, flags, dtype, config) through `layer_class` with
    random weights, against `formula` of attention.reference."""
    rng = np.random.default_rng(case["seed"])
    dtype = case["dtype"]
    q = rng.normal(size=case["query_shape"]).astype(dtype)
    v = rng.normal(size=case["value_shape"]).astype(dtype)
    k = None if case["key_dim_in"] is None else rng.normal(
        size=case["value_shape"][:-1] + (case["key_dim_in"],)).astype(dtype)
    masks = {
        "query_mask": _mask(rng, q.shape[:-1]) if case["query_mask"] else None,
        "value_mask": _mask(rng, v.shape[:-1]) if case["value_mask"] else None,
        "key_mask": _mask(rng, v.shape[:-1]) if case["key_mask"] else None,
        "attention_mask": _mask(rng, _attention_mask_shape(case, rng)) if case["attention_mask"] else None,
    }
    layer = layer_class(**case["config"], seed=case["seed"], dtype=dtype)
    layer.build(q.shape, v.shape, None if k is None else k.shape)
    weights = _random_weights(layer, rng, -1.0, 1.0)
    result = layer(q, v, k, **masks, return_attention_scores=case["scores"],
                   training=case["training"], use_causal_mask=case["causal"])
    output, scores = result if case["scores"] else (result, None)
    expected = formula(
        q, v, k, weights=weights, **case["config"], **masks, use_causal_mask=case["causal"],
        training=case["training"], seed=case["seed"], stream=0,
        return_attention_scores=case["scores"])
    _check((output, scores), expected, dtype)


@given(mha_cases())
def test_multi_head_attention_matches_reference(case):
    _check_multi_head_case(case, attention.MultiHeadAttention, reference.multi_head_attention)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_head_attention_dropout_streams(dtype):
    rng = np.random.default_rng(8)
    q, v = rng.normal(size=(2, 6, 8)).astype(dtype), rng.normal(size=(2, 7, 8)).astype(dtype)
    layer = attention.MultiHeadAttention(2, 4, dropout=0.4, seed=99, dtype=dtype)
    layer.build(q.shape, v.shape)
    weights = layer.get_weights()
    for stream in range(2):
        out, scores = layer(q, v, return_attention_scores=True, training=True)
        expected = reference.multi_head_attention(
            q, v, weights=weights, num_heads=2, key_dim=4, dropout=0.4, training=True, seed=99,
            stream=stream, return_attention_scores=True)
        _check((out, scores), expected, dtype)
    assert layer.dropout_stream == 2
    layer(q, v)  # training=None: inference, the stream stays
    assert layer.dropout_stream == 2


@pytest.mark.parametrize("kind", ["Attention", "MultiHeadAttention"])
def test_results_do_not_depend_on_thread_count(kind, restore_threads):
    rng = np.random.default_rng(9)
    q, v = rng.normal(size=(4, 96, 32)), rng.normal(size=(4, 80, 32))
    results = []
    for threads in (1, 2):
        attention.set_num_threads(threads)
        assert attention.get_num_threads() == threads
        if kind == "Attention":
            layer = attention.Attention(dropout=0.2, seed=5)
            results.append(layer([q, v], training=True, return_attention_scores=True))
        else:
            layer = attention.MultiHeadAttention(4, 8, dropout=0.2, seed=5)
            results.append(layer(q, v, training=True, return_attention_scores=True))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_concurrent_calls_on_one_layer():
    rng = np.random.default_rng(10)
    layer = attention.MultiHeadAttention(4, 8, seed=1)
    inputs = [(rng.normal(size=(2, 33, 16)), rng.normal(size=(2, 40, 16))) for _ in range(8)]
    serial = [layer(q, v) for q, v in inputs]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda qv: layer(*qv), inputs * 4))
    for i, out in enumerate(parallel):
        np.testing.assert_array_equal(out, serial[i % len(inputs)])


# -- GroupQueryAttention ----------------------------------------------------------------------

@st.composite
def gqa_cases(draw):
    num_query_heads = draw(st.sampled_from([1, 2, 3, 4, 6]))
    divisors = [d for d in range(1, num_query_heads + 1) if num_query_heads % d == 0]
    batch, dim = draw(st.integers(1, 2)), draw(st.integers(1, 5))
    t, s = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    with_key = draw(st.booleans())
    return {
        "dtype": draw(st.sampled_from(DTYPES)),
        # value shares the query's last dim (the library requires it; see the report)
        "query_shape": (batch, t, dim),
        "value_shape": (batch, s, dim),
        "key_dim_in": draw(st.integers(1, 5)) if with_key else None,
        "config": {
            "head_dim": draw(st.integers(1, 4)),
            "num_query_heads": num_query_heads,
            "num_key_value_heads": draw(st.sampled_from(divisors)),  # 1, a divisor, or all
            "use_bias": draw(st.booleans()),
            "use_gate": draw(st.booleans()),
            "sliding_window": draw(st.sampled_from([None, 1, 2])),
            "dropout": draw(st.sampled_from([0.0, 0.0, 0.25])),
        },
        "axes": (1,),
        "query_mask": draw(st.booleans()),
        "value_mask": draw(st.booleans()),
        "key_mask": draw(st.booleans()),
        "attention_mask": draw(st.booleans()),
        "causal": draw(st.booleans()),
        "scores": draw(st.booleans()),
        "training": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@given(gqa_cases())
def test_group_query_attention_matches_reference(case):
    _check_multi_head_case(case, attention.GroupQueryAttention, reference.group_query_attention)


@pytest.mark.parametrize("dtype", DTYPES)
def test_group_query_attention_with_all_heads_is_multi_head_attention(dtype):
    rng = np.random.default_rng(12)
    q, v = rng.normal(size=(2, 5, 6)).astype(dtype), rng.normal(size=(2, 7, 6)).astype(dtype)
    gqa = attention.GroupQueryAttention(head_dim=3, num_query_heads=4, num_key_value_heads=4,
                                        use_gate=True, dtype=dtype)
    mha = attention.MultiHeadAttention(num_heads=4, key_dim=3, use_gate=True, dtype=dtype)
    gqa.build(q.shape, v.shape)
    mha.build(q.shape, v.shape)
    mha.set_weights(_random_weights(gqa, rng, -1.0, 1.0))
    for scores in (False, True):
        got = gqa(q, v, use_causal_mask=True, return_attention_scores=scores)
        expected = mha(q, v, use_causal_mask=True, return_attention_scores=scores)
        _check(got if scores else (got, None), expected if scores else (expected, None), dtype)


def test_grouped_query_attention_is_group_query_attention():
    assert attention.GroupedQueryAttention is attention.GroupQueryAttention
    assert attention.GroupQueryAttention(2, 2, 1).name.startswith("grouped_query_attention")


@pytest.mark.parametrize("window", [7, 2**40, 2**63 - 1])
@pytest.mark.parametrize("kind", ["mha", "gqa"])
def test_a_window_wider_than_both_sequences_masks_nothing(kind, window):
    """|i − j| < window holds for every pair once window ≥ max(T, S), however large the window
    (i + window must not overflow): output, scores and gradients equal the unwindowed layer's."""
    rng = np.random.default_rng(13)
    q, v = rng.normal(size=(2, 5, 6)), rng.normal(size=(2, 7, 6))

    def make(sliding_window):
        layer = (attention.MultiHeadAttention(2, 3, sliding_window=sliding_window, dtype="float64")
                 if kind == "mha" else
                 attention.GroupQueryAttention(3, 4, 2, sliding_window=sliding_window, dtype="float64"))
        layer.build(q.shape, v.shape)
        return layer

    windowed, plain = make(window), make(None)
    plain.set_weights(_random_weights(windowed, rng, -1.0, 1.0))
    output_gradient = rng.normal(size=q.shape)
    for causal in (False, True):
        got, expected = (layer(q, v, use_causal_mask=causal, return_attention_scores=True)
                         for layer in (windowed, plain))
        _check(got, expected, "float64")
        got, expected = (layer.gradients(q, v, use_causal_mask=causal, output_gradient=output_gradient)
                         for layer in (windowed, plain))
        for name in ("output", "query", "value"):
            assert_close(getattr(got, name), getattr(expected, name), "float64", name)
        for index, (g, e) in enumerate(zip(got.weights, expected.weights)):
            assert_close(g, e, "float64", f"weight {index}")


# -- ReuseMultiHeadAttention ------------------------------------------------------------------

@st.composite
def reuse_cases(draw):
    num_heads = draw(st.integers(1, 4))
    reuse_kind = draw(st.sampled_from(["none", "partial", "full", "minus one"]))
    if reuse_kind == "partial" and num_heads == 1:
        reuse_kind = "none"
    reuse_attention = {"none": 0, "full": num_heads, "minus one": -1}.get(reuse_kind)
    if reuse_kind == "partial":
        reuse_attention = draw(st.integers(1, num_heads - 1))
    # Partial reuse and the position bias of new heads need rank 3 attending over axis 1.
    rank = 3 if reuse_kind in ("none", "partial") and draw(st.booleans()) else draw(
        st.sampled_from([3, 4, 5]))
    if reuse_kind == "partial":
        rank = 3
    inner = list(range(1, rank - 1))
    if rank == 3 or draw(st.booleans()):
        axes, spelled = tuple(inner), draw(st.sampled_from([None, tuple(inner)]))
    else:
        axes = tuple(draw(st.lists(st.sampled_from(inner), min_size=1, max_size=len(inner),
                                   unique=True)))
        # upstream: a negative axis counts from the end of the projected (rank + 1) tensor
        spelled = tuple(a - rank - 1 if draw(st.booleans()) else a for a in axes)
    heads_layout = rank == 3
    if reuse_kind == "partial":
        axes, spelled = (1,), draw(st.sampled_from([None, (1,), 1, -3]))
    batch = draw(st.integers(1, 2))
    q_dims = [draw(st.integers(1, 6 if heads_layout else 3)) for _ in inner]
    v_dims = [draw(st.integers(1, 6 if heads_layout else 3)) if a in axes else q_dims[a - 1]
              for a in inner]
    with_key = draw(st.booleans())
    use_relative_pe = draw(st.booleans()) and (heads_layout or reuse_kind in ("full", "minus one"))
    return {
        "dtype": draw(st.sampled_from(DTYPES)),
        "query_shape": (batch, *q_dims, draw(st.integers(1, 5))),
        "value_shape": (batch, *v_dims, draw(st.integers(1, 5))),
        "key_dim_in": draw(st.integers(1, 5)) if with_key else None,
        "config": {
            "num_heads": num_heads,
            "key_dim": draw(st.integers(1, 4)),
            "value_dim": draw(st.sampled_from([None, 1, 2, 3])),
            "reuse_attention": reuse_attention,
            "use_relative_pe": use_relative_pe,
            "pe_max_seq_length": draw(st.integers(1, 4)),  # often below T and S: clipped offsets
            "use_bias": draw(st.booleans()),
            "output_shape": draw(st.sampled_from([None, 3, (2, 2)])),
            "attention_axes": spelled,
            "dropout": draw(st.sampled_from([0.0, 0.0, 0.25])),
        },
        "axes": axes,
        "attention_mask": draw(st.booleans()),
        "scores": draw(st.booleans()),
        "training": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _scores_shape(query_shape, value_shape, axes, heads):
    """MultiHeadAttention's scores layout: (B, <other axes>, heads, <query attention axes>,
    <key attention axes>)."""
    others = [a for a in range(1, len(query_shape) - 1) if a not in axes]
    return ((query_shape[0], *[query_shape[a] for a in others], heads)
            + tuple(query_shape[a] for a in axes) + tuple(value_shape[a] for a in axes))


@given(reuse_cases())
def test_reuse_multi_head_attention_matches_reference(case):
    rng = np.random.default_rng(case["seed"])
    dtype, config = case["dtype"], case["config"]
    q = rng.normal(size=case["query_shape"]).astype(dtype)
    v = rng.normal(size=case["value_shape"]).astype(dtype)
    k = None if case["key_dim_in"] is None else rng.normal(
        size=case["value_shape"][:-1] + (case["key_dim_in"],)).astype(dtype)
    mask = _mask(rng, _attention_mask_shape(case, rng)) if case["attention_mask"] else None
    reuse_scores = None
    if config["reuse_attention"]:
        shape = _scores_shape(q.shape, v.shape, case["axes"], config["num_heads"])
        reuse_scores = rng.uniform(0.0, 1.0, size=shape).astype(dtype)
    layer = attention.ReuseMultiHeadAttention(**config, seed=case["seed"], dtype=dtype)
    layer.build(q.shape, v.shape, None if k is None else k.shape)
    weights = _random_weights(layer, rng, -1.0, 1.0)
    result = layer(q, v, k, attention_mask=mask, return_attention_scores=case["scores"],
                   training=case["training"], reuse_attention_scores=reuse_scores)
    output, scores = result if case["scores"] else (result, None)
    expected = reference.reuse_multi_head_attention(
        q, v, k, weights=weights, **config, attention_mask=mask,
        reuse_attention_scores=reuse_scores, training=case["training"], seed=case["seed"],
        stream=0, return_attention_scores=case["scores"])
    _check((output, scores), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reuse_chain_passes_scores_on(dtype):
    """Each layer reuses heads of the previous layer's scores; full reuse returns them as
    given, and reuse_attention=0 ignores whatever is passed."""
    rng = np.random.default_rng(13)
    x = rng.normal(size=(2, 6, 8)).astype(dtype)
    configs = [{"reuse_attention": 0, "use_relative_pe": True, "pe_max_seq_length": 3},
               {"reuse_attention": 2}, {"reuse_attention": -1}, {"reuse_attention": 0}]
    scores = None
    for config in configs:
        layer = attention.ReuseMultiHeadAttention(num_heads=4, key_dim=2, dtype=dtype, **config)
        layer.build(x.shape, x.shape)
        weights = _random_weights(layer, rng, -1.0, 1.0)
        out, new_scores = layer(x, x, return_attention_scores=True,
                                reuse_attention_scores=scores)
        expected = reference.reuse_multi_head_attention(
            x, x, weights=weights, num_heads=4, key_dim=2, **config,
            reuse_attention_scores=scores if config["reuse_attention"] else None,
            return_attention_scores=True)
        _check((out, new_scores), expected, dtype)
        if config["reuse_attention"] == -1:
            np.testing.assert_array_equal(new_scores, scores)
        if config["reuse_attention"] == 0 and scores is not None:
            garbage = rng.normal(size=(3, 1, 2))
            np.testing.assert_array_equal(layer(x, x, reuse_attention_scores=garbage),
                                          layer(x, x))
        x, scores = out, new_scores


@pytest.mark.parametrize("kind", ["GroupQueryAttention", "ReuseMultiHeadAttention"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gqa_and_reuse_dropout_streams(kind, dtype):
    rng = np.random.default_rng(14)
    q, v = rng.normal(size=(2, 6, 8)).astype(dtype), rng.normal(size=(2, 7, 8)).astype(dtype)
    if kind == "GroupQueryAttention":
        config = {"head_dim": 4, "num_query_heads": 4, "num_key_value_heads": 2}
        extra = {}
    else:
        config = {"num_heads": 4, "key_dim": 4, "reuse_attention": 1}
        extra = {"reuse_attention_scores": rng.uniform(size=(2, 4, 6, 7)).astype(dtype)}
    layer = getattr(attention, kind)(**config, dropout=0.4, seed=99, dtype=dtype)
    ref = (reference.group_query_attention if kind == "GroupQueryAttention"
           else reference.reuse_multi_head_attention)
    layer.build(q.shape, v.shape)
    weights = layer.get_weights()
    outputs = []
    for stream in range(2):
        out, scores = layer(q, v, return_attention_scores=True, training=True, **extra)
        expected = ref(q, v, weights=weights, **config, dropout=0.4, training=True, seed=99,
                       stream=stream, return_attention_scores=True, **extra)
        _check((out, scores), expected, dtype)
        outputs.append(out)
    assert not np.array_equal(outputs[0], outputs[1])
    assert layer.dropout_stream == 2
    inference = layer(q, v, return_attention_scores=True, **extra)  # training=None
    assert layer.dropout_stream == 2
    _check(inference, ref(q, v, weights=weights, **config, dropout=0.4,
                          return_attention_scores=True, **extra), dtype)


# -- dot_product_attention --------------------------------------------------------------------

@st.composite
def dpa_cases(draw):
    kv = draw(st.integers(1, 3))
    dims = {"B": draw(st.integers(1, 2)), "T": draw(st.integers(1, 5)), "S": draw(st.integers(1, 5)),
            "K": kv, "N": kv * draw(st.integers(1, 3)), "H": draw(st.integers(1, 5)),
            "Hv": draw(st.integers(1, 5))}

    def broadcastable():
        full = [dims["B"], dims["N"], dims["T"], dims["S"]]
        shape = [d if draw(st.booleans()) else 1 for d in full]
        return tuple(shape[draw(st.integers(0, 2)):])

    return {
        "dims": dims,
        "dtype": draw(st.sampled_from(DTYPES)),
        "bias": broadcastable() if draw(st.booleans()) else None,
        "mask": broadcastable() if draw(st.booleans()) else None,
        "scale": draw(st.sampled_from([None, 0.3, 1.7])),
        "is_causal": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@given(dpa_cases())
def test_dot_product_attention_matches_reference(case):
    rng = np.random.default_rng(case["seed"])
    d, dtype = case["dims"], case["dtype"]
    q = rng.normal(size=(d["B"], d["T"], d["N"], d["H"])).astype(dtype)
    k = rng.normal(size=(d["B"], d["S"], d["K"], d["H"])).astype(dtype)
    v = rng.normal(size=(d["B"], d["S"], d["K"], d["Hv"])).astype(dtype)
    bias = None if case["bias"] is None else rng.normal(size=case["bias"]).astype(dtype)
    mask = None if case["mask"] is None else _mask(rng, case["mask"])
    got = attention.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=case["scale"],
                                          is_causal=case["is_causal"])
    expected = reference.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=case["scale"],
                                               is_causal=case["is_causal"])
    assert got.dtype == np.dtype(dtype)
    assert_close(got, expected, dtype)


def test_dot_product_attention_dtype_rule():
    rng = np.random.default_rng(11)
    q32 = rng.normal(size=(1, 3, 2, 4)).astype(np.float32)
    assert attention.dot_product_attention(q32, q32, q32).dtype == np.float32
    assert attention.dot_product_attention(q32.astype(np.float64), q32, q32).dtype == np.float64
    bias = np.zeros((3, 3))
    assert attention.dot_product_attention(q32, q32, q32, bias=bias).dtype == np.float64


# -- weights and config -----------------------------------------------------------------------

def _layers():
    return [
        attention.Attention(),
        attention.Attention(use_scale=True, score_mode="concat", dropout=0.1, seed=3, causal=True),
        attention.AdditiveAttention(dtype="float64", name="additive"),
        attention.AdditiveAttention(use_scale=False),
        attention.MultiHeadAttention(2, 3),
        attention.MultiHeadAttention(
            3, 2, value_dim=4, dropout=0.2, use_bias=False, output_shape=(2, 5),
            attention_axes=(1,), sliding_window=3, kernel_initializer="he_normal",
            bias_initializer={"class_name": "Constant", "config": {"value": 0.5}},
            kernel_regularizer="l2", bias_regularizer={"class_name": "L1L2", "config": {"l1": 0.1}},
            activity_regularizer="l1", kernel_constraint="max_norm", bias_constraint="non_neg",
            use_gate=True, seed=42, dtype="float64", name="mha"),
        attention.GroupQueryAttention(2, 4, 2),
        attention.GroupQueryAttention(
            3, 6, 3, dropout=0.1, use_bias=False, sliding_window=2,
            kernel_initializer="lecun_normal", bias_initializer="ones",
            kernel_regularizer={"class_name": "L1L2", "config": {"l2": 0.2}},
            bias_constraint="unit_norm", use_gate=True, seed=8, dtype="float64", name="gqa"),
        attention.ReuseMultiHeadAttention(2, 3),
        attention.ReuseMultiHeadAttention(
            4, 2, value_dim=3, dropout=0.2, reuse_attention=2, use_relative_pe=True,
            pe_max_seq_length=4, use_bias=False, output_shape=(2, 5),
            kernel_initializer="random_uniform", bias_regularizer="l1",
            kernel_constraint="non_neg", seed=9, dtype="float64", name="reuse"),
        attention.ReuseMultiHeadAttention(3, 2, reuse_attention=-1, attention_axes=1,
                                          use_relative_pe=True, output_shape=3),
    ]


_MULTI_HEAD = (attention.MultiHeadAttention, attention.GroupQueryAttention,
               attention.ReuseMultiHeadAttention)


def _build(layer):
    shapes = [(2, 3, 4), (2, 5, 4)]
    if isinstance(layer, _MULTI_HEAD):
        layer.build(*shapes)
    else:
        layer.build(shapes)


def _call(layer, q, v):
    """The layer on query q and value v (Reuse layers get scores to reuse)."""
    if isinstance(layer, attention.ReuseMultiHeadAttention):
        scores = np.random.default_rng(1).random((q.shape[0], layer.num_heads, q.shape[1], v.shape[1]))
        return layer(q, v, reuse_attention_scores=scores)
    return layer(q, v) if isinstance(layer, _MULTI_HEAD) else layer([q, v])


@pytest.mark.parametrize("index", range(len(_layers())))
def test_weights_round_trip(index):
    layer = _layers()[index]
    assert layer.get_weights() == [] and layer.weight_names == [] and not layer.built
    _build(layer)
    assert layer.built
    specs = [(n, w.shape) for n, w in zip(layer.weight_names, layer.get_weights())]
    rng = np.random.default_rng(index)
    new = [rng.normal(size=shape) for _, shape in specs]  # float64: cast to the layer dtype
    layer.set_weights(new)
    got = layer.get_weights()
    assert [(n, w.shape) for n, w in zip(layer.weight_names, got)] == specs
    for g, w in zip(got, new):
        assert g.dtype == np.dtype(layer.dtype)
        np.testing.assert_array_equal(g, w.astype(layer.dtype))


def test_weight_names_and_order():
    attention_names = attention.Attention(use_scale=True, score_mode="concat")
    attention_names.build([(1, 2, 3), (1, 2, 3)])
    assert attention_names.weight_names == ["scale", "concat_score_weight"]
    assert [w.shape for w in attention_names.get_weights()] == [(), ()]
    np.testing.assert_array_equal(attention_names.get_weights(), [1.0, 1.0])
    mha = attention.MultiHeadAttention(2, 3, value_dim=4, output_shape=(5, 6), use_gate=True)
    mha.build((1, 2, 7), (1, 3, 8), (1, 3, 9))
    assert mha.weight_names == ["query/kernel", "query/bias", "key/kernel", "key/bias", "gate/kernel",
                           "gate/bias", "value/kernel", "value/bias", "attention_output/kernel",
                           "attention_output/bias"]
    assert [w.shape for w in mha.get_weights()] == [
        (7, 2, 3), (2, 3), (9, 2, 3), (2, 3), (7, 2, 4), (2, 4), (8, 2, 4), (2, 4), (2, 4, 5, 6),
        (5, 6)]
    gqa = attention.GroupQueryAttention(3, 4, 2, use_gate=True)
    gqa.build((1, 2, 7), (1, 3, 7), (1, 3, 9))
    assert gqa.weight_names == mha.weight_names
    assert [w.shape for w in gqa.get_weights()] == [
        (7, 4, 3), (4, 3), (9, 2, 3), (2, 3), (7, 4, 3), (4, 3), (7, 2, 3), (2, 3), (4, 3, 7), (7,)]


@pytest.mark.parametrize("reuse, use_bias, expected", [
    (0, True, [("relative_position_embeddings", (1, 4, 11)), ("query/kernel", (7, 4, 3)),
               ("query/bias", (4, 3)), ("key/kernel", (9, 4, 3)), ("key/bias", (4, 3)),
               ("value_new/kernel", (8, 4, 5)), ("value_new/bias", (4, 5)),
               ("attention_output_new/kernel", (4, 5, 2, 3)), ("attention_output_new/bias", (2, 3))]),
    (1, True, [("relative_position_embeddings", (1, 3, 11)), ("query/kernel", (7, 3, 3)),
               ("query/bias", (3, 3)), ("key/kernel", (9, 3, 3)), ("key/bias", (3, 3)),
               ("value_reuse/kernel", (8, 1, 5)), ("value_reuse/bias", (1, 5)),
               ("value_new/kernel", (8, 3, 5)), ("value_new/bias", (3, 5)),
               ("attention_output_reuse/kernel", (1, 5, 2, 3)),
               ("attention_output_reuse/bias", (2, 3)),
               ("attention_output_new/kernel", (3, 5, 2, 3))]),
    (2, False, [("relative_position_embeddings", (1, 2, 11)), ("query/kernel", (7, 2, 3)),
                ("key/kernel", (9, 2, 3)), ("value_reuse/kernel", (8, 2, 5)),
                ("value_new/kernel", (8, 2, 5)), ("attention_output_reuse/kernel", (2, 5, 2, 3)),
                ("attention_output_new/kernel", (2, 5, 2, 3))]),
    (-1, True, [("value_reuse/kernel", (8, 4, 5)), ("value_reuse/bias", (4, 5)),
                ("attention_output_reuse/kernel", (4, 5, 2, 3)),
                ("attention_output_reuse/bias", (2, 3))]),
])
def test_reuse_weight_names_and_order(reuse, use_bias, expected):
    layer = attention.ReuseMultiHeadAttention(4, 3, value_dim=5, reuse_attention=reuse,
                                              use_relative_pe=True, pe_max_seq_length=6,
                                              use_bias=use_bias, output_shape=(2, 3))
    layer.build((1, 2, 7), (1, 3, 8), (1, 3, 9))
    assert list(zip(layer.weight_names, [w.shape for w in layer.get_weights()])) == expected


_WEIGHT_OPTIONS = {"kernel_initializer", "bias_initializer", "kernel_regularizer",
                   "bias_regularizer", "activity_regularizer", "kernel_constraint",
                   "bias_constraint"}
_KERAS_KEYS = {
    "Attention": {"name", "dtype", "use_scale", "score_mode", "dropout", "seed"},
    "AdditiveAttention": {"name", "dtype", "use_scale", "dropout", "seed"},
    "MultiHeadAttention": {
        "name", "dtype", "num_heads", "key_dim", "value_dim", "dropout", "use_bias", "use_gate",
        "output_shape", "attention_axes", "sliding_window", "kernel_initializer",
        "bias_initializer", "kernel_regularizer", "bias_regularizer", "activity_regularizer",
        "kernel_constraint", "bias_constraint", "seed"},
    "GroupedQueryAttention": {
        "name", "dtype", "head_dim", "num_query_heads", "num_key_value_heads", "use_bias",
        "use_gate", "sliding_window", "dropout", "seed"} | _WEIGHT_OPTIONS,
    # Model Garden's keys (with the input shapes it records to rebuild), plus our seed.
    "ReuseMultiHeadAttention": {
        "name", "dtype", "num_heads", "key_dim", "value_dim", "dropout", "use_bias",
        "output_shape", "attention_axes", "reuse_attention", "use_relative_pe",
        "pe_max_seq_length", "query_shape", "key_shape", "value_shape", "seed"} | _WEIGHT_OPTIONS,
}


@pytest.mark.parametrize("index", range(len(_layers())))
def test_config_round_trip(index):
    layer = _layers()[index]
    config = layer.get_config()
    keys = _KERAS_KEYS[type(layer).__name__] | {"trainable"} | ({"causal"} if config.get("causal") else set())
    assert set(config) == keys
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    _build(layer)
    _build(clone)
    clone.set_weights(layer.get_weights())
    rng = np.random.default_rng(0)
    q, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))
    np.testing.assert_array_equal(_call(layer, q, v), _call(clone, q, v))


def test_mha_config_values_and_properties():
    layer = _layers()[5]
    config = layer.get_config()
    assert config["value_dim"] == 4 and config["output_shape"] == (2, 5)
    assert config["kernel_initializer"]["class_name"] == "HeNormal"
    assert config["bias_initializer"]["config"] == {"value": 0.5}
    assert config["kernel_regularizer"]["config"] == {"l2": 0.01}
    assert config["bias_regularizer"]["config"] == {"l1": 0.1, "l2": 0.0}
    assert config["kernel_constraint"]["config"] == {"max_value": 2, "axis": 0}
    assert config["bias_constraint"]["class_name"] == "NonNeg"
    assert config["seed"] == 42 and config["dtype"] == "float64" and config["name"] == "mha"
    assert (layer.num_heads, layer.key_dim, layer.value_dim, layer.dropout, layer.use_bias,
            layer.attention_axes) == (3, 2, 4, 0.2, False, (1,))
    defaults = attention.MultiHeadAttention(2, 3).get_config()
    assert defaults["value_dim"] == 3 and defaults["kernel_regularizer"] is None
    assert defaults["kernel_initializer"]["class_name"] == "GlorotUniform"


def test_from_keras_config():
    """A config dict as Keras 3.15's get_config() gives it (DTypePolicy dict, trainable)."""
    keras_config = {
        "name": "multi_head_attention", "trainable": True,
        "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float64"},
                  "registered_name": None},
        "num_heads": 2, "key_dim": 3, "value_dim": 3, "dropout": 0.0, "use_bias": True,
        "use_gate": False, "output_shape": None, "attention_axes": None, "sliding_window": None,
        "kernel_initializer": {"module": "keras.initializers", "class_name": "Orthogonal",
                               "config": {"seed": None, "gain": 1.0}, "registered_name": None},
        "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {},
                             "registered_name": None},
        "kernel_regularizer": {"module": "keras.regularizers", "class_name": "L2",
                               "config": {"l2": 0.01}, "registered_name": None},
        "bias_regularizer": None,
        "activity_regularizer": {"module": "keras.regularizers", "class_name": "L1",
                                 "config": {"l1": 0.009999999776482582}, "registered_name": None},
        "kernel_constraint": {"module": "keras.constraints", "class_name": "MaxNorm",
                              "config": {"max_value": 2, "axis": 0}, "registered_name": None},
        "bias_constraint": None, "seed": None,
    }
    layer = attention.MultiHeadAttention.from_config(keras_config)
    assert layer.dtype == "float64"
    expected = dict(keras_config, dtype="float64")  # "trainable" kept, the policy as its name
    assert layer.get_config() == expected


def test_gqa_config_values_and_properties():
    layer = _layers()[7]
    config = layer.get_config()
    assert (config["head_dim"], config["num_query_heads"], config["num_key_value_heads"]) == (3, 6, 3)
    assert config["sliding_window"] == 2 and config["use_gate"] is True and config["dropout"] == 0.1
    assert config["kernel_initializer"]["class_name"] == "LecunNormal"
    assert config["kernel_regularizer"]["config"] == {"l1": 0.0, "l2": 0.2}
    assert config["bias_constraint"]["config"] == {"axis": 0}
    assert config["seed"] == 8 and config["dtype"] == "float64" and config["name"] == "gqa"
    assert (layer.head_dim, layer.num_query_heads, layer.num_key_value_heads, layer.dropout,
            layer.use_bias, layer.use_gate, layer.sliding_window) == (3, 6, 3, 0.1, False, True, 2)


def test_gqa_from_keras_config():
    """Keras 3.15's GroupQueryAttention(head_dim=3, num_query_heads=4, num_key_value_heads=2,
    sliding_window=2, dtype="float64", kernel_regularizer="l2").get_config()."""
    keras_config = {
        "name": "grouped_query_attention", "trainable": True,
        "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float64"},
                  "registered_name": None},
        "head_dim": 3, "num_query_heads": 4, "num_key_value_heads": 2, "use_bias": True,
        "use_gate": False, "sliding_window": 2, "dropout": 0.0,
        "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform",
                               "config": {"seed": None, "input_axes": None, "output_axes": None},
                               "registered_name": None},
        "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {},
                             "registered_name": None},
        "kernel_regularizer": {"module": "keras.regularizers", "class_name": "L2",
                               "config": {"l2": 0.01}, "registered_name": None},
        "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
        "bias_constraint": None, "seed": None,
    }
    layer = attention.GroupQueryAttention.from_config(keras_config)
    expected = dict(keras_config, dtype="float64")  # "trainable" kept, the policy as its name
    assert layer.get_config() == expected


def test_reuse_config_values_and_properties():
    layer = _layers()[9]
    config = layer.get_config()
    assert (config["num_heads"], config["key_dim"], config["value_dim"]) == (4, 2, 3)
    assert (config["reuse_attention"], config["use_relative_pe"], config["pe_max_seq_length"]) == (2, True, 4)
    assert config["output_shape"] == (2, 5) and config["attention_axes"] is None
    assert config["kernel_initializer"]["config"] == {"seed": None, "minval": -0.05, "maxval": 0.05}
    assert config["bias_regularizer"]["config"] == {"l1": 0.01}
    assert config["kernel_constraint"]["class_name"] == "NonNeg"
    assert config["seed"] == 9 and config["dtype"] == "float64" and config["name"] == "reuse"
    assert (config["query_shape"], config["key_shape"], config["value_shape"]) == (None, None, None)
    assert (layer.num_heads, layer.key_dim, layer.value_dim, layer.dropout, layer.reuse_attention,
            layer.use_relative_pe, layer.pe_max_seq_length, layer.use_bias) == (
        4, 2, 3, 0.2, 2, True, 4, False)
    # As upstream: -1 is stored as num_heads, value_dim None as key_dim, an int axis as a tuple.
    full = attention.ReuseMultiHeadAttention(3, 2, reuse_attention=-1, attention_axes=1)
    assert full.get_config()["reuse_attention"] == 3 and full.reuse_attention == 3
    assert full.get_config()["value_dim"] == 2 and full.get_config()["attention_axes"] == (1,)
    assert attention.ReuseMultiHeadAttention(2, 3).pe_max_seq_length == 512
    assert attention.ReuseMultiHeadAttention(2, 3, max_sequence_length=7).pe_max_seq_length == 7
    same = attention.ReuseMultiHeadAttention(2, 3, pe_max_seq_length=7, max_sequence_length=7)
    assert same.get_config()["pe_max_seq_length"] == 7 and "max_sequence_length" not in same.get_config()


def test_reuse_config_after_build_rebuilds():
    """Like Model Garden's, the config of a built layer records the input shapes, and
    from_config builds the new layer from them."""
    layer = attention.ReuseMultiHeadAttention(2, 3, reuse_attention=1, use_relative_pe=True,
                                              pe_max_seq_length=5)
    layer.build((None, 4, 6), (None, 5, 7))
    config = layer.get_config()
    assert (config["query_shape"], config["key_shape"], config["value_shape"]) == (
        (None, 4, 6), (None, 5, 7), (None, 5, 7))
    clone = attention.ReuseMultiHeadAttention.from_config(config)
    assert clone.built and clone.get_config() == config
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in layer.get_weights()]
    model_garden = {  # tf.keras 2 get_config(): TensorShapes as lists, "trainable"
        "name": "reuse_multi_head_attention", "trainable": True, "dtype": "float32",
        "num_heads": 2, "key_dim": 3, "value_dim": 3, "dropout": 0.0, "use_bias": True,
        "output_shape": None, "attention_axes": None, "reuse_attention": 0,
        "use_relative_pe": False, "pe_max_seq_length": 512, "kernel_initializer":
            {"module": "keras.initializers", "class_name": "GlorotUniform",
             "config": {"seed": None}, "registered_name": None},
        "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros",
                             "config": {}, "registered_name": None},
        "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
        "kernel_constraint": None, "bias_constraint": None,
        "query_shape": [None, 4, 8], "key_shape": [None, 6, 2], "value_shape": [None, 6, 8],
    }
    garden_layer = attention.ReuseMultiHeadAttention.from_config(model_garden)
    assert garden_layer.built
    assert [w.shape for w in garden_layer.get_weights()][:4] == [(8, 2, 3), (2, 3), (2, 2, 3), (2, 3)]
    unbuilt = attention.ReuseMultiHeadAttention.from_config({**model_garden, "key_shape": None})
    assert not unbuilt.built


def test_default_names_are_unique():
    a, b = attention.Attention(), attention.Attention()
    assert a.name.startswith("attention") and a.name != b.name
    assert attention.MultiHeadAttention(1, 1).name.startswith("multi_head_attention")
    assert attention.ReuseMultiHeadAttention(1, 1).name.startswith("reuse_multi_head_attention")


# -- initializers -----------------------------------------------------------------------------

def _mha_kernels(seed, **kwargs):
    """query/kernel (64, 4, 16) and attention_output/kernel (4, 16, 64): fan_in = fan_out = 64
    for both (Keras's EinsumDense axes), 4096 values each."""
    layer = attention.MultiHeadAttention(4, 16, seed=seed, **kwargs)
    layer.build((1, 2, 64), (1, 2, 64))
    return dict(zip(layer.weight_names, layer.get_weights()))


def test_initialisation_is_reproducible_for_a_seed():
    a, b, c = _mha_kernels(7), _mha_kernels(7), _mha_kernels(8)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["query/kernel"], c["query/kernel"])
    assert not np.array_equal(a["query/kernel"], a["key/kernel"])  # one stream per weight
    np.testing.assert_array_equal(a["query/bias"], 0)  # bias default: zeros
    additive = [attention.AdditiveAttention(seed=s) for s in (7, 7, 8)]
    for layer in additive:
        layer.build([(1, 2, 64), (1, 3, 64)])
    scales = [layer.get_weights()[0] for layer in additive]
    np.testing.assert_array_equal(scales[0], scales[1])
    assert not np.array_equal(scales[0], scales[2])
    limit = math.sqrt(6 / 128)  # glorot uniform of a (64,) vector: fan_in = fan_out = 64
    assert np.all(np.abs(scales[0]) <= limit) and np.max(np.abs(scales[0])) > 0.8 * limit


_TRUNCATED_STD = 0.87962566103423978  # std of a unit normal truncated at ±2


@pytest.mark.parametrize("spec, bound, std, mean", [
    ("glorot_uniform", math.sqrt(6 / 128), math.sqrt(6 / 128) / math.sqrt(3), 0.0),
    ("glorot_normal", 2 * math.sqrt(2 / 128) / _TRUNCATED_STD, math.sqrt(2 / 128), 0.0),
    ("he_uniform", math.sqrt(6 / 64), math.sqrt(6 / 64) / math.sqrt(3), 0.0),
    ("he_normal", 2 * math.sqrt(2 / 64) / _TRUNCATED_STD, math.sqrt(2 / 64), 0.0),
    ("lecun_uniform", math.sqrt(3 / 64), math.sqrt(3 / 64) / math.sqrt(3), 0.0),
    ("lecun_normal", 2 * math.sqrt(1 / 64) / _TRUNCATED_STD, math.sqrt(1 / 64), 0.0),
    ("random_normal", None, 0.05, 0.0),
    ({"class_name": "RandomNormal", "config": {"mean": 1.0, "stddev": 0.1}}, None, 0.1, 1.0),
    ("random_uniform", 0.05, 0.05 / math.sqrt(3), 0.0),
    ({"class_name": "RandomUniform", "config": {"minval": 0.2, "maxval": 0.4}}, 0.4,
     0.2 / math.sqrt(12), 0.3),
    ("truncated_normal", 0.1, 0.05 * _TRUNCATED_STD, 0.0),
    ({"class_name": "TruncatedNormal", "config": {"mean": -1.0, "stddev": 0.2}}, 1.4,
     0.2 * _TRUNCATED_STD, -1.0),
])
def test_random_initializer_statistics(spec, bound, std, mean):
    kernels = _mha_kernels(123, kernel_initializer=spec)
    for name in ("query/kernel", "attention_output/kernel"):
        w = kernels[name].astype(np.float64)
        if bound is not None:
            assert np.max(np.abs(w)) <= bound * (1 + 1e-6), name
            assert np.max(np.abs(w)) > 0.8 * bound, name
        assert abs(np.mean(w) - mean) < 4 * std / 64 + 1e-12, name
        assert abs(np.std(w) / std - 1) < 0.1, (name, np.std(w), std)


@pytest.mark.parametrize("spec, value", [
    ("zeros", 0.0), ("ones", 1.0),
    ({"class_name": "Constant", "config": {"value": 0.25}}, 0.25),
    ({"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.0}}, 0.0),
])
def test_constant_initializers(spec, value):
    kernels = _mha_kernels(1, kernel_initializer=spec, bias_initializer=spec)
    for w in kernels.values():
        np.testing.assert_array_equal(w, np.float32(value))


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonal_initializer(gain):
    config = {"class_name": "Orthogonal", "config": {"gain": gain}}
    kernels = _mha_kernels(5, kernel_initializer=config)
    for name in ("query/kernel", "attention_output/kernel"):
        w = kernels[name].astype(np.float64)
        matrix = w.reshape(-1, w.shape[-1])  # Keras: (prod(shape[:-1]), shape[-1])
        gram = matrix.T @ matrix if matrix.shape[0] >= matrix.shape[1] else matrix @ matrix.T
        np.testing.assert_allclose(gram, gain**2 * np.eye(len(gram)), atol=1e-4 * gain**2)


@pytest.mark.parametrize("kind, kwargs, shape", [
    ("MultiHeadAttention", dict(num_heads=3, key_dim=4, value_dim=5, use_gate=True), (2, 5, 6)),
    ("MultiHeadAttention", dict(num_heads=3, key_dim=4, attention_axes=(1, 3)), (2, 3, 2, 4, 6)),
    ("MultiHeadAttention", dict(num_heads=2, key_dim=4, attention_axes=(2,), use_bias=False), (2, 3, 4, 6)),
    ("GroupQueryAttention", dict(head_dim=4, num_query_heads=4, num_key_value_heads=2), (2, 5, 8)),
])
def test_self_attention_shares_one_projection_pass(kind, kwargs, shape):
    """Self-attention (one tensor as query, key and value) projects Q, K and V in one GEMM
    pass; the result equals the separate projections of three distinct buffers, bit for bit."""
    layer = getattr(attention, kind)(**kwargs, dtype="float64", seed=3)
    x = np.random.default_rng(1).normal(size=shape)
    np.testing.assert_array_equal(layer(x, x), layer(x, x.copy(), x.copy()))
