"""`make bench`: libattention's speed on this machine, float32, 2 threads, in one run.

Every figure is measured in this run: the FMA peak (benchmarks/fma_probe), the memory copy
bandwidth (numpy copyto of 256 MiB, read + write counted), our time, and the same workload as a
plain numpy formula (matmul + softmax, or attention.reference) — and torch / onnxruntime when
they are importable. Times are medians of >= 5 calls (3-5 for numpy's backward formulas) after
a warm-up, taken in ROUNDS rounds that each visit every workload in turn (and rerun
benchmarks/AttentionBench for the GEMM and training rows, and the tiny calls); a figure is the fastest round's
median (ours, numpy's and the peers' alike), so a burst of interference from the host — which
this VM shows, unseen in /proc/stat — spoils one round, not the figure. "×numpy" (×torch, ×ort)
is the other's time over ours: above 1 means libattention is faster. Each workload's output is
also compared with numpy's (err = max |ours - numpy| / max |numpy|), so the timed work is the
right one.

    python3 benchmarks/bench.py [--fma-probe P] [--tiny-call P] [--gemm-bench P] [--json P]

Prints the table and writes the same figures to benchmarks/results/latest.json.
"""

import argparse
import importlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

import attention  # noqa: E402
from attention import reference  # noqa: E402

THREADS = 2
ROUNDS = 3
MIB = 2**20
NAME = 36  # width of the workload column
FLOP_MODELS = [
    "sdpa: 4·B·N·Tq·S·H (q·kᵀ and p·v, 2 flops per multiply-add); causal counts half",
    "mha: 2·B·T·D·(N·H)·3 (q, k, v projections) + 2·B·T·(N·H)·D (output) + 4·B·N·T²·H",
    "additive: B·Tq·Tv·(4·dim + 2·dim) — q+k, tanh (as 1 flop), ×scale, + ; then p·v",
    "concat: B·Tq·Tv·(3·dim + 2·dim) — q+k, tanh (as 1 flop), + ; then p·v",
    "decode: GB/s = bytes of K and V read once (2·B·S·N·H·4) / time; copy counts read + write",
    "sdpa backward: 10·B·N·T·S·H (q·kᵀ recomputed, dO·vᵀ, pᵀ·dO, dS·k, dSᵀ·q); causal counts half",
]


# -- measuring ------------------------------------------------------------------------------

