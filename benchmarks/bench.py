"""`make bench`: libattention's speed on this machine, float32, 2 threads, in one run.

Every figure is measured in this run: the CPU (lscpu) and its FMA peak on 1 and 2 threads
(benchmarks/fma_probe), the memory copy bandwidth (numpy copyto of 256 MiB, read + write
counted), our time, the peers' — torch (scaled_dot_product_attention, nn.MultiheadAttention
with our layer's weights, autograd for the backward rows) and onnxruntime (the com.microsoft
MultiHeadAttention and Attention contrib ops), when importable (`make bench` runs in
.build/bench-venv, which has both) — and the same workload as a plain numpy formula (matmul +
softmax, or attention.reference). The peers get the same arrays and 2 threads (torch
set_num_threads(2) and one inter-op thread; onnxruntime intra_op_num_threads=2,
inter_op_num_threads=1). Times are medians of >= 5 calls (3-5 on the backward rows) after a
warm-up, taken in ROUNDS rounds that each visit every workload in turn (and rerun
benchmarks/AttentionBench for the GEMM and training rows, and the tiny calls); a figure is the
fastest round's median (ours, the peers' and numpy's alike), so a burst of interference from the
host — which this VM shows, unseen in /proc/stat — spoils one round, not the figure.

"×peer" is the best peer's time over ours: above 1 means libattention is faster; the peers,
not numpy, are the bar ("×numpy" is the same ratio for the numpy formula). Each output is
checked so the timed work is the right one: ours against numpy's (err = max |ours - numpy| /
max |numpy|) and each peer's against ours ("peer err", the worse of the peers; on the backward
rows, whose ours runs in AttentionBench, against numpy's gradients). A peer whose output
differs by more than PEER_TOLERANCE is not timed and says so under the table.

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


def cpu_description():
    """The CPU as lscpu names it (model name, vendor, family / model / stepping, hypervisor)
    and the vector ISA flags that matter to the kernels; /proc/cpuinfo when lscpu is missing."""
    fields = {}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}).stdout
        fields = {key.strip(): value.strip() for key, _, value in
                  (line.partition(":") for line in text.splitlines()) if value}
    except OSError:
        pass
    if "Model name" not in fields:  # no lscpu: the first processor's block of /proc/cpuinfo
        names = {"model name": "Model name", "vendor_id": "Vendor ID", "cpu family": "CPU family",
                 "model": "Model", "stepping": "Stepping", "flags": "Flags"}
        for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines():
            key, _, value = line.partition(":")
            if key.strip() in names:
                fields[names[key.strip()]] = value.strip()
    flags = set(fields.get("Flags", "").split())
    isa = ["sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
           "avx512_fp16", "amx_tile", "amx_bf16"]
    return {"model_name": fields.get("Model name", "unknown"), "vendor": fields.get("Vendor ID", "unknown"),
            "family": fields.get("CPU family"), "model": fields.get("Model"), "stepping": fields.get("Stepping"),
            "hypervisor": fields.get("Hypervisor vendor"), "isa_flags": [flag for flag in isa if flag in flags]}


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
#
# Each peer function returns None when the peer is not importable or cannot run the workload,
# else (run, output): run() is the timed call, output(run()) its result as a float numpy array
# laid out like ours, which time_workload compares with ours before timing run.

PEERS = ("torch", "ort")
PEER_TOLERANCE = 1e-4  # max |peer - ours| / max |ours| above which a peer is not timed
PEER_NOTES = []  # why a peer has no figure on a row
torch = ort = onnx = None


def load_peers():
    """Imports torch, onnxruntime and onnx when they are there (not in the peak-RSS child), and
    gives torch THREADS intra-op threads and one inter-op thread."""
    global torch, ort, onnx
    # OMP_WAIT_POLICY is left alone: PASSIVE (threads sleep at once when idle) made torch's tiny
    # call 15x slower (waking its thread every call); measure_rounds pauses before each timing
    # instead, so that no one's spinning worker threads take the cores of the next.
    torch = optional_module("torch")
    if torch is not None:
        torch.set_num_threads(THREADS)
        torch.set_num_interop_threads(1)
    ort = optional_module("onnxruntime")
    onnx = optional_module("onnx") if ort is not None else None
    if ort is not None and onnx is None:
        PEER_NOTES.append("ort: onnxruntime without the onnx package (which writes its graphs): no ort figures")


def peer_versions():
    torch_version = "not importable"
    if torch is not None:
        torch_version = f"{torch.__version__} ({'CUDA build, run on the CPU' if torch.version.cuda else 'CPU build'})"
    return {"torch": torch_version,
            "onnxruntime": "not importable" if ort is None else ort.__version__ + ("" if onnx else " (no onnx)")}


def torch_sdpa(q, k, v, causal, scale=None):
    """torch's scaled_dot_product_attention on (B, N, T, H) copies of (B, T, N, H) inputs."""
    if torch is None:
        return None
    tq, tk, tv = (torch.from_numpy(np.ascontiguousarray(a.transpose(0, 2, 1, 3))) for a in (q, k, v))
    # No inference_mode: the inputs do not require grad, so autograd records nothing anyway.
    return (lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal, scale=scale),
            lambda out: out.numpy().transpose(0, 2, 1, 3))


