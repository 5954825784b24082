"""The key/value cache of MultiHeadAttention and GroupQueryAttention (issue 17).

- keras_hub's CachedMultiHeadAttention, step by step (Tests/golden/cache/cached_multi_head_attention,
  written by Tests/golden/make_cache_golden.py): every step's output, scores and cache, given the
  same (B, T, S_max) masks, index and cache; and the same steps with use_causal_mask and the
  padding as value_mask instead of the mask tensor.
- Keras's MultiHeadAttention and GroupQueryAttention on the whole prefix with the causal mask
  (golden): each cached step's rows.
- Our plain layer on the whole prefix (no Keras): random configs, float32 and float64 (1e-10),
  gate, sliding window, padding masks, scores, prefill then steps.
- Ragged batches (one index per row) = each sequence alone = the plain layer on each prefix;
  the unfilled cache (NaN here) is never read with use_causal_mask.
- The cache is updated in place (the same object returned) when it can be, else a copy;
  dropout in training against a numpy formula; activity penalties; threads; errors.
"""

import json
import threading
from pathlib import Path

import numpy as np
import pytest

import attention
from attention import reference
from conftest import assert_close

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "cache"
HUB_FILES = sorted((GOLDEN / "cached_multi_head_attention").glob("*.npz"))
PREFIX_FILES = sorted(GOLDEN.glob("*_prefix/*.npz"))
DTYPES = ("float32", "float64")


def _ids(files):
    return [f"{f.parent.name}/{f.stem}" for f in files]


def _golden_dtype(case):
    """The tolerance's dtype: float32 where Keras computed part of a float64 case in float32."""
    return np.float32 if bool(case["float32_compute"]) else np.dtype(str(case["dtype"]))


def _weights(case):
    return [case[f"weight_{i}"] for i in range(int(case["weight_count"]))]


def _optional(case, name):
    return case[name] if name in case.files else None


# -- keras_hub's CachedMultiHeadAttention -------------------------------------------------------

def _hub_layer(case):
    config = json.loads(str(case["config"]))
    layer = attention.MultiHeadAttention(**config, dtype=str(case["dtype"]))
    x, key = case["x"], _optional(case, "key")
    layer.build(x.shape, x.shape, None if key is None else key.shape)
    layer.set_weights(_weights(case))
    return layer, config


def test_hub_golden_files_exist():
    assert len(HUB_FILES) >= 30 and len(PREFIX_FILES) >= 40


@pytest.mark.parametrize("path", HUB_FILES, ids=_ids(HUB_FILES))
def test_keras_hub_steps(path):
    """Every step equals keras_hub's call with the same weights, masks, index and cache; the
    cache is updated in place and equals keras_hub's after each step."""
    with np.load(path) as case:
        layer, config = _hub_layer(case)
        call = json.loads(str(case["call"]))
        dtype = _golden_dtype(case)
        x, key = case["x"], _optional(case, "key")
        static = call["cache_update_index"] is None
        cache = case["cache"].copy() if static else np.zeros(
            (x.shape[0], 2, call["s_max"], config["num_heads"], config["key_dim"]), str(case["dtype"]))
        scores_wanted = call["return_attention_scores"]
        p = 0
        for k, t in enumerate(call["schedule"]):
            mask = (np.broadcast_to(case["encoder_valid"][:, None, :], (x.shape[0], t, call["s_max"])) if static
                    else case[f"step{k}_attention_mask"])
            result = layer(x[:, p:p + t], x[:, p:p + t], key=None if key is None else key[:, p:p + t],
                           attention_mask=mask, cache=cache, cache_update_index=None if static else p,
                           return_attention_scores=scores_wanted)
            output, scores, returned = result if scores_wanted else (result[0], None, result[1])
            assert returned is cache
            assert_close(output, case[f"step{k}_output"], dtype, f"step {k} output")
            if scores_wanted:
                assert_close(scores, case[f"step{k}_scores"], dtype, f"step {k} scores")
            if not static:
                assert_close(cache, case[f"step{k}_cache"], np.dtype(str(case["dtype"])), f"step {k} cache")
            p += t
        if static:
            assert np.array_equal(cache, case["cache"])  # a static cache is never written


@pytest.mark.parametrize("path", [f for f in HUB_FILES if "static" not in f.name], ids=_ids(
    [f for f in HUB_FILES if "static" not in f.name]))
