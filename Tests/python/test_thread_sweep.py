"""Results do not depend on the thread count, through the Python API: for every layer kind
and dot_product_attention, each result at set_num_threads(n) for n in THREAD_COUNTS (1 ... 256,
far beyond the cores here) equals the 1-thread one exactly (np.array_equal, same dtype and
shape). Results: the output of a plain call, the output and scores of a call that returns
them, and `layer.gradients(...)`'s output, scores and every gradient (query, value, key,
reuse_attention_scores, each weight).

Each case runs in a fresh interpreter (this file run as a script with the case's name), so
a crash at some thread count fails that case, naming the count, and not the whole session.
The case restores the thread count it found. Dropout cases reset `dropout_stream` before each
run, so every run draws the same mask."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

import attention

THREAD_COUNTS = (1, 2, 3, 5, 6, 8, 12, 16, 32, 64, 256)


def _randomize_weights(layer, rng):
    """Weights of a scale that keeps softmax away from saturation: kernels uniform in
    ±1/sqrt(fan_in), embeddings in ±1, biases and scales in [0.25, 1.25)."""
    weights = []
    for name, w in zip(layer.weight_names, layer.get_weights()):
        if w.ndim < 2:
            weights.append(rng.uniform(0.25, 1.25, w.shape))
            continue
        fan_in = (w.shape[0] * w.shape[1] if name.startswith("attention_output")
                  else 1 if "embeddings" in name else w.shape[0])
        bound = 1 / np.sqrt(fan_in)
        weights.append(rng.uniform(-bound, bound, w.shape))
    layer.set_weights(weights)


def _layer_case(make_layer, inputs, call_kwargs, *, scores):
    """A run of a layer: make_layer() built on the first call; `inputs` the positional call
    arguments; `call_kwargs` the call's other arguments (masks, flags). A run returns
    {name: array}: the plain call's output, the output and scores of a call returning them
    (when `scores`), and the gradients (with a scores_gradient when `scores`)."""
    rng = np.random.default_rng(7)
    layer = make_layer()
    layer(*inputs, **call_kwargs)
    _randomize_weights(layer, rng)
    out = layer(*inputs, **call_kwargs)
    out = out[0] if isinstance(out, tuple) else out
    d_out = rng.uniform(-1, 1, out.shape)
    d_scores = None
    if scores:
        d_scores = rng.uniform(-1, 1, layer(*inputs, return_attention_scores=True, **call_kwargs)[1].shape)
    names = layer.weight_names

    def run():
        results = {}
        layer.dropout_stream = 0
        results["output"] = layer(*inputs, **call_kwargs)
        if scores:
            layer.dropout_stream = 0
            results["output (with scores)"], results["scores"] = layer(
                *inputs, return_attention_scores=True, **call_kwargs)
        layer.dropout_stream = 0
        g = layer.gradients(*inputs, **call_kwargs, output_gradient=d_out, scores_gradient=d_scores)
        results["gradients: output"] = g.output
        if scores:
            results["gradients: scores"] = g.scores
        for what in ("query", "value", "key", "reuse_attention_scores"):
            if getattr(g, what) is not None:
                results[f"{what} gradient"] = getattr(g, what)
        for name, w in zip(names, g.weights):
            results[f"{name} gradient"] = w
        return results

    return run


def _x(rng, *shape, dtype=np.float32):
    return rng.uniform(-1, 1, shape).astype(dtype)


def _keep(rng, *shape):
    return rng.random(shape) < 0.7


def _case_attention_dot(rng):
    q, k, v = _x(rng, 3, 150, 64), _x(rng, 3, 130, 64), _x(rng, 3, 130, 48)
    mask = [_keep(rng, 3, 150), _keep(rng, 3, 130)]
    return _layer_case(lambda: attention.Attention(use_scale=True, dropout=0.1, seed=1), [[q, v, k]],
                       dict(mask=mask, training=True, use_causal_mask=True), scores=True)


def _case_attention_concat(rng):
    q, v = _x(rng, 4, 300, 96), _x(rng, 4, 257, 96)
    return _layer_case(lambda: attention.Attention(use_scale=True, score_mode="concat"), [[q, v]],
                       dict(mask=[None, _keep(rng, 4, 257)]), scores=True)


def _case_attention_concat_f64(rng):
    q, k, v = (_x(rng, 2, n, 24, dtype=np.float64) for n in (61, 47, 47))
    return _layer_case(lambda: attention.Attention(use_scale=True, score_mode="concat", causal=True,
                                                   dtype="float64"),
                       [[q, v, k]], dict(mask=[_keep(rng, 2, 61), _keep(rng, 2, 47)]), scores=True)


def _case_additive(rng):
    q, k, v = _x(rng, 4, 300, 96), _x(rng, 4, 257, 96), _x(rng, 4, 257, 96)
    return _layer_case(lambda: attention.AdditiveAttention(use_scale=True, seed=3), [[q, v, k]],
                       dict(mask=[None, _keep(rng, 4, 257)]), scores=True)


def _case_mha_self(rng):
    x = _x(rng, 8, 128, 64)
    return _layer_case(lambda: attention.MultiHeadAttention(8, 16, seed=4), [x, x], {}, scores=True)


def _case_mha_bert_base(rng):
    x = _x(rng, 4, 256, 768)
    return _layer_case(lambda: attention.MultiHeadAttention(12, 64, seed=5), [x, x], {}, scores=True)


def _case_mha_narrow_input(rng):
    x = _x(rng, 2, 128, 192)
    return _layer_case(lambda: attention.MultiHeadAttention(12, 64, seed=10), [x, x], {}, scores=True)


def _case_mha_odd(rng):
    q, k, v = _x(rng, 3, 97, 40), _x(rng, 3, 61, 36), _x(rng, 3, 61, 52)
    return _layer_case(lambda: attention.MultiHeadAttention(5, 13, value_dim=11, dropout=0.1, use_gate=True,
                                                            seed=6),
                       [q, v, k], dict(attention_mask=_keep(rng, 3, 97, 61), training=True), scores=True)


def _case_mha_rank4(rng):
    q, k, v = _x(rng, 2, 12, 20, 32), _x(rng, 2, 9, 15, 24), _x(rng, 2, 9, 15, 32)
    return _layer_case(lambda: attention.MultiHeadAttention(4, 8, attention_axes=(1, 2), seed=7), [q, v, k], {},
                       scores=True)


def _case_gqa(rng):
    x = _x(rng, 4, 256, 768)
    return _layer_case(lambda: attention.GroupQueryAttention(64, 12, 4, seed=8), [x, x],
                       dict(use_causal_mask=True), scores=True)


def _case_reuse(rng):
    x = _x(rng, 3, 80, 96)
    reused = rng.random((3, 2, 80, 80)).astype(np.float32)
    return _layer_case(lambda: attention.ReuseMultiHeadAttention(6, 16, reuse_attention=2, use_relative_pe=True,
                                                                 pe_max_seq_length=64, seed=9),
                       [x, x], dict(attention_mask=_keep(rng, 3, 80, 80), reuse_attention_scores=reused),
                       scores=True)


def _case_dot_product_grouped(rng):
    q, k, v = _x(rng, 2, 200, 8, 32), _x(rng, 2, 170, 2, 32), _x(rng, 2, 170, 2, 24)
    bias, mask = _x(rng, 8, 200, 170), _keep(rng, 200, 170)
    return lambda: {"output": attention.dot_product_attention(q, k, v, bias=bias, mask=mask, is_causal=True)}


def _case_dot_product_f64(rng):
    q, k, v = (_x(rng, 2, n, 4, 16, dtype=np.float64) for n in (90, 70, 70))
    return lambda: {"output": attention.dot_product_attention(q, k, v, scale=0.3)}


CASES = {
    "Attention dot, use_scale, causal, key, masks, dropout": _case_attention_dot,
    "Attention concat (4,300,96)x(4,257,96)": _case_attention_concat,
    "Attention concat float64, causal, key, masks": _case_attention_concat_f64,
    "AdditiveAttention (4,300,96)x(4,257,96)": _case_additive,
    "MultiHeadAttention (8,128,64), 8 heads x 16": _case_mha_self,
    "MultiHeadAttention BERT-base (4,256,768), 12 heads x 64": _case_mha_bert_base,
    "MultiHeadAttention (2,128,192), 12 heads x 64": _case_mha_narrow_input,
    "MultiHeadAttention 97x61, 5 heads x 13, gate, dropout": _case_mha_odd,
    "MultiHeadAttention rank 4, attention_axes (1, 2)": _case_mha_rank4,
    "GroupQueryAttention 12/4 heads x 64 on (4,256,768)": _case_gqa,
    "ReuseMultiHeadAttention 2 of 6 reused, relative pe": _case_reuse,
    "dot_product_attention grouped, bias, mask, causal": _case_dot_product_grouped,
    "dot_product_attention float64, scale": _case_dot_product_f64,
}


def sweep(name, report):
    """Runs case `name` at every count of THREAD_COUNTS; calls report(line) for each result
    that differs from its 1-thread value, and for `at N threads` before each count (so a
    crash shows where it happened). Returns the number of differences. Restores the thread
    count."""
    before = attention.get_num_threads()
    differences = 0
    try:
        attention.set_num_threads(1)
        run = CASES[name](np.random.default_rng(2024))
        want = run()
        assert np.any(want["output"] != 0), "the 1-thread output is all zeros"
        for threads in THREAD_COUNTS[1:]:
            report(f"at {threads} threads")
            attention.set_num_threads(threads)
            got = run()
            assert got.keys() == want.keys()
            for what, w in want.items():
                g = got[what]
                assert g.dtype == w.dtype and g.shape == w.shape, f"{what} at {threads} threads: dtype/shape"
                if not np.array_equal(g, w):
                    differences += 1
                    diff = np.abs(g.astype(np.float64) - w)
                    report(f"{what} at {threads} threads differs from 1 thread in {np.count_nonzero(g != w)} of "
                           f"{w.size} elements (max |diff| {diff.max():.3g}, "
                           f"{diff.max() / max(np.abs(w).max(), 1e-300):.3g} relative)")
    finally:
        attention.set_num_threads(before)
    return differences


@pytest.mark.parametrize("name", list(CASES))
def test_results_do_not_depend_on_the_thread_count(name):
    """Case `name`, run in a fresh interpreter, gives the 1-thread results at every count."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "faulthandler", __file__, name], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    elapsed = time.perf_counter() - started
    reached = [line for line in proc.stdout.splitlines() if line.startswith("at ")]
    differences = [line for line in proc.stdout.splitlines() if line and not line.startswith("at ")]
    if proc.returncode < 0:
        pytest.fail(f"{name}: died of {signal.Signals(-proc.returncode).name} "
                    f"{reached[-1] if reached else 'at 1 thread'} ({elapsed:.1f} s), after these differences:\n"
                    + "\n".join(differences) + "\n" + proc.stderr[-3000:], pytrace=False)
    if proc.returncode != 0 or differences:
        pytest.fail(f"{name}: not bit-identical across thread counts ({elapsed:.1f} s):\n" + "\n".join(differences)
                    + ("\n" + proc.stderr[-3000:] if proc.returncode else ""), pytrace=False)


if __name__ == "__main__":
    sys.exit(1 if sweep(sys.argv[1], lambda line: print(line, flush=True)) else 0)