def median_seconds(fn, min_repeats=5, budget=1.0, max_repeats=50):
    """Median wall time of fn() over >= min_repeats calls (more, up to max_repeats, while the
    calls take less than `budget` seconds in all), after one warm-up call."""
    fn()
    times = []
    while len(times) < min_repeats or (sum(times) < budget and len(times) < max_repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fma_peak(probe, threads):
    """FLOP/s printed by the fma_probe binary for `threads` threads."""
    return float(subprocess.run([str(probe), str(threads)], check=True, capture_output=True,
                                text=True).stdout)


def copy_bandwidth():
    """Bytes/s of np.copyto on 256 MiB float32 arrays, counting the read and the write."""
    source = np.ones(256 * MIB // 4, np.float32)
    target = np.empty_like(source)
    return 2 * source.nbytes / median_seconds(lambda: np.copyto(target, source), budget=0)


def cpu_seconds():
    """(busy CPU seconds of the whole machine since boot, steal included, from /proc/stat;
    CPU seconds of this process and its finished children)."""
    user, nice, system, _, _, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    own = os.times()
    return ((user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"),
            own.user + own.system + own.children_user + own.children_system)


def relative_error(ours, expected):
    """max |ours - expected| / max |expected|."""
    expected = np.asarray(expected, np.float64)
    return float(np.max(np.abs(np.asarray(ours, np.float64) - expected)) / np.max(np.abs(expected)))


def optional_module(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's OpenMP threads sleep when idle
torch = optional_module("torch")
ort = optional_module("onnxruntime")
onnx = optional_module("onnx") if ort is not None else None


# -- the numpy formulas ---------------------------------------------------------------------

def numpy_sdpa(q, k, v, causal, scale=None):
    """softmax(scale · q·kᵀ, −∞ where j > i if causal) · v on (B, T, N, H) arrays, per (b, n)."""
    t, s, h = q.shape[1], k.shape[1], q.shape[3]
    logits = np.matmul(q.transpose(0, 2, 1, 3), k.transpose(0, 2, 3, 1))  # (B, N, T, S)
    logits *= np.float32(1 / math.sqrt(h) if scale is None else scale)
    if causal:
        logits += np.triu(np.full((t, s), -np.inf, np.float32), 1)
    logits -= logits.max(axis=-1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=-1, keepdims=True)
    return np.matmul(logits, v.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)


def numpy_mha(x, weights, heads, key_dim):
    """Keras's MultiHeadAttention on self-attention input x (B, T, D): dense q, k, v
    projections (kernel (D, N, H), bias (N, H)), numpy_sdpa with q pre-scaled by 1/√H, output
    projection (kernel (N, H, D), bias (D,))."""
    wq, bq, wk, bk, wv, bv, wo, bo = weights
    b, t, d = x.shape

    def project(w, bias):
        return (x.reshape(b * t, d) @ w.reshape(d, -1) + bias.reshape(-1)).reshape(b, t, heads, key_dim)

    q = project(wq, bq) * np.float32(1 / math.sqrt(key_dim))
    attended = numpy_sdpa(q, project(wk, bk), project(wv, bv), False, scale=1.0)
    return (attended.reshape(b * t, heads * key_dim) @ wo.reshape(heads * key_dim, d) + bo).reshape(b, t, d)


# -- peers (optional) -----------------------------------------------------------------------

def torch_sdpa(q, k, v, causal):
    """torch's scaled_dot_product_attention on (B, N, T, H) copies of the inputs, or None."""
    if torch is None:
        return None
    tq, tk, tv = (torch.from_numpy(np.ascontiguousarray(a.transpose(0, 2, 1, 3))) for a in (q, k, v))

    def run():
        with torch.inference_mode():
            return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
    return run


def torch_mha(x, heads):
    """torch.nn.MultiheadAttention (same sizes, need_weights=False) on x, or None."""
    if torch is None:
        return None
    layer = torch.nn.MultiheadAttention(x.shape[-1], heads, batch_first=True).eval()
    tx = torch.from_numpy(x)

    def run():
        with torch.inference_mode():
            return layer(tx, tx, tx, need_weights=False)[0]
    return run


ORT_NOTES = []


def ort_sdpa(q, k, v, causal):
    """onnxruntime's com.microsoft MultiHeadAttention on (B, T, N·H) views, or None (with the
    reason in ORT_NOTES) when onnxruntime or onnx is missing or the session fails."""
    if ort is None or onnx is None:
        return None
    try:
        from onnx import TensorProto, helper
        b, t, n, h = q.shape
        feeds = {name: a.reshape(a.shape[0], a.shape[1], -1) for name, a in (("q", q), ("k", k), ("v", v))}
        attributes = {"num_heads": n, **({"unidirectional": 1} if causal else {})}
        node = helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["o"], domain="com.microsoft",
                                **attributes)
        graph = helper.make_graph(
            [node], "mha",
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(a.shape)) for name, a in feeds.items()],
            [helper.make_tensor_value_info("o", TensorProto.FLOAT, [b, t, n * v.shape[3]])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.microsoft", 1)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        session.run(None, feeds)
    except Exception as error:  # an old onnxruntime without the op or attribute: no column
        ORT_NOTES.append(f"{'causal ' if causal else ''}MultiHeadAttention: {error}".splitlines()[0][:120])
        return None
    return lambda: session.run(None, feeds)[0]


# -- workloads ------------------------------------------------------------------------------

# Each workload's row and its timed functions (key in the row → function), for the rounds.
TIMED = []


def time_workload(name, ours, numpy_fn, *, flops=None, bytes_read=None, peers=None, scaling=True):
    """Checks ours against the numpy formula and registers the timings of ours (at THREADS and,
    if scaling, 1 thread), numpy's and the peers' for `measure_rounds`. Returns the row."""
    row = {"name": name, "error_vs_numpy": relative_error(ours(), numpy_fn())}
    if flops is not None:
        row["flops"] = flops
    if bytes_read is not None:
        row["bytes_read"] = bytes_read

    def one_thread():
        attention.set_num_threads(1)
        try:
            return ours()
        finally:
            attention.set_num_threads(THREADS)
    timed = {"seconds": ours, "seconds_1_thread": one_thread if scaling else None, "numpy_seconds": numpy_fn}
    timed |= {f"{peer}_seconds": fn for peer, fn in (peers or {}).items()}
    TIMED.append((row, {key: fn for key, fn in timed.items() if fn is not None}))
    return row


def measure_rounds(before_round):
    """ROUNDS passes over every registered workload, each after before_round(round number);
    each timing's figure is its fastest round's median, and the row keeps every round's median
    under "<key>_rounds"."""
    for round_number in range(ROUNDS):
        before_round(round_number)
        for row, timed in TIMED:
            # Ours first, after a pause: OpenBLAS's and OpenMP's worker threads spin for a
            # while after numpy's or torch's last call and would take our cores.
            time.sleep(0.5)
            for key, fn in timed.items():
                # numpy's backward formulas take seconds a call: fewer repeats.
                repeats = {"min_repeats": 3, "max_repeats": 5} if row["name"].endswith("_backward") else {}
                row.setdefault(f"{key}_rounds", []).append(median_seconds(fn, **repeats))
                row[key] = min(row[f"{key}_rounds"])
            print(f"  round {round_number + 1}/{ROUNDS}: measured {row['name']}", file=sys.stderr)


def fold_report(results, report):
    """Our GEMM and training-kernel figures from another AttentionBench run (one per round):
    each the faster of what the rows hold and the report's."""
    for row in results["gemm"]:
        row["seconds"] = min(row["seconds"], row["flops"] / report["gemm_flops"][row["name"].removeprefix("gemm_")])
    for row in results["backward"]:
        timing = report["attention"][row["name"].removesuffix("_backward")]
        for key, source in (("seconds", "backward_seconds"), ("seconds_1_thread", "backward_seconds_1_thread"),
                            ("forward_seconds", "forward_seconds")):
            row[key] = min(row[key], timing[source])


def sdpa_workload(b, n, t, h, causal=False, tq=None):
    """keras.ops.dot_product_attention on random (B, Tq, N, H), (B, T, N, H) inputs."""
    rng = np.random.default_rng(0)
    tq = t if tq is None else tq
    q = rng.standard_normal((b, tq, n, h), dtype=np.float32)
    k, v = (rng.standard_normal((b, t, n, h), dtype=np.float32) for _ in range(2))
    decode = tq != t
    name = (f"decode_b{b}_h{n}_s{t}_d{h}" if decode else f"sdpa_b{b}_h{n}_t{t}_d{h}") + ("_causal" if causal else "")
    flops = 4 * b * n * tq * t * h * (0.5 if causal else 1)
    return time_workload(
        name, lambda: attention.dot_product_attention(q, k, v, is_causal=causal),
        lambda: numpy_sdpa(q, k, v, causal),
        flops=None if decode else flops, bytes_read=k.nbytes + v.nbytes if decode else None,
        peers={"torch": torch_sdpa(q, k, v, causal), "ort": ort_sdpa(q, k, v, causal)})


def mha_workload(b=8, t=256, dim=512, heads=8, key_dim=64):
    """The whole MultiHeadAttention layer (projections with biases) on self-attention input."""
    x = np.random.default_rng(1).standard_normal((b, t, dim), dtype=np.float32)
    layer = attention.MultiHeadAttention(num_heads=heads, key_dim=key_dim, seed=1)
    layer.build(x.shape, x.shape)
    weights = layer.get_weights()
    nh = heads * key_dim
    flops = 2 * b * t * dim * nh * 3 + 2 * b * t * nh * dim + 4 * b * heads * t * t * key_dim
    return time_workload(f"mha_b{b}_t{t}_dim{dim}_h{heads}", lambda: layer(x, x),
                         lambda: numpy_mha(x, weights, heads, key_dim), flops=flops,
                         peers={"torch": torch_mha(x, heads)})


def tanh_workload(kind, b=8, t=256, dim=128):
    """AdditiveAttention (use_scale) or Attention(score_mode="concat") on (B, T, dim) inputs,
    against attention.reference's formula with the layer's weights."""
    rng = np.random.default_rng(2)
    q, v = (rng.standard_normal((b, t, dim), dtype=np.float32) for _ in range(2))
    additive = kind == "additive"
    layer = attention.AdditiveAttention(seed=2) if additive else attention.Attention(score_mode="concat")
    layer.build([q.shape, v.shape])
    weight = layer.get_weights()[0]  # AdditiveAttention's scale (dim,), or concat_score_weight ()

    def numpy_fn():
        if additive:
            return reference.additive_attention(q, v, scale=weight)[0]
        return reference.attention(q, v, score_mode="concat", concat_score_weight=weight)[0]
    per_pair = (4 if additive else 3) * dim + 2 * dim
    return time_workload(f"{kind}_b{b}_t{t}_dim{dim}", lambda: layer([q, v]), numpy_fn,
                         flops=b * t * t * per_pair)


def tiny_workload(tiny_call):
    """Per-call time of Attention on (1, 16, 64) through C (tiny_call) and through Python."""
    rng = np.random.default_rng(3)
    q, v = (rng.standard_normal((1, 16, 64), dtype=np.float32) for _ in range(2))
    layer = attention.Attention()
    layer([q, v])

    def per_call(fn):
        number = 2000
        return statistics.median(timeit.repeat(fn, number=number, repeat=5)) / number
    c_seconds = float(subprocess.run([str(tiny_call), str(THREADS)], check=True, capture_output=True,
                                     text=True).stdout) * 1e-6
    return {"name": "tiny_b1_t16_d64", "c_seconds_per_call": c_seconds,
            "python_seconds_per_call": per_call(lambda: layer([q, v])),
            "numpy_seconds_per_call": per_call(lambda: reference.attention(q, v)[0]),
            "error_vs_numpy": relative_error(layer([q, v]), reference.attention(q, v)[0])}


def peak_rss_child():
    """In a fresh process: dot_product_attention on (1, 8192, 8, 64) causal without scores.
    Prints JSON: the RSS before the inputs exist, the peak RSS, the inputs + output size."""
    attention.set_num_threads(THREADS)
    small = np.zeros((1, 4, 8, 64), np.float32)
    attention.dot_product_attention(small, small, small, is_causal=True)  # load the library
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal((1, 8192, 8, 64), dtype=np.float32) for _ in range(3))
    start = time.perf_counter()
    out = attention.dot_product_attention(q, k, v, is_causal=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"name": "sdpa_b1_h8_t8192_d64_causal", "baseline_rss_bytes": baseline,
                      "peak_rss_bytes": peak, "inputs_outputs_bytes": q.nbytes * 3 + out.nbytes,
                      "seconds": seconds}))