def test_keras_hub_steps_with_causal_flag(path):
    """The same steps with use_causal_mask and the padding as value_mask (no mask tensor):
    equal to keras_hub's rows, but rows with no visible key (left padding), which are 0 here
    (keras_hub's fused path makes them uniform over the whole cache)."""
    with np.load(path) as case:
        layer, config = _hub_layer(case)
        call = json.loads(str(case["call"]))
        dtype = _golden_dtype(case)
        x, key, valid = case["x"], _optional(case, "key"), case["valid"]
        b, length = valid.shape
        value_mask = np.zeros((b, call["s_max"]), bool)
        value_mask[:, :length] = valid
        cache = np.full((b, 2, call["s_max"], config["num_heads"], config["key_dim"]), np.nan, str(case["dtype"]))
        scores_wanted = call["return_attention_scores"]
        p = 0
        for k, t in enumerate(call["schedule"]):
            result = layer(x[:, p:p + t], x[:, p:p + t], key=None if key is None else key[:, p:p + t],
                           value_mask=value_mask, use_causal_mask=True, cache=cache, cache_update_index=p,
                           return_attention_scores=scores_wanted)
            output, scores = result[0], (result[1] if scores_wanted else None)
            # A row that sees no key attends to nothing here: its output is the output
            # projection's bias (0 without biases).
            seen = case[f"step{k}_attention_mask"].any(-1)  # (B, t)
            bias = layer.get_weights()[-1] if config["use_bias"] else 0
            expected = np.where(seen[..., None], case[f"step{k}_output"], bias)
            assert_close(output, expected, dtype, f"step {k} output")
            if scores_wanted:
                assert_close(scores, case[f"step{k}_scores"], dtype, f"step {k} scores")
            assert not np.isnan(output).any()
            p += t
        assert np.isnan(cache[:, :, p:]).all()  # the unfilled part was neither written nor read


@pytest.mark.parametrize("path", PREFIX_FILES, ids=_ids(PREFIX_FILES))
def test_whole_prefix_golden(path):
    """Each cached step (use_causal_mask, padding as value_mask) equals the rows of Keras's
    MultiHeadAttention / GroupQueryAttention run on the whole prefix with the causal mask."""
    with np.load(path) as case:
        kind = str(case["layer"])
        config = json.loads(str(case["config"]))
        call = json.loads(str(case["call"]))
        dtype = _golden_dtype(case)
        x, valid = case["x"], case["valid"]
        layer = getattr(attention, kind)(**config, dtype=str(case["dtype"]))
        layer.build(x.shape, x.shape)
        layer.set_weights(_weights(case))
        b, length = valid.shape
        s_max = length + 3
        if kind == "MultiHeadAttention":
            kv_heads, width = config["num_heads"], config["key_dim"]
        else:
            kv_heads, width = config["num_key_value_heads"], config["head_dim"]
        value_mask = np.zeros((b, s_max), bool)
        value_mask[:, :length] = valid
        cache = np.full((b, 2, s_max, kv_heads, width), np.nan, str(case["dtype"]))
        scores_wanted = call["return_attention_scores"]
        p = 0
        for k, t in enumerate(call["schedule"]):
            result = layer(x[:, p:p + t], x[:, p:p + t], value_mask=None if call["padding"] is None else value_mask,
                           use_causal_mask=True, cache=cache, cache_update_index=p,
                           return_attention_scores=scores_wanted)
            assert_close(result[0], case[f"step{k}_output"], dtype, f"step {k} output")
            if scores_wanted:
                scores = result[1]
                assert_close(scores[..., :p + t], case[f"step{k}_scores"], dtype, f"step {k} scores")
                assert not scores[..., p + t:].any()
            p += t


# -- against our plain layer on the whole prefix (no Keras) --------------------------------------

CONFIGS = [
    ("mha", dict(num_heads=2, key_dim=4)),
    ("mha", dict(num_heads=3, key_dim=5, use_gate=True, sliding_window=3)),
    ("mha", dict(num_heads=4, key_dim=16, use_bias=False, output_shape=(7,))),
    ("mha", dict(num_heads=1, key_dim=33, sliding_window=2)),
    ("gqa", dict(head_dim=4, num_query_heads=4, num_key_value_heads=2)),
    ("gqa", dict(head_dim=8, num_query_heads=6, num_key_value_heads=1, use_gate=True)),
    ("gqa", dict(head_dim=5, num_query_heads=8, num_key_value_heads=8, sliding_window=4, use_bias=False)),
    ("gqa", dict(head_dim=17, num_query_heads=6, num_key_value_heads=3)),
]


