"""attention — Keras 3's attention layers on numpy arrays, computed by libattention.

    from attention import MultiHeadAttention
    mha = MultiHeadAttention(num_heads=4, key_dim=16)
    mha.set_weights(keras_mha.get_weights())     # optional: Keras's weights, Keras's order
    out, scores = mha(query, value, return_attention_scores=True)

Layers: Attention, AdditiveAttention, MultiHeadAttention, GroupQueryAttention (also
GroupedQueryAttention) — Keras 3.15's constructor and call arguments, get_weights/set_weights,
get_config/from_config — and TF Model Garden's ReuseMultiHeadAttention, whose layers pass
their attention scores on:

    first = ReuseMultiHeadAttention(num_heads=4, key_dim=16)
    second = ReuseMultiHeadAttention(num_heads=4, key_dim=16, reuse_attention=2)
    x, scores = first(x, x, return_attention_scores=True)
    x = second(x, x, reuse_attention_scores=scores)

Training: `layer.gradients(..., output_gradient=dO)` runs one forward and backward and returns
the gradients of the inputs and of every weight (a Gradients); `layer.losses` and
`layer.apply_constraints()` give Keras's regularizers and constraints.

Keras interop (no Keras import): `from_keras(keras_layer)` gives the equivalent layer, config
and weights included; `layer.save_weights("w.npz")` / `layer.load_weights(path)` read and write
.npz files and read Keras's .weights.h5 / .keras files (with h5py). Layer files:
`layer.save("mha.safetensors")` writes kind, config, build shapes and weights in one
safetensors file that `attention.load(path)` (and the C library's att_layer_load) rebuild
the layer from.

Functional: dot_product_attention (keras.ops; a boolean mask only).

Dtypes: the library computes in float32 (default) or float64. float16 and bfloat16 inputs are
computed in float32 and returned in the caller's dtype (dot_product_attention) or, as Keras,
in the layer's compute dtype; layers take Keras's dtype policies, the half-precision ones
("float16", "bfloat16", "mixed_float16", "mixed_bfloat16") keeping float32 weights. Keras
initializer, regularizer, constraint and dtype policy objects are read by duck typing.

The C library is found through $ATTENTION_LIB, next to this package, or in an enclosing
.build/release (after `make lib`).

C programs against the installed package: get_include(), get_library_dir() and
get_pkgconfig_dir() (`PKG_CONFIG_PATH=... pkg-config --cflags --libs attention`).
"""

import operator
from pathlib import Path

from . import _lib
from ._additive_attention import AdditiveAttention
from ._attention import Attention
from ._functional import dot_product_attention
from ._group_query_attention import GroupedQueryAttention, GroupQueryAttention
from ._interop import from_keras
from ._layer import Gradients
from ._layer_file import load
from ._lib import LayerBusyError
from ._multi_head_attention import MultiHeadAttention
from ._reuse_multi_head_attention import ReuseMultiHeadAttention

__all__ = [
    "Attention",
    "AdditiveAttention",
    "MultiHeadAttention",
    "GroupQueryAttention",
    "GroupedQueryAttention",
    "ReuseMultiHeadAttention",
    "dot_product_attention",
    "from_keras",
    "load",
    "Gradients",
    "LayerBusyError",
    "set_num_threads",
    "get_num_threads",
    "cpu_kernels",
    "get_include",
    "get_library_dir",
    "get_pkgconfig_dir",
    "__version__",
]


def set_num_threads(n):
    """Threads used by one call (>= 1); results do not depend on it."""
    n = operator.index(n)
    if not -(2**31) <= n < 2**31:
        raise ValueError(f"thread count {n} does not fit a 32-bit integer")
    _lib.check(_lib.lib().att_set_num_threads(n))


def get_num_threads():
    """Threads used by one call (the number of online CPUs unless set)."""
    return _lib.lib().att_get_num_threads()


def cpu_kernels():
    """The kernels in use: "avx512", "avx2" or "baseline" (the best this CPU supports,
    capped by the environment variable ATTENTION_MAX_ISA), or "native" for a library built
    for one CPU. (A cap naming no variant, or no loadable variant, makes the first use of the
    library raise ImportError with the reason.)"""
    return _lib.lib().att_cpu_kernels().decode()


def _installed(*parts):
    # A path of the installed package (a wheel ships the library, its header and a
    # pkg-config file in it); a checkout has none of them.
    path = Path(__file__).resolve().parent.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: this attention package was not installed from a wheel "
            "(in a checkout: include/ and .build/release after `make lib`)"
        )
    return str(path)


def get_include():
    """The directory holding attention.h in the installed package (for cc -I)."""
    return str(Path(_installed("include", "attention.h")).parent)


def get_library_dir():
    """The installed package's directory, which holds libattention.so (for cc -L and an
    rpath; its libattention.so.0, the SONAME, is what a linked program loads)."""
    return str(Path(_installed(_lib.LIBRARY_NAME)).parent)


def get_pkgconfig_dir():
    """The directory holding attention.pc in the installed package (for PKG_CONFIG_PATH): its
    paths point into the package and link with an rpath to it, so a program built with
    `pkg-config --cflags --libs attention` runs without LD_LIBRARY_PATH."""
    return str(Path(_installed("pkgconfig", "attention.pc")).parent)


def __getattr__(name):
    # __version__ comes from the library (att_version), loaded on first use.
    if name == "__version__":
        return _lib.version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
