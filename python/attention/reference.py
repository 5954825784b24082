"""Reference formulas of libattention in plain numpy.

These are the formulas the tests and the demo check the library against. They are written from
the math of the Keras 3.15 layers (see shared/KERAS_NOTES.md for the behaviours reproduced), not
from the Swift code, and they favour clarity over speed. The module needs numpy only and imports
nothing else from the `attention` package.

Every function computes in the dtype of its floating inputs (the wider one when they differ), so
float32 inputs reproduce float32 rounding, e.g. the `s - 1e9` of a masked Keras score. Masks are
arrays of bool or numbers; nonzero keeps.

Dropout is this project's own definition: element f (flat row-major index in the scores tensor)
is kept iff (Philox-4x32-10((f, f >> 32, stream, stream >> 32), (seed, seed >> 32))[0] >> 8)
* 2**-24 >= rate, and kept weights are divided by (1 - rate).
"""

import functools
import math

import numpy as np

__all__ = [
    "philox4x32_10",
    "dropout_keep",
    "dropout",
    "attention",
    "additive_attention",
    "multi_head_attention",
    "dot_product_attention",
]

_MASK32 = 0xFFFFFFFF
_PHILOX_MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
_PHILOX_WEYL = (0x9E3779B9, 0xBB67AE85)
_PHILOX_ROUNDS = 10

# Keras Attention/AdditiveAttention subtract this from masked scores (in the layer's dtype).
_KERAS_MASK_OFFSET = 1e9
# keras.ops.dot_product_attention (and MHA's fused path) fill masked logits with this.
_FUSED_MASK_FILL = -0.7 * float(np.finfo(np.float32).max)


# ---------------------------------------------------------------------------------------------
# Philox-4x32-10 and dropout
# ---------------------------------------------------------------------------------------------

def _check_uint(value, bits, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= int(value) < 2**bits:
        raise ValueError(f"{name} must be in [0, 2**{bits}), got {value}")
    return int(value)


def _uint32_words(array, name):
    array = np.asarray(array)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > _MASK32):
        raise ValueError(f"{name} words must be in [0, 2**32)")
    return array.astype(np.uint64)


def philox4x32_10(counter, key):
    """Philox-4x32-10 (Salmon et al. 2011) of uint32 `counter` (..., 4) under `key` (2,).

    One round: (hi0, lo0) = mulhilo(0xD2511F53, c0), (hi1, lo1) = mulhilo(0xCD9E8D57, c2),
    c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0); then the key gets the Weyl increments
    (0x9E3779B9, 0xBB67AE85). Vectorised over the leading dims; returns uint32 (..., 4).
    """
    counter = _uint32_words(counter, "counter")
    key = _uint32_words(key, "key")
    if counter.ndim < 1 or counter.shape[-1] != 4:
        raise ValueError(f"counter must have shape (..., 4), got {counter.shape}")
    if key.shape != (2,):
        raise ValueError(f"key must have shape (2,), got {key.shape}")
    c0, c1, c2, c3 = (counter[..., i] for i in range(4))
    k0, k1 = (np.uint64(word) for word in key)
    m0, m1 = (np.uint64(m) for m in _PHILOX_MULTIPLIERS)
    w0, w1 = (np.uint64(w) for w in _PHILOX_WEYL)
    low, shift = np.uint64(_MASK32), np.uint64(32)
    for _ in range(_PHILOX_ROUNDS):
        product0 = m0 * c0  # a 32x32 -> 64-bit product fits a uint64 exactly
        product1 = m1 * c2
        hi0, lo0 = product0 >> shift, product0 & low
        hi1, lo1 = product1 >> shift, product1 & low
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + w0) & low, (k1 + w1) & low
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def _check_rate(rate):
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    return rate


def dropout_keep(shape, rate, seed, stream):
    """Keep-mask (bool array of `shape`) of this project's Philox dropout.

    Element f (flat row-major index) is kept iff (philox((f, f>>32, stream, stream>>32),
    (seed, seed>>32))[0] >> 8) * 2**-24 >= rate.
    """
    shape = tuple(int(n) for n in ((shape,) if isinstance(shape, (int, np.integer)) else shape))
    if any(n < 0 for n in shape):
        raise ValueError(f"shape must not have negative dims, got {shape}")
    rate = _check_rate(rate)
    seed = _check_uint(seed, 64, "seed")
    stream = _check_uint(stream, 64, "stream")
    flat = np.arange(math.prod(shape), dtype=np.uint64)
    counter = np.stack(
        [
            flat & np.uint64(_MASK32),
            flat >> np.uint64(32),
            np.full_like(flat, stream & _MASK32),
            np.full_like(flat, stream >> 32),
        ],
        axis=-1,
    )
    first_word = philox4x32_10(counter, [seed & _MASK32, seed >> 32])[:, 0]
    uniform = (first_word >> np.uint32(8)).astype(np.float64) * 2.0**-24
    return (uniform >= rate).reshape(shape)


