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
    "group_query_attention",
    "reuse_multi_head_attention",
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


def _einsum(*operands):
    """np.einsum (either call form) with every empty array operand replaced by zeros of its
    shape and dtype. numpy gives an empty array a buffer of one never-written element, and
    numpy's einsum may read that element even when the summed axis is empty (numpy 2.4:
    einsum("bkgts,bskh->btkgh") with S = 0 multiplies it into every output): left as it is,
    a NaN or Inf there (whatever the heap held) makes the empty sum NaN instead of 0. The
    zeros are a broadcast 0-d zero, so any element read is a real 0."""
    return np.einsum(*(np.broadcast_to(np.zeros((), x.dtype), x.shape)
                       if isinstance(x, np.ndarray) and x.size == 0 else x for x in operands))


def _causal(rows, cols):
    """(rows, cols) bool, True where column j <= row i (top-left aligned)."""
    return np.arange(cols)[None, :] <= np.arange(rows)[:, None]


def _softmax(x, axes):
    """exp(x - max) / sum(exp(x - max)) over `axes`, in x's dtype. An empty x (e.g. no keys)
    has an empty softmax: there is no entry to normalize."""
    if x.size == 0:
        return np.zeros_like(x)
    shifted = np.exp(x - np.max(x, axis=axes, keepdims=True))
    return shifted / np.sum(shifted, axis=axes, keepdims=True)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softmax_over_kept(x, keep, axes):
    """Softmax over the kept entries only; masked entries (and fully masked rows) are 0."""
    if x.size == 0:
        return np.zeros_like(x)
    kept_max = np.max(np.where(keep, x, -np.inf), axis=axes, keepdims=True)
    kept_max = np.where(np.isfinite(kept_max), kept_max, 0)
    shifted = np.exp(np.where(keep, x - kept_max, -np.inf))
    total = np.sum(shifted, axis=axes, keepdims=True)
    return np.where(total > 0, shifted / np.where(total > 0, total, 1), 0).astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# keras.layers.Attention and keras.layers.AdditiveAttention
# ---------------------------------------------------------------------------------------------

def _attention_inputs(query, value, key):
    """Float query (L..., Tq, D), value (L..., Tv, Dv), key (L..., Tv, D) of one rank >= 2:
    the leading axes L are batch axes (Keras's matmul batches them)."""
    key = value if key is None else key
    query, value, key = _float_arrays(query, value, key)
    if query.ndim < 2 or not query.ndim == value.ndim == key.ndim:
        raise ValueError(
            f"query, value and key must have one rank >= 2 (batch axes..., T, dim), got "
            f"{query.shape}, {value.shape}, {key.shape}"
        )
    if key.shape[:-1] != value.shape[:-1] or query.shape[:-2] != value.shape[:-2]:
        raise ValueError(
            f"query {query.shape}, value {value.shape} and key {key.shape} must share the batch "
            "axes, and key and value the length Tv"
        )
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query dim {query.shape[-1]} must equal key dim {key.shape[-1]}")
    return query, value, key


def _value_mask_keep(value_mask, scores_shape):
    """Keras's value_mask as a keep-mask of the scores (L..., Tq, Tv). A mask of lower rank
    than the scores marks value positions: it broadcasts to (L..., Tv) and is expanded at -2
    (keep[..., i, j] = m[..., j]); one of the scores' rank is a mask of the scores, used as
    given (Keras's `scores_mask`)."""
    keep = np.asarray(value_mask) != 0
    if keep.ndim < len(scores_shape):
        lead_and_tv = scores_shape[:-2] + scores_shape[-1:]
        keep = np.expand_dims(_broadcast(keep, lead_and_tv, "value_mask"), -2)
    return _broadcast(keep, scores_shape, "value_mask")


