"""Weight files: the library's own .npz (Layer.save_weights / load_weights) and Keras's
.weights.h5 (and the model.weights.h5 inside a .keras archive), read with h5py.

.npz: one array per weight under its Keras name ("query/kernel"), plus META, a JSON string:
{"format": FORMAT, "layer": class name, "dtype", "names" (get_weights() order), "shapes",
"build_shapes": [query, value, key] input shapes (key null: the value's)}.

Keras 3 .weights.h5 (keras.saving.saving_lib): every saveable object has an HDF5 group at its
attribute path, e.g. `layers/<snake class name>[_k]` for the layers of a Functional or
Sequential model (nested models repeat the pattern), whose `vars` subgroup holds its own
variables as datasets "0", "1", ... in creation order, with the object's `name` as an
attribute (Keras 3; tf_keras writes no names). Sublayers are groups below it
(MultiHeadAttention: `query_dense`, `key_dense`, `value_dense`, `output_dense`,
`_gate_dense`; GroupQueryAttention: `_query_dense`, ...; vars named "query", "key", "gate",
"value", "attention_output"), each with kernel "0" and bias "1". Model Garden's Reuse (tf_keras):
own `vars/0` relative_position_embeddings, `_query_dense`, `_key_dense`, and lists
`_value_dense` / `_output_dense` whose entries `einsum_dense`, `einsum_dense_1` are the reuse
then the new projection (those present). A sublayer is found by its vars name, else by those
paths. Dropout and softmax sublayers have empty vars groups.
"""

import io
import json
import os
import re
import zipfile

import numpy as np

from ._interop import KINDS, build_for, expected_specs, input_shapes_from_weights

FORMAT = "libattention-weights-1"
META = "__libattention__"
_KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


def _snake(name):
    """saving_lib's group name for a class: GroupedQueryAttention -> grouped_query_attention."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# The groups saving_lib gives our kinds (plus "_<k>" for repeats).
_H5_KIND = re.compile(r"(%s)(_\d+)?" % "|".join(_snake(name) for name in KINDS))
# tf_keras paths (no vars names) of the sublayers, by our weight-name prefix.
_TF_KERAS_PATHS = {"query": "_query_dense", "key": "_key_dense", "gate": "_gate_dense",
                   "value": "_value_dense", "attention_output": "_output_dense"}


def save_npz(layer, path):
    """Write `layer`'s weights and META to `path` (.npz); see the module docstring."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise ValueError(f"save_weights writes .npz files; got {path!r}")
    if not layer.built:
        raise ValueError(f"Layer {layer.name!r} has no weights yet: build or call it before save_weights")
    specs = layer._weight_specs()
    meta = {"format": FORMAT, "layer": type(layer).__name__, "dtype": layer.dtype,
            "names": [name for name, _ in specs], "shapes": [list(shape) for _, shape in specs],
            "build_shapes": getattr(layer, "_build_input_shapes", None)}
    arrays = dict(zip(meta["names"], layer.get_weights()))
    np.savez(path, **{META: np.array(json.dumps(meta))}, **arrays)


def load(layer, path, layer_name):
    """Layer.load_weights: dispatch on the file's suffix."""
    path = os.fspath(path)
    if path.endswith(".npz"):
        if layer_name is not None:
            raise ValueError("layer_name selects a layer of a Keras file; an .npz holds one layer")
        names, arrays, shapes = _read_npz(layer, path)
    elif path.endswith(_KERAS_SUFFIXES):
        names, arrays, shapes = _read_keras(layer, path, layer_name)
    else:
        raise ValueError(f"load_weights reads .npz (save_weights) and Keras .weights.h5 / .keras "
                         f"files; got {path!r}")
    expected = expected_specs(layer, None if layer.built else shapes)
    if [name for name, _ in expected] != names:
        raise ValueError(f"Layer {layer.name!r} has weights {[n for n, _ in expected]}, but {path!r} "
                         f"holds {names}")
    for (name, shape), array in zip(expected, arrays):
        if tuple(array.shape) != tuple(shape):
            raise ValueError(f"Layer {layer.name!r}: weight {name!r} has shape {tuple(shape)}, but "
                             f"{path!r} holds shape {array.shape}")
    if not layer.built and shapes is not None:
        build_for(layer, *shapes)
    if layer.built:  # else no weights: a first call builds it
        layer.set_weights(arrays)


def _read_npz(layer, path):
    """(names, arrays, build shapes) of a save_weights file, checked against its META."""
    def bad(why):
        return ValueError(f"{path!r} is not a weights file of save_weights: {why}")

    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as error:  # not an .npz (e.g. pickled)
        raise bad(error) from error
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise bad("it holds a single array")
    with npz:
        if META not in npz.files:
            raise bad(f"no {META!r} entry")
        try:
            meta = json.loads(str(npz[META]))
            valid = meta["format"] == FORMAT
            names, shapes, dtype = list(meta["names"]), meta["shapes"], np.dtype(meta["dtype"])
            build_shapes = meta["build_shapes"]
        except (KeyError, TypeError, ValueError) as error:
            raise bad(f"unreadable {META!r} ({error!r})") from error
        if not valid:
            raise bad(f"format {meta['format']!r}, expected {FORMAT!r}")
        missing = [name for name in names if name not in npz.files]
        if missing or len(shapes) != len(names):
            raise bad(f"arrays {missing} missing" if missing else "names and shapes differ in length")
        arrays = [npz[name] for name in names]
    for name, shape, array in zip(names, shapes, arrays):
        if array.shape != tuple(shape) or array.dtype != dtype:
            raise bad(f"{name!r} is {array.dtype} {array.shape}, {META!r} says {dtype} {tuple(shape)}")
    if meta["layer"] != type(layer).__name__:
        raise ValueError(f"{path!r} holds the weights of a {meta['layer']}, "
                         f"not of a {type(layer).__name__}")
    if build_shapes is None and not layer.built:
        raise ValueError(f"{path!r} records no input shapes: build layer {layer.name!r} before loading")
    if build_shapes is not None:
        build_shapes = [None if s is None else tuple(s) for s in build_shapes]
    return names, arrays, build_shapes