def peak_rss():
    """peak_rss_child's figures. Run it while this process is small: Linux carries the
    parent's RSS high-water mark into the child's ru_maxrss across fork and exec."""
    result = subprocess.run([sys.executable, __file__, "--peak-rss-child"], check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout)


def gemm_report(gemm_bench):
    """Our GEMM's FLOP/s and the training kernels' times from AttentionBench, run once per
    round: the first time before this process does any numpy work (OpenBLAS's worker threads
    spin for a while after a matmul and would take its cores), later after a pause."""
    return json.loads(subprocess.run([str(gemm_bench)], check=True, capture_output=True, text=True).stdout)


def gemm_rows(report):
    """Our GEMM (from gemm_report) and numpy's float32 matmul on n × n, n = 512, 1024, 2048."""
    rows = []
    for size, rate in report["gemm_flops"].items():
        n = int(size)
        rng = np.random.default_rng(n)
        a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        flops = 2 * n**3
        row = {"name": f"gemm_{n}", "flops": flops, "seconds": flops / rate, "threads": report["threads"]}
        TIMED.append((row, {"numpy_seconds": lambda a=a, b=b: a @ b}))
        rows.append(row)
    return rows


def numpy_sdpa_backward(q, k, v, d_out, causal):
    """dQ, dK, dV of softmax(q·kᵀ/√h)·v on (B, N, T, H) arrays, as numpy writes it out."""
    scale = 1 / math.sqrt(q.shape[-1])
    s = q @ k.swapaxes(-1, -2) * scale
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    d_value = p.swapaxes(-1, -2) @ d_out
    d_p = d_out @ v.swapaxes(-1, -2)
    d_s = p * (d_p - (d_p * p).sum(-1, keepdims=True))
    return d_s @ k * scale, d_s.swapaxes(-1, -2) @ q * scale, d_value


