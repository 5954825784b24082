"""keras.ops.dot_product_attention on numpy arrays.

    output[b, t, n] = Σ_s softmax_s(scale · q[b,t,n]·k[b,s,g(n)] + bias, masked → −0.7·FLT_MAX)
                      · v[b, s, g(n)]          g(n) = n // (N / K)  (grouped-query heads)
"""

import ctypes

import numpy as np

from . import _lib
from ._dtypes import library_dtype, numeric, result_dtype
from ._layer import as_array, as_mask


def _boolean_mask(mask):
    """The mask as uint8 (None stays None). Only a boolean mask is taken, as jax.nn's
    dot_product_attention: a float mask is often additive (0 keeps, −inf masks), which
    "nonzero keeps" would invert silently."""
    if mask is None:
        return None
    array = numeric(mask, "mask")
    if array.dtype != np.bool_:
        raise ValueError(
            f"mask must be a boolean array (True keeps a position), got dtype {array.dtype}. "
            "For an additive mask (0 keeps, -inf masks out) pass it as bias=; for 0/1 values "
            "pass mask.astype(bool)."
        )
    return as_mask(array, "mask")


def dot_product_attention(query, key, value, bias=None, mask=None, scale=None, is_causal=False):
    """query (B, T, N, H), key (B, S, K, H), value (B, S, K, Hv) with K dividing N; bias and
    a boolean mask (True keeps) broadcast to (B, N, T, S); scale defaults to 1/√H.

    Returns (B, T, N, Hv) in the dtype the floating inputs (bias included) promote to:
    float64 if any is float64, else float32 if any is float32 (or float16 meets bfloat16),
    else their shared float16 or bfloat16 (computed in float32, rounded at the end); float32
    when none is floating. ValueError for a non-boolean mask."""
    for what, x in (("query", query), ("key", key), ("value", value)):
        if x is None:
            raise TypeError(f"{what} must be a numeric array, got None")
    given = {"query": query, "key": key, "value": value, "bias": bias}
    arrays = {what: numeric(x, what) for what, x in given.items() if x is not None}
    dtype = result_dtype(a.dtype for a in arrays.values())
    compute = library_dtype(dtype)
    mask = _boolean_mask(mask)
    query, key, value = (as_array(arrays[what], compute, what) for what in ("query", "key", "value"))
    bias = as_array(arrays["bias"], compute, "bias") if "bias" in arrays else None
    output = np.empty(query.shape[:-1] + value.shape[-1:], compute)
    args = _lib.DotProductAttentionArgs(
        struct_size=ctypes.sizeof(_lib.DotProductAttentionArgs),
        query=_lib.tensor_ref(query),
        key=_lib.tensor_ref(key),
        value=_lib.tensor_ref(value),
        bias=_lib.tensor_ref(bias),
        mask=_lib.tensor_ref(mask),
        has_scale=scale is not None,
        scale=0.0 if scale is None else float(scale),
        is_causal=bool(is_causal),
        output=_lib.tensor_ref(output),
    )
    _lib.check(_lib.lib().att_dot_product_attention(ctypes.byref(args)))
    return output if output.dtype == dtype else output.astype(dtype)