def dropout(weights, rate, seed, stream):
    """weights * keep / (1 - rate), with keep = dropout_keep(weights.shape, rate, seed, stream)."""
    weights = _float_arrays(weights)[0]
    rate = _check_rate(rate)
    keep = dropout_keep(weights.shape, rate, seed, stream)
    return np.where(keep, weights / weights.dtype.type(1.0 - rate), weights.dtype.type(0))


_dropout = dropout  # for functions whose `dropout` argument (the rate) shadows this function


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------

def _float_arrays(*arrays):
    """The arrays as one floating dtype (their numpy result type)."""
    arrays = [np.asarray(a) for a in arrays]
    for a in arrays:
        if a.dtype.kind != "f":
            raise TypeError(f"expected a floating-point array, got dtype {a.dtype}")
    dtype = np.result_type(*arrays)
    return [a.astype(dtype, copy=False) for a in arrays]


def _keep(mask, shape, name):
    """A mask as bool (nonzero keeps), required to have exactly `shape`."""
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {mask.shape}")
    return mask != 0


def _causal(rows, cols):
    """(rows, cols) bool, True where column j <= row i (top-left aligned)."""
    return np.arange(cols)[None, :] <= np.arange(rows)[:, None]


def _softmax(x, axes):
    """exp(x - max) / sum(exp(x - max)) over `axes`, in x's dtype."""
    shifted = np.exp(x - np.max(x, axis=axes, keepdims=True))
    return shifted / np.sum(shifted, axis=axes, keepdims=True)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softmax_over_kept(x, keep, axes):
    """Softmax over the kept entries only; masked entries (and fully masked rows) are 0."""
    kept_max = np.max(np.where(keep, x, -np.inf), axis=axes, keepdims=True)
    kept_max = np.where(np.isfinite(kept_max), kept_max, 0)
    shifted = np.exp(np.where(keep, x - kept_max, -np.inf))
    total = np.sum(shifted, axis=axes, keepdims=True)
    return np.where(total > 0, shifted / np.where(total > 0, total, 1), 0).astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# keras.layers.Attention and keras.layers.AdditiveAttention
# ---------------------------------------------------------------------------------------------

def _attention_inputs(query, value, key):
    key = value if key is None else key
    query, value, key = _float_arrays(query, value, key)
    for name, x in (("query", query), ("value", value), ("key", key)):
        if x.ndim != 3:
            raise ValueError(f"{name} must have shape (B, T, dim), got {x.shape}")
    if key.shape[:2] != value.shape[:2] or query.shape[0] != value.shape[0]:
        raise ValueError(
            f"query {query.shape}, value {value.shape} and key {key.shape} must share the batch "
            "size, and key and value the length Tv"
        )
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query dim {query.shape[-1]} must equal key dim {key.shape[-1]}")
    return query, value, key


def _weights_and_output(scores, value, query_mask, value_mask, use_causal_mask, rate, training,
                        seed, stream):
    """The common tail of Attention and AdditiveAttention.

    Masked scores become s - 1e9 (nothing zeroed), softmax over Tv, dropout when training;
    output = weights @ value with query-masked rows set to 0. Returns (output, weights).
    """
    rate = _check_rate(rate)
    batch, tq, tv = scores.shape
    keep = np.ones((1, 1, tv), dtype=bool)
    if value_mask is not None:
        keep = keep & _keep(value_mask, (batch, tv), "value_mask")[:, None, :]
    if use_causal_mask:
        keep = keep & _causal(tq, tv)[None]
    scores = np.where(keep, scores, scores - scores.dtype.type(_KERAS_MASK_OFFSET))
    weights = _softmax(scores, axes=-1)
    if training and rate > 0:
        weights = dropout(weights, rate, seed, stream)
    output = weights @ value
    if query_mask is not None:
        query_keep = _keep(query_mask, (batch, tq), "query_mask")
        output = np.where(query_keep[:, :, None], output, output.dtype.type(0))
    return output, weights