def _weights_and_output(scores, value, query_mask, value_mask, use_causal_mask, rate, training,
                        seed, stream):
    """The common tail of Attention and AdditiveAttention, on scores (L..., Tq, Tv).

    Masked scores become s - 1e9 (nothing zeroed), softmax over Tv, dropout when training;
    output = weights @ value with query-masked rows set to 0 (query_mask broadcasts to
    (L..., Tq)). Returns (output, weights).
    """
    rate = _check_rate(rate)
    tq, tv = scores.shape[-2:]
    keep = np.ones(scores.shape, dtype=bool)
    if value_mask is not None:
        keep = keep & _value_mask_keep(value_mask, scores.shape)
    if use_causal_mask:
        keep = keep & _causal(tq, tv)
    scores = np.where(keep, scores, scores - scores.dtype.type(_KERAS_MASK_OFFSET))
    weights = _softmax(scores, axes=-1)
    if training and rate > 0:
        weights = dropout(weights, rate, seed, stream)
    output = weights @ value
    if query_mask is not None:
        query_keep = _broadcast(np.asarray(query_mask) != 0, scores.shape[:-1], "query_mask")
        output = np.where(query_keep[..., None], output, output.dtype.type(0))
    return output, weights


def attention(query, value, key=None, query_mask=None, value_mask=None, *, score_mode="dot",
              scale=None, concat_score_weight=None, use_causal_mask=False, dropout=0.0,
              training=False, seed=0, stream=0):
    """keras.layers.Attention: returns (output (L..., Tq, Dv), scores (L..., Tq, Tv)) for
    query (L..., Tq, D), value (L..., Tv, Dv), key (L..., Tv, D) (L: batch axes, any number).

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
        pairs = query[..., :, None, :] + key[..., None, :, :]
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

    Returns (output (L..., Tq, Dv), scores (L..., Tq, Tv)); shapes and the tail as attention().
    """
    query, value, key = _attention_inputs(query, value, key)
    if scale is None:
        scale = np.ones(query.shape[-1], dtype=query.dtype)
    scale = np.asarray(scale, dtype=query.dtype)
    if scale.shape != (query.shape[-1],):
        raise ValueError(f"scale must have shape ({query.shape[-1]},), got {scale.shape}")
    scores = np.sum(scale * np.tanh(query[..., :, None, :] + key[..., None, :, :]), axis=-1)
    return _weights_and_output(scores, value, query_mask, value_mask, use_causal_mask, dropout,
                               training, seed, stream)


# ---------------------------------------------------------------------------------------------
# keras.layers.MultiHeadAttention
# ---------------------------------------------------------------------------------------------

def _split_weights(weights, entries, dtype):
    """Split a get_weights() list into {name: (array, bias or None)}, cast to `dtype`.

    entries: (name, has_bias) in order; an entry is one array, followed by its bias if has_bias.
    """
    weights = list(weights)
    expected = sum(2 if has_bias else 1 for _, has_bias in entries)
    if len(weights) != expected:
        listing = ", ".join(name + (" (+ bias)" if has_bias else "") for name, has_bias in entries)
        raise ValueError(f"expected {expected} weights ({listing}), got {len(weights)}")
    arrays = [np.asarray(w) for w in weights]
    for w in arrays:
        if w.dtype.kind != "f":
            raise TypeError(f"weights must be floating-point arrays, got dtype {w.dtype}")
    arrays = iter(w.astype(dtype, copy=False) for w in arrays)
    return {name: (next(arrays), next(arrays) if has_bias else None) for name, has_bias in entries}


