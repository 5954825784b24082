"""keras.ops.dot_product_attention on numpy arrays.

    output[b, t, n] = Σ_s softmax_s(scale · q[b,t,n]·k[b,s,g(n)] + bias, masked → −0.7·FLT_MAX)
                      · v[b, s, g(n)]          g(n) = n // (N / K)  (grouped-query heads)
"""

import ctypes

import numpy as np

from . import _lib
from ._layer import as_array, as_mask


def dot_product_attention(query, key, value, bias=None, mask=None, scale=None, is_causal=False):
    """query (B, T, N, H), key (B, S, K, H), value (B, S, K, Hv) with K dividing N; bias and
    mask broadcast to (B, N, T, S); scale defaults to 1/√H. Returns (B, T, N, Hv), float64
    if any of query, key, value, bias is float64, else float32."""
    floats = [np.asarray(x) for x in (query, key, value, bias) if x is not None]
    dtype = np.float64 if any(x.dtype == np.float64 for x in floats) else np.float32
    query, key, value = (as_array(x, dtype, what) for x, what in ((query, "query"), (key, "key"), (value, "value")))
    bias = None if bias is None else as_array(bias, dtype, "bias")
    mask = as_mask(mask, "mask")
    output = np.empty(query.shape[:-1] + value.shape[-1:], dtype)
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
    return output
