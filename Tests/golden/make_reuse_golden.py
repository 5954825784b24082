"""Write the ReuseMultiHeadAttention golden files: small cases computed by real TF Model Garden.

Each case is one .npz under Tests/golden/reuse_multi_head_attention/<case>_<dtype>.npz, in the
format of README.md (layer "ReuseMultiHeadAttention"). Run where TensorFlow, tf-keras and
tf-models-official are installed:  <python with them> Tests/golden/make_reuse_golden.py
Inputs and weights come from numpy generators seeded by the case name, so a rerun writes the
same numbers. Every call runs with training=False: dropout cannot match a framework RNG.
"""

from golden_npz import B, DTYPES, OUT, bool_mask, generator, rows_masked, write_case
from model_garden import (DEFAULTS, GROUP, PE_FLOAT32_NOTE, STAMPS, ReuseMultiHeadAttention, heads,
                          np, tf_keras)


def reuse_case(name, *, q_shape=(B, 4, 4), v_shape=(B, 5, 3), k_dim=None, attention_mask=None,
               reuse_scores_heads=None, scores=True, weight_gain=0.5, note=None, **config):
    """One case. attention_mask: an array or True for a random (B, T, S) mask. With reuse, the
    reuse_attention_scores are random softmax rows of shape scores-with-N-heads, or with
    reuse_scores_heads heads (the layer uses the first r)."""
    config = {**DEFAULTS, **config}
    reused, new = heads(config)
    with_pe = config["use_relative_pe"] and new > 0
    for dtype in ("float32",) if with_pe else DTYPES:
        rng = generator(GROUP, name)
        q = rng.normal(size=q_shape).astype(dtype)
        v = rng.normal(size=v_shape).astype(dtype)
        k = None if k_dim is None else rng.normal(size=v_shape[:-1] + (k_dim,)).astype(dtype)
        am = (bool_mask(rng, (B, q_shape[1], v_shape[1])) if attention_mask is True
              else attention_mask)
        # Model Garden's sub-layers take the global dtype, not the layer's.
        tf_keras.backend.set_floatx(dtype)
        layer = ReuseMultiHeadAttention(**config, dtype=dtype)
        rs = None
        if reused:
            probe = ReuseMultiHeadAttention(
                **{**config, "reuse_attention": 0, "use_relative_pe": False}, dtype=dtype)
            shape = list(probe(q, v, key=k, return_attention_scores=True)[1].shape)
            if reuse_scores_heads is not None:
                shape[1] = reuse_scores_heads
            rs = rng.random(shape) + 0.1
            rs = (rs / rs.sum(axis=-1, keepdims=True)).astype(dtype)
        layer(q, v, key=k, reuse_attention_scores=rs)  # creates the weights
        weights = [rng.normal(size=w.shape).astype(w.dtype) * weight_gain
                   for w in layer.get_weights()]
        layer.set_weights(weights)
        result = layer(q, v, key=k, attention_mask=am, reuse_attention_scores=rs,
                       return_attention_scores=scores, training=False)
        output, attention_scores = result if scores else (result, None)
        if np.asarray(output).dtype != np.dtype(dtype):
            raise RuntimeError(f"{name}_{dtype}: upstream computed in {np.asarray(output).dtype}")
        write_case(GROUP, name, dtype, "ReuseMultiHeadAttention", config,
                   {"use_causal_mask": False, "return_attention_scores": scores},
                   [np.asarray(w) for w in layer.get_weights()],
                   {"query": q, "value": v, "key": k, "attention_mask": am,
                    "reuse_attention_scores": rs},
                   {"output": output, "scores": attention_scores}, stamps=STAMPS,
                   softmax_in_float32=False, float32_compute=False,
                   notes=(note, with_pe and PE_FLOAT32_NOTE))


