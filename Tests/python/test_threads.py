"""Python threads calling the wrapper at once: shared layers of every kind give, bit for bit,
the results of serial calls, and a library call runs without the GIL (ctypes releases it), so
another thread keeps calling the library while it runs.

Calls are inference calls, except in the dropout test: a training call with dropout takes its
layer's next dropout_stream atomically, so concurrent training calls on one layer draw the
masks of distinct streams, as successive calls do. Misuse (build or set_weights while calls
run) raises LayerBusyError, never crashes."""

import concurrent.futures
import threading
import time

import numpy as np
import pytest

import attention

THREADS = 8
CALLS_PER_THREAD = 60


@pytest.fixture
def restore_threads():
    before = attention.get_num_threads()
    yield
    attention.set_num_threads(before)


def _workload():
    """Calls on shared layers of every kind, some layers with two input shapes, float32 and
    float64, with and without masks, key and scores: zero-argument functions returning the
    call's results as a tuple of arrays."""
    rng = np.random.default_rng(11)

    def x(*shape):
        return rng.normal(size=shape)

    def keep(*shape):
        return rng.random(shape) < 0.7

    luong = attention.Attention(use_scale=True, dropout=0.2, seed=1)
    concat = attention.Attention(score_mode="concat", dtype="float64")
    additive = attention.AdditiveAttention(seed=2)
    mha = attention.MultiHeadAttention(4, 8, seed=3)
    mha4 = attention.MultiHeadAttention(2, 4, value_dim=3, use_gate=True, dtype="float64", seed=4)
    gqa = attention.GroupQueryAttention(8, 4, 2, sliding_window=5, seed=5)
    reuse = attention.ReuseMultiHeadAttention(4, 8, reuse_attention=2, use_relative_pe=True,
                                              pe_max_seq_length=8, seed=6)
    a = [x(2, 5, 8), x(2, 7, 8), keep(2, 5), keep(2, 7)]
    b = [x(1, 17, 8), x(1, 3, 8)]
    c = [x(2, 6, 4), x(2, 6, 4), keep(2, 6)]
    d = [x(2, 4, 6), x(2, 9, 6), keep(2, 9)]
    e = [x(2, 6, 12), x(2, 9, 12), keep(2, 6, 9)]
    f = [x(1, 3, 12), x(1, 4, 12)]
    g = [x(2, 3, 4, 6), x(2, 3, 4, 6), x(2, 3, 4, 5)]
    h = [x(2, 7, 16), x(2, 9, 16), keep(2, 9)]
    r = [x(2, 10, 16), keep(2, 10, 10), rng.random((2, 3, 10, 10))]
    p = [x(2, 6, 4, 8), x(2, 9, 2, 8), x(2, 9, 2, 8), x(1, 4, 6, 9), keep(6, 9)]
    q = [x(1, 5, 2, 4), x(1, 7, 2, 4), x(1, 7, 2, 3)]
    return [
        lambda: luong([a[0], a[1]], mask=[a[2], a[3]], return_attention_scores=True),
        lambda: (luong([b[0], b[1]], use_causal_mask=True),),
        lambda: concat([c[0], c[1]], mask=[None, c[2]], return_attention_scores=True),
        lambda: additive([d[0], d[1]], mask=[None, d[2]], return_attention_scores=True),
        lambda: mha(e[0], e[1], attention_mask=e[2], return_attention_scores=True),
        lambda: (mha(f[0], f[1], use_causal_mask=True),),
        lambda: mha4(g[0], g[1], g[2], return_attention_scores=True),
        lambda: gqa(h[0], h[1], key_mask=h[2], use_causal_mask=True, return_attention_scores=True),
        lambda: reuse(r[0], r[0], attention_mask=r[1], reuse_attention_scores=r[2],
                      return_attention_scores=True),
        lambda: (attention.dot_product_attention(p[0], p[1], p[2], bias=p[3], mask=p[4], is_causal=True),),
        lambda: (attention.dot_product_attention(q[0], q[1], q[2], scale=0.3),),
    ]


def test_threads_match_serial():
    calls = _workload()
    serial = [call() for call in calls]  # first calls build the layers, before any thread
    for results in serial:
        assert all(np.isfinite(r).all() for r in results) and np.any(results[0] != 0)

    def work(first):
        done = []
        for i in range(CALLS_PER_THREAD):
            at = (first + i) % len(calls)
            done.append((at, calls[at]()))
        return done

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        runs = list(pool.map(work, range(0, 3 * THREADS, 3)))
    assert sum(len(run) for run in runs) == THREADS * CALLS_PER_THREAD
    for run in runs:
        for at, results in run:
            assert len(results) == len(serial[at])
            for got, want in zip(results, serial[at]):
                assert got.dtype == want.dtype and got.shape == want.shape
                assert got.tobytes() == want.tobytes(), f"call {at} differs from its serial result"