def torch_mha(x, weights, heads, key_dim):
    """torch.nn.MultiheadAttention (batch_first, eval, need_weights=False: its fast path) with
    our layer's weights (Keras's kernels (D, N, H), (N, H, D) as in_proj_weight's rows and
    out_proj), on self-attention input x."""
    if torch is None:
        return None
    dim = x.shape[-1]
    if heads * key_dim != dim:  # torch's layer projects dim to dim
        PEER_NOTES.append(f"torch: nn.MultiheadAttention needs heads·key_dim = dim ({heads}·{key_dim} ≠ {dim})")
        return None
    wq, bq, wk, bk, wv, bv, wo, bo = (torch.from_numpy(np.ascontiguousarray(w)) for w in weights)
    layer = torch.nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        layer.in_proj_weight.copy_(torch.cat([w.reshape(dim, dim).T for w in (wq, wk, wv)]))
        layer.in_proj_bias.copy_(torch.cat([b.reshape(dim) for b in (bq, bk, bv)]))
        layer.out_proj.weight.copy_(wo.reshape(dim, dim).T)
        layer.out_proj.bias.copy_(bo)
    layer.eval().requires_grad_(False)
    tx = torch.from_numpy(x)
    return lambda: layer(tx, tx, tx, need_weights=False)[0], lambda out: out.numpy()


def torch_sdpa_backward(q, k, v, d_out, causal):
    """torch's autograd through scaled_dot_product_attention on (B, N, T, H) arrays: (forward,
    forward_and_backward, output); the backward's time is the second's minus the first's, both
    with autograd recording (the training forward), as ours is the backward alone after its
    training forward. output(grads) stacks dQ, dK, dV."""
    if torch is None:
        return None
    tq, tk, tv = (torch.from_numpy(a).requires_grad_() for a in (q, k, v))
    t_out = torch.from_numpy(d_out)

    def forward():
        return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
    return (forward, lambda: torch.autograd.grad(forward(), (tq, tk, tv), t_out),
            lambda grads: np.stack([g.numpy() for g in grads]))


def torch_matmul(a, b):
    if torch is None:
        return None
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return lambda: ta @ tb, lambda out: out.numpy()


def ort_model(what, nodes, feeds, initializers=()):
    """(run, output) for an onnxruntime session of `nodes` (com.microsoft ops allowed), THREADS
    intra-op threads and one inter-op thread, fed `feeds`; None (and a note) when onnxruntime or
    onnx is missing or the session fails (an old onnxruntime without the op or attribute)."""
    if ort is None or onnx is None:
        return None
    try:
        from onnx import TensorProto, helper, numpy_helper
        graph = helper.make_graph(
            nodes, "bench",
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(a.shape)) for name, a in feeds.items()],
            [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
            initializer=[numpy_helper.from_array(np.ascontiguousarray(a), name) for name, a in initializers])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.microsoft", 1)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        session.run(None, feeds)
    except Exception as error:
        PEER_NOTES.append(f"ort: {what}: {error}".splitlines()[0][:150])
        return None
    return lambda: session.run(None, feeds)[0], None