def _make(kind, config, dtype, seed=3):
    if kind == "mha":
        layer = attention.MultiHeadAttention(**config, seed=seed, dtype=dtype)
        return layer, config["num_heads"], config["key_dim"]
    layer = attention.GroupQueryAttention(**config, seed=seed, dtype=dtype)
    return layer, config["num_key_value_heads"], config["head_dim"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scores", [False, True])
@pytest.mark.parametrize("kind,config", CONFIGS, ids=[f"{k}{i}" for i, (k, _) in enumerate(CONFIGS)])
def test_steps_equal_the_whole_prefix(kind, config, scores, dtype):
    """Prefill then tokens one by one (and a two-token step): every step's output equals the
    rows of the plain layer on the whole prefix with use_causal_mask; B = 3 rows of different
    lengths by a right-padding value_mask; the unfilled cache holds NaN and is never read."""
    rng = np.random.default_rng(hash((kind, str(config), scores)) % 2**32)
    layer, kv, width = _make(kind, config, dtype)
    b, length, dim = 3, 12, 10
    x = rng.standard_normal((b, length, dim)).astype(dtype)
    valid = np.arange(length)[None, :] < np.array([12, 7, 9])[:, None]
    s_max = 16
    value_mask = np.zeros((b, s_max), bool)
    value_mask[:, :length] = valid
    cache = np.full((b, 2, s_max, kv, width), np.nan, dtype)
    p = 0
    for t in (5, 1, 1, 2, 1, 1, 1):
        prefix = x[:, :p + t]
        expected = layer(prefix, prefix, value_mask=valid[:, :p + t], use_causal_mask=True,
                         return_attention_scores=scores)
        result = layer(x[:, p:p + t], x[:, p:p + t], value_mask=value_mask, use_causal_mask=True, cache=cache,
                       cache_update_index=p, return_attention_scores=scores)
        assert result[-1] is cache
        want_output, want_scores = (expected[0], expected[1][:, :, p:p + t]) if scores else (expected, None)
        # A row whose window holds only padding sees no key: the plain layer's fused path
        # makes it uniform over the prefix, a cached causal step 0 (so the output bias).
        rows = p + np.arange(t)
        keys = np.arange(p + t)[None, :]
        window = config.get("sliding_window") or s_max
        band = (keys <= rows[:, None]) & (keys > rows[:, None] - window)
        seen = (band[None] & valid[:, None, :p + t]).any(-1)[..., None]
        bias = layer.get_weights()[-1] if config.get("use_bias", True) else 0
        assert_close(result[0], np.where(seen, want_output[:, p:p + t], bias), what=f"step at {p}")
        if scores:
            assert_close(result[1][..., :p + t], want_scores, what=f"scores at {p}")
            assert not result[1][..., p + t:].any()
        p += t
    assert np.isnan(cache[:, :, p:]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,config", CONFIGS, ids=[f"{k}{i}" for i, (k, _) in enumerate(CONFIGS)])
def test_ragged_batch(kind, config, dtype):
    """One index per batch row: sequences of lengths 2, 9, 5 decode together, each equal to
    itself alone (B = 1) and to the plain layer on its own prefix; no row reads another's
    unfilled part (NaN)."""
    rng = np.random.default_rng(7)
    layer, kv, width = _make(kind, config, dtype)
    lengths = np.array([2, 9, 5])
    b, dim, s_max, steps = 3, 10, 14, 4
    x = rng.standard_normal((b, 9 + steps, dim)).astype(dtype)
    cache = np.full((b, 2, s_max, kv, width), np.nan, dtype)
    for row in range(b):  # prefill each row alone, into its part of the cache
        view = cache[row:row + 1]
        _, returned = layer(x[row:row + 1, :lengths[row]], x[row:row + 1, :lengths[row]], use_causal_mask=True,
                            cache=view, cache_update_index=0)
        assert returned is view
    position = lengths.copy()
    tokens = [x[np.arange(b), lengths]]  # the first new token of each row: x[b, lengths[b]]
    for step in range(steps):
        token = x[np.arange(b), position][:, None]
        output, returned = layer(token, token, use_causal_mask=True, cache=cache, cache_update_index=position)
        assert returned is cache
        for row in range(b):
            prefix = x[row:row + 1, :position[row] + 1]
            expected = layer(prefix, prefix, use_causal_mask=True)[:, -1:]
            assert_close(output[row:row + 1], expected, what=f"row {row} step {step}")
        position += 1
    assert tokens
    for row in range(b):
        assert np.isnan(cache[row, :, position[row]:]).all()
        assert not np.isnan(cache[row, :, :position[row]]).any()


def test_ragged_index_equals_shared_index_when_equal():
    layer, kv, width = _make("mha", dict(num_heads=2, key_dim=4), "float64")
    x = np.random.default_rng(1).standard_normal((2, 6, 5))
    a = np.zeros((2, 2, 8, kv, width))
    c = np.zeros((2, 2, 8, kv, width))
    out_a, _ = layer(x, x, use_causal_mask=True, cache=a, cache_update_index=1)
    out_c, _ = layer(x, x, use_causal_mask=True, cache=c, cache_update_index=np.array([1, 1]))
    assert np.array_equal(out_a, out_c) and np.array_equal(a, c)


def test_index_count_error_names_python_arguments():
    layer, kv, width = _make("mha", dict(num_heads=2, key_dim=4), "float64")
    x = np.random.default_rng(1).standard_normal((2, 6, 5))
    with pytest.raises(ValueError) as raised:
        layer(x, x, use_causal_mask=True, cache=np.zeros((2, 2, 8, kv, width)), cache_update_index=np.array([1, 1, 1]))
    message = str(raised.value)
    assert "cache_update_index has 3 entries" in message and "the batch size (2)" in message
    assert "args->" not in message


# -- the cache object ---------------------------------------------------------------------------

def test_in_place_and_copies():
    layer, kv, width = _make("gqa", dict(head_dim=4, num_query_heads=4, num_key_value_heads=2), "float32")
    x = np.random.default_rng(2).standard_normal((1, 3, 6)).astype(np.float32)
    cache = np.zeros((1, 2, 5, kv, width), np.float32)
    out, returned = layer(x, x, use_causal_mask=True, cache=cache, cache_update_index=0)
    assert returned is cache and cache[:, :, :3].any() and not cache[:, :, 3:].any()
    # float64 into a float32 layer: a float32 copy comes back, the argument is untouched.
    original = np.zeros((1, 2, 5, kv, width))
    out2, copy = layer(x, x, use_causal_mask=True, cache=original, cache_update_index=0)
    assert copy is not original and copy.dtype == np.float32 and not original.any()
    assert np.array_equal(copy, cache) and np.array_equal(out2, out)
    # read-only: copied when updated, used as it is when not.
    frozen = cache.copy()
    frozen.flags.writeable = False
    _, copy = layer(x[:, :1], x[:, :1], cache=frozen, cache_update_index=3)
    assert copy is not frozen and np.array_equal(frozen, cache)
    _, same = layer(x[:, :1], x[:, :1], cache=frozen)
    assert same is frozen
    # a list works too (a copy).
    _, copy = layer(x[:, :1], x[:, :1], cache=cache.tolist(), cache_update_index=3)
    assert isinstance(copy, np.ndarray) and copy[:, :, 3].any()
    # a non-contiguous view: a copy, the view untouched.
    big = np.zeros((1, 2, 10, kv, width), np.float32)
    view = big[:, :, ::2]
    _, copy = layer(x, x, cache=view, cache_update_index=0)
    assert copy is not view and not big.any()


def test_half_precision_policy_returns_the_cache_in_compute_dtype():
    layer = attention.MultiHeadAttention(num_heads=2, key_dim=3, seed=1, dtype="mixed_float16")
    x = np.random.default_rng(3).standard_normal((1, 2, 4)).astype(np.float16)
    cache = np.zeros((1, 2, 4, 2, 3), np.float16)
    out, returned = layer(x, x, use_causal_mask=True, cache=cache, cache_update_index=0)
    assert out.dtype == np.float16 and returned.dtype == np.float16 and returned is not cache
    inplace = np.zeros((1, 2, 4, 2, 3), np.float32)  # the layer's computation dtype: in place
    _, same = layer(x, x, use_causal_mask=True, cache=inplace, cache_update_index=0)
    assert same is inplace and np.allclose(inplace, returned, atol=1e-2)


def test_static_cache_reads_value_not():
    """Without cache_update_index the cache is used as it is and value/key are not read."""
    layer, kv, width = _make("mha", dict(num_heads=2, key_dim=3), "float64")
    rng = np.random.default_rng(4)
    query = rng.standard_normal((2, 3, 5))
    cache = rng.standard_normal((2, 2, 6, kv, width))
    out1, same = layer(query, query, cache=cache)
    out2, _ = layer(query, np.full((2, 1, 5), np.nan), cache=cache)
    assert same is cache and np.array_equal(out1, out2)
    # = attention of the projected query over the cache's keys and values.
    wq, bq, wk, bk, wv, bv, wo, bo = layer.get_weights()
    q = np.einsum("btd,dnh->btnh", query, wq) + bq
    logits = np.einsum("btnh,bsnh->bnts", q / np.sqrt(width), cache[:, 0])
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    expected = np.einsum("bnts,bsnh->btnh", weights, cache[:, 1])
    expected = np.einsum("btnh,nhd->btd", expected, wo) + bo
    assert_close(out1, expected)


# -- training, losses, threads ------------------------------------------------------------------

def test_dropout_in_training_follows_the_formula():
    """Dropout with a cache: the library's Philox mask over the scores (B, N, T, S_max), kept
    weights / (1 - rate), the causal band at index + i — checked against numpy."""
    rate, seed = 0.3, 11
    layer = attention.MultiHeadAttention(num_heads=2, key_dim=3, dropout=rate, seed=seed, dtype="float64")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5, 4))
    s_max, p, t = 7, 3, 2
    cache = np.zeros((2, 2, s_max, 2, 3))
    layer(x[:, :p], x[:, :p], use_causal_mask=True, cache=cache, cache_update_index=0)
    stream = layer.dropout_stream
    out, scores, _ = layer(x[:, p:p + t], x[:, p:p + t], use_causal_mask=True, cache=cache, cache_update_index=p,
                           training=True, return_attention_scores=True)
    wq, bq, wk, bk, wv, bv, wo, bo = layer.get_weights()
    q = np.einsum("btd,dnh->btnh", x[:, p:p + t], wq) + bq
    logits = np.einsum("btnh,bsnh->bnts", q / np.sqrt(3), cache[:, 0])
    keep = np.arange(s_max)[None, :] <= (p + np.arange(t))[:, None]
    logits = np.where(keep, logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    assert_close(scores, weights, what="scores (before dropout)")
    dropped = weights * reference.dropout_keep(weights.shape, rate, seed, stream) / (1 - rate)
    expected = np.einsum("bnts,bsnh->btnh", dropped, cache[:, 1])
    expected = np.einsum("btnh,nhd->btd", expected, wo) + bo
    assert_close(out, expected)
    assert layer.dropout_stream == stream + 1


def test_activity_penalties_of_a_cached_call():
    reg = {"class_name": "L2", "config": {"l2": 0.1}}
    layer = attention.GroupQueryAttention(head_dim=3, num_query_heads=4, num_key_value_heads=2, seed=2,
                                          use_gate=True, activity_regularizer=reg, dtype="float64")
    x = np.random.default_rng(6).standard_normal((2, 3, 4))
    cache = np.zeros((2, 2, 5, 2, 3))
    out, scores, _ = layer(x, x, use_causal_mask=True, cache=cache, cache_update_index=1,
                           return_attention_scores=True)
    wq, bq, wk, bk, wg, bg, wv, bv, wo, bo = layer.get_weights()

    def penalty(a):
        return 0.1 * float(np.sum(np.square(a))) / 2

    q = np.einsum("btd,dnh->btnh", x, wq) + bq
    k = np.einsum("btd,dnh->btnh", x, wk) + bk
    v = np.einsum("btd,dnh->btnh", x, wv) + bv
    g = 1 / (1 + np.exp(-(np.einsum("btd,dnh->btnh", x, wg) + bg)))
    expected = [penalty(q), penalty(k), penalty(g), penalty(v), penalty(out), penalty(out), penalty(scores)]
    np.testing.assert_allclose(layer.losses, expected, rtol=1e-12)
    assert np.array_equal(cache[:, 0, 1:4], k) or np.allclose(cache[:, 0, 1:4], k, atol=1e-14)


def test_threads_each_with_its_own_cache():
    """One layer, several threads decoding their own sequences with their own caches at once:
    the results of serial runs, bit for bit."""
    layer, kv, width = _make("gqa", dict(head_dim=8, num_query_heads=4, num_key_value_heads=2), "float32")
    rng = np.random.default_rng(8)
    xs = [rng.standard_normal((1, 20, 12)).astype(np.float32) for _ in range(4)]

    def decode(x):
        cache = np.zeros((1, 2, 24, kv, width), np.float32)
        outs = [layer(x[:, :4], x[:, :4], use_causal_mask=True, cache=cache, cache_update_index=0)[0]]
        for p in range(4, 20):
            outs.append(layer(x[:, p:p + 1], x[:, p:p + 1], use_causal_mask=True, cache=cache,
                              cache_update_index=p)[0])
        return np.concatenate(outs, 1), cache

    serial = [decode(x) for x in xs]
    results = [None] * len(xs)

    def run(i):
        results[i] = decode(xs[i])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(xs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for (a, ca), (b, cb) in zip(serial, results):
        assert np.array_equal(a, b) and np.array_equal(ca, cb)


def test_gradients_refuse_a_cache_in_c():
    """The Python gradients() takes no cache; the C entry point refuses one (test_cache.c)."""
    layer = attention.MultiHeadAttention(num_heads=2, key_dim=3)
    with pytest.raises(TypeError):
        layer.gradients(np.zeros((1, 2, 4)), np.zeros((1, 2, 4)), output_gradient=np.zeros((1, 2, 4)),
                        cache=np.zeros((1, 2, 3, 2, 3)))


# -- errors -------------------------------------------------------------------------------------

def _error_layer():
    layer = attention.MultiHeadAttention(num_heads=2, key_dim=3, seed=1)
    x = np.zeros((2, 1, 4), np.float32)
    cache = np.zeros((2, 2, 5, 2, 3), np.float32)
    return layer, x, cache


@pytest.mark.parametrize("change,error,message", [
    (dict(cache=None, cache_update_index=0), ValueError, "should not be set if `cache` is `None`"),
    (dict(cache_update_index=-1), ValueError, r"cache_update_index is -1; an index into the cache is >= 0"),
    (dict(cache_update_index=5), ValueError, r"past the cache's max_length 5"),
    (dict(cache_update_index=np.array([0, 5])), ValueError, r"cache_update_index\[1\] is 5"),
    (dict(cache_update_index=np.array([0, 1, 2])), ValueError, "pass 1 .* or the batch size \\(2\\)"),
    (dict(cache_update_index=np.array([[0, 1]])), ValueError, "1-D array"),
    (dict(cache_update_index=0.5), TypeError, "integer"),
    (dict(cache_update_index=True), TypeError, "integer"),
    (dict(cache_update_index=2**64), ValueError, "64-bit"),
    (dict(cache=np.zeros((2, 2, 5, 3, 3), np.float32)), ValueError, r"\(2, 2, S_max, 2, 3\)"),
    (dict(cache=np.zeros((1, 2, 5, 2, 3), np.float32)), ValueError, "cache has shape"),
    (dict(cache=np.zeros((2, 3, 5, 2, 3), np.float32)), ValueError, "keys at"),
    (dict(cache=np.zeros((2, 5, 2, 3), np.float32)), ValueError, "cache has shape"),
    (dict(cache=np.zeros((2, 2, 5, 2, 3), np.complex64)), TypeError, "numeric"),
])
def test_bad_cache_arguments(change, error, message):
    layer, x, cache = _error_layer()
    kwargs = {"cache": cache, "cache_update_index": 0, **change}
    with pytest.raises(error, match=message):
        layer(x, x, use_causal_mask=True, **kwargs)


def test_causal_positions_past_the_cache():
    layer, x, cache = _error_layer()
    query = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="with use_causal_mask the 3 query rows"):
        layer(query, x, use_causal_mask=True, cache=cache, cache_update_index=3)
    layer(query, x, cache=cache, cache_update_index=3)  # without it, only the write must fit


def test_layers_that_take_no_cache():
    layer = attention.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=4)
    x = np.zeros((1, 2, 4), np.float32)
    with pytest.raises(ValueError, match="value_dim == key_dim"):
        layer(x, x, cache=np.zeros((1, 2, 3, 2, 3), np.float32), cache_update_index=0)
    layer4 = attention.MultiHeadAttention(num_heads=2, key_dim=3, attention_axes=(1, 2))
    x4 = np.zeros((1, 2, 2, 4), np.float32)
    with pytest.raises(ValueError, match="rank-3 inputs"):
        layer4(x4, x4, cache=np.zeros((1, 2, 3, 2, 3), np.float32), cache_update_index=0)
    with pytest.raises(TypeError):
        attention.Attention()([x, x], cache=np.zeros(1))


def test_scores_shape_with_a_cache():
    layer, x, cache = _error_layer()
    out, scores, _ = layer(x, x, cache=cache, cache_update_index=2, use_causal_mask=True,
                           return_attention_scores=True)
    assert out.shape == (2, 1, 4) and scores.shape == (2, 2, 1, 5)
    assert not scores[..., 3:].any() and np.allclose(scores.sum(-1), 1)