def attention(query, value, key=None, query_mask=None, value_mask=None, *, score_mode="dot",
              scale=None, concat_score_weight=None, use_causal_mask=False, dropout=0.0,
              training=False, seed=0, stream=0):
    """keras.layers.Attention: returns (output (B, Tq, Dv), scores (B, Tq, Tv)).

    dot:    s_ij = (q_i . k_j) * scale
    concat: s_ij = concat_score_weight * sum_d tanh(scale * (q_id + k_jd))
    (scale, concat_score_weight None = 1); then the tail of _weights_and_output.
    """
    query, value, key = _attention_inputs(query, value, key)
    dtype = query.dtype.type
    if score_mode == "dot":
        scores = query @ np.swapaxes(key, -1, -2)
        if scale is not None:
            scores = scores * dtype(scale)
    elif score_mode == "concat":
        pairs = query[:, :, None, :] + key[:, None, :, :]
        if scale is not None:
            pairs = dtype(scale) * pairs
        weight = 1.0 if concat_score_weight is None else concat_score_weight
        scores = dtype(weight) * np.sum(np.tanh(pairs), axis=-1)
    else:
        raise ValueError(f"score_mode must be 'dot' or 'concat', got {score_mode!r}")
    return _weights_and_output(scores, value, query_mask, value_mask, use_causal_mask, dropout,
                               training, seed, stream)


def additive_attention(query, value, key=None, query_mask=None, value_mask=None, *, scale=None,
                       use_causal_mask=False, dropout=0.0, training=False, seed=0, stream=0):
    """keras.layers.AdditiveAttention: s_ij = sum_d scale_d * tanh(q_id + k_jd) (scale None = 1).

    Returns (output (B, Tq, Dv), scores (B, Tq, Tv)); the tail is that of attention().
    """
    query, value, key = _attention_inputs(query, value, key)
    if scale is None:
        scale = np.ones(query.shape[-1], dtype=query.dtype)
    scale = np.asarray(scale, dtype=query.dtype)
    if scale.shape != (query.shape[-1],):
        raise ValueError(f"scale must have shape ({query.shape[-1]},), got {scale.shape}")
    scores = np.sum(scale * np.tanh(query[:, :, None, :] + key[:, None, :, :]), axis=-1)
    return _weights_and_output(scores, value, query_mask, value_mask, use_causal_mask, dropout,
                               training, seed, stream)


# ---------------------------------------------------------------------------------------------
# keras.layers.MultiHeadAttention
# ---------------------------------------------------------------------------------------------

def _mha_parameters(weights, use_bias, use_gate, dtype):
    """Split a Keras get_weights() list into {name: (kernel, bias or None)}."""
    names = ["query", "key"] + (["gate"] if use_gate else []) + ["value", "attention_output"]
    per_dense = 2 if use_bias else 1
    weights = list(weights)
    if len(weights) != per_dense * len(names):
        raise ValueError(
            f"expected {per_dense * len(names)} weights ({', '.join(names)}"
            f"{', each kernel and bias' if use_bias else ', kernels only'}), got {len(weights)}"
        )
    arrays = [np.asarray(w) for w in weights]
    for w in arrays:
        if w.dtype.kind != "f":
            raise TypeError(f"weights must be floating-point arrays, got dtype {w.dtype}")
    arrays = [w.astype(dtype, copy=False) for w in arrays]
    return {
        name: (arrays[i * per_dense], arrays[i * per_dense + 1] if use_bias else None)
        for i, name in enumerate(names)
    }


def _check_dense(parameters, name, kernel_shape, bias_shape):
    kernel, bias = parameters[name]
    if kernel.shape != kernel_shape:
        raise ValueError(f"{name} kernel must have shape {kernel_shape}, got {kernel.shape}")
    if bias is not None and bias.shape != bias_shape:
        raise ValueError(f"{name} bias must have shape {bias_shape}, got {bias.shape}")


def _dense(x, kernel, bias, contracted):
    """Contract the last `contracted` axes of x with the first ones of kernel, add the bias."""
    y = np.tensordot(x, kernel, axes=contracted)
    return y if bias is None else y + bias


def _normalized_attention_axes(attention_axes, rank):
    """Attention axes as input-axis indices in [1, rank - 2] (negative means rank + axis)."""
    if attention_axes is None:
        return tuple(range(1, rank - 1))
    if isinstance(attention_axes, (int, np.integer)):
        attention_axes = (attention_axes,)
    axes = tuple(int(a) + rank if int(a) < 0 else int(a) for a in attention_axes)
    if not axes or len(set(axes)) != len(axes) or any(not 1 <= a <= rank - 2 for a in axes):
        raise ValueError(
            f"attention_axes must be distinct axes between the batch and feature axes of a "
            f"rank-{rank} input, got {attention_axes}"
        )
    return axes


