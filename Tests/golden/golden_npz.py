"""What the golden generators share: seeded numpy draws and the .npz writer (format: README.md).

Imported by make_golden.py (Keras) and make_reuse_golden.py (TF Model Garden); needs numpy only.
"""

import json
import zlib
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent
DTYPES = ("float32", "float64")
B = 2


def generator(group, name):
    """The case's numpy generator: the same draws for both dtypes and on every run."""
    return np.random.default_rng(zlib.crc32(f"{group}/{name}".encode()))


def bool_mask(rng, shape, keep=0.7):
    return rng.random(shape) < keep


def rows_masked(shape, index):
    """All True but `index` (a fully masked row when it selects one)."""
    mask = np.ones(shape, bool)
    mask[index] = False
    return mask


def write_case(group, name, dtype, layer, config, call, weights, inputs, outputs, *, stamps,
               softmax_in_float32, float32_compute, notes=(), finite=True):
    """Write OUT/<group>/<name>_<dtype>.npz. stamps: {key: str} naming the upstream versions
    (keras_version, backend, ...). The two flags describe the case's path, the same for both
    dtypes: with float64 inputs upstream would compute its softmax (softmax_in_float32) or some
    step (float32_compute) in float32; the notes say which. None inputs/outputs are left out.
    finite: refuse NaN/Inf outputs (a case that should have been finite)."""
    arrays = {
        "layer": np.array(layer),
        "config": np.array(json.dumps(config)),
        "dtype": np.array(dtype),
        "call": np.array(json.dumps(call)),
        "weight_count": np.array(len(weights)),
        **{key: np.array(value) for key, value in stamps.items()},
        "softmax_in_float32": np.array(softmax_in_float32),
        "float32_compute": np.array(float32_compute),
    }
    arrays.update({f"weight_{i}": np.asarray(w) for i, w in enumerate(weights)})
    for key, value in {**inputs, **outputs}.items():
        if value is not None:
            arrays[key] = np.asarray(value)
    for key in ("output", "scores") if finite else ():
        if key in arrays and not np.all(np.isfinite(arrays[key])):
            raise RuntimeError(f"{group}/{name}_{dtype}: upstream returned non-finite {key}")
    if any(notes):
        arrays["note"] = np.array(" ".join(n for n in notes if n))
    (OUT / group).mkdir(exist_ok=True)
    np.savez_compressed(OUT / group / f"{name}_{dtype}.npz", **arrays)
