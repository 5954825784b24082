"""A stack of ReuseMultiHeadAttention layers that share attention weights, as in "Leveraging
redundancy in attention with Reuse Transformers" (Bhojanapalli et al., 2021).

The first layer computes the attention of all its heads; each later layer takes the scores
the previous one returned and reuses some of their heads instead of computing them:

    layer 1  reuse_attention=0    4 new heads (with a relative position bias)
    layer 2  reuse_attention=2    heads 0-1 of layer 1's scores, 2 new heads (position bias)
    layer 3  reuse_attention=2    heads 0-1 of layer 2's scores (layer 2's new heads), 2 new
    layer 4  reuse_attention=-1   all 4 heads of layer 3's scores, nothing computed

Prints each layer's shapes and its largest error against attention.reference; exits 1 if
any layer is outside the contract tolerance.

    python3 examples/python/reuse_stack.py          (after `make lib`)
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

import attention  # noqa: E402
from attention import reference  # noqa: E402

BATCH, LENGTH, WIDTH, HEADS, KEY_DIM = 2, 24, 32, 4, 8
STACK = [
    {"reuse_attention": 0, "use_relative_pe": True, "pe_max_seq_length": 16},
    {"reuse_attention": 2, "use_relative_pe": True, "pe_max_seq_length": 16},
    {"reuse_attention": 2},
    {"reuse_attention": -1},
]


def tolerance(expected):
    return 1e-5 + 1e-4 * float(np.max(np.abs(expected)))


def main():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(BATCH, LENGTH, WIDTH)).astype(np.float32)
    # The attention mask of padded batches: the last 4 positions of sample 1 are padding.
    mask = np.ones((BATCH, LENGTH, LENGTH), dtype=bool)
    mask[1, :, -4:] = False
    layers = [attention.ReuseMultiHeadAttention(HEADS, KEY_DIM, seed=i, name=f"reuse_{i}", **config)
              for i, config in enumerate(STACK)]
    scores, failures = None, 0
    for layer, config in zip(layers, STACK):
        out, new_scores = layer(x, x, attention_mask=mask, return_attention_scores=True,
                                reuse_attention_scores=scores)
        expected_out, expected_scores = reference.reuse_multi_head_attention(
            x, x, weights=layer.get_weights(), num_heads=HEADS, key_dim=KEY_DIM, **config,
            attention_mask=mask, reuse_attention_scores=scores, return_attention_scores=True)
        error = max(float(np.max(np.abs(out - expected_out))) / tolerance(expected_out),
                    float(np.max(np.abs(new_scores - expected_scores))) / tolerance(expected_scores))
        ok = error <= 1  # NaN fails too
        failures += not ok
        reused = HEADS if config["reuse_attention"] == -1 else config["reuse_attention"]
        print(f"{layer.name}: reuse {reused}/{HEADS} heads, {len(layer.weights):2d} weights, "
              f"input {x.shape} -> output {out.shape}, scores {new_scores.shape}, "
              f"error/tolerance {error:.2e}{'' if ok else '  FAIL'}")
        x, scores = out, new_scores
    print(f"{len(layers) - failures} of {len(layers)} layers match attention.reference")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