def backward_rows(report):
    """The training kernels from AttentionBench (forward keeping the log-sum-exp, backward)
    beside numpy's backward formula on the same sizes."""
    rows = []
    for name, timing in report["attention"].items():
        b, n, t, h = (int(part[1:]) for part in name.split("_")[1:5])
        causal = name.endswith("causal")
        rng = np.random.default_rng(3)
        q, k, v, d_out = (rng.standard_normal((b, n, t, h), dtype=np.float32) for _ in range(4))
        flops = 10 * b * n * t * t * h * (0.5 if causal else 1)
        row = {"name": f"{name}_backward", "flops": flops, "seconds": timing["backward_seconds"],
               "seconds_1_thread": timing["backward_seconds_1_thread"], "forward_seconds": timing["forward_seconds"]}
        TIMED.append((row, {"numpy_seconds": lambda q=q, k=k, v=v, d=d_out, c=causal: numpy_sdpa_backward(q, k, v, d, c)}))
        rows.append(row)
    return rows


# -- decode steps with a key/value cache (issue 17) --------------------------------------------

def decode_step_workload(name, kind, dim, heads, head_dim, s, kv_heads=None, batch=1):
    """One decoder step of MultiHeadAttention (kind "mha") or GroupQueryAttention ("gqa") with a
    key/value cache filled to s − 1 tokens: layer(x, x, use_causal_mask=True, cache=cache,
    cache_update_index=s − 1) on one new token per row (it reads the s filled rows), against the
    hand-written route: numpy projections from get_weights(), the new key and value written into
    (B, S, K, H) numpy caches, attention.dot_product_attention on the filled prefix, numpy output
    projection. The bound: the used cache (2·B·s·K·H·4 bytes) read once at the copy bandwidth
    plus the projections' FLOPs at the FMA peak; "with weights" adds the weights' bytes read
    once (one row per step: a projection is a matrix-vector product, bound by reading its
    weights, which no FLOP rate hides)."""
    kv_heads = kv_heads or heads
    rng = np.random.default_rng(5)
    if kind == "mha":
        layer = attention.MultiHeadAttention(num_heads=heads, key_dim=head_dim, seed=1)
    else:
        layer = attention.GroupQueryAttention(head_dim=head_dim, num_query_heads=heads,
                                              num_key_value_heads=kv_heads, seed=1)
    layer.build((batch, 1, dim), (batch, 1, dim))
    wq, bq, wk, bk, wv, bv, wo, bo = layer.get_weights()
    cache = np.zeros((batch, 2, s, kv_heads, head_dim), np.float32)
    cache[:, :, :s - 1] = rng.standard_normal((batch, 2, s - 1, kv_heads, head_dim), dtype=np.float32)
    x = rng.standard_normal((batch, 1, dim), dtype=np.float32)
    p = s - 1
    keys, values = np.ascontiguousarray(cache[:, 0]), np.ascontiguousarray(cache[:, 1])
    wq2, wk2, wv2 = (w.reshape(dim, -1) for w in (wq, wk, wv))
    wo2, bq2, bk2, bv2 = wo.reshape(heads * head_dim, dim), bq.reshape(-1), bk.reshape(-1), bv.reshape(-1)

    def ours():
        return layer(x, x, use_causal_mask=True, cache=cache, cache_update_index=p)[0].reshape(batch, dim)

    def numpy_route():
        x2 = x.reshape(batch, dim)
        q = (x2 @ wq2 + bq2).reshape(batch, 1, heads, head_dim)
        keys[:, p] = (x2 @ wk2 + bk2).reshape(batch, kv_heads, head_dim)
        values[:, p] = (x2 @ wv2 + bv2).reshape(batch, kv_heads, head_dim)
        attended = attention.dot_product_attention(q, keys[:, :p + 1], values[:, :p + 1])
        return attended.reshape(batch, heads * head_dim) @ wo2 + bo

    cache_bytes = 2 * batch * s * kv_heads * head_dim * 4
    flops = 2 * batch * dim * (heads + 2 * kv_heads) * head_dim + 2 * batch * heads * head_dim * dim
    row = time_workload(name, ours, numpy_route, scaling=True)
    row.update(cache_bytes=cache_bytes, projection_flops=flops,
               weight_bytes=sum(w.nbytes for w in (wq, bq, wk, bk, wv, bv, wo, bo)))
    return row