def _mha_mask(query, value, rank, n_axes, scores_shape, query_mask, value_mask, key_mask,
              attention_mask, use_causal_mask, sliding_window):
    """Keras 3.15's combined MHA mask broadcast to the scores' shape (None when no mask)."""
    parts = []
    if query_mask is not None:
        parts.append(_keep(query_mask, query.shape[:-1], "query_mask")[..., None])
    for name, mask in (("value_mask", value_mask), ("key_mask", key_mask)):
        if mask is not None:
            parts.append(np.expand_dims(_keep(mask, value.shape[:-1], name), -2))
    rows = np.arange(query.shape[1])[None, :, None]
    cols = np.arange(value.shape[1])[None, None, :]
    if use_causal_mask:
        parts.append(cols <= rows)
    if sliding_window is not None:
        parts.append(np.abs(rows - cols) < sliding_window)
    if attention_mask is not None:
        parts.append(np.asarray(attention_mask) != 0)
    if not parts:
        return None
    try:
        mask = functools.reduce(np.logical_and, parts)
        if mask.ndim > len(scores_shape):
            raise ValueError(f"rank {mask.ndim} is above the scores' rank {len(scores_shape)}")
        while mask.ndim < len(scores_shape):
            mask = np.expand_dims(mask, -2 * n_axes - 1)
        return np.broadcast_to(mask, scores_shape)
    except ValueError as error:
        raise ValueError(
            f"the combined attention mask does not broadcast to the scores {scores_shape}: {error}"
        ) from None


def multi_head_attention(query, value, key=None, *, weights, num_heads, key_dim, value_dim=None,
                         use_bias=True, output_shape=None, attention_axes=None, use_gate=False,
                         sliding_window=None, query_mask=None, value_mask=None, key_mask=None,
                         attention_mask=None, use_causal_mask=False, dropout=0.0, training=False,
                         seed=0, stream=0, return_attention_scores=False):
    """keras.layers.MultiHeadAttention (3.15). Returns (output, scores or None).

    q = (query W_q + b_q) / sqrt(key_dim), k = key W_k + b_k, v = value W_v + b_v: (..., N, H).
    scores[B, other axes, n, query attention axes, key attention axes] = softmax over the key
    attention axes (jointly) of q . k, masked as Keras combines the masks. Fully masked rows:
    rank-3 input without scores and with dropout 0 is Keras's fused path (masked logits filled
    with -0.7 * float32 max, so the row is uniform); otherwise masked weights are 0.
    out = sum over key attention axes of dropout(scores) * v, times sigmoid(query W_g + b_g) with
    use_gate, then projected: out W_o + b_o of shape query.shape[:-1] + output_shape.
    """
    key = value if key is None else key
    query, value, key = _float_arrays(query, value, key)
    rank = query.ndim
    if rank < 3 or value.ndim != rank or key.ndim != rank:
        raise ValueError(
            f"query, value and key must have one rank >= 3, got {query.shape}, {value.shape}, "
            f"{key.shape}"
        )
    if value.shape[:-1] != key.shape[:-1]:
        raise ValueError(f"value {value.shape} and key {key.shape} differ before the last axis")
    n_heads, key_dim = int(num_heads), int(key_dim)
    value_dim = key_dim if value_dim is None else int(value_dim)
    if n_heads < 1 or key_dim < 1 or value_dim < 1:
        raise ValueError("num_heads, key_dim and value_dim must be positive")
    if isinstance(output_shape, (int, np.integer)):
        output_shape = (int(output_shape),)
    output_shape = (query.shape[-1],) if output_shape is None else tuple(output_shape)
    rate = _check_rate(dropout)

    p = _mha_parameters(weights, use_bias, use_gate, query.dtype)
    dq, dk, dv = query.shape[-1], key.shape[-1], value.shape[-1]
    _check_dense(p, "query", (dq, n_heads, key_dim), (n_heads, key_dim))
    _check_dense(p, "key", (dk, n_heads, key_dim), (n_heads, key_dim))
    if use_gate:
        _check_dense(p, "gate", (dq, n_heads, value_dim), (n_heads, value_dim))
    _check_dense(p, "value", (dv, n_heads, value_dim), (n_heads, value_dim))
    _check_dense(p, "attention_output", (n_heads, value_dim, *output_shape), output_shape)

    axes = _normalized_attention_axes(attention_axes, rank)
    others = [a for a in range(1, rank - 1) if a not in axes]
    for a in [0] + others:
        if query.shape[a] != key.shape[a]:
            raise ValueError(
                f"query {query.shape} and key {key.shape} must agree on the non-attention axis {a}"
            )

    scale = query.dtype.type(1.0 / math.sqrt(key_dim))
    q = _dense(query, *p["query"], 1) * scale
    k = _dense(key, *p["key"], 1)
    v = _dense(value, *p["value"], 1)

    # einsum subscripts: input axes 0..rank-2 of the query; heads; channels; the key's own
    # attention axes; the value channels.
    heads, channels, value_channels = rank - 1, rank, rank + 1
    key_axis = {a: rank + 2 + a for a in axes}
    q_sub = list(range(rank - 1)) + [heads, channels]
    k_sub = [key_axis.get(a, a) for a in range(rank - 1)] + [heads, channels]
    v_sub = k_sub[:-1] + [value_channels]
    out_sub = q_sub[:-1] + [value_channels]
    scores_sub = [0] + others + [heads] + list(axes) + [key_axis[a] for a in axes]
    logits = np.einsum(q, q_sub, k, k_sub, scores_sub)

    key_attention_axes = tuple(range(logits.ndim - len(axes), logits.ndim))
    mask = _mha_mask(query, value, rank, len(axes), logits.shape, query_mask, value_mask,
                     key_mask, attention_mask, use_causal_mask, sliding_window)
    fused_path = rank == 3 and not return_attention_scores and rate == 0
    if mask is None:
        scores = _softmax(logits, key_attention_axes)
    elif fused_path:
        filled = np.where(mask, logits, logits.dtype.type(_FUSED_MASK_FILL))
        scores = _softmax(filled, key_attention_axes)
    else:
        scores = _softmax_over_kept(logits, mask, key_attention_axes)

    used = _dropout(scores, rate, seed, stream) if training and rate > 0 else scores
    attended = np.einsum(used, scores_sub, v, v_sub, out_sub)
    if use_gate:
        attended = attended * _sigmoid(_dense(query, *p["gate"], 1))
    output = _dense(attended, *p["attention_output"], 2)
    return output, (scores if return_attention_scores else None)


