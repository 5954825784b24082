"""ctypes binding of libattention (include/attention.h): library lookup, structs, signatures.

Every struct mirrors the header field for field, and every function's argtypes/restype is
declared once, in `_SIGNATURES`. `check(status)` turns a failed att_status into a Python
exception carrying att_last_error().
"""

import ctypes
import functools
import operator
import os
from pathlib import Path

import numpy as np

MAX_RANK = 8
LIBRARY_NAME = "libattention.so"

# att_status
OK = 0
ERR_NULL_ARGUMENT = 1
ERR_INVALID_ARGUMENT = 2
ERR_SHAPE = 3
ERR_DTYPE = 4
ERR_INVALID_HANDLE = 5
ERR_NOT_BUILT = 6
ERR_STRUCT_SIZE = 7
ERR_OUT_OF_MEMORY = 8
ERR_INTERNAL = 9
ERR_BUSY = 10
ERR_IO = 11

# att_dtype
FLOAT32 = 1
FLOAT64 = 2
UINT8 = 3
DTYPE_CODES = {np.dtype(np.float32): FLOAT32, np.dtype(np.float64): FLOAT64, np.dtype(np.uint8): UINT8}

# att_score_mode
SCORE_DOT = 0
SCORE_CONCAT = 1


class Shape(ctypes.Structure):
    """The header's att_shape, field for field."""

    _fields_ = [("rank", ctypes.c_int32), ("dims", ctypes.c_int64 * MAX_RANK)]


class Tensor(ctypes.Structure):
    """The header's att_tensor, field for field."""

    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int), ("shape", Shape)]


class AttentionConfig(ctypes.Structure):
    """The header's att_attention_config, field for field."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("dtype", ctypes.c_int),
        ("use_scale", ctypes.c_int32),
        ("score_mode", ctypes.c_int),
        ("dropout", ctypes.c_double),
        ("causal", ctypes.c_int32),
    ]


class AdditiveAttentionConfig(ctypes.Structure):
    """The header's att_additive_attention_config, field for field."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("dtype", ctypes.c_int),
        ("no_scale", ctypes.c_int32),
        ("dropout", ctypes.c_double),
        ("seed", ctypes.c_uint64),
    ]


class Initializer(ctypes.Structure):
    """The header's att_initializer, field for field."""

    _fields_ = [("kind", ctypes.c_int), ("a", ctypes.c_double), ("b", ctypes.c_double)]


class Regularizer(ctypes.Structure):
    """The header's att_regularizer, field for field."""

    _fields_ = [("kind", ctypes.c_int), ("l1", ctypes.c_double), ("l2", ctypes.c_double)]


class Constraint(ctypes.Structure):
    """The header's att_constraint, field for field."""

    _fields_ = [
        ("kind", ctypes.c_int),
        ("min_value", ctypes.c_double),
        ("max_value", ctypes.c_double),
        ("rate", ctypes.c_double),
        ("axis", ctypes.c_int32),
    ]


# The weight options every multi-head config ends with, in header order.
_WEIGHT_OPTION_FIELDS = [
    ("kernel_initializer", Initializer),
    ("bias_initializer", Initializer),
    ("kernel_regularizer", Regularizer),
    ("bias_regularizer", Regularizer),
    ("activity_regularizer", Regularizer),
    ("kernel_constraint", Constraint),
    ("bias_constraint", Constraint),
]


class MultiHeadAttentionConfig(ctypes.Structure):
    """The header's att_multi_head_attention_config, field for field."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("dtype", ctypes.c_int),
        ("num_heads", ctypes.c_int64),
        ("key_dim", ctypes.c_int64),
        ("value_dim", ctypes.c_int64),
        ("dropout", ctypes.c_double),
        ("no_bias", ctypes.c_int32),
        ("output_rank", ctypes.c_int32),
        ("output_shape", ctypes.c_int64 * MAX_RANK),
        ("num_attention_axes", ctypes.c_int32),
        ("attention_axes", ctypes.c_int64 * MAX_RANK),
        ("sliding_window", ctypes.c_int64),
        ("use_gate", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
    ] + _WEIGHT_OPTION_FIELDS


class GroupQueryAttentionConfig(ctypes.Structure):
    """The header's att_group_query_attention_config, field for field."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("dtype", ctypes.c_int),
        ("head_dim", ctypes.c_int64),
        ("num_query_heads", ctypes.c_int64),
        ("num_key_value_heads", ctypes.c_int64),
        ("dropout", ctypes.c_double),
        ("no_bias", ctypes.c_int32),
        ("sliding_window", ctypes.c_int64),
        ("use_gate", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
    ] + _WEIGHT_OPTION_FIELDS