def ort_sdpa(q, k, v, causal, scale=None):
    """onnxruntime's com.microsoft MultiHeadAttention on (B, T, N·H) views of the (B, T, N, H)
    inputs (its BSNH layout, heads packed); causal is its unidirectional attribute."""
    b, t, n, h = q.shape
    feeds = {name: a.reshape(a.shape[0], a.shape[1], -1) for name, a in (("q", q), ("k", k), ("v", v))}
    attributes = {"num_heads": n, **({"unidirectional": 1} if causal else {}),
                  **({} if scale is None else {"scale": float(scale)})}
    if ort is None or onnx is None:
        return None
    from onnx import helper
    node = helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["o"], domain="com.microsoft", **attributes)
    peer = ort_model(f"{'causal ' if causal else ''}MultiHeadAttention", [node], feeds)
    return peer and (peer[0], lambda out: out.reshape(b, t, n, -1))


def ort_mha(x, weights, heads, key_dim):
    """The MultiHeadAttention layer in onnxruntime as its transformer optimiser writes it: the
    com.microsoft Attention op (one (D, 3·N·H) input projection, bias, attention) then MatMul +
    Add for the output projection, with our layer's weights."""
    if ort is None or onnx is None:
        return None
    from onnx import helper
    wq, bq, wk, bk, wv, bv, wo, bo = weights
    dim = x.shape[-1]
    initializers = [("w_qkv", np.concatenate([w.reshape(dim, -1) for w in (wq, wk, wv)], axis=1)),
                    ("b_qkv", np.concatenate([b.reshape(-1) for b in (bq, bk, bv)])),
                    ("w_o", wo.reshape(-1, dim)), ("b_o", bo)]
    nodes = [helper.make_node("Attention", ["x", "w_qkv", "b_qkv"], ["a"], domain="com.microsoft", num_heads=heads),
             helper.make_node("MatMul", ["a", "w_o"], ["m"]), helper.make_node("Add", ["m", "b_o"], ["o"])]
    peer = ort_model("Attention + MatMul + Add", nodes, {"x": x}, initializers)
    return peer and (peer[0], lambda out: out)


# -- workloads ------------------------------------------------------------------------------

# Each workload's row and its timed functions (key in the row → function), for the rounds.
TIMED = []


def checked_peers(row, peers, expected):
    """The peers' timed calls ({"<peer>_seconds": run}) of those whose output agrees with
    `expected` (ours, or numpy's where ours is not at hand) within PEER_TOLERANCE; each peer's
    error goes in the row as "<peer>_error", and a note says why a peer is not timed."""
    timed = {}
    for peer, entry in (peers or {}).items():
        if entry is None:
            continue
        run, output = entry
        row[f"{peer}_error"] = error = relative_error(output(run()), expected)
        if error <= PEER_TOLERANCE:
            timed[f"{peer}_seconds"] = run
        else:
            PEER_NOTES.append(f"{peer}: {row['name']}: output differs from ours by {error:.1e}: not timed")
    return timed


def time_workload(name, ours, numpy_fn, *, flops=None, bytes_read=None, peers=None, scaling=True):
    """Checks ours against the numpy formula and the peers against ours, and registers the
    timings of ours (at THREADS and, if scaling, 1 thread), numpy's and the peers' for
    `measure_rounds`. Returns the row."""
    our_output = ours()
    row = {"name": name, "error_vs_numpy": relative_error(our_output, numpy_fn())}
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
    timed |= checked_peers(row, peers, our_output)
    TIMED.append((row, {key: fn for key, fn in timed.items() if fn is not None}))
    return row


def measure_rounds(before_round):
    """ROUNDS passes over every registered workload, each after before_round(round number);
    each timing's figure is its fastest round's median, and the row keeps every round's median
    under "<key>_rounds"."""
    for round_number in range(ROUNDS):
        before_round(round_number)
        for row, timed in TIMED:
            # Ours first, after a pause: OpenBLAS's, OpenMP's and onnxruntime's worker threads
            # spin for a while after numpy's or the peers' last call and would take our cores;
            # a shorter pause before each of the others, for the same reason.
            time.sleep(0.5)
            for index, (key, fn) in enumerate(timed.items()):
                if index:
                    time.sleep(0.05)
                # numpy's backward formulas take seconds a call: fewer repeats on those rows.
                repeats = {"min_repeats": 3, "max_repeats": 5} if row["name"].endswith("_backward") else {}
                row.setdefault(f"{key}_rounds", []).append(median_seconds(fn, **repeats))
                row[key] = min(row[f"{key}_rounds"])
            print(f"  round {round_number + 1}/{ROUNDS}: measured {row['name']}", file=sys.stderr)