def _mha_parameters(weights, use_bias, use_gate, dtype):
    """Split a Keras MHA/GQA get_weights() list into {name: (kernel, bias or None)}."""
    names = ["query", "key"] + (["gate"] if use_gate else []) + ["value", "attention_output"]
    return _split_weights(weights, [(name, use_bias) for name in names], dtype)


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
    """Keras 3.15's combined MHA mask broadcast to the scores' shape (None when no mask).

    query_mask m -> m[..., None]; value_mask and key_mask m -> m[..., None, :]; causal and
    sliding-window masks (1, T, S) from the axis-1 lengths; attention_mask as given. They are
    ANDed with numpy broadcasting; the result gains size-1 axes at -2 * n_axes - 1 until it has
    the scores' rank, then broadcasts to the scores. Whatever mask shapes this accepts are
    accepted (e.g. (B, T) and (B, S) or (1, S) masks of a rank-4 query over axis 1).
    """
    parts = []
    if query_mask is not None:
        parts.append(np.expand_dims(np.asarray(query_mask) != 0, -1))
    for name, mask in (("value_mask", value_mask), ("key_mask", key_mask)):
        if mask is not None:
            mask = np.asarray(mask) != 0
            if mask.ndim == 0:
                raise ValueError(f"{name} is a scalar: it has no axis to expand at -2")
            parts.append(np.expand_dims(mask, -2))
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
        if any(m not in (1, s) for m, s in zip(mask.shape, scores_shape)):
            raise ValueError(f"shape {mask.shape} does not broadcast to {scores_shape}")
        return np.broadcast_to(mask, scores_shape)
    except (ValueError, np.exceptions.AxisError) as error:
        raise ValueError(
            f"the combined attention mask does not broadcast to the scores {scores_shape}: {error}"
        ) from None


def _attention_subscripts(projected_rank, axes):
    """np.einsum subscripts (q, k, v, attended, scores) over projected tensors (..., heads, ch).

    `axes` are the attended axes of the projected tensors (the key's own letters there). The
    scores are laid out (the other axes but the channels in order, query attention axes, key
    attention axes); `attended` is the query's layout with the value channels.
    """
    channels, value_channels = projected_rank - 1, projected_rank
    key_axis = {a: projected_rank + 1 + a for a in axes}
    q_sub = list(range(projected_rank))
    k_sub = [key_axis.get(a, a) for a in range(projected_rank)]
    v_sub = k_sub[:-1] + [value_channels]
    out_sub = q_sub[:-1] + [value_channels]
    batch = [a for a in range(channels) if a not in axes]
    scores_sub = batch + list(axes) + [key_axis[a] for a in axes]
    return q_sub, k_sub, v_sub, out_sub, scores_sub


def _keras_attention_weights(logits, mask, axes, fused_path):
    """Keras 3.15's MHA/GQA softmax over `axes` of logits under a bool mask (or None).

    fused_path (keras.ops.dot_product_attention): masked logits filled with -0.7 * float32 max,
    so a fully masked row is uniform; otherwise masked weights are 0 (a fully masked row is 0).
    """
    if mask is None:
        return _softmax(logits, axes)
    if fused_path:
        return _softmax(np.where(mask, logits, logits.dtype.type(_FUSED_MASK_FILL)), axes)
    return _softmax_over_kept(logits, mask, axes)


def _multi_head_inputs(query, value, key, num_heads, key_dim, value_dim):
    """Float arrays of query, value and key (None: value) of one rank >= 3, value and key
    equal but in the last axis; and (num_heads, key_dim, value_dim) as positive ints."""
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
    return query, value, key, n_heads, key_dim, value_dim


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
    query, value, key, n_heads, key_dim, value_dim = _multi_head_inputs(
        query, value, key, num_heads, key_dim, value_dim)
    rank = query.ndim
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

    q_sub, k_sub, v_sub, out_sub, scores_sub = _attention_subscripts(rank + 1, axes)
    logits = _einsum(q, q_sub, k, k_sub, scores_sub)

    key_attention_axes = tuple(range(logits.ndim - len(axes), logits.ndim))
    mask = _mha_mask(query, value, rank, len(axes), logits.shape, query_mask, value_mask,
                     key_mask, attention_mask, use_causal_mask, sliding_window)
    fused_path = rank == 3 and not return_attention_scores and rate == 0
    scores = _keras_attention_weights(logits, mask, key_attention_axes, fused_path)

    used = _dropout(scores, rate, seed, stream) if training and rate > 0 else scores
    attended = _einsum(used, scores_sub, v, v_sub, out_sub)
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
    logits = _einsum("btkgh,bskh->bkgts", grouped_query, key).reshape(b, n, t, s)
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
    output = _einsum("bkgts,bskh->btkgh", weights.reshape(b, kv, group, t, s), value)
    return output.reshape(b, t, n, value.shape[3])


