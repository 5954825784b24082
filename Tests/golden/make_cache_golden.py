"""Write the key/value cache golden files (issue 17): decoders stepping through sequences with
keras_hub's CachedMultiHeadAttention, and Keras's MultiHeadAttention / GroupQueryAttention on
the whole prefix, whose rows a cached step must reproduce.

Each case is Tests/golden/cache/<group>/<case>_<dtype>.npz (format: README.md, "Key/value cache
files"). Run where Keras 3.15, JAX and keras-hub 0.32 are installed:
    KERAS_BACKEND=jax JAX_ENABLE_X64=1 <python> Tests/golden/make_cache_golden.py [group ...]
Inputs and weights come from numpy generators seeded by the case name: a rerun writes the same
numbers. Every call runs with training=False.

Groups:
  cached_multi_head_attention     keras_hub.layers.CachedMultiHeadAttention, step by step: a
                                  prefill of several tokens, then tokens one (or two) at a time,
                                  each call given keras_hub's (B, T, S_max) attention_mask (key j
                                  visible to query row i when j <= index + i and j is not
                                  padding), cache_update_index and the cache the previous step
                                  returned; rows of different lengths by padding masks (left
                                  padding gives fully masked rows). Plus static caches
                                  (cache_update_index None: cross-attention).
  multi_head_attention_prefix     keras.layers.MultiHeadAttention on the whole prefix with
                                  use_causal_mask (gate, sliding window, output_shape, right
                                  padding as value_mask): each step's rows of that output.
  group_query_attention_prefix    keras.layers.GroupQueryAttention likewise.
"""

import sys

from golden_npz import B, DTYPES, OUT, generator, write_case
from keras_jax import GQA_DEFAULTS, MHA_DEFAULTS, keras, np, set_random_weights

try:
    import keras_hub
except ImportError as error:
    sys.exit(f"make_cache_golden.py needs keras-hub 0.32 ({error}).")
if not keras_hub.__version__.startswith("0.32."):
    sys.exit(f"make_cache_golden.py reproduces keras-hub 0.32; found {keras_hub.__version__}.")
from keras_hub.layers import CachedMultiHeadAttention  # noqa: E402

CACHE = OUT / "cache"
HUB = "cached_multi_head_attention"
MHA_PREFIX = "multi_head_attention_prefix"
GQA_PREFIX = "group_query_attention_prefix"
FUSED_NOTE = (
    "Keras-JAX's fused path (rank-4 projections, no scores, dropout 0) runs keras.ops.dot_product_attention, "
    "which casts float64 to float32: the attention core of the float64 file is float32.")
GATE_NOTE = "keras_hub's CachedMultiHeadAttention overrides call() and never applies the gate; not used here."


def save(group, name, dtype, layer, config, call, weights, inputs, outputs, fused, note=None):
    (CACHE / group).mkdir(parents=True, exist_ok=True)
    write_case(f"cache/{group}", name, dtype, layer, config, call, weights, inputs, outputs,
               stamps={"keras_version": keras.__version__, "keras_hub_version": keras_hub.__version__,
                       "backend": keras.backend.backend()},
               softmax_in_float32=fused, float32_compute=fused, notes=(note, fused and FUSED_NOTE))