def decode_step_rows():
    return [decode_step_workload("decode_step_mha_d512_h8_s2048", "mha", 512, 8, 64, 2048),
            decode_step_workload("decode_step_gqa_d4096_q32_kv8_h128_s4096", "gqa", 4096, 32, 128, 4096, kv_heads=8)]


def decode_step_table(results):
    """The decode-step rows against their bound and the hand-written numpy route."""
    peak, copy = results["fma_peak_flops"], results["copy_bytes_per_second"]
    lines = [f"decode steps (one new token, cache filled to S; bound = used cache bytes at the copy bandwidth "
             f"+ projection FLOPs at the FMA peak; + weights: also the weights' bytes at the bandwidth)",
             f"{'workload':<{NAME + 6}} {'time':>9} {'bound':>9} {'of bound':>8} {'+weights':>9} {'of it':>6} "
             f"{'numpy route':>11} {'×numpy':>7} {'2T/1T':>6} {'err':>7}"]
    for row in results["decode_steps"]:
        bound = row["cache_bytes"] / copy + row["projection_flops"] / peak
        with_weights = bound + row["weight_bytes"] / copy
        row.update(bound_seconds=bound, bound_with_weights_seconds=with_weights)
        scaling = row["seconds_1_thread"] / row["seconds"] if "seconds_1_thread" in row else None
        lines.append(f"{row['name']:<{NAME + 6}} {duration(row['seconds']):>9} {duration(bound):>9} "
                     f"{bound / row['seconds']:>8.0%} {duration(with_weights):>9} {with_weights / row['seconds']:>6.0%} "
                     f"{duration(row['numpy_seconds']):>11} {times(ratio(row, 'numpy')):>7} {times(scaling):>6} "
                     f"{row['error_vs_numpy']:>7.0e}")
    return "\n".join(lines)


