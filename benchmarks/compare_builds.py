"""`make bench-builds`: builds of libattention side by side, in one run of the machine.

Each build is a library path, optionally with an ATTENTION_MAX_ISA cap and the directory of
the Python package to drive it with (an older checkout's, for a before/after); in each of ROUNDS
rounds every build runs every workload in a fresh process, in turn, so host interference
spoils a round of every build alike. A figure is the fastest round's median of >= 5 calls.
float32, 2 threads.

    python3 benchmarks/compare_builds.py NAME=PATH[:CAP][@PACKAGE_DIR] ...
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 3


def workloads():
    """name -> (call, GFLOP of one call)."""
    import numpy as np

    import attention

    rng = np.random.default_rng(0)

    def arrays(*shape, count=3):
        return [rng.standard_normal(shape, dtype=np.float32) for _ in range(count)]

    q, k, v = arrays(4, 512, 8, 64)
    q2, k2, v2 = arrays(1, 2048, 8, 64)
    x = rng.standard_normal((8, 256, 512), dtype=np.float32)
    mha = attention.MultiHeadAttention(num_heads=8, key_dim=64, seed=1)
    mha.build(x.shape, x.shape)
    aq, av = arrays(8, 256, 128, count=2)
    additive = attention.AdditiveAttention(seed=1)
    additive.build([aq.shape, av.shape])
    gq, gv = arrays(1, 2048, 64, count=2)
    dot = attention.Attention(use_scale=True)
    dot.build([gq.shape, gv.shape])
    d_out = np.ones_like(gq)
    bq, bx = arrays(4, 256, 512, count=2)
    d_mha = np.ones_like(bx)
    sdpa = 4 * 4 * 8 * 512 * 512 * 64 / 1e9
    return {
        "sdpa_b4_h8_t512_d64": (lambda: attention.dot_product_attention(q, k, v), sdpa),
        "sdpa_b4_h8_t512_d64_causal": (lambda: attention.dot_product_attention(q, k, v, is_causal=True), sdpa / 2),
        "sdpa_b1_h8_t2048_d64": (lambda: attention.dot_product_attention(q2, k2, v2), 4 * 8 * 2048**2 * 64 / 1e9),
        "mha_b8_t256_dim512_h8": (lambda: mha(x, x), (2 * 8 * 256 * 512 * 512 * 4 + 4 * 8 * 8 * 256**2 * 64) / 1e9),
        "additive_b8_t256_dim128": (lambda: additive([aq, av]), 8 * 256 * 256 * 6 * 128 / 1e9),
        "attention_b1_t2048_d64_backward": (
            lambda: dot.gradients([gq, gv], output_gradient=d_out), 10 * 2048**2 * 64 / 1e9),
        "mha_b4_t256_dim512_h8_backward": (
            lambda: mha.gradients(bx, bx, output_gradient=d_mha), 3 * (2 * 4 * 256 * 512 * 512 * 4) / 1e9
            + 10 * 4 * 8 * 256**2 * 64 / 1e9),
    }


def measure():
    """Child process: each workload's median seconds, as JSON on stdout."""
    import attention

    attention.set_num_threads(2)
    result = {"kernels": attention.cpu_kernels() if hasattr(attention, "cpu_kernels") else "n/a"}
    for name, (call, _) in workloads().items():
        call()
        times = []
        while len(times) < 5 or (sum(times) < 0.5 and len(times) < 40):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        result[name] = statistics.median(times)
    print(json.dumps(result))


def main(builds):
    sys.path.insert(0, str(ROOT / "python"))
    flops = {name: f for name, (_, f) in workloads().items()}
    best, kernels = {}, {}
    for _ in range(ROUNDS):
        for build in builds:
            name, spec = build.split("=", 1)
            spec, _, package = spec.partition("@")
            path, _, cap = spec.partition(":")
            env = {**os.environ, "ATTENTION_LIB": str(Path(path).resolve()),
                   "ATTENTION_PACKAGE": package or str(ROOT / "python")}
            env.pop("ATTENTION_MAX_ISA", None)
            if cap:
                env["ATTENTION_MAX_ISA"] = cap
            out = subprocess.run([sys.executable, __file__, "--child"], env=env, check=True,
                                 capture_output=True, text=True).stdout
            result = json.loads(out)
            kernels[name] = result.pop("kernels")
            for workload, seconds in result.items():
                key = (name, workload)
                best[key] = min(best.get(key, seconds), seconds)
    names = [b.split("=", 1)[0] for b in builds]
    print("GFLOP/s, float32, 2 threads, fastest of", ROUNDS, "rounds; kernels:",
          ", ".join(f"{n} = {kernels[n]}" for n in names))
    print(f"{'workload':<34}" + "".join(f"{n:>16}" for n in names))
    for workload in flops:
        cells = "".join(f"{flops[workload] / best[(n, workload)]:>16.1f}" for n in names)
        print(f"{workload:<34}{cells}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        sys.path.insert(0, os.environ["ATTENTION_PACKAGE"])
        measure()
    else:
        main(sys.argv[1:])