def reuse_cases():
    # No reuse: MultiHeadAttention with Model Garden's masking.
    reuse_case("r0")
    reuse_case("r0_output_only", scores=False)
    reuse_case("r0_key", k_dim=2)
    reuse_case("r0_no_bias", use_bias=False)
    reuse_case("r0_value_dim", value_dim=4)
    reuse_case("r0_output_shape_int", output_shape=5, scores=False)
    reuse_case("r0_output_shape_tuple", output_shape=(2, 3))
    reuse_case("r0_attention_mask", attention_mask=True)
    reuse_case("r0_attention_mask_ts",
               attention_mask=bool_mask(generator(GROUP, "mask_ts"), (4, 5)))
    # Partial reuse (new heads first in the returned scores), full reuse, -1 = all heads.
    reuse_case("r1", reuse_attention=1)
    reuse_case("r2_output_only", reuse_attention=2, scores=False)
    reuse_case("r2_scores_with_more_heads", reuse_attention=2, reuse_scores_heads=3)
    reuse_case("r1_key_value_dim", reuse_attention=1, k_dim=3, value_dim=4)
    reuse_case("r2_no_bias", reuse_attention=2, use_bias=False)
    reuse_case("r1_attention_mask", reuse_attention=1, attention_mask=True)
    reuse_case("r1_output_shape_tuple", reuse_attention=1, output_shape=(2, 3))
    reuse_case("full", reuse_attention=3)
    reuse_case("full_minus_one", reuse_attention=-1)
    reuse_case("full_minus_one_output_only", reuse_attention=-1, scores=False)
    reuse_case("full_no_bias_mask_ignored", reuse_attention=3, use_bias=False,
               attention_mask=True)
    reuse_case("full_with_relative_pe", reuse_attention=-1, use_relative_pe=True,
               pe_max_seq_length=3, note="With full reuse no position embeddings exist.")
    # Relative position bias, clamped: T = 5 and S = 6 exceed pe_max_seq_length = 3.
    pe = {"use_relative_pe": True, "pe_max_seq_length": 3, "q_shape": (B, 5, 4),
          "v_shape": (B, 6, 3)}
    reuse_case("pe_r0", **pe)
    reuse_case("pe_r0_output_only", scores=False, **pe)
    reuse_case("pe_r1", reuse_attention=1, **pe)
    reuse_case("pe_r2_attention_mask", reuse_attention=2, attention_mask=True, **pe)
    reuse_case("pe_unclamped", use_relative_pe=True, pe_max_seq_length=8)
    # Fully masked rows: (1 - m) * (-1e9) added, nothing zeroed. Small scores: the float32 row
    # rounds to uniform; large scores (gain 4): it does not. float64 stays close to softmax(s).
    full = rows_masked((B, 4, 5), (1, 2))
    full[0, 0] = False
    reuse_case("fully_masked", attention_mask=full)
    reuse_case("fully_masked_large", attention_mask=full, weight_gain=4.0)
    reuse_case("r1_fully_masked_large", reuse_attention=1, attention_mask=full, weight_gain=4.0)
    reuse_case("pe_fully_masked", attention_mask=rows_masked((B, 5, 6), (0, 3)), **pe)
    reuse_case("r1_dropout_inference", reuse_attention=1, dropout=0.3, attention_mask=True)
    # Attention axes of rank-4 inputs; upstream's negative axes count from the end of the
    # projected (..., heads, channels) tensor: -3 is input axis 2, -2 the heads axis.
    r4 = {"q_shape": (B, 2, 4, 4), "v_shape": (B, 2, 5, 3)}
    reuse_case("r4_axes_2", attention_axes=(2,), **r4)
    reuse_case("r4_axes_neg3", attention_axes=-3, **r4)
    reuse_case("r4_axes_2_attention_mask", attention_axes=(2,),
               attention_mask=bool_mask(generator(GROUP, "mask_r4"), (B, 2, 4, 5)), **r4)
    reuse_case("r4_axes_2_full", attention_axes=(2,), reuse_attention=-1, **r4)
    reuse_case("r4_axes_none", q_shape=(B, 2, 3, 4), v_shape=(B, 3, 2, 3))
    reuse_case("r4_axes_neg2_heads", attention_axes=(-2,), q_shape=(B, 2, 4, 4),
               v_shape=(B, 2, 4, 3), note="attention_axes=-2 attends across the heads.")
    reuse_case("r3_axes_neg2_heads_full", attention_axes=-2, reuse_attention=3,
               q_shape=(B, 4, 4), v_shape=(B, 4, 3),
               note="attention_axes=-2 attends across the heads.")
    reuse_case("r5_axes_23", attention_axes=(2, 3), q_shape=(B, 2, 3, 2, 4),
               v_shape=(B, 2, 4, 3, 3))


def main():
    for stale in (OUT / GROUP).glob("*.npz"):
        stale.unlink()
    reuse_cases()
    files = sorted((OUT / GROUP).glob("*.npz"))
    size = sum(f.stat().st_size for f in files)
    print(f"wrote {len(files)} golden files ({size / 1e6:.2f} MB) under {OUT / GROUP}")


if __name__ == "__main__":
    main()