def test_calls_release_the_gil(restore_threads):
    """While one thread is inside a long library call, another thread keeps completing short
    library calls: no stretch of the long call longer than half of it passes without one. If
    the GIL were held through the call, one stretch would be (nearly) all of it."""
    attention.set_num_threads(1)  # the long call takes one core, the short calls another
    rng = np.random.default_rng(12)
    length = 256
    while True:
        q, k = rng.normal(size=(1, length, 4, 64)), rng.normal(size=(1, length, 4, 64))
        started = time.perf_counter()
        attention.dot_product_attention(q, k, k)
        if time.perf_counter() - started >= 0.2 or length >= 1 << 14:
            break
        length *= 2
    short_layer = attention.Attention()
    short = [rng.normal(size=(1, 4, 8)), rng.normal(size=(1, 4, 8))]
    interval = {}

    def long_call():
        interval["start"] = time.perf_counter()
        attention.dot_product_attention(q, k, k)
        interval["end"] = time.perf_counter()

    stamps = []
    thread = threading.Thread(target=long_call)
    thread.start()
    while thread.is_alive():
        short_layer(short)
        stamps.append(time.perf_counter())
    thread.join()
    start, end = interval["start"], interval["end"]
    inside = [t for t in stamps if start < t < end]
    longest = float(np.max(np.diff([start, *inside, end])))
    assert len(inside) >= 10 and longest < 0.5 * (end - start), (
        f"{len(inside)} short calls completed during a {end - start:.3f} s call; "
        f"longest stretch without one: {longest:.3f} s")


def test_concurrent_training_calls_draw_the_masks_of_distinct_streams():
    """8 threads calling one layer with dropout at once draw 8 distinct masks: those of
    streams 0..7, which a fresh layer with the same seed draws in 8 successive calls."""
    rng = np.random.default_rng(13)
    q, v = rng.normal(size=(2, 6, 8)), rng.normal(size=(2, 9, 8))
    layer = attention.Attention(dropout=0.5, seed=77)
    layer([q, v])
    barrier = threading.Barrier(THREADS)

    def dropped(_):
        barrier.wait()
        return layer([q, v], training=True, return_attention_scores=True)[1] == 0

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        masks = {m.tobytes() for m in pool.map(dropped, range(THREADS))}
    assert len(masks) == THREADS and layer.dropout_stream == THREADS
    successive = attention.Attention(dropout=0.5, seed=77)
    assert masks == {(successive([q, v], training=True, return_attention_scores=True)[1] == 0).tobytes()
                     for _ in range(THREADS)}


def test_build_and_set_weights_while_calls_run_raise_layer_busy_error():
    """Writers racing with calls on one layer either succeed or raise LayerBusyError (a
    RuntimeError naming ATT_ERR_BUSY); calls likewise. The layer has one weight (scale: 1 as
    built, or 0.5, or 2), so every successful call gives one of three outputs."""
    rng = np.random.default_rng(14)
    # Calls long enough (~1 ms in C, outside the GIL) that writers meet them.
    q, v = rng.normal(size=(2, 256, 64)), rng.normal(size=(2, 384, 64))
    layer = attention.Attention(use_scale=True)
    scales = [np.float32(0.5), np.float32(2.0)]
    layer([q, v])
    outputs = {layer([q, v]).tobytes()}
    for scale in scales:
        layer.set_weights([scale])
        outputs.add(layer([q, v]).tobytes())
    assert len(outputs) == 3
    stop = threading.Event()
    seen = {"busy": 0, "ok": 0, "wrong": 0}

    def calls():
        while not stop.is_set():
            try:
                out = layer([q, v])
            except attention.LayerBusyError:
                seen["busy"] += 1
                continue
            seen["ok"] += 1
            seen["wrong"] += out.tobytes() not in outputs
            time.sleep(0.0005)  # a gap in which writers find the layer idle

    threads = [threading.Thread(target=calls) for _ in range(3)]
    for t in threads:
        t.start()
    busy = done = i = 0
    deadline = time.monotonic() + 20
    try:
        # At least 300 writes, and on until both a write and a refusal were seen.
        while i < 300 or not (done and busy + seen["busy"]) and time.monotonic() < deadline:
            i += 1
            try:
                if i % 3 == 0:
                    layer.build([q.shape, v.shape])
                else:
                    layer.set_weights([scales[i % 2]])
                done += 1
            except attention.LayerBusyError as error:
                assert isinstance(error, RuntimeError)
                assert "in use by another thread" in str(error) and "ATT_ERR_BUSY" in str(error)
                busy += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert seen["wrong"] == 0, "a call gave an output of no weight state"
    assert seen["ok"] > 0 and done > 0 and busy + seen["busy"] > 0, (seen, done, busy)