class ReuseMultiHeadAttentionConfig(ctypes.Structure):
    """The header's att_reuse_multi_head_attention_config, field for field."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("dtype", ctypes.c_int),
        ("num_heads", ctypes.c_int64),
        ("key_dim", ctypes.c_int64),
        ("value_dim", ctypes.c_int64),
        ("dropout", ctypes.c_double),
        ("reuse_attention", ctypes.c_int64),
        ("use_relative_pe", ctypes.c_int32),
        ("pe_max_seq_length", ctypes.c_int64),
        ("no_bias", ctypes.c_int32),
        ("output_rank", ctypes.c_int32),
        ("output_shape", ctypes.c_int64 * MAX_RANK),
        ("num_attention_axes", ctypes.c_int32),
        ("attention_axes", ctypes.c_int64 * MAX_RANK),
        ("seed", ctypes.c_uint64),
    ] + _WEIGHT_OPTION_FIELDS


_TensorP = ctypes.POINTER(Tensor)


class CallArgs(ctypes.Structure):
    """The header's att_call_args, field for field."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("query", _TensorP),
        ("value", _TensorP),
        ("key", _TensorP),
        ("query_mask", _TensorP),
        ("value_mask", _TensorP),
        ("key_mask", _TensorP),
        ("attention_mask", _TensorP),
        ("training", ctypes.c_int32),
        ("use_causal_mask", ctypes.c_int32),
        ("dropout_seed", ctypes.c_uint64),
        ("dropout_stream", ctypes.c_uint64),
        ("output", _TensorP),
        ("scores", _TensorP),
        ("reuse_attention_scores", _TensorP),
        # Added in 0.3.0: the key/value cache (see _cache.py).
        ("cache", _TensorP),
        ("cache_update_index", ctypes.POINTER(ctypes.c_int64)),
        ("cache_update_index_count", ctypes.c_size_t),
    ]


class GradientArgs(ctypes.Structure):
    """The header's att_gradient_args, field for field."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("output_gradient", _TensorP),
        ("scores_gradient", _TensorP),
        ("query_gradient", _TensorP),
        ("value_gradient", _TensorP),
        ("key_gradient", _TensorP),
        ("reuse_attention_scores_gradient", _TensorP),
        ("weight_gradients", _TensorP),
        ("include_regularization", ctypes.c_int32),
    ]


class DotProductAttentionArgs(ctypes.Structure):
    """The header's att_dot_product_attention_args, field for field."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("query", _TensorP),
        ("key", _TensorP),
        ("value", _TensorP),
        ("bias", _TensorP),
        ("mask", _TensorP),
        ("has_scale", ctypes.c_int32),
        ("scale", ctypes.c_double),
        ("is_causal", ctypes.c_int32),
        ("output", _TensorP),
    ]


_Status = ctypes.c_int
_Handle = ctypes.c_void_p
_ShapeP = ctypes.POINTER(Shape)

# The one table of C signatures: name -> (restype, argtypes).
_SIGNATURES = {
    "att_version": (ctypes.c_char_p, []),
    "att_version_number": (ctypes.c_int32, []),
    "att_cpu_kernels": (ctypes.c_char_p, []),
    "att_last_error": (ctypes.c_char_p, []),
    "att_status_name": (ctypes.c_char_p, [_Status]),
    "att_set_num_threads": (_Status, [ctypes.c_int32]),
    "att_get_num_threads": (ctypes.c_int32, []),
    "att_attention_create": (_Status, [ctypes.POINTER(AttentionConfig), ctypes.POINTER(_Handle)]),
    "att_additive_attention_create": (
        _Status,
        [ctypes.POINTER(AdditiveAttentionConfig), ctypes.POINTER(_Handle)],
    ),
    "att_multi_head_attention_create": (
        _Status,
        [ctypes.POINTER(MultiHeadAttentionConfig), ctypes.POINTER(_Handle)],
    ),
    "att_group_query_attention_create": (
        _Status,
        [ctypes.POINTER(GroupQueryAttentionConfig), ctypes.POINTER(_Handle)],
    ),
    "att_reuse_multi_head_attention_create": (
        _Status,
        [ctypes.POINTER(ReuseMultiHeadAttentionConfig), ctypes.POINTER(_Handle)],
    ),
    "att_layer_destroy": (_Status, [_Handle]),
    "att_layer_build": (_Status, [_Handle, _ShapeP, _ShapeP, _ShapeP]),
    "att_layer_is_built": (_Status, [_Handle, ctypes.POINTER(ctypes.c_int32)]),
    "att_layer_weight_count": (_Status, [_Handle, ctypes.POINTER(ctypes.c_size_t)]),
    "att_layer_weight_info": (
        _Status,
        [_Handle, ctypes.c_size_t, _ShapeP, ctypes.POINTER(ctypes.c_char_p)],
    ),
    "att_layer_get_weight": (_Status, [_Handle, ctypes.c_size_t, _TensorP]),
    "att_layer_set_weight": (_Status, [_Handle, ctypes.c_size_t, _TensorP]),
    "att_layer_output_shape": (_Status, [_Handle, _ShapeP, _ShapeP, _ShapeP, _ShapeP, _ShapeP]),
    "att_layer_call": (_Status, [_Handle, ctypes.POINTER(CallArgs)]),
    "att_layer_backward": (_Status, [_Handle, ctypes.POINTER(CallArgs), ctypes.POINTER(GradientArgs)]),
    "att_layer_losses": (
        _Status,
        [_Handle, ctypes.POINTER(CallArgs), ctypes.POINTER(ctypes.c_double), ctypes.c_size_t,
         ctypes.POINTER(ctypes.c_size_t)],
    ),
    "att_layer_apply_constraints": (_Status, [_Handle]),
    "att_layer_save": (_Status, [_Handle, ctypes.c_char_p]),
    "att_layer_load": (_Status, [ctypes.c_char_p, ctypes.POINTER(_Handle)]),
    "att_dot_product_attention": (_Status, [ctypes.POINTER(DotProductAttentionArgs)]),
}


