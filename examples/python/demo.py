"""Run every layer of libattention on a set of configurations and compare with the numpy
reference formulas (attention.reference).

Prints one row per configuration: layer, options, the largest absolute error against the
reference (output and, where returned, scores), the contract tolerance, and the time per call.
Exits 1 if any error exceeds the tolerance (float32: 1e-5 + 1e-4·max|expected|; float64:
1e-10·(1 + max|expected|)).

    python3 examples/python/demo.py          (after `make lib`)
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

import attention  # noqa: E402
from attention import reference  # noqa: E402

RNG = np.random.default_rng(2024)
SEED = 1234


def tolerance(expected, dtype):
    peak = float(np.max(np.abs(expected)))
    return 1e-10 * (1 + peak) if np.dtype(dtype) == np.float64 else 1e-5 + 1e-4 * peak


def timed(run, repeats=5):
    """(first result, median milliseconds per call over `repeats` more calls)."""
    first = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return first, 1e3 * float(np.median(times))


def normal(shape, dtype="float32"):
    return RNG.normal(size=shape).astype(dtype)


def mask(shape, keep=0.8):
    return RNG.random(shape) < keep


def luong(kind, options, dtype="float32", b=4, tq=64, tv=80, d=32, masks=False, causal=False,
          dropout=0.0):
    q, v = normal((b, tq, d), dtype), normal((b, tv, d), dtype)
    qm, vm = (mask((b, tq)), mask((b, tv))) if masks else (None, None)
    layer = getattr(attention, kind)(**options, dropout=dropout, seed=SEED, dtype=dtype)
    layer.build([q.shape, v.shape])
    weights = layer.get_weights()
    training = dropout > 0

    def run():
        return layer([q, v], mask=[qm, vm] if masks else None, training=training,
                     return_attention_scores=True, use_causal_mask=causal)

    got, ms = timed(run)
    common = dict(query_mask=qm, value_mask=vm, use_causal_mask=causal, dropout=dropout,
                  training=training, seed=SEED, stream=0)
    if kind == "Attention":
        names = (["scale"] if options.get("use_scale") else []) + (
            ["concat_score_weight"] if options.get("score_mode") == "concat" else [])
        params = dict(zip(names, weights))
        expected = reference.attention(
            q, v, score_mode=options.get("score_mode", "dot"), scale=params.get("scale"),
            concat_score_weight=params.get("concat_score_weight"), **common)
    else:
        expected = reference.additive_attention(q, v, scale=weights[0] if weights else None,
                                                **common)
    return got, expected, ms


def mha(options, dtype="float32", q_shape=(2, 64, 64), v_shape=(2, 80, 64), heads=4, key_dim=16,
        masks=False, causal=False, scores=False, dropout=0.0):
    q, v = normal(q_shape, dtype), normal(v_shape, dtype)
    layer = attention.MultiHeadAttention(heads, key_dim, **options, dropout=dropout, seed=SEED,
                                         dtype=dtype)
    layer.build(q.shape, v.shape)
    weights = layer.get_weights()
    call_masks = ({"query_mask": mask(q.shape[:-1]), "value_mask": mask(v.shape[:-1])}
                  if masks else {})
    training = dropout > 0

    def run():
        return layer(q, v, **call_masks, use_causal_mask=causal, return_attention_scores=scores,
                     training=training)

    got, ms = timed(run)
    expected = reference.multi_head_attention(
        q, v, weights=weights, num_heads=heads, key_dim=key_dim, **options, **call_masks,
        use_causal_mask=causal, dropout=dropout, training=training, seed=SEED, stream=0,
        return_attention_scores=scores)
    return (got if scores else (got, None)), expected, ms


def gqa(options, dtype="float32", b=2, t=64, s=80, d=64, query_heads=8, kv_heads=2, head_dim=16,
        masks=False, causal=False, scores=False, dropout=0.0):
    q, v = normal((b, t, d), dtype), normal((b, s, d), dtype)
    config = dict(head_dim=head_dim, num_query_heads=query_heads, num_key_value_heads=kv_heads,
                  **options)
    layer = attention.GroupQueryAttention(**config, dropout=dropout, seed=SEED, dtype=dtype)
    layer.build(q.shape, v.shape)
    weights = layer.get_weights()
    call_masks = {"query_mask": mask((b, t)), "value_mask": mask((b, s))} if masks else {}
    training = dropout > 0

    def run():
        return layer(q, v, **call_masks, use_causal_mask=causal, return_attention_scores=scores,
                     training=training)

    got, ms = timed(run)
    expected = reference.group_query_attention(
        q, v, weights=weights, **config, **call_masks, use_causal_mask=causal, dropout=dropout,
        training=training, seed=SEED, stream=0, return_attention_scores=scores)
    return (got if scores else (got, None)), expected, ms


def reuse(options, dtype="float32", b=2, t=64, s=80, d=64, heads=4, key_dim=16, with_mask=False,
          dropout=0.0):
    q, v = normal((b, t, d), dtype), normal((b, s, d), dtype)
    config = dict(num_heads=heads, key_dim=key_dim, **options)
    layer = attention.ReuseMultiHeadAttention(**config, dropout=dropout, seed=SEED, dtype=dtype)
    layer.build(q.shape, v.shape)
    weights = layer.get_weights()
    attention_mask = mask((b, t, s)) if with_mask else None
    # An earlier layer's scores: rows of random positive weights summing to 1.
    previous = RNG.random((b, heads, t, s)).astype(dtype) + 0.1
    previous /= previous.sum(axis=-1, keepdims=True)
    training = dropout > 0

    def run():
        return layer(q, v, attention_mask=attention_mask, return_attention_scores=True,
                     training=training, reuse_attention_scores=previous)

    got, ms = timed(run)
    expected = reference.reuse_multi_head_attention(
        q, v, weights=weights, **config, attention_mask=attention_mask,
        reuse_attention_scores=previous if options.get("reuse_attention") else None,
        dropout=dropout, training=training, seed=SEED, stream=0, return_attention_scores=True)
    return got, expected, ms


def dpa(dtype="float32", b=2, t=64, s=80, n=8, k=2, h=32, bias=False, with_mask=False,
        is_causal=False):
    q, key, v = normal((b, t, n, h), dtype), normal((b, s, k, h), dtype), normal((b, s, k, h), dtype)
    extra = {"bias": normal((t, s), dtype) if bias else None,
             "mask": mask((b, 1, t, s)) if with_mask else None, "is_causal": is_causal}
    got, ms = timed(lambda: attention.dot_product_attention(q, key, v, **extra))
    return (got, None), (reference.dot_product_attention(q, key, v, **extra), None), ms


CASES = [
    ("Attention", "dot", lambda: luong("Attention", {})),
    ("Attention", "dot, use_scale", lambda: luong("Attention", {"use_scale": True})),
    ("Attention", "concat", lambda: luong("Attention", {"score_mode": "concat"})),
    ("Attention", "concat, use_scale, float64",
     lambda: luong("Attention", {"score_mode": "concat", "use_scale": True}, "float64")),
    ("Attention", "dot, query+value masks", lambda: luong("Attention", {}, masks=True)),
    ("Attention", "dot, causal", lambda: luong("Attention", {}, causal=True)),
    ("Attention", "dot, dropout 0.2 (training)", lambda: luong("Attention", {}, dropout=0.2)),
    ("Attention", "dot, float64, masks, causal",
     lambda: luong("Attention", {"use_scale": True}, "float64", masks=True, causal=True)),
    ("AdditiveAttention", "use_scale", lambda: luong("AdditiveAttention", {"use_scale": True})),
    ("AdditiveAttention", "no scale, masks",
     lambda: luong("AdditiveAttention", {"use_scale": False}, masks=True)),
    ("AdditiveAttention", "float64, causal, dropout 0.3 (training)",
     lambda: luong("AdditiveAttention", {}, "float64", causal=True, dropout=0.3)),
    ("MultiHeadAttention", "rank 3", lambda: mha({})),
    ("MultiHeadAttention", "rank 3, masks, causal, scores",
     lambda: mha({}, masks=True, causal=True, scores=True)),
    ("MultiHeadAttention", "rank 3, gate, value_dim 8, output_shape (4, 8), no bias",
     lambda: mha({"use_gate": True, "value_dim": 8, "output_shape": (4, 8), "use_bias": False})),
    ("MultiHeadAttention", "rank 3, sliding_window 16, causal",
     lambda: mha({"sliding_window": 16}, causal=True)),
    ("MultiHeadAttention", "rank 3, dropout 0.1 (training), float64",
     lambda: mha({}, "float64", dropout=0.1, scores=True)),
    ("MultiHeadAttention", "rank 4, attention_axes (2,), masks",
     lambda: mha({"attention_axes": (2,)}, q_shape=(2, 4, 32, 32), v_shape=(2, 4, 40, 32),
                 masks=True, scores=True)),
    ("MultiHeadAttention", "rank 5, attention_axes (2, 3)",
     lambda: mha({"attention_axes": (2, 3)}, q_shape=(2, 3, 8, 8, 16), v_shape=(2, 3, 6, 10, 16))),
    ("GroupQueryAttention", "8 query / 2 key-value heads", lambda: gqa({})),
    ("GroupQueryAttention", "8/2, masks, causal, scores",
     lambda: gqa({}, masks=True, causal=True, scores=True)),
    ("GroupQueryAttention", "8/1 (multi-query), gate, sliding_window 16",
     lambda: gqa({"use_gate": True, "sliding_window": 16}, kv_heads=1)),
    ("GroupQueryAttention", "8/8, dropout 0.1 (training), float64",
     lambda: gqa({}, "float64", kv_heads=8, dropout=0.1, scores=True)),
    ("ReuseMultiHeadAttention", "reuse 0, relative PE (P 32 < T, S), mask",
     lambda: reuse({"use_relative_pe": True, "pe_max_seq_length": 32}, with_mask=True)),
    ("ReuseMultiHeadAttention", "reuse 2 of 4, relative PE",
     lambda: reuse({"reuse_attention": 2, "use_relative_pe": True, "pe_max_seq_length": 32})),
    ("ReuseMultiHeadAttention", "reuse -1 (all), value_dim 8, output_shape (4, 8)",
     lambda: reuse({"reuse_attention": -1, "value_dim": 8, "output_shape": (4, 8)})),
    ("ReuseMultiHeadAttention", "reuse 1 of 4, dropout 0.1 (training), float64",
     lambda: reuse({"reuse_attention": 1}, "float64", with_mask=True, dropout=0.1)),
    ("dot_product_attention", "GQA 8/2 heads", lambda: dpa()),
    ("dot_product_attention", "GQA 8/2, bias, mask, causal",
     lambda: dpa(bias=True, with_mask=True, is_causal=True)),
    ("dot_product_attention", "MQA 8/1, float64", lambda: dpa("float64", k=1)),
]


def main():
    print(f"libattention {attention.__version__}, {attention.cpu_kernels()} kernels, "
          f"{attention.get_num_threads()} threads\n")
    header = f"{'layer':<23} {'options':<56} {'max abs error':>13} {'tolerance':>10} {'ms/call':>9}"
    print(header)
    print("-" * len(header))
    failures = 0
    for layer, options, run in CASES:
        (output, scores), (exp_output, exp_scores), ms = run()
        checks = [(float(np.max(np.abs(got.astype(np.float64) - expected))),
                   tolerance(expected, got.dtype))
                  for got, expected in ((output, exp_output), (scores, exp_scores))
                  if got is not None]
        error, limit = max(checks, key=lambda check: check[0] / check[1])
        ok = all(e <= lim for e, lim in checks)  # NaN errors fail too
        failures += not ok
        flag = "" if ok else "  FAIL"
        print(f"{layer:<23} {options:<56} {error:>13.2e} {limit:>10.1e} {ms:>9.3f}{flag}")
    print(f"\n{len(CASES) - failures} of {len(CASES)} within tolerance")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
