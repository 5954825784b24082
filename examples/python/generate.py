"""Greedy generation with a key/value cache: a small stack of attention layers (a toy decoder:
random embeddings, sinusoidal positions, pre-norm residual attention layers alternating
MultiHeadAttention and GroupQueryAttention) generates tokens one at a time. Each layer keeps
its keys and values in a cache of its own, updated in place by the layer; a step projects only
the new token and reads only the filled part of the cache (use_causal_mask).

    python3 examples/python/generate.py [--tokens 2048] [--prompt 32] [--layers 4] [--dim 256]

Prints the prefill time, the decode speed in tokens/s, and checks the last hidden state
against the same stack run on the whole sequence without a cache.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
import attention  # noqa: E402


def positions(start, count, dim):
    """Sinusoidal position signals of positions start ..< start + count: (count, dim)."""
    p = np.arange(start, start + count, dtype=np.float64)[:, None]
    rate = 1.0 / 10000 ** (np.arange(0, dim, 2) / dim)
    signal = np.zeros((count, dim))
    signal[:, 0::2], signal[:, 1::2] = np.sin(p * rate), np.cos(p * rate)
    return signal.astype(np.float32)


def rms_norm(x):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-6)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048, help="sequence length to reach (prompt included)")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=512)
    args = parser.parse_args()
    dim, heads, head_dim = args.dim, 8, args.dim // 8
    rng = np.random.default_rng(0)
    embedding = rng.standard_normal((args.vocab, dim)).astype(np.float32)

    layers, caches = [], []
    for i in range(args.layers):
        if i % 2 == 0:
            layer = attention.MultiHeadAttention(num_heads=heads, key_dim=head_dim, seed=i)
            kv_heads = heads
        else:
            layer = attention.GroupQueryAttention(head_dim=head_dim, num_query_heads=heads,
                                                  num_key_value_heads=2, seed=i)
            kv_heads = 2
        layer.build((1, 1, dim), (1, 1, dim))
        layers.append(layer)
        caches.append(np.zeros((1, 2, args.tokens, kv_heads, head_dim), np.float32))

    def step(tokens, start):
        """The stack on tokens at positions start ..: hidden states (1, T, dim)."""
        h = embedding[tokens][None] + positions(start, len(tokens), dim)
        for layer, cache in zip(layers, caches):
            x = rms_norm(h)
            y, returned = layer(x, x, use_causal_mask=True, cache=cache, cache_update_index=start)
            assert returned is cache  # updated in place
            h = h + y
        return h

    def next_token(h):
        return int(np.argmax(rms_norm(h[0, -1]) @ embedding.T))

    sequence = list(rng.integers(0, args.vocab, args.prompt))
    start = time.perf_counter()
    h = step(sequence, 0)
    prefill = time.perf_counter() - start
    sequence.append(next_token(h))
    start = time.perf_counter()
    while len(sequence) < args.tokens:
        h = step(sequence[-1:], len(sequence) - 1)
        sequence.append(next_token(h))
    decode = time.perf_counter() - start
    generated = args.tokens - args.prompt - 1

    # The same stack on the whole sequence (but its last token), without a cache.
    full = embedding[sequence[:-1]][None] + positions(0, len(sequence) - 1, dim)
    for layer in layers:
        x = rms_norm(full)
        full = full + layer(x, x, use_causal_mask=True)
    error = float(np.max(np.abs(full[0, -1] - h[0, -1])))

    print(f"libattention {attention.__version__} ({attention.cpu_kernels()} kernels): {args.layers} layers "
          f"(MultiHeadAttention {heads}x{head_dim} / GroupQueryAttention {heads}/2x{head_dim}), dim {dim}")
    print(f"prefill {args.prompt} tokens: {prefill * 1e3:.1f} ms")
    print(f"decode {generated} tokens to length {args.tokens}: {decode:.2f} s, {generated / decode:.0f} tokens/s "
          f"({decode / generated * 1e3:.3f} ms a token)")
    print(f"last hidden state vs the stack on the whole sequence without a cache: max |error| {error:.1e}")
    if not error < 1e-3:
        sys.exit("the cached and the uncached stack disagree")


if __name__ == "__main__":
    main()