def _candidates():
    """Where the library may be: $ATTENTION_LIB, next to the package, or a SwiftPM build
    directory (.build/release) of an enclosing directory."""
    override = os.environ.get("ATTENTION_LIB")
    if override:
        return [Path(override)]
    package = Path(__file__).resolve().parent
    found = [package / LIBRARY_NAME]
    found += [d / ".build" / "release" / LIBRARY_NAME for d in package.parents]
    return found


@functools.cache
def lib():
    """The loaded library with every signature declared (loaded on first use)."""
    candidates = _candidates()
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ImportError(
            f"{LIBRARY_NAME} not found (looked at: {', '.join(map(str, candidates))}); "
            "run `make lib` in the repository or set ATTENTION_LIB to its path"
        )
    handle = ctypes.CDLL(str(path))
    for name, (restype, argtypes) in _SIGNATURES.items():
        function = getattr(handle, name)
        function.restype = restype
        function.argtypes = argtypes
    if handle.att_cpu_kernels() == b"none":
        raise ImportError(handle.att_last_error().decode("utf-8", "replace"))
    return handle


class LayerBusyError(RuntimeError):
    """ATT_ERR_BUSY: the layer is in use by another thread (a build, set_weights or
    apply_constraints while calls run, or a call during one of them). Nothing was done;
    retry once the other use has returned."""


_EXCEPTIONS = {
    ERR_NULL_ARGUMENT: ValueError,
    ERR_INVALID_ARGUMENT: ValueError,
    ERR_SHAPE: ValueError,
    ERR_INVALID_HANDLE: ValueError,
    ERR_NOT_BUILT: ValueError,
    ERR_STRUCT_SIZE: ValueError,
    ERR_DTYPE: TypeError,
    ERR_OUT_OF_MEMORY: MemoryError,
    ERR_BUSY: LayerBusyError,
    ERR_IO: OSError,
}


def check(status):
    """Raise the exception for a failed att_status, with att_last_error() as its message
    (less the C argument struct's `args->`: the fields are named after the Python arguments)."""
    if status == OK:
        return
    message = lib().att_last_error().decode("utf-8", "replace").replace("args->", "")
    name = lib().att_status_name(status).decode()
    raise _EXCEPTIONS.get(status, RuntimeError)(f"{message} [{name}]")


def version():
    """att_version(): the library's version string."""
    return lib().att_version().decode()


def version_number():
    """att_version_number(): MAJOR * 1000000 + MINOR * 1000 + PATCH."""
    return lib().att_version_number()


def make_shape(dims):
    """An att_shape from a sequence of integers (values are checked by the library, except
    that the rank must fit ATT_MAX_RANK and each dim an int64)."""
    dims = tuple(map(operator.index, dims))
    if len(dims) > MAX_RANK:
        raise ValueError(f"rank {len(dims)} exceeds the largest supported rank {MAX_RANK}: {dims}")
    for d in dims:
        if not -(2**63) <= d < 2**63:
            raise ValueError(f"dimension {d} of shape {dims} does not fit a 64-bit integer")
    return Shape(len(dims), _Dims(*dims))


_Dims = ctypes.c_int64 * MAX_RANK


def shape_tuple(shape):
    """The dims of an att_shape as a tuple."""
    return tuple(shape.dims[i] for i in range(shape.rank))


def make_tensor(array):
    """An att_tensor viewing a C-contiguous float32/float64/uint8 numpy array. The tensor
    keeps a reference to the array, so the buffer lives as long as the tensor."""
    if not array.flags.c_contiguous:
        raise ValueError("internal: tensors must be C-contiguous")
    tensor = Tensor(
        data=array.ctypes.data,
        dtype=DTYPE_CODES[array.dtype],
        shape=make_shape(array.shape),
    )
    tensor.array = array
    return tensor


def tensor_ref(array):
    """A pointer to an att_tensor for `array`, or NULL for None (the pointer keeps both
    the tensor and the array alive)."""
    return None if array is None else ctypes.pointer(make_tensor(array))