def lengths(rng, padding, length):
    """Valid tokens per batch row: all, or (padding) between half and all of them."""
    if padding is None:
        return np.full(B, length)
    return np.array([length, max(2, length // 2 + int(rng.integers(0, length // 2)))][:B])


def valid_mask(lens, length, padding):
    """(B, length) True at real tokens: the first lens[b] (right padding) or the last (left)."""
    positions = np.arange(length)
    if padding == "left":
        return positions[None, :] >= (length - lens)[:, None]
    return positions[None, :] < lens[:, None]


def hub_case(name, *, heads=2, key_dim=3, dim=4, s_max=10, schedule=(4, 1, 1, 1), padding=None, scores=False,
             key_dim_input=None, use_bias=True, output_shape=None, dropout=0.0):
    """keras_hub's CachedMultiHeadAttention decoding B sequences of self-attention input x
    (key from its own input when key_dim_input): the calls a keras_hub decoder makes."""
    config = {"num_heads": heads, "key_dim": key_dim, "use_bias": use_bias, "output_shape": output_shape,
              "dropout": dropout}
    length = sum(schedule)
    fused = not scores and dropout == 0
    for dtype in DTYPES:
        rng = generator(HUB, name)
        x = rng.normal(size=(B, length, dim)).astype(dtype)
        key = None if key_dim_input is None else rng.normal(size=(B, length, key_dim_input)).astype(dtype)
        layer = CachedMultiHeadAttention(**config, dtype=dtype)
        layer.build(x.shape, x.shape, None if key is None else key.shape)
        weights = set_random_weights(layer, rng, dtype, lambda r, shape: r.normal(size=shape) * 0.5)
        valid = valid_mask(lengths(rng, padding, length), length, padding)
        cache = np.zeros((B, 2, s_max, heads, key_dim), dtype)
        inputs, outputs = {"x": x, "key": key, "valid": valid}, {}
        p = 0
        for k, t in enumerate(schedule):
            mask = np.zeros((B, t, s_max), bool)
            for i in range(t):
                mask[:, i, :p + i + 1] = valid[:, :p + i + 1]
            result = layer(x[:, p:p + t], x[:, p:p + t], key=None if key is None else key[:, p:p + t],
                           attention_mask=mask, cache=cache, cache_update_index=p,
                           return_attention_scores=scores, training=False)
            output, step_scores, cache = result if scores else (result[0], None, result[1])
            inputs[f"step{k}_attention_mask"] = mask
            outputs.update({f"step{k}_output": np.asarray(output), f"step{k}_scores": None if step_scores is None
                            else np.asarray(step_scores), f"step{k}_cache": np.asarray(cache)})
            p += t
        call = {"schedule": list(schedule), "s_max": s_max, "padding": padding, "return_attention_scores": scores,
                "cache_update_index": "position"}
        save(HUB, name, dtype, "CachedMultiHeadAttention", config, call, weights, inputs, outputs, fused)


def hub_static_case(name, *, heads=2, key_dim=3, dim=4, s_enc=6, steps=(2, 1), scores=False):
    """cache_update_index None: a decoder's cross-attention over a fixed (encoder) cache."""
    config = {"num_heads": heads, "key_dim": key_dim, "use_bias": True, "output_shape": None, "dropout": 0.0}
    fused = not scores
    for dtype in DTYPES:
        rng = generator(HUB, name)
        x = rng.normal(size=(B, sum(steps), dim)).astype(dtype)
        layer = CachedMultiHeadAttention(**config, dtype=dtype)
        layer.build(x.shape, (B, s_enc, dim))
        weights = set_random_weights(layer, rng, dtype, lambda r, shape: r.normal(size=shape) * 0.5)
        cache = rng.normal(size=(B, 2, s_enc, heads, key_dim)).astype(dtype)
        encoder_valid = np.ones((B, s_enc), bool)
        encoder_valid[1, s_enc - 2:] = False
        inputs, outputs = {"x": x, "cache": cache, "encoder_valid": encoder_valid}, {}
        p = 0
        for k, t in enumerate(steps):
            mask = np.broadcast_to(encoder_valid[:, None, :], (B, t, s_enc))
            result = layer(x[:, p:p + t], x[:, p:p + t], attention_mask=mask, cache=cache, cache_update_index=None,
                           return_attention_scores=scores, training=False)
            output, step_scores, returned = result if scores else (result[0], None, result[1])
            if not np.array_equal(np.asarray(returned), cache):
                raise RuntimeError(f"{name}: keras_hub changed a static cache")
            outputs.update({f"step{k}_output": np.asarray(output),
                            f"step{k}_scores": None if step_scores is None else np.asarray(step_scores)})
            p += t
        call = {"schedule": list(steps), "s_max": s_enc, "padding": None, "return_attention_scores": scores,
                "cache_update_index": None}
        save(HUB, name, dtype, "CachedMultiHeadAttention", config, call, weights, inputs, outputs, fused)


def cached_multi_head_attention_cases():
    for scores in (False, True):
        suffix = "_scores" if scores else ""
        hub_case("prefill4_steps" + suffix, scores=scores)
        hub_case("right_padding" + suffix, padding="right", schedule=(3, 1, 1, 1, 1), s_max=9, scores=scores)
        hub_case("left_padding" + suffix, padding="left", schedule=(5, 1, 1), s_max=8, scores=scores)
        hub_case("heads3_kd4_two_token_steps" + suffix, heads=3, key_dim=4, dim=6, schedule=(3, 2, 1, 2),
                 s_max=12, scores=scores)
        hub_case("separate_key" + suffix, key_dim_input=5, schedule=(2, 1, 1, 1), s_max=6, scores=scores)
        hub_case("full_cache" + suffix, schedule=(3, 1, 1), s_max=5, scores=scores)
        hub_static_case("static_cross_attention" + suffix, scores=scores)
    hub_case("no_bias_output_shape", use_bias=False, output_shape=(5,), schedule=(3, 1, 1), s_max=7)
    hub_case("heads1_kd8", heads=1, key_dim=8, dim=5, schedule=(2, 1, 1, 1), s_max=7)
    # dropout > 0 takes Keras's softmax path even with training=False: float64 throughout.
    hub_case("dropout_inference", dropout=0.3, padding="left", schedule=(4, 1, 1), s_max=7)


def prefix_case(group, name, *, kind, dim=4, schedule=(4, 1, 1, 1), padding=None, scores=False, **config):
    """Keras's layer on the whole prefix x[:, :p + t] with use_causal_mask (and the padding as
    value_mask): step k's golden rows are [p, p + t) of that output (and scores)."""
    defaults = MHA_DEFAULTS if kind == "MultiHeadAttention" else GQA_DEFAULTS
    config = {**defaults, **config}
    length = sum(schedule)
    fused = not scores and config["dropout"] == 0
    for dtype in DTYPES:
        rng = generator(group, name)
        x = rng.normal(size=(B, length, dim)).astype(dtype)
        layer = getattr(keras.layers, kind)(**config, dtype=dtype)
        layer.build(x.shape, x.shape)
        weights = set_random_weights(layer, rng, dtype, lambda r, shape: r.normal(size=shape) * 0.5)
        valid = valid_mask(lengths(rng, padding, length), length, padding)
        inputs, outputs = {"x": x, "valid": valid}, {}
        p = 0
        for k, t in enumerate(schedule):
            prefix = x[:, :p + t]
            value_mask = None if padding is None else valid[:, :p + t]
            result = layer(prefix, prefix, value_mask=value_mask, use_causal_mask=True,
                           return_attention_scores=scores, training=False)
            output, step_scores = result if scores else (result, None)
            outputs.update({f"step{k}_output": np.asarray(output)[:, p:p + t],
                            f"step{k}_scores": None if step_scores is None else np.asarray(step_scores)[:, :, p:p + t]})
            p += t
        call = {"schedule": list(schedule), "padding": padding, "return_attention_scores": scores,
                "use_causal_mask": True}
        save(group, name, dtype, kind, config, call, weights, inputs, outputs, fused)


def multi_head_attention_prefix_cases():
    mha = {"kind": "MultiHeadAttention", "num_heads": 2, "key_dim": 3}
    for scores in (False, True):
        suffix = "_scores" if scores else ""
        prefix_case(MHA_PREFIX, "causal" + suffix, scores=scores, **mha)
        prefix_case(MHA_PREFIX, "gate" + suffix, use_gate=True, scores=scores, **mha)
        prefix_case(MHA_PREFIX, "sliding_window" + suffix, sliding_window=2, schedule=(3, 1, 1, 1, 1),
                    scores=scores, **mha)
        prefix_case(MHA_PREFIX, "right_padding" + suffix, padding="right", scores=scores, **mha)
    prefix_case(MHA_PREFIX, "heads4_kd2_output_shape", **{**mha, "num_heads": 4, "key_dim": 2},
                output_shape=(3,), dim=5, schedule=(2, 2, 1, 1))
    prefix_case(MHA_PREFIX, "gate_window_no_bias", use_gate=True, sliding_window=3, use_bias=False,
                schedule=(4, 1, 2, 1), **mha)


def group_query_attention_prefix_cases():
    gqa = {"kind": "GroupQueryAttention", "head_dim": 3, "num_query_heads": 4, "num_key_value_heads": 2}
    for scores in (False, True):
        suffix = "_scores" if scores else ""
        prefix_case(GQA_PREFIX, "kv2" + suffix, scores=scores, **gqa)
        prefix_case(GQA_PREFIX, "kv1" + suffix, scores=scores, **{**gqa, "num_key_value_heads": 1})
        prefix_case(GQA_PREFIX, "q6_kv3_gate" + suffix, use_gate=True, scores=scores,
                    **{**gqa, "num_query_heads": 6, "num_key_value_heads": 3})
        prefix_case(GQA_PREFIX, "sliding_window" + suffix, sliding_window=2, schedule=(3, 1, 1, 1, 1),
                    scores=scores, **gqa)
        prefix_case(GQA_PREFIX, "right_padding" + suffix, padding="right", scores=scores, **gqa)
    prefix_case(GQA_PREFIX, "kv4_no_bias", use_bias=False, dim=6, schedule=(2, 1, 1, 2),
                **{**gqa, "num_key_value_heads": 4})


GROUPS = {HUB: cached_multi_head_attention_cases, MHA_PREFIX: multi_head_attention_prefix_cases,
          GQA_PREFIX: group_query_attention_prefix_cases}


def main(names):
    for name in names or GROUPS:
        if name not in GROUPS:
            sys.exit(f"unknown group {name!r}; groups: {', '.join(GROUPS)}")
        for old in (CACHE / name).glob("*.npz"):
            old.unlink()
        GROUPS[name]()
        print(f"{name}: {len(list((CACHE / name).glob('*.npz')))} files")


if __name__ == "__main__":
    main(sys.argv[1:])
