"""Layer files: a built layer — kind, Keras config, build shapes, weights — in one
safetensors file (https://github.com/huggingface/safetensors), the format att_layer_save and
att_layer_load of the C library read and write (include/attention.h, "Layer files"):

    8 bytes little-endian N | N bytes JSON header | tensor data (little-endian, row-major)

The header maps each weight name ("query/kernel") to {"dtype": "F32"|"F64", "shape",
"data_offsets": [begin, end]} and "__metadata__" to strings: "format" (FORMAT), "layer"
(Keras class name), "config" (JSON of get_config()), "build_shapes" (JSON [query, value,
key|null], None dims as null), "weights" (JSON names in get_weights() order).

The `safetensors` package is used when installed (safetensors.numpy.save_file / load_file);
without it the same files are written and read here. Either way the header is checked here
first, as the C library checks it: a malformed file raises ValueError (TypeError for a dtype
other than F32/F64 or than the config's), an unreadable one OSError.
"""

import json
import os
import stat
import struct
import uuid

import numpy as np

FORMAT = "libattention-layer-1"
MAX_HEADER_LENGTH = 100_000_000  # as the safetensors reference reader
_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
_OTHER_SAFETENSORS_DTYPES = {"BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32",
                             "U32", "I64", "U64"}


def _safetensors_numpy():
    """safetensors.numpy, or None when the package is not installed (or disabled by the
    environment variable ATTENTION_NO_SAFETENSORS=1, which the tests use)."""
    if os.environ.get("ATTENTION_NO_SAFETENSORS") == "1":
        return None
    try:
        import safetensors.numpy
    except ImportError:
        return None
    return safetensors.numpy