# -- the table ------------------------------------------------------------------------------

def duration(seconds):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale or unit == "µs":
            return f"{seconds / scale:.3g} {unit}"


def ratio(row, other):
    """The other's time over ours (a speed ratio), or None."""
    key = f"{other}_seconds"
    return row[key] / row["seconds"] if key in row else None


def times(x):
    return "—" if x is None else f"{x:.2f}×"


def table(results):
    peak, copy = results["fma_peak_flops"], results["copy_bytes_per_second"]
    lines = [
        f"libattention {results['version']} bench — {results['kernels']} kernels, float32, att threads {THREADS}; numpy "
        f"{np.__version__}; torch {results['peers']['torch']}; onnxruntime {results['peers']['onnxruntime']}",
        f"FMA peak {peak / 1e9:.0f} GFLOP/s ({THREADS} threads; 1 thread "
        f"{results['fma_peak_flops_1_thread'] / 1e9:.0f}); copy bandwidth {copy / 1e9:.1f} GB/s (read+write)",
        f"{'workload':<{NAME}} {'time':>9} {'rate':>12} {'of peak':>8} {'numpy':>9} {'×numpy':>7} "
        f"{'×torch':>7} {'×ort':>6} {'2T/1T':>6} {'err':>7}",
    ]
    for row in results["workloads"] + results["backward"] + results["gemm"]:
        if "bytes_read" in row:
            rate = row["bytes_read"] / row["seconds"]
            rate_text, share = f"{rate / 1e9:.1f} GB/s", f"{rate / copy:.0%} bw"
        else:
            rate = row["flops"] / row["seconds"]
            rate_text, share = f"{rate / 1e9:.1f} GF/s", f"{rate / peak:.0%}"
        scaling = row["seconds_1_thread"] / row["seconds"] if "seconds_1_thread" in row else None
        error = f"{row['error_vs_numpy']:.0e}" if "error_vs_numpy" in row else ""
        lines.append(f"{row['name']:<{NAME}} {duration(row['seconds']):>9} {rate_text:>12} {share:>8} "
                     f"{duration(row['numpy_seconds']):>9} {times(ratio(row, 'numpy')):>7} "
                     f"{times(ratio(row, 'torch')):>7} {times(ratio(row, 'ort')):>6} {times(scaling):>6} "
                     f"{error:>7}")
    lines.append("backward / training forward (the forward that keeps the log-sum-exp rows), same run: "
                 + ", ".join(f"{row['name'].removesuffix('_backward')} {row['seconds'] / row['forward_seconds']:.2f}×"
                             for row in results["backward"]))
    tiny = results["tiny"]
    lines.append(f"{'tiny_b1_t16_d64 C call':<{NAME}} {duration(tiny['c_seconds_per_call']):>9}")
    lines.append(f"{'tiny_b1_t16_d64 Python call':<{NAME}} {duration(tiny['python_seconds_per_call']):>9} "
                 f"{'':>12} {'':>8} {duration(tiny['numpy_seconds_per_call']):>9} "
                 f"{times(tiny['numpy_seconds_per_call'] / tiny['python_seconds_per_call']):>7} "
                 f"{'':>7} {'':>6} {'':>6} {tiny['error_vs_numpy']:>7.0e}")
    memory = results["memory"]
    extra = memory["peak_rss_bytes"] - memory["baseline_rss_bytes"] - memory["inputs_outputs_bytes"]
    lines.append(f"{memory['name']} ({duration(memory['seconds'])}): peak RSS "
                 f"{memory['peak_rss_bytes'] / MIB:.0f} MiB = {memory['baseline_rss_bytes'] / MIB:.0f} "
                 f"before the inputs + {memory['inputs_outputs_bytes'] / MIB:.0f} inputs+outputs "
                 f"+ {extra / MIB:.0f} MiB more")
    lines.append(f"other processes used {results['other_cpu_share']:.0%} of the {results['cpus']} CPUs "
                 f"during this {results['bench_seconds']:.0f} s run (figures are only as good as that is low)")
    lines.append("×numpy, ×torch, ×ort: their time / ours (> 1: libattention faster); "
                 "err: max |ours − numpy| / max |numpy|")
    lines += ["flops: " + model for model in FLOP_MODELS]
    lines += [f"ort skipped: {note}" for note in ORT_NOTES]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fma-probe", default=ROOT / ".build/bench/fma_probe")
    parser.add_argument("--tiny-call", default=ROOT / ".build/bench/tiny_call")
    parser.add_argument("--gemm-bench", default=ROOT / ".build/release/AttentionBench")
    parser.add_argument("--json", default=ROOT / "benchmarks/results/latest.json")
    parser.add_argument("--peak-rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_rss_child:
        return peak_rss_child()

    attention.set_num_threads(THREADS)
    if torch is not None:
        torch.set_num_threads(THREADS)
    start, (machine_start, own_start) = time.perf_counter(), cpu_seconds()
    memory = peak_rss()
    first_probe = fma_peak(args.fma_probe, THREADS)
    our_gemm = gemm_report(args.gemm_bench)
    results = {
        "version": attention.__version__,
        "kernels": attention.cpu_kernels(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "threads": THREADS,
        "peers": {"torch": getattr(torch, "__version__", "not importable"),
                  "onnxruntime": getattr(ort, "__version__", "not importable")
                  + ("" if ort is None or onnx is not None else " (onnx missing: no column)")},
        "copy_bytes_per_second": copy_bandwidth(),
        "workloads": [
            sdpa_workload(4, 8, 512, 64),
            sdpa_workload(4, 8, 512, 64, causal=True),
            sdpa_workload(1, 8, 2048, 64),
            sdpa_workload(1, 8, 4096, 64, causal=True),
            sdpa_workload(1, 32, 4096, 128, tq=1),
            mha_workload(),
            tanh_workload("additive"),
            tanh_workload("concat"),
        ],
        "tiny": tiny_workload(args.tiny_call),
        "memory": memory,
        "gemm": gemm_rows(our_gemm),
        "backward": backward_rows(our_gemm),
        "decode_steps": decode_step_rows(),
    }
    def before_round(round_number):
        if round_number > 0:  # the first report was taken before any numpy work
            time.sleep(0.5)
            fold_report(results, gemm_report(args.gemm_bench))
            tiny = tiny_workload(args.tiny_call)
            for key in ("c_seconds_per_call", "python_seconds_per_call", "numpy_seconds_per_call"):
                results["tiny"][key] = min(results["tiny"][key], tiny[key])
    measure_rounds(before_round)
    # The peak is the better of two probes, one before and one after the workloads.
    results["fma_peak_flops"] = max(first_probe, fma_peak(args.fma_probe, THREADS))
    results["fma_peak_flops_1_thread"] = fma_peak(args.fma_probe, 1)
    results["flop_models"] = FLOP_MODELS
    results["ort_notes"] = ORT_NOTES
    results["bench_seconds"] = time.perf_counter() - start
    machine_end, own_end = cpu_seconds()
    results["other_cpu_share"] = max(0.0, (machine_end - machine_start) - (own_end - own_start)) / (
        results["bench_seconds"] * os.cpu_count())
    print(table(results))
    print(decode_step_table(results))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"figures in {path}")


if __name__ == "__main__":
    main()