# ---------------------------------------------------------------------------------------------
# keras.ops.dot_product_attention
# ---------------------------------------------------------------------------------------------

def dot_product_attention(query, key, value, bias=None, mask=None, scale=None, is_causal=False):
    """keras.ops.dot_product_attention with grouped kv heads: returns (B, T, N, Hv).

    query (B, T, N, H), key (B, S, K, H), value (B, S, K, Hv), K divides N and query head n
    uses kv head n // (N / K). logits = scale * q . k (scale None = 1/sqrt(H)) + bias; entries
    masked by `mask` or, with is_causal, j > i are set to -0.7 * float32 max; softmax over S.
    bias and mask broadcast numpy-style against (B, N, T, S).
    """
    query, key, value = _float_arrays(query, key, value)
    if query.ndim != 4 or key.ndim != 4 or value.ndim != 4:
        raise ValueError(
            f"query, key and value must be 4-D, got {query.shape}, {key.shape}, {value.shape}"
        )
    b, t, n, h = query.shape
    _, s, kv, _ = key.shape
    if key.shape[0] != b or key.shape[3] != h or value.shape[:3] != key.shape[:3]:
        raise ValueError(
            f"shapes do not fit (B,T,N,H), (B,S,K,H), (B,S,K,Hv): {query.shape}, {key.shape}, "
            f"{value.shape}"
        )
    if n % kv:
        raise ValueError(f"the {kv} kv heads must divide the {n} query heads")
    group = n // kv
    dtype = query.dtype.type
    scale = 1.0 / math.sqrt(h) if scale is None else scale

    grouped_query = query.reshape(b, t, kv, group, h)  # head n = (n // group, n % group)
    logits = np.einsum("btkgh,bskh->bkgts", grouped_query, key).reshape(b, n, t, s)
    logits = logits * dtype(scale)
    full = (b, n, t, s)
    if bias is not None:
        bias = _float_arrays(bias)[0].astype(query.dtype)
        logits = logits + _broadcast(bias, full, "bias")
    keep = np.ones(full, dtype=bool)
    if mask is not None:
        keep = keep & _broadcast(np.asarray(mask) != 0, full, "mask")
    if is_causal:
        keep = keep & _causal(t, s)
    logits = np.where(keep, logits, dtype(_FUSED_MASK_FILL))
    weights = _softmax(logits, axes=-1)
    output = np.einsum("bkgts,bskh->btkgh", weights.reshape(b, kv, group, t, s), value)
    return output.reshape(b, t, n, value.shape[3])


def _broadcast(array, shape, name):
    try:
        return np.broadcast_to(array, shape)
    except ValueError:
        raise ValueError(f"{name} of shape {array.shape} does not broadcast to {shape}") from None
