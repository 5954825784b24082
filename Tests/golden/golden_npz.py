"""What the golden generators share: seeded numpy draws and the .npz writer (format: README.md).

Imported by every make_*.py (Keras and TF Model Garden); needs numpy only.
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


def value_row_masked(tv, batch=1):
    """A value mask whose row `batch` is all False (a fully masked score row)."""
    mask = np.ones((B, tv), bool)
    mask[0, 1] = False
    mask[batch] = False
    return mask


def config_json(value):
    """JSON of a layer's get_config() (TensorShapes and tuples as lists)."""
    return json.dumps(value, default=lambda v: v.as_list() if hasattr(v, "as_list") else list(v))


def trainable_order(layer, trainable):
    """For each of layer.weights (get_weights() order), its index in `trainable` (the
    variables a gradient comes back for); raises unless the two are the same variables."""
    order = []
    for w in layer.weights:
        matches = [i for i, t in enumerate(trainable) if t is w]
        if len(matches) != 1:
            raise RuntimeError(f"{layer.name}: weight {getattr(w, 'path', w.name)} is not one trainable variable")
        order.append(matches[0])
    if len(order) != len(trainable):
        raise RuntimeError(f"{layer.name}: trainable variables outside get_weights()")
    return order


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