def _broadcast(array, shape, name):
    try:
        return np.broadcast_to(array, shape)
    except ValueError:
        raise ValueError(f"{name} of shape {array.shape} does not broadcast to {shape}") from None


# ---------------------------------------------------------------------------------------------
# keras.layers.GroupQueryAttention
# ---------------------------------------------------------------------------------------------

def group_query_attention(query, value, key=None, *, weights, head_dim, num_query_heads,
                          num_key_value_heads, use_bias=True, use_gate=False, sliding_window=None,
                          query_mask=None, value_mask=None, key_mask=None, attention_mask=None,
                          use_causal_mask=False, dropout=0.0, training=False, seed=0, stream=0,
                          return_attention_scores=False):
    """keras.layers.GroupQueryAttention (3.15) on (B, T, Dq), (B, S, Dv), (B, S, Dk) inputs.

    Returns (output (B, T, Dq), scores (B, Nq, T, S) or None). Weights (Keras order): query
    (Dq, Nq, H), key (Dk, Nkv, H), [gate (Dq, Nq, H)], value (Dv, Nkv, H), attention_output
    (Nq, H, Dq), each followed by its bias with use_bias. Query head h uses kv head
    h // (Nq / Nkv). Otherwise as multi_head_attention at rank 3: q scaled by 1/sqrt(H), the
    same combined mask (query/value/key masks, causal, sliding window |i - j| < w, attention
    mask), the same fully-masked-row rule (Keras's fused path when no scores are requested and
    dropout == 0), dropout by flat index over the scores, returned scores before dropout,
    attended values times sigmoid(gate) with use_gate, then the output projection.
    """
    key = value if key is None else key
    query, value, key = _float_arrays(query, value, key)
    if query.ndim != 3 or value.ndim != 3 or key.ndim != 3:
        raise ValueError(
            f"query, value and key must have shape (B, length, dim), got {query.shape}, "
            f"{value.shape}, {key.shape}"
        )
    if value.shape[:2] != key.shape[:2] or query.shape[0] != value.shape[0]:
        raise ValueError(
            f"query {query.shape}, value {value.shape} and key {key.shape} must share the batch "
            "size, and key and value the length S"
        )
    n_query, n_kv, head_dim = int(num_query_heads), int(num_key_value_heads), int(head_dim)
    if n_query < 1 or n_kv < 1 or head_dim < 1:
        raise ValueError("head_dim, num_query_heads and num_key_value_heads must be positive")
    if n_query % n_kv:
        raise ValueError(f"num_key_value_heads {n_kv} must divide num_query_heads {n_query}")
    if sliding_window is not None and (isinstance(sliding_window, bool) or not
                                       isinstance(sliding_window, (int, np.integer))
                                       or sliding_window < 1):
        raise ValueError(f"sliding_window must be None or a positive integer, got {sliding_window}")
    rate = _check_rate(dropout)

    p = _mha_parameters(weights, use_bias, use_gate, query.dtype)
    (b, t, dq), (_, s, dv), dk = query.shape, value.shape, key.shape[-1]
    _check_dense(p, "query", (dq, n_query, head_dim), (n_query, head_dim))
    _check_dense(p, "key", (dk, n_kv, head_dim), (n_kv, head_dim))
    if use_gate:
        _check_dense(p, "gate", (dq, n_query, head_dim), (n_query, head_dim))
    _check_dense(p, "value", (dv, n_kv, head_dim), (n_kv, head_dim))
    _check_dense(p, "attention_output", (n_query, head_dim, dq), (dq,))

    group = n_query // n_kv
    scale = query.dtype.type(1.0 / math.sqrt(head_dim))
    q = (_dense(query, *p["query"], 1) * scale).reshape(b, t, n_kv, group, head_dim)
    k = _dense(key, *p["key"], 1)
    v = _dense(value, *p["value"], 1)
    logits = _einsum("btkgh,bskh->bkgts", q, k).reshape(b, n_query, t, s)

    mask = _mha_mask(query, value, 3, 1, logits.shape, query_mask, value_mask, key_mask,
                     attention_mask, use_causal_mask, sliding_window)
    fused_path = not return_attention_scores and rate == 0
    scores = _keras_attention_weights(logits, mask, (-1,), fused_path)
    used = _dropout(scores, rate, seed, stream) if training and rate > 0 else scores
    attended = _einsum("bkgts,bskh->btkgh", used.reshape(b, n_kv, group, t, s), v)
    attended = attended.reshape(b, t, n_query, head_dim)
    if use_gate:
        attended = attended * _sigmoid(_dense(query, *p["gate"], 1))
    output = _dense(attended, *p["attention_output"], 2)
    return output, (scores if return_attention_scores else None)


