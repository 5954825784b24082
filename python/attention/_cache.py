"""Incremental decoding: the `cache=` and `cache_update_index=` arguments of MultiHeadAttention
and GroupQueryAttention, with keras_hub's CachedMultiHeadAttention semantics and layout.

    cache  (B, 2, S_max, K, H): keys at [:, 0], values at [:, 1]; K = num_heads (MHA) or
           num_key_value_heads (GQA), H = key_dim = value_dim (head_dim for GQA).

With `cache_update_index` (an int for every batch row, or an int array (B,) with one index
per row: sequences of different lengths decode together): only the new tokens are projected,
their keys and values are written into the cache at rows [p_b, p_b + T_new) of each batch row
b, and the query attends over the whole cache (S_max keys); the masks decide what each row
sees (keras_hub's decoders pass a (B, T, S_max) attention_mask). With `use_causal_mask=True`
query row i of batch row b stands at position p_b + i and sees the positions <= p_b + i (a
sliding window counts from there too): no mask to build, and the unfilled part of the cache is
never read. Without it the whole cache is attended, as keras_hub does: start from a zeroed
cache (np.zeros), not np.empty.

Without `cache_update_index` the cache is used as it is (cross-attention over an encoder's
cached keys and values); value and key are not read.

The cache is updated in place when it is a writable C-contiguous numpy array of the layer's
dtype (float32, or float64 for a float64 layer): the returned cache is then the very object
passed, and no copy of it is made (nothing but the new rows is written). Anything else (another
dtype, a read-only or non-contiguous array, a list, a JAX or TF array) is copied, the copy is
updated and returned — a new object each call, so pass back what the call returned.

Masks are read against the scores (B, N, T, S_max): query_mask (B, T), value_mask and key_mask
over the cache positions (B, S_max), attention_mask (B, T, S_max) or anything Keras's rule
broadcasts to it; returned scores are (B, N, T, S_max). A fully masked row follows Keras's
rule (uniform on the fused path — no scores, dropout 0 — else zero) except with
use_causal_mask and an update index, where it is zero. The gate (use_gate) applies as without
a cache (keras_hub's CachedMultiHeadAttention skips it). The layer keeps no state: one layer
serves any number of sequences, each with its own cache, from any number of threads; calls
that update the same cache must not run at once.
"""

import ctypes
import operator

import numpy as np

from . import _lib
from ._dtypes import numeric
from ._layer import as_array, as_mask
from ._lib import check


def cache_array(layer, cache, update):
    """(the array the library reads and writes, whether it is `cache` itself)."""
    dtype = layer._np_dtype
    if isinstance(cache, np.ndarray) and cache.dtype == dtype and cache.flags.c_contiguous and (
            cache.flags.writeable or not update):
        return cache, True
    if update:
        return np.array(numeric(cache, "cache"), dtype=dtype, order="C", copy=True), False
    return as_array(cache, dtype, "cache"), False


def update_index(index):
    """cache_update_index as a contiguous int64 array of 1 or B entries, or None."""
    if index is None:
        return None
    if isinstance(index, (bool, np.bool_)):
        raise TypeError(f"cache_update_index must be an integer or an integer array, not {index!r}")
    if isinstance(index, int):
        if not -(2**63) <= index < 2**63:
            raise ValueError(f"cache_update_index {index} does not fit a 64-bit integer")
        return np.array([index], np.int64)
    array = np.asarray(index)
    if array.dtype.kind not in "iu":
        raise TypeError(f"cache_update_index must be an integer or an integer array (one index per batch row); "
                        f"got dtype {array.dtype}")
    if array.ndim > 1:
        raise ValueError(f"cache_update_index must be an integer or a 1-D array of one index per batch row; "
                         f"got shape {array.shape}")
    if array.dtype.kind == "u" and array.size and int(array.max()) >= 2**63:
        raise ValueError(f"cache_update_index {int(array.max())} does not fit a 64-bit integer")
    return np.ascontiguousarray(array.reshape(-1), dtype=np.int64)


def cached_call(layer, query, value, key, masks, *, training, use_causal_mask, return_scores, cache,
                cache_update_index):
    """The call with a cache: returns (output, cache), or (output, scores, cache)."""
    if cache is None:
        raise ValueError("`cache_update_index` should not be set if `cache` is `None`. Received: "
                         f"cache=None, cache_update_index={cache_update_index!r}")
    query = layer._input(query, "query")
    value = layer._input(value, "value")
    key = None if key is None else layer._input(key, "key")
    if not layer.built:
        layer.build(query.shape, value.shape, None if key is None else key.shape)
    index = update_index(cache_update_index)
    array, same = cache_array(layer, cache, update=index is not None)
    masks = {field: as_mask(mask, field) for field, mask in masks.items()}
    plan, args, output, scores = layer._prepare(query, value, key, masks, return_scores=return_scores,
                                                training=training, use_causal_mask=use_causal_mask, cache=array)
    scalar = None
    if index is None:
        args.cache_update_index, args.cache_update_index_count = None, 0
    elif index.size == 1:
        scalar = ctypes.c_int64(int(index[0]))  # kept alive through the call
        args.cache_update_index, args.cache_update_index_count = ctypes.pointer(scalar), 1
    else:
        args.cache_update_index = index.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
        args.cache_update_index_count = operator.index(index.size)
    check(_lib.lib().att_layer_call(layer._handle, plan.ref))
    layer._record_activity_losses(args)  # reruns the call: writes the same rows again
    result = layer._policy.result
    returned = array if same else result(array)
    if return_scores:
        return result(output), result(scores), returned
    return result(output), returned