def finish_peers(rows, ours="seconds", suffix="_seconds"):
    """After the rounds: the torch backward time (forward + backward minus forward, each its
    fastest round's median), and each row's best peer and "peer_ratio" (the best peer's time,
    row["<peer><suffix>"], over ours, row[ours])."""
    for row in rows:
        if "torch_forward_backward_seconds" in row:
            row["torch_seconds"] = max(0.0, row["torch_forward_backward_seconds"] - row["torch_forward_seconds"])
        peer_times = {peer: row[f"{peer}{suffix}"] for peer in PEERS if f"{peer}{suffix}" in row}
        if peer_times:
            row["best_peer"] = min(peer_times, key=peer_times.get)
            row["peer_ratio"] = peer_times[row["best_peer"]] / row[ours]


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
    """The whole MultiHeadAttention layer (projections with biases) on self-attention input;
    the peers' layers get its weights."""
    x = np.random.default_rng(1).standard_normal((b, t, dim), dtype=np.float32)
    layer = attention.MultiHeadAttention(num_heads=heads, key_dim=key_dim, seed=1)
    layer.build(x.shape, x.shape)
    weights = layer.get_weights()
    nh = heads * key_dim
    flops = 2 * b * t * dim * nh * 3 + 2 * b * t * nh * dim + 4 * b * heads * t * t * key_dim
    return time_workload(f"mha_b{b}_t{t}_dim{dim}_h{heads}", lambda: layer(x, x),
                         lambda: numpy_mha(x, weights, heads, key_dim), flops=flops,
                         peers={"torch": torch_mha(x, weights, heads, key_dim),
                                "ort": ort_mha(x, weights, heads, key_dim)})


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
    """Per-call time of Attention (dot scores, no scale) on query = value = (1, 16, 64) through
    C (tiny_call) and through Python, and of the peers' same call: torch's
    scaled_dot_product_attention(q, v, v, scale=1) on tensors made once, onnxruntime's
    MultiHeadAttention (one head, scale 1) on the numpy arrays."""
    rng = np.random.default_rng(3)
    q, v = (rng.standard_normal((1, 16, 64), dtype=np.float32) for _ in range(2))
    layer = attention.Attention()
    ours = layer([q, v])

    def per_call(fn):
        number = 2000
        return statistics.median(timeit.repeat(fn, number=number, repeat=5)) / number
    c_seconds = float(subprocess.run([str(tiny_call), str(THREADS)], check=True, capture_output=True,
                                     text=True).stdout) * 1e-6
    row = {"name": "tiny_b1_t16_d64", "c_seconds_per_call": c_seconds,
           "python_seconds_per_call": per_call(lambda: layer([q, v])),
           "numpy_seconds_per_call": per_call(lambda: reference.attention(q, v)[0]),
           "error_vs_numpy": relative_error(ours, reference.attention(q, v)[0])}
    q4, v4 = q[:, :, None, :], v[:, :, None, :]  # (B, T, N = 1, H)
    peers = {"torch": torch_sdpa(q4, v4, v4, False, scale=1.0), "ort": ort_sdpa(q4, v4, v4, False, scale=1.0)}
    for key, run in checked_peers(row, peers, ours[:, :, None, :]).items():
        row[key.replace("_seconds", "_seconds_per_call")] = per_call(run)
    return row


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
    """Our GEMM (from gemm_report), numpy's and torch's float32 matmul on n × n, n = 512, 1024,
    2048 (torch's checked against numpy's: ours runs in AttentionBench)."""
    rows = []
    for size, rate in report["gemm_flops"].items():
        n = int(size)
        rng = np.random.default_rng(n)
        a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        flops = 2 * n**3
        row = {"name": f"gemm_{n}", "flops": flops, "seconds": flops / rate, "threads": report["threads"]}
        timed = {"numpy_seconds": lambda a=a, b=b: a @ b} | checked_peers(row, {"torch": torch_matmul(a, b)}, a @ b)
        TIMED.append((row, timed))
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
    beside numpy's backward formula and torch's autograd on the same sizes (torch's gradients
    checked against numpy's). onnxruntime's inference sessions have no backward."""
    rows = []
    for name, timing in report["attention"].items():
        b, n, t, h = (int(part[1:]) for part in name.split("_")[1:5])
        causal = name.endswith("causal")
        rng = np.random.default_rng(3)
        q, k, v, d_out = (rng.standard_normal((b, n, t, h), dtype=np.float32) for _ in range(4))
        flops = 10 * b * n * t * t * h * (0.5 if causal else 1)
        row = {"name": f"{name}_backward", "flops": flops, "seconds": timing["backward_seconds"],
               "seconds_1_thread": timing["backward_seconds_1_thread"], "forward_seconds": timing["forward_seconds"]}
        timed = {"numpy_seconds": lambda q=q, k=k, v=v, d=d_out, c=causal: numpy_sdpa_backward(q, k, v, d, c)}
        peer = torch_sdpa_backward(q, k, v, d_out, causal)
        if peer is not None:
            forward, forward_backward, output = peer
            if checked_peers(row, {"torch": (forward_backward, output)},
                             np.stack(numpy_sdpa_backward(q, k, v, d_out, causal))):
                timed |= {"torch_forward_seconds": forward, "torch_forward_backward_seconds": forward_backward}
        TIMED.append((row, timed))
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
    return "-" if x is None else f"{x:.2f}×"


def maybe(row, key, form):
    return form(row[key]) if key in row else "-"


def table(results):
    peak, copy, cpu = results["fma_peak_flops"], results["copy_bytes_per_second"], results["cpu"]
    peers = results["peers"]
    identity = ", ".join(f"{name} {cpu[key]}" for name, key in (("family", "family"), ("model", "model"),
                                                                 ("stepping", "stepping")) if cpu[key])
    lines = [
        f"libattention {results['version']} bench — float32, {THREADS} threads (ours; torch intra-op, 1 inter-op; "
        f"onnxruntime intra-op {THREADS}, inter-op 1); python {results['python']}",
        f"CPU {cpu['model_name']} ({cpu['vendor']}, {identity}"
        + (f", {cpu['hypervisor']} guest" if cpu["hypervisor"] else "") + f"), {results['cpus']} CPUs; "
        f"ISA {' '.join(cpu['isa_flags'])}; our kernels: {results['kernels']}",
        f"FMA peak {peak / 1e9:.0f} GFLOP/s ({THREADS} threads), {results['fma_peak_flops_1_thread'] / 1e9:.0f} "
        f"(1 thread); copy bandwidth {copy / 1e9:.1f} GB/s (read+write)",
        f"peers: torch {peers['torch']}; onnxruntime {peers['onnxruntime']}; numpy {np.__version__}",
        f"{'workload':<{NAME}} {'time':>9} {'rate':>11} {'of peak':>7} {'torch':>9} {'ort':>9} {'×peer':>6} "
        f"{'×numpy':>7} {'2T/1T':>5} {'err':>6} {'peer err':>8}",
    ]

    def peer_columns(row, suffix="_seconds"):
        errors = [row[f"{peer}_error"] for peer in PEERS if f"{peer}_error" in row]
        return (f"{maybe(row, 'torch' + suffix, duration):>9} {maybe(row, 'ort' + suffix, duration):>9} "
                f"{maybe(row, 'peer_ratio', times):>6}", f"{max(errors):.0e}" if errors else "-")
    for row in results["workloads"] + results["backward"] + results["gemm"]:
        if "bytes_read" in row:
            rate = row["bytes_read"] / row["seconds"]
            rate_text, share = f"{rate / 1e9:.1f} GB/s", f"{rate / copy:.0%}bw"
        else:
            rate = row["flops"] / row["seconds"]
            rate_text, share = f"{rate / 1e9:.1f} GF/s", f"{rate / peak:.0%}"
        scaling = row["seconds_1_thread"] / row["seconds"] if "seconds_1_thread" in row else None
        columns, peer_error = peer_columns(row)
        lines.append(f"{row['name']:<{NAME}} {duration(row['seconds']):>9} {rate_text:>11} {share:>7} {columns} "
                     f"{times(ratio(row, 'numpy')):>7} {times(scaling):>5} {maybe(row, 'error_vs_numpy', '{:.0e}'.format):>6} "
                     f"{peer_error:>8}")
    tiny = results["tiny"]
    columns, peer_error = peer_columns(tiny, "_seconds_per_call")
    lines.append(f"{'tiny_b1_t16_d64 Python call':<{NAME}} {duration(tiny['python_seconds_per_call']):>9} "
                 f"{'':>11} {'':>7} {columns} "
                 f"{times(tiny['numpy_seconds_per_call'] / tiny['python_seconds_per_call']):>7} {'':>5} "
                 f"{tiny['error_vs_numpy']:>6.0e} {peer_error:>8}")
    lines.append(f"{'tiny_b1_t16_d64 C call':<{NAME}} {duration(tiny['c_seconds_per_call']):>9}")
    lines.append("backward / training forward (the forward that keeps the log-sum-exp rows), same run: "
                 + ", ".join(f"{row['name'].removesuffix('_backward')} {row['seconds'] / row['forward_seconds']:.2f}×"
                             for row in results["backward"]))
    memory = results["memory"]
    extra = memory["peak_rss_bytes"] - memory["baseline_rss_bytes"] - memory["inputs_outputs_bytes"]
    lines.append(f"{memory['name']} ({duration(memory['seconds'])}): peak RSS "
                 f"{memory['peak_rss_bytes'] / MIB:.0f} MiB = {memory['baseline_rss_bytes'] / MIB:.0f} "
                 f"before the inputs + {memory['inputs_outputs_bytes'] / MIB:.0f} inputs+outputs "
                 f"+ {extra / MIB:.0f} MiB more")
    lines.append(f"other processes used {results['other_cpu_share']:.0%} of the {results['cpus']} CPUs "
                 f"during this {results['bench_seconds']:.0f} s run (figures are only as good as that is low)")
    lines += [
        "torch, ort: their times (torch's backward: forward+backward − forward, autograd; ort: com.microsoft "
        "MultiHeadAttention, the mha row Attention + MatMul + Add)",
        "×peer: the best peer's time / ours (> 1: libattention faster; the bar); ×numpy: numpy's formula's time / ours",
        "err: max |ours − numpy| / max |numpy|; peer err: the worse peer's max |peer − ours| / max |ours| "
        "(backward rows and gemm: against numpy's)",
    ]
    lines += ["flops: " + model for model in FLOP_MODELS]
    lines += [f"peer note: {note}" for note in dict.fromkeys(PEER_NOTES)]
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
    start, (machine_start, own_start) = time.perf_counter(), cpu_seconds()
    memory = peak_rss()  # while this process is small: before the peers are imported
    first_probe = fma_peak(args.fma_probe, THREADS)
    our_gemm = gemm_report(args.gemm_bench)
    load_peers()
    results = {
        "version": attention.__version__,
        "kernels": attention.cpu_kernels(),
        "machine": platform.machine(),
        "cpu": cpu_description(),
        "cpus": os.cpu_count(),
        "threads": THREADS,
        "python": f"{os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable} "
                  f"{platform.python_version()}",
        "peers": peer_versions(),
        "peer_threads": {"torch": {"intra_op": THREADS, "inter_op": 1},
                         "onnxruntime": {"intra_op": THREADS, "inter_op": 1}},
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
            for key in ("c_seconds_per_call", "python_seconds_per_call", "numpy_seconds_per_call",
                        *(f"{peer}_seconds_per_call" for peer in PEERS)):
                if key in tiny:
                    results["tiny"][key] = min(results["tiny"].get(key, math.inf), tiny[key])
    measure_rounds(before_round)
    finish_peers(results["workloads"] + results["backward"] + results["gemm"])
    finish_peers([results["tiny"]], ours="python_seconds_per_call", suffix="_seconds_per_call")
    # The peak is the better of two probes, one before and one after the workloads.
    results["fma_peak_flops"] = max(first_probe, fma_peak(args.fma_probe, THREADS))
    results["fma_peak_flops_1_thread"] = fma_peak(args.fma_probe, 1)
    results["flop_models"] = FLOP_MODELS
    results["peer_notes"] = list(dict.fromkeys(PEER_NOTES))
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