# ---------------------------------------------------------------------------------------------
# TF Model Garden's ReuseMultiHeadAttention
# ---------------------------------------------------------------------------------------------

# Model Garden's softmax (tf.keras Softmax) adds (1 - mask) * this to masked scores.
_REUSE_MASK_ADDER = -1e9


def _reuse_attention_axes(attention_axes, rank):
    """Upstream's attention axes as axes of the projected tensors (rank + 1: ..., heads, ch).

    Upstream indexes the projected tensors with the given axes as they are, so a negative axis
    a is projected axis rank + 1 + a: -2 (like rank - 1) is the heads axis, -3 the last input
    axis before the features. Valid: 1..rank - 1 and -rank..-2, distinct after that mapping.
    """
    if attention_axes is None:
        return tuple(range(1, rank - 1))
    if isinstance(attention_axes, (int, np.integer)):
        attention_axes = (attention_axes,)
    axes = tuple(int(a) + rank + 1 if int(a) < 0 else int(a) for a in attention_axes)
    if not axes or len(set(axes)) != len(axes) or any(not 1 <= a <= rank - 1 for a in axes):
        raise ValueError(
            f"attention_axes must be distinct axes in 1..{rank - 1} or -{rank}..-2 of a "
            f"rank-{rank} input (a negative axis counts from the end of the projected "
            f"(..., heads, channels) tensor, so -2 and {rank - 1} are the heads axis), "
            f"got {attention_axes}"
        )
    return axes


def _relative_position_bias(embeddings, t, s, max_length):
    """(1, n, t, s): embeddings[0, h, clip(j - i + P - 1, 0, 2P - 2)], P = max_length."""
    offsets = np.arange(s)[None, :] - np.arange(t)[:, None] + max_length - 1
    return embeddings[:, :, np.clip(offsets, 0, 2 * max_length - 2)]


