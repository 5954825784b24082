"""Train a MultiHeadAttention layer with plain SGD in numpy: learn to reverse a sequence.

The task. A sequence holds T = 8 tokens drawn from a vocabulary of V = 8. Each position's
input vector (D = 16) is its token's embedding plus a fixed positional encoding:

    x[t] = E[token[t]] + P[t]      E[v] = one-hot v in dims 0..7
                                   P[t] = 2 * one-hot t in dims 8..15

and the target at position t is the embedding of the token at position T-1-t (the sequence
reversed). One self-attention layer, layer(x, x), can do this exactly: the positional parts of
query and key make position t attend to position T-1-t, and the value/output projections
carry that position's token through. The layer starts from Keras's initialisation and learns
this from random batches:

    loss = mean((output - target)**2)                       (mean squared error)
    g    = layer.gradients(x, x, output_gradient=2 * (output - target) / output.size,
                           regularization=True)              (one forward + backward)
    w   -= lr * g.weights[i]   for every weight, in get_weights() order
    layer.apply_constraints()                                 (max_norm on the kernels)

The kernels carry an l2 regularizer (its penalty's gradient is included by
regularization=True; layer.losses gives the penalty) and a max_norm constraint, applied after
each step as Keras's optimizers do.

Prints the loss on a fixed evaluation set every 100 steps, the token accuracy at the end, and
exits 0 only when the evaluation loss fell at least 20x.

    python3 examples/python/train_mha.py          (after `make lib`; about 2-3 s)
    python3 examples/python/train_mha.py --dtype float64 --steps 1500
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

import attention  # noqa: E402

BATCH, LENGTH, VOCAB, DIM = 32, 8, 8, 16
HEADS, KEY_DIM = 2, 8
POSITION_SCALE = 2.0   # P[t] = POSITION_SCALE * one-hot: sharper positional scores from the start
LEARNING_RATE = 2.0    # for the MSE averaged over every output element
L2, MAX_NORM = 1e-5, 2.0
REQUIRED_DROP = 20.0   # the evaluation loss must fall at least this much


def make_batch(rng, size, dtype):
    """(x, target, target tokens) for `size` random sequences."""
    tokens = rng.integers(0, VOCAB, size=(size, LENGTH))
    eye = np.eye(VOCAB)
    x = np.zeros((size, LENGTH, DIM))
    x[..., :VOCAB] = eye[tokens]
    x[:, np.arange(LENGTH), VOCAB + np.arange(LENGTH)] += POSITION_SCALE
    reversed_tokens = tokens[:, ::-1]
    target = np.zeros((size, LENGTH, DIM))
    target[..., :VOCAB] = eye[reversed_tokens]
    return x.astype(dtype), target.astype(dtype), reversed_tokens


def evaluate(layer, batch):
    """(MSE, token accuracy) of the layer on a fixed batch."""
    x, target, tokens = batch
    output = layer(x, x)
    mse = float(np.mean((output.astype(np.float64) - target) ** 2))
    accuracy = float(np.mean(np.argmax(output[..., :VOCAB], axis=-1) == tokens))
    return mse, accuracy


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--seed", type=int, default=0, help="data and weight seed")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    layer = attention.MultiHeadAttention(
        num_heads=HEADS, key_dim=KEY_DIM, seed=args.seed + 1, dtype=args.dtype,
        kernel_regularizer={"class_name": "L2", "config": {"l2": L2}},
        kernel_constraint={"class_name": "MaxNorm", "config": {"max_value": MAX_NORM}})
    layer.build((None, LENGTH, DIM), (None, LENGTH, DIM))
    eval_batch = make_batch(rng, 256, args.dtype)
    print(f"libattention {attention.__version__}: MultiHeadAttention(num_heads={HEADS}, "
          f"key_dim={KEY_DIM}), {args.dtype}, learning to reverse sequences of {LENGTH} tokens")
    print(f"weights: {', '.join(f'{n} {w.shape}' for n, w in zip(layer.weight_names, layer.get_weights()))}\n")
    print(f"{'step':>6} {'eval MSE':>10} {'batch MSE':>10} {'l2 penalty':>11} {'accuracy':>9}")

    initial, _ = evaluate(layer, eval_batch)
    start = time.perf_counter()
    batch_mse = None
    for step in range(args.steps + 1):
        if step % 100 == 0 or step == args.steps:
            mse, accuracy = evaluate(layer, eval_batch)
            shown = "-" if batch_mse is None else f"{batch_mse:.6f}"
            print(f"{step:>6} {mse:>10.6f} {shown:>10} {sum(layer.losses):>11.6f} "
                  f"{accuracy:>9.1%}")
        if step == args.steps:
            break
        x, target, _ = make_batch(rng, BATCH, args.dtype)
        error = layer(x, x) - target
        batch_mse = float(np.mean(error.astype(np.float64) ** 2))
        grads = layer.gradients(x, x, output_gradient=2 * error / error.size, regularization=True)
        layer.set_weights([w - LEARNING_RATE * g for w, g in zip(layer.get_weights(), grads.weights)])
        layer.apply_constraints()
    elapsed = time.perf_counter() - start

    final, accuracy = evaluate(layer, eval_batch)
    kernels = [w for n, w in zip(layer.weight_names, layer.get_weights()) if n.endswith("kernel")]
    largest_norm = max(float(np.max(np.sqrt(np.sum(k.astype(np.float64) ** 2, axis=0)))) for k in kernels)
    drop = initial / final if final > 0 else float("inf")
    print(f"\n{args.steps} steps in {elapsed:.2f} s; eval MSE {initial:.6f} -> {final:.6f} "
          f"({drop:.0f}x lower), token accuracy {accuracy:.1%}, largest kernel norm "
          f"{largest_norm:.3f} (max_norm {MAX_NORM})")
    ok = drop >= REQUIRED_DROP  # NaN fails too
    print("trained" if ok else f"FAILED: the loss fell less than {REQUIRED_DROP:.0f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