def _json_default(value):
    """numpy scalars in a config (e.g. a seed given as np.int64) as Python numbers."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{value!r} of type {type(value).__name__} is not JSON serializable")


def _dumps(value):
    return json.dumps(value, default=_json_default, allow_nan=False)


def save(layer, path):
    """Layer.save: write `layer` (built) to `path` as a layer file."""
    path = os.fspath(path)
    if not layer.built:
        raise ValueError(f"Layer {layer.name!r} has no weights yet: build or call it before save")
    specs = layer._weight_specs()
    names = [name for name, _ in specs]
    tensors = {name: np.asarray(w, dtype=layer._np_dtype.newbyteorder("<"), order="C")  # (0-d stays 0-d)
               for name, w in zip(names, layer.get_weights())}
    metadata = {
        "format": FORMAT,
        "layer": type(layer).__name__,
        "config": _dumps(layer.get_config()),
        "build_shapes": _dumps(getattr(layer, "_build_input_shapes", None)),
        "weights": _dumps(names),
    }
    # Written beside `path` under a fresh name and renamed over it, so `path` never holds
    # half a file; errors name `path`.
    temporary = os.path.join(os.path.dirname(os.path.abspath(path)), f".tmp-{os.getpid()}-{uuid.uuid4().hex}")
    try:
        package = _safetensors_numpy()
        if package is not None:
            package.save_file(tensors, temporary, metadata=metadata)
        else:
            _write(tensors, metadata, temporary)
        os.replace(temporary, path)
    except Exception as error:  # OSError, or safetensors_rust.SafetensorError
        if os.path.lexists(temporary):
            os.unlink(temporary)
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise OSError(getattr(error, "errno", None), f"cannot write {path!r}: {reason}") from None


def _write(tensors, metadata, path):
    """The safetensors writer: header padded with spaces to a multiple of 8, data in order."""
    header, offset = {"__metadata__": metadata}, 0
    for name, array in tensors.items():
        header[name] = {"dtype": "F32" if array.dtype.itemsize == 4 else "F64", "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "xb") as file:
        file.write(struct.pack("<Q", len(text)))
        file.write(text)
        for array in tensors.values():
            file.write(array.tobytes())


def _bad(path, why):
    return ValueError(f"{path!r} is not a valid layer file: {why}")


def _read_header(path):
    """(header dict, data start, file size) of a safetensors file, with the tensor entries
    checked: known dtype, shape x dtype bytes, offsets covering the data without overlap or
    gap. Anything but a regular file is refused before it is opened (a FIFO would block)."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"cannot read {path!r}: not a regular file")
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size < 8:
            raise _bad(path, f"{size} bytes, shorter than the 8-byte header length")
        (length,) = struct.unpack("<Q", file.read(8))
        if length > MAX_HEADER_LENGTH:
            raise _bad(path, f"header length {length} is above the limit of {MAX_HEADER_LENGTH} bytes")
        if length > size - 8:
            raise _bad(path, f"truncated: the header is {length} bytes but only {size - 8} follow the length")
        raw = file.read(length)
    if len(raw) != length:
        raise OSError(f"{path!r}: the file ended early (was it truncated while loading?)")
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise _bad(path, f"the header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise _bad(path, "the header is not a JSON object")
    data_size = size - 8 - length
    entries = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise _bad(path, "__metadata__ must map strings to strings")
            continue
        entries.append((name, *_tensor_entry(path, name, entry)))
    expected = 0
    for name, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin != expected:
            raise _bad(path, f"tensor {name!r} at bytes [{begin}, {end}) overlaps another tensor's data"
                       if begin < expected else f"tensor data has a gap at bytes [{expected}, {begin})")
        expected = end
    if expected != data_size:
        raise _bad(path, f"truncated: tensor data ends at byte {expected} but the file holds {data_size} bytes "
                   "of data" if expected > data_size else f"{data_size - expected} bytes after the last tensor")
    return header, 8 + length, {name: (dtype, shape, begin, end) for name, dtype, shape, begin, end in entries}


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor_entry(path, name, entry):
    """(numpy dtype, shape, begin, end) of a header's tensor entry."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise _bad(path, f"tensor {name!r} must be an object with exactly dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in _DTYPES:
        known = dtype in _OTHER_SAFETENSORS_DTYPES
        raise TypeError(f"{path!r}: tensor {name!r} has {'dtype ' if known else 'unknown dtype '}{dtype!r}; "
                        "layer weights are F32 or F64")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise _bad(path, f"tensor {name!r} shape {shape!r} is not a list of dims >= 0")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise _bad(path, f"tensor {name!r} data_offsets {offsets!r} are not [begin, end] with 0 <= begin <= end")
    nbytes = _DTYPES[dtype].itemsize * int(np.prod(shape, dtype=object))
    if offsets[1] - offsets[0] != nbytes:
        raise _bad(path, f"tensor {name!r} spans {offsets[1] - offsets[0]} bytes but its shape {shape} of "
                   f"{dtype} needs {nbytes}")
    return _DTYPES[dtype], tuple(shape), offsets[0], offsets[1]


def _metadata_json(path, metadata, key):
    if key not in metadata:
        raise _bad(path, f"__metadata__ has no {key!r} (not a layer file of this library)")
    try:
        return json.loads(metadata[key], parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise _bad(path, f"__metadata__ {key!r} is not valid JSON ({error})") from None


def _build_shapes(path, value):
    """(query, value, key) shapes of a build_shapes entry (dims ints or None)."""
    def shape(s, what):
        if not isinstance(s, list) or not all(d is None or _is_int(d) for d in s):
            raise _bad(path, f"build_shapes {what} {s!r} is not a list of dims")
        return tuple(s)

    if not isinstance(value, list) or len(value) != 3:
        raise _bad(path, f"build_shapes {value!r} is not [query, value, key]")
    return shape(value[0], "query"), shape(value[1], "value"), None if value[2] is None else shape(value[2], "key")


def load(path):
    """attention.load: the layer of a layer file, built and holding its weights."""
    from ._interop import KINDS, build_for

    path = os.fspath(path)
    header, data_start, entries = _read_header(path)
    metadata = header.get("__metadata__", {})
    if metadata.get("format") != FORMAT:
        raise _bad(path, f"format {metadata.get('format')!r}, expected {FORMAT!r} (not a layer file of this "
                   "library)")
    kind = metadata.get("layer")
    if kind not in KINDS:
        raise _bad(path, f"unknown layer kind {kind!r}; expected one of {sorted(KINDS)}")
    config = _metadata_json(path, metadata, "config")
    shapes = _build_shapes(path, _metadata_json(path, metadata, "build_shapes"))
    order = _metadata_json(path, metadata, "weights")
    if not isinstance(order, list) or not all(isinstance(n, str) for n in order) or len(set(order)) != len(order):
        raise _bad(path, "__metadata__ weights is not a list of distinct names")
    if set(order) != set(entries):
        raise _bad(path, f"tensors {sorted(set(entries) - set(order))} are not listed in __metadata__ weights, "
                   f"listed weights {sorted(set(order) - set(entries))} are missing")
    if not isinstance(config, dict):
        raise _bad(path, "__metadata__ config is not a JSON object")
    if kind == "ReuseMultiHeadAttention":  # built from build_shapes below, once
        config = {k: v for k, v in config.items() if k not in ("query_shape", "key_shape", "value_shape")}
    try:
        layer = KINDS[kind].from_config(config)
    except (TypeError, ValueError) as error:  # TypeError: an unknown keyword
        raise _bad(path, f"the {kind} config is not accepted: {error}") from None
    try:
        build_for(layer, *shapes)
    except ValueError as error:
        raise ValueError(f"{path!r}: the layer cannot be built for build_shapes {list(shapes)}: {error}") from None
    specs = layer._weight_specs()
    if [name for name, _ in specs] != order:
        raise _bad(path, f"its weights {order} do not fit its {kind} config and build shapes, which give "
                   f"{[name for name, _ in specs]}")
    for name, shape in specs:
        dtype, file_shape = entries[name][:2]
        if dtype != layer._np_dtype:
            raise TypeError(f"{path!r}: tensor {name!r} is {dtype.name} but the layer's dtype is {layer.dtype}")
        if file_shape != tuple(shape):
            raise ValueError(f"{path!r}: tensor {name!r} has shape {file_shape}, the layer's weight {tuple(shape)}")
    package = _safetensors_numpy()
    if package is not None:
        try:
            arrays = package.load_file(path)
        except Exception as error:  # safetensors_rust.SafetensorError: our checks passed, the file changed?
            raise _bad(path, str(error)) from None
    else:
        arrays = {}
        with open(path, "rb") as file:
            for name, (dtype, shape, begin, end) in entries.items():
                file.seek(data_start + begin)
                raw = file.read(end - begin)
                if len(raw) != end - begin:
                    raise OSError(f"{path!r}: the file ended early (was it truncated while loading?)")
                arrays[name] = np.frombuffer(raw, dtype).reshape(shape)
    layer.set_weights([arrays[name] for name in order])
    return layer