def reuse_multi_head_attention(query, value, key=None, *, weights, num_heads, key_dim,
                               value_dim=None, reuse_attention=0, use_relative_pe=False,
                               pe_max_seq_length=512, use_bias=True, output_shape=None,
                               attention_axes=None, attention_mask=None,
                               reuse_attention_scores=None, dropout=0.0, training=False, seed=0,
                               stream=0, return_attention_scores=False):
    """TF Model Garden's ReuseMultiHeadAttention. Returns (output, scores or None).

    r = reuse_attention (-1 = num_heads) heads reuse given scores, n = num_heads - r are new.
    New heads: logits = (query W_q + b_q) / sqrt(key_dim) . (key W_k + b_k), laid out as in
    multi_head_attention (B, other axes, heads, query attention axes, key attention axes); plus,
    with use_relative_pe and n > 0, E[0, h, clip(j - i + P - 1, 0, 2P - 2)] (P =
    pe_max_seq_length, E the first weight); plus (1 - m) * (-1e9) in the dtype with m the
    attention mask as 0/1 (nonzero keeps; it gains size-1 axes at -2 * len(axes) - 1 until it has
    the scores' rank; nothing is zeroed); softmax jointly over the key attention axes. Reused
    heads: reuse_attention_scores[:, :r] as given (full reuse: the whole tensor, N heads).
    Returned scores: concat([new, reused]) on the head axis (full reuse: the input as given),
    before dropout. With training and dropout > 0 the returned tensor goes through this
    project's dropout (flat index over it) and is split back into the two sets.
    output = (reused · (value W_vr + b_vr)) W_or + b_or + (new · (value W_vn + b_vn)) W_on
    (+ b_on only when r == 0), shape query.shape[:-1] + output_shape (default (Dq,)).

    Weights (upstream order): [relative_position_embeddings (1, n, 2P - 1) if use_relative_pe
    and n > 0]; query (Dq, n, key_dim), key (Dk, n, key_dim) if n > 0; value_reuse (Dv, r, Hv)
    if r > 0; value_new (Dv, n, Hv) if n > 0; attention_output_reuse (r, Hv, *O) if r > 0;
    attention_output_new (n, Hv, *O) if n > 0; each kernel followed by its bias with use_bias,
    except attention_output_new, which has one only when r == 0.

    Attention axes are upstream's: a negative axis counts from the end of the projected
    (..., heads, channels) tensor, so -2 attends across the heads (see _reuse_attention_axes).
    Upstream slices and concatenates the reused scores on axis 1 and adds a (1, n, T, S) bias
    (T, S the axis-1 lengths): that is the heads layout only for rank-3 inputs attending over
    axis 1, so partial reuse and the relative position bias are accepted only there.
    """
    query, value, key, n_heads, key_dim, value_dim = _multi_head_inputs(
        query, value, key, num_heads, key_dim, value_dim)
    rank = query.ndim
    if not -1 <= int(reuse_attention) <= n_heads:
        raise ValueError(f"reuse_attention must be in -1..{n_heads}, got {reuse_attention}")
    reused_heads = n_heads if int(reuse_attention) == -1 else int(reuse_attention)
    new_heads = n_heads - reused_heads
    max_length = int(pe_max_seq_length)
    use_pe = bool(use_relative_pe) and new_heads > 0
    if use_pe and max_length < 1:
        raise ValueError(f"pe_max_seq_length must be positive, got {pe_max_seq_length}")
    if isinstance(output_shape, (int, np.integer)):
        output_shape = (int(output_shape),)
    output_shape = (query.shape[-1],) if output_shape is None else tuple(output_shape)
    rate = _check_rate(dropout)

    axes = _reuse_attention_axes(attention_axes, rank)
    for a in range(rank - 1):
        if a not in axes and query.shape[a] != key.shape[a]:
            raise ValueError(
                f"query {query.shape} and key {key.shape} must agree on the non-attention axis {a}"
            )
    heads_layout = rank == 3 and axes == (1,)
    if (0 < new_heads and 0 < reused_heads or use_pe) and not heads_layout:
        raise ValueError(
            "partial reuse and use_relative_pe need rank-3 inputs attending over axis 1 "
            "(upstream slices, concatenates and adds the position bias on axis 1)"
        )

    entries = ([("relative_position_embeddings", False)] if use_pe else []) + (
        [("query", use_bias), ("key", use_bias)] if new_heads else []) + (
        [("value_reuse", use_bias)] if reused_heads else []) + (
        [("value_new", use_bias)] if new_heads else []) + (
        [("attention_output_reuse", use_bias)] if reused_heads else []) + (
        [("attention_output_new", use_bias and reused_heads == 0)] if new_heads else [])
    p = _split_weights(weights, entries, query.dtype)
    dq, dk, dv = query.shape[-1], key.shape[-1], value.shape[-1]
    for name, heads, dim in (("query", new_heads, key_dim), ("key", new_heads, key_dim),
                             ("value_reuse", reused_heads, value_dim),
                             ("value_new", new_heads, value_dim)):
        if name in p:
            source = {"query": dq, "key": dk}.get(name, dv)
            _check_dense(p, name, (source, heads, dim), (heads, dim))
    for name, heads in (("attention_output_reuse", reused_heads),
                        ("attention_output_new", new_heads)):
        if name in p:
            _check_dense(p, name, (heads, value_dim, *output_shape), output_shape)

    q_sub, k_sub, v_sub, out_sub, scores_sub = _attention_subscripts(rank + 1, axes)
    key_attention_axes = tuple(range(len(scores_sub) - len(axes), len(scores_sub)))

    def layout_shape(heads):
        """The scores' shape with `heads` heads (q_sub/k_sub letters -> their sizes)."""
        sizes = dict(zip(q_sub, query.shape[:-1] + (heads,)))
        sizes.update(zip(k_sub, key.shape[:-1] + (heads,)))
        return tuple(sizes[letter] for letter in scores_sub)

    new = reused = None
    if new_heads:
        scale = query.dtype.type(1.0 / math.sqrt(key_dim))
        q = _dense(query, *p["query"], 1) * scale
        k = _dense(key, *p["key"], 1)
        logits = _einsum(q, q_sub, k, k_sub, scores_sub)
        if use_pe:
            embeddings = p["relative_position_embeddings"][0]
            if embeddings.shape != (1, new_heads, 2 * max_length - 1):
                raise ValueError(
                    f"relative_position_embeddings must have shape "
                    f"{(1, new_heads, 2 * max_length - 1)}, got {embeddings.shape}"
                )
            logits = logits + _relative_position_bias(embeddings, query.shape[1], key.shape[1],
                                                      max_length)
        if attention_mask is not None:
            keep = np.asarray(attention_mask) != 0
            if keep.ndim > logits.ndim:
                raise ValueError(f"attention_mask rank {keep.ndim} is above the scores' rank")
            while keep.ndim < logits.ndim:
                keep = np.expand_dims(keep, -2 * len(axes) - 1)
            keep = _broadcast(keep, logits.shape, "attention_mask")
            logits = logits + (1 - keep.astype(logits.dtype)) * logits.dtype.type(
                _REUSE_MASK_ADDER)
        new = _softmax(logits, key_attention_axes)
    if reused_heads:
        if reuse_attention_scores is None:
            raise ValueError(f"reuse_attention={reuse_attention} needs reuse_attention_scores")
        reused = _float_arrays(reuse_attention_scores)[0].astype(query.dtype)
        expected = layout_shape(n_heads)
        if new_heads == 0 and reused.shape != expected:
            raise ValueError(
                f"reuse_attention_scores must have shape {expected}, got {reused.shape}")
        if new_heads and (reused.ndim != 4 or reused.shape[1] < reused_heads
                          or reused.shape[:1] + reused.shape[2:] != expected[:1] + expected[2:]):
            raise ValueError(
                f"reuse_attention_scores must have shape (B, >= {reused_heads} heads, T, S) with "
                f"(B, T, S) = {expected[:1] + expected[2:]}, got {reused.shape}"
            )
        if new_heads:
            reused = reused[:, :reused_heads]

    # Returned scores: [new heads, reused heads] on axis 1; dropout over that tensor.
    sets = [w for w in (new, reused) if w is not None]
    scores = np.concatenate(sets, axis=1) if len(sets) == 2 else sets[0]
    used = _dropout(scores, rate, seed, stream) if training and rate > 0 else scores
    if len(sets) == 2:
        used_new, used_reused = used[:, :new_heads], used[:, new_heads:]
    else:
        used_new = used_reused = used
    output = 0
    for weights_used, present, value_name, output_name in (
            (used_reused, reused is not None, "value_reuse", "attention_output_reuse"),
            (used_new, new is not None, "value_new", "attention_output_new")):
        if present:
            attended = _einsum(weights_used, scores_sub, _dense(value, *p[value_name], 1),
                               v_sub, out_sub)
            output = output + _dense(attended, *p[output_name], 2)
    return output, (scores if return_attention_scores else None)