def _h5py():
    try:
        import h5py
    except ImportError as error:
        raise ImportError("Reading Keras weight files (.weights.h5, .keras) needs h5py: "
                          "pip install h5py") from error
    return h5py


def _open(h5py, path):
    """The h5py.File of a .weights.h5, or of model.weights.h5 inside a .keras archive."""
    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as archive:
            return h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
    return h5py.File(path, "r")


def _read_keras(layer, path, layer_name):
    """(names, arrays, input shapes) for `layer` from a Keras weights file."""
    h5py = _h5py()
    try:
        file = _open(h5py, path)
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{path!r} is not a Keras weights file: {error}") from error
    with file:
        group = _find_layer(file, layer, layer_name, path)
        names = [name for name, _ in expected_specs(layer)]
        arrays = _arrays(group, names, path)
    shapes = None if layer.built else input_shapes_from_weights(
        layer, {name: array.shape for name, array in zip(names, arrays)})
    return names, arrays, shapes


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _layer_groups(file):
    """[(path, vars name or None, group)] of every group of the file that has a vars group."""
    found = []

    def visit(path, obj):
        if hasattr(obj, "keys") and "vars" in obj:
            found.append((path, _text(obj["vars"].attrs.get("name")), obj))

    file.visititems(visit)
    return found


def _find_layer(file, layer, layer_name, path):
    """The h5 group of the layer named layer_name (its vars name or its path's last part, any
    kind), or of the file's only attention layer of this layer's kind."""
    groups = _layer_groups(file)
    kinds = [(p, name, g) for p, name, g in groups if _H5_KIND.fullmatch(p.rsplit("/", 1)[-1])]
    listing = [f"{name or '?'} ({p})" for p, name, _ in kinds]
    if layer_name is not None:
        matches = [g for p, name, g in groups if layer_name in (name, p.rsplit("/", 1)[-1])]
        if len(matches) != 1:
            raise ValueError(f"{path!r} has {len(matches) or 'no'} layers named {layer_name!r}; "
                             f"its attention layers: {listing}")
        return matches[0]
    own = _snake(type(layer).__name__)
    mine = [g for p, _, g in kinds if _H5_KIND.fullmatch(p.rsplit("/", 1)[-1]).group(1) == own]
    if len(mine) != 1:
        raise ValueError(f"{path!r} has {len(mine) or 'no'} {own} layers (its attention layers: "
                         f"{listing}): pass layer_name")
    return mine[0]


def _arrays(group, names, path):
    """The arrays for our weight names from a layer's h5 group (see the module docstring).
    ValueError when a variable is missing or the group holds weights the names do not use."""
    prefixes = {}
    for name in names:
        prefixes.setdefault(name.rpartition("/")[0], []).append(name)
    found, used = {}, set()
    for prefix, members in prefixes.items():
        variables = group["vars"] if not prefix else _sublayer_vars(group, prefix, prefixes, path)
        keys = sorted(variables.keys(), key=lambda k: int(k) if k.isdigit() else -1)
        if len(keys) != len(members):
            raise ValueError(f"{path!r}: {variables.name} holds {len(keys)} variables, but the "
                             f"layer has {members}")
        for name, key in zip(members, keys):
            found[name] = np.asarray(variables[key])
            used.add(variables[key].name)
    extra = []
    group.visititems(lambda _, obj: None if hasattr(obj, "keys") or obj.name in used
                     else extra.append(obj.name))
    if extra:
        raise ValueError(f"{path!r}: {group.name} holds weights the layer does not have: {extra} "
                         "(a layer of another config?)")
    return [found[name] for name in names]


def _sublayer_vars(group, prefix, prefixes, path):
    """The vars group of sublayer `prefix` ("query", "value_new", ...) in a layer's group."""
    named = [g["vars"] for p, name, g in _layer_groups(group) if name == prefix]
    if len(named) == 1:
        return named[0]
    reuse = re.fullmatch(r"(value|attention_output)_(reuse|new)", prefix)
    if reuse:  # a list attribute: its entries in order, reuse before new
        present = [p for p in (f"{reuse[1]}_reuse", f"{reuse[1]}_new") if p in prefixes]
        index = present.index(prefix)
        sub = f"{_TF_KERAS_PATHS[reuse[1]]}/einsum_dense{f'_{index}' if index else ''}"
    else:
        sub = _TF_KERAS_PATHS.get(prefix)
    if sub is None or sub not in group or "vars" not in group[sub]:
        raise ValueError(f"{path!r}: {group.name} has no weights of sublayer {prefix!r}")
    return group[sub]["vars"]
