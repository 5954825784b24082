"""Dtypes: what arrays the package takes, what it computes in, what it returns.

The library computes in float32 or float64. float16 and bfloat16 (ml_dtypes') arrays are
accepted too: they are computed in float32 and the results are cast back (there are no
half-precision kernels yet). bfloat16 is recognised by its dtype name, so ml_dtypes is
imported only when a bfloat16 result has to be made without a bfloat16 input to take the
dtype from (a layer whose policy computes in bfloat16).

Layers follow Keras's dtype policies: the policy names a variable dtype (the weights) and a
compute dtype; inputs are cast to the compute dtype and outputs come back in it, whatever the
inputs' dtype. Here the weights of every half-precision policy ("float16", "bfloat16",
"mixed_float16", "mixed_bfloat16") are kept in float32 and the math runs in float32; only
the results are rounded to the compute dtype.
"""

import numpy as np

FLOAT32, FLOAT64 = np.dtype(np.float32), np.dtype(np.float64)
HALF_NAMES = ("float16", "bfloat16")
# Keras policy name -> (variable dtype name, compute dtype name), as stored here.
_POLICIES = {
    "float32": ("float32", "float32"),
    "float64": ("float64", "float64"),
    "float16": ("float32", "float16"),
    "bfloat16": ("float32", "bfloat16"),
    "mixed_float16": ("float32", "float16"),
    "mixed_bfloat16": ("float32", "bfloat16"),
}
# Class names of Keras's (and tf.keras's) float dtype policies; the quantized ones are not here.
_POLICY_CLASSES = ("DTypePolicy", "FloatDTypePolicy", "Policy")


def is_float(dtype):
    """Whether a numpy dtype is float16/32/64 or bfloat16."""
    return dtype.kind == "f" or dtype.name == "bfloat16"


def numeric(x, what):
    """np.asarray(x), which must be bool, integer or floating (bfloat16 included):
    TypeError otherwise."""
    array = np.asarray(x)
    if array.dtype.kind not in "biuf" and array.dtype.name != "bfloat16":
        raise TypeError(f"{what} must be a numeric array, got dtype {array.dtype}")
    return array


def library_dtype(dtype):
    """The dtype the library computes a result of `dtype` in: float64 or float32."""
    return FLOAT64 if dtype == FLOAT64 else FLOAT32


def result_dtype(dtypes):
    """The dtype of a result computed from arrays of these dtypes (Keras's promotion of
    floats): float64 if any is, else float32 if any is (or float16 meets bfloat16), else
    the half type they share; float32 when none is floating (bool and integers vote not)."""
    floats = {np.dtype(d) for d in dtypes if is_float(np.dtype(d))}
    if FLOAT64 in floats:
        return FLOAT64
    if not floats or FLOAT32 in floats or len(floats) > 1:
        return FLOAT32
    return floats.pop()


def _bfloat16():
    try:
        import ml_dtypes
    except ImportError:
        raise ValueError("a bfloat16 dtype policy needs the ml_dtypes package "
                         "(pip install ml_dtypes)") from None
    return np.dtype(ml_dtypes.bfloat16)


def _np_dtype(name):
    return _bfloat16() if name == "bfloat16" else np.dtype(name)


def policy_name(dtype):
    """The Keras dtype policy name of a layer's `dtype` argument: None ("float32"), a name
    ("float32", "float64", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16"), a numpy
    dtype or type, a DTypePolicy config dict, or a policy object (recognised by its class name,
    read through its `name` or get_config(): Keras is never imported). ValueError otherwise."""
    name = dtype
    if dtype is None:
        name = "float32"
    elif isinstance(dtype, dict):
        config = dtype.get("config") if "class_name" in dtype else dtype
        name = config.get("name") if isinstance(config, dict) else None
        if "class_name" in dtype and dtype["class_name"] not in _POLICY_CLASSES:
            name = None
    elif type(dtype).__name__ in _POLICY_CLASSES and not isinstance(dtype, (str, np.dtype)):
        name = getattr(dtype, "name", None)
        if not isinstance(name, str) and callable(getattr(dtype, "get_config", None)):
            name = dtype.get_config().get("name")
    elif not isinstance(dtype, str):
        try:
            name = np.dtype(dtype).name
        except (TypeError, ValueError):
            name = getattr(dtype, "__name__", None)  # ml_dtypes.bfloat16, the type
    if name not in _POLICIES:
        raise ValueError(
            "dtype must be 'float32' or 'float64', or a half-precision policy ('float16', "
            "'bfloat16', 'mixed_float16', 'mixed_bfloat16'), as a name or a Keras DTypePolicy; "
            f"got {dtype!r}")
    return name


class Policy:
    """A layer's dtype policy: `name` (Keras's), `variable_dtype` (the weights, float32 or
    float64), `compute_dtype` (the results) as numpy dtypes."""

    def __init__(self, dtype):
        self.name = policy_name(dtype)
        variable, compute = _POLICIES[self.name]
        self.variable_dtype = np.dtype(variable)
        self.compute_dtype = _np_dtype(compute)

    def result(self, array):
        """`array` (computed in the variable dtype) in the compute dtype."""
        return array if array is None or array.dtype == self.compute_dtype else array.astype(self.compute_dtype)
