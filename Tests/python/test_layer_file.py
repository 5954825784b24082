"""Layer files (layer.save / attention.load, att_layer_save / att_layer_load): round trips of
every kind in both dtypes, with and without the safetensors package, between Python and C
in both directions; malformed files refused with ValueError / TypeError / OSError by both
readers; and the issue's demonstration: a layer taken from Keras with from_keras (stand-ins
built from the Keras golden files; real Keras when importable), saved in Python, run by a C
program (examples/c/load_layer.c) with no Python in it, against Keras's outputs."""

import collections
import ctypes
import importlib.util
import json
import os
import shlex
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import attention
from attention import _lib, from_keras
from attention._layer_file import FORMAT
from conftest import assert_close, tolerance
from test_golden import FLOAT32_FLAGS, _optional
from test_interop import GOLDEN, GOLDEN_CASES, _fake_from_case

ROOT = Path(__file__).resolve().parents[2]
HAS_SAFETENSORS = importlib.util.find_spec("safetensors") is not None
READERS = ["own", pytest.param("safetensors", marks=pytest.mark.skipif(
    not HAS_SAFETENSORS, reason="the safetensors package is not installed"))]
X = np.random.default_rng(3).normal(size=(2, 4, 6))
V = np.random.default_rng(4).normal(size=(2, 5, 6))


@pytest.fixture(params=READERS)
def package(request, monkeypatch):
    """Runs a test with the safetensors package ("safetensors") and without it ("own")."""
    if request.param == "own":
        monkeypatch.setenv("ATTENTION_NO_SAFETENSORS", "1")
    else:
        monkeypatch.delenv("ATTENTION_NO_SAFETENSORS", raising=False)
    return request.param


def _layers(dtype):
    """One layer of each kind (and config variants that change the weights), built."""
    layers = [
        attention.Attention(use_scale=True, score_mode="concat", causal=True, dtype=dtype),
        attention.Attention(dtype=dtype),  # no weights
        attention.AdditiveAttention(dropout=0.25, seed=5, dtype=dtype),
        attention.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=2, use_gate=True, sliding_window=3,
                                     output_shape=(4, 2), kernel_initializer={"class_name": "RandomNormal",
                                                                              "config": {"stddev": 0.3}},
                                     kernel_regularizer="l2", bias_regularizer={"class_name": "L1L2",
                                                                                "config": {"l1": 0.1}},
                                     activity_regularizer="l1", kernel_constraint="max_norm",
                                     bias_constraint={"class_name": "MinMaxNorm", "config": {"rate": 0.5}},
                                     seed=9, dtype=dtype),
        attention.MultiHeadAttention(num_heads=2, key_dim=3, attention_axes=(1, 2), use_bias=False, dtype=dtype),
        attention.GroupQueryAttention(head_dim=2, num_query_heads=4, num_key_value_heads=2, use_gate=True,
                                      bias_initializer="ones", dtype=dtype),
        attention.ReuseMultiHeadAttention(num_heads=3, key_dim=2, reuse_attention=1, use_relative_pe=True,
                                          pe_max_seq_length=7, dtype=dtype),
        attention.ReuseMultiHeadAttention(num_heads=2, key_dim=2, reuse_attention=-1, output_shape=5, dtype=dtype),
    ]
    rng = np.random.default_rng(0)
    for layer in layers:
        if isinstance(layer, attention.Attention):
            layer.build([(None, 4, 6), (None, 5, 6)])
        elif getattr(layer, "attention_axes", None) == (1, 2):
            layer.build((None, 2, 4, 6), (None, 2, 5, 6))
        else:
            layer.build((None, 4, 6), (None, 5, 6))
        layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    return layers


def _run(layer):
    """The layer's output (and scores) on fixed inputs; Reuse gets reuse scores."""
    if isinstance(layer, attention.Attention):
        return layer([X, V], return_attention_scores=True)
    if getattr(layer, "attention_axes", None) == (1, 2):
        return layer(X.reshape(2, 2, 2, 6)[:, :, :, :], V[:, :4].reshape(2, 2, 2, 6), return_attention_scores=True)
    if isinstance(layer, attention.ReuseMultiHeadAttention) and layer.reuse_attention:
        scores = np.random.default_rng(1).random((2, layer.num_heads, 4, 5))
        return layer(X, V, reuse_attention_scores=scores, return_attention_scores=True)
    return layer(X, V, return_attention_scores=True)


def _same(a, b):
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)


def _c_load(path):
    """att_layer_load through ctypes: the handle (a c_void_p)."""
    handle = ctypes.c_void_p()
    _lib.check(_lib.lib().att_layer_load(os.fsencode(path), ctypes.byref(handle)))
    return handle


def _c_save(handle, path):
    _lib.check(_lib.lib().att_layer_save(handle, os.fsencode(path)))


def _without(config, *keys):
    return {k: v for k, v in config.items() if k not in keys}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip(package, dtype, tmp_path):
    for i, layer in enumerate(_layers(dtype)):
        path = tmp_path / f"{i}.safetensors"
        layer.save(path)
        loaded = attention.load(path)
        assert type(loaded) is type(layer) and loaded.dtype == dtype and loaded.built
        assert loaded.get_config() == layer.get_config()
        assert loaded.weight_names == layer.weight_names
        _same(loaded.get_weights(), layer.get_weights())
        _same(_run(loaded), _run(layer))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_python_and_c_read_each_others_files(package, dtype, tmp_path):
    """Python save -> C load -> C save -> Python load: the same weights, outputs and config
    (but the name, which C does not keep, and the seed, which C keeps as the resolved one)."""
    for i, layer in enumerate(_layers(dtype)):
        layer.save(tmp_path / "py.safetensors")
        handle = _c_load(tmp_path / "py.safetensors")
        try:
            _c_save(handle, tmp_path / "c.safetensors")
        finally:
            _lib.lib().att_layer_destroy(handle)
        back = attention.load(tmp_path / "c.safetensors")
        # C builds None dims as 1 and records what it built with (Reuse lists its shapes).
        shapes = ("query_shape", "key_shape", "value_shape")
        assert _without(back.get_config(), "name", "seed", *shapes) == _without(layer.get_config(), "name", "seed",
                                                                                *shapes)
        for key in shapes if isinstance(layer, attention.ReuseMultiHeadAttention) else ():
            assert back.get_config()[key] == tuple(1 if d is None else d for d in layer.get_config()[key])
        _same(back.get_weights(), layer.get_weights())
        _same(_run(back), _run(layer))


@pytest.mark.parametrize("dtype", ["mixed_float16", "bfloat16"])
def test_c_loads_flash_attention_and_half_precision_policies(dtype, tmp_path):
    """Configs Python writes that C reads too: flash_attention (it changes no number) and
    the half-precision policies (float32 weights; C computes them in float32)."""
    for make in (attention.MultiHeadAttention, attention.GroupQueryAttention):
        layer = make(2, 4, 2, flash_attention=False, dtype=dtype) if make is attention.GroupQueryAttention \
            else make(num_heads=2, key_dim=4, flash_attention=True, dtype=dtype)
        x = np.random.default_rng(3).standard_normal((2, 5, 8)).astype(np.float32)
        layer(x, x)
        layer.save(tmp_path / "half.safetensors")
        handle = _c_load(tmp_path / "half.safetensors")
        try:
            count = ctypes.c_size_t()
            _lib.check(_lib.lib().att_layer_weight_count(handle, ctypes.byref(count)))
            assert count.value == len(layer.get_weights())
        finally:
            _lib.lib().att_layer_destroy(handle)


@pytest.mark.skipif(not HAS_SAFETENSORS, reason="the safetensors package is not installed")
def test_own_writer_and_the_package_read_each_other(tmp_path, monkeypatch):
    from safetensors.numpy import load_file
    from safetensors import safe_open

    layer = _layers("float32")[3]
    monkeypatch.setenv("ATTENTION_NO_SAFETENSORS", "1")
    layer.save(tmp_path / "own.safetensors")
    arrays = load_file(tmp_path / "own.safetensors")  # the reference reader takes our file
    _same([arrays[n] for n in layer.weight_names], layer.get_weights())
    with safe_open(tmp_path / "own.safetensors", "np") as f:
        meta = f.metadata()
    assert meta["format"] == FORMAT and meta["layer"] == "MultiHeadAttention"
    assert json.loads(meta["weights"]) == layer.weight_names
    assert json.loads(meta["build_shapes"]) == [[None, 4, 6], [None, 5, 6], None]
    assert json.loads(meta["config"]) == json.loads(json.dumps(layer.get_config()))
    monkeypatch.delenv("ATTENTION_NO_SAFETENSORS")
    layer.save(tmp_path / "package.safetensors")
    monkeypatch.setenv("ATTENTION_NO_SAFETENSORS", "1")
    _same(attention.load(tmp_path / "package.safetensors").get_weights(), layer.get_weights())


def test_save_needs_a_built_layer(tmp_path):
    with pytest.raises(ValueError, match="build or call it"):
        attention.MultiHeadAttention(num_heads=1, key_dim=2).save(tmp_path / "x.safetensors")
    handle = ctypes.c_void_p()
    config = _lib.MultiHeadAttentionConfig(struct_size=ctypes.sizeof(_lib.MultiHeadAttentionConfig),
                                           num_heads=1, key_dim=2)
    _lib.check(_lib.lib().att_multi_head_attention_create(ctypes.byref(config), ctypes.byref(handle)))
    with pytest.raises(ValueError, match="ATT_ERR_NOT_BUILT"):
        _c_save(handle, tmp_path / "x.safetensors")
    _lib.lib().att_layer_destroy(handle)
    assert not (tmp_path / "x.safetensors").exists()


# -- malformed files --------------------------------------------------------------------------


def _valid_file(tmp_path):
    layer = _layers("float32")[2]  # AdditiveAttention: one weight "scale" (6,)
    path = tmp_path / "valid.safetensors"
    os.environ["ATTENTION_NO_SAFETENSORS"] = "1"  # our writer's exact layout
    try:
        layer.save(path)
    finally:
        del os.environ["ATTENTION_NO_SAFETENSORS"]
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _file(header, data, length=None):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def _edit(header, change):
    header = json.loads(json.dumps(header))
    change(header)
    return header


def _edit_meta(key, change):
    def edit(h):
        value = json.loads(h["__metadata__"][key])
        value = change(value)
        h["__metadata__"][key] = value if isinstance(value, str) else json.dumps(value)
    return edit


def _malformed(header, data):
    """(name, file bytes, Python exception, C status) of every malformed-file path."""
    ok = lambda change: _file(_edit(header, change), data)  # noqa: E731
    deep = b"[" * 100_000 + b"]" * 100_000
    cases = [
        ("empty", b"", ValueError, "INVALID_ARGUMENT"),
        ("short", b"\x01\x02\x03", ValueError, "INVALID_ARGUMENT"),
        ("header length absurd", _file(header, data, length=2**63 + 5), ValueError, "INVALID_ARGUMENT"),
        ("header length beyond the file", _file(header, data, length=10_000), ValueError, "INVALID_ARGUMENT"),
        ("truncated data", _file(header, data)[:-3], ValueError, "INVALID_ARGUMENT"),
        ("trailing data", _file(header, data) + b"\0" * 4, ValueError, "INVALID_ARGUMENT"),
        ("bad JSON", _file(b"{\"a\": [1, 2", data), ValueError, "INVALID_ARGUMENT"),
        ("not an object", _file(b"[1, 2, 3]", data), ValueError, "INVALID_ARGUMENT"),
        ("deep nesting", _file(b"{\"x\": " + deep + b"}", data), ValueError, "INVALID_ARGUMENT"),
        ("NaN literal", _file(b"{\"x\": NaN}", data), ValueError, "INVALID_ARGUMENT"),
        ("invalid UTF-8", _file(b"{\"\xff\": 1}", data), ValueError, "INVALID_ARGUMENT"),
        ("huge offset", ok(lambda h: h["scale"].update(data_offsets=[0, 10**30])), ValueError, "INVALID_ARGUMENT"),
        ("negative offset", ok(lambda h: h["scale"].update(data_offsets=[-4, 20])), ValueError, "INVALID_ARGUMENT"),
        ("offsets reversed", ok(lambda h: h["scale"].update(data_offsets=[24, 0])), ValueError, "INVALID_ARGUMENT"),
        ("offsets past the end", ok(lambda h: h["scale"].update(data_offsets=[4, 28])), ValueError,
         "INVALID_ARGUMENT"),
        ("size not shape x dtype", ok(lambda h: h["scale"].update(shape=[5])), ValueError, "INVALID_ARGUMENT"),
        ("shape overflows", ok(lambda h: h["scale"].update(shape=[2**40, 2**40])), ValueError, "INVALID_ARGUMENT"),
        ("overlapping tensors", ok(lambda h: h.update(extra={"dtype": "F32", "shape": [6],
                                                            "data_offsets": [0, 24]})), ValueError,
         "INVALID_ARGUMENT"),
        ("extra key in a tensor", ok(lambda h: h["scale"].update(x=1)), ValueError, "INVALID_ARGUMENT"),
        ("unknown dtype", ok(lambda h: h["scale"].update(dtype="Q7")), TypeError, "DTYPE"),
        ("other dtype", ok(lambda h: h["scale"].update(dtype="F16", shape=[12])), TypeError, "DTYPE"),
        ("F64 tensor, float32 config", ok(lambda h: h["scale"].update(dtype="F64", shape=[3])), TypeError, "DTYPE"),
        ("no metadata", ok(lambda h: h.pop("__metadata__")), ValueError, "INVALID_ARGUMENT"),
        ("metadata not strings", ok(lambda h: h["__metadata__"].update(format=1)), ValueError, "INVALID_ARGUMENT"),
        ("other format", ok(lambda h: h["__metadata__"].update(format="x")), ValueError, "INVALID_ARGUMENT"),
        ("unknown kind", ok(lambda h: h["__metadata__"].update(layer="Conv2D")), ValueError, "INVALID_ARGUMENT"),
        ("config not JSON", ok(lambda h: h["__metadata__"].update(config="{")), ValueError, "INVALID_ARGUMENT"),
        ("config unknown key", ok(_edit_meta("config", lambda c: {**c, "colour": 1})), ValueError,
         "INVALID_ARGUMENT"),
        ("config bad dropout", ok(_edit_meta("config", lambda c: {**c, "dropout": 2})), ValueError,
         "INVALID_ARGUMENT"),
        ("config huge number", ok(_edit_meta("config", lambda c: json.dumps(c).replace(
            '"dropout": 0.25', '"dropout": 1e999'))), ValueError, "INVALID_ARGUMENT"),
        ("config huge seed", ok(_edit_meta("config", lambda c: {**c, "seed": 2**64})), ValueError,
         "INVALID_ARGUMENT"),
        ("config bad dtype", ok(_edit_meta("config", lambda c: {**c, "dtype": "int8"})), ValueError,
         "INVALID_ARGUMENT"),
        ("config float64, tensors F32", ok(_edit_meta("config", lambda c: {**c, "dtype": "float64"})), TypeError,
         "DTYPE"),
        ("config gives no weights", ok(_edit_meta("config", lambda c: {**c, "use_scale": False})), ValueError,
         "INVALID_ARGUMENT"),
        ("missing tensor", ok(_edit_meta("weights", lambda w: w + ["other"])), ValueError, "INVALID_ARGUMENT"),
        ("unlisted tensor", ok(_edit_meta("weights", lambda w: [])), ValueError, "INVALID_ARGUMENT"),
        ("weight listed twice", ok(_edit_meta("weights", lambda w: w + w)), ValueError, "INVALID_ARGUMENT"),
        ("build shapes not a list", ok(_edit_meta("build_shapes", lambda s: {"q": 1})), ValueError,
         "INVALID_ARGUMENT"),
        ("weight shape not the build's", ok(_edit_meta("build_shapes", lambda s: [[None, 4, 3], [None, 5, 3],
                                                                                None])), ValueError, "SHAPE"),
        ("build shape rank", ok(_edit_meta("build_shapes", lambda s: [[6], [6], None])), ValueError,
         "SHAPE"),
    ]
    return cases


def test_malformed_files(tmp_path, monkeypatch):
    header, data = _valid_file(tmp_path)
    assert attention.load(tmp_path / "valid.safetensors").built
    for name, content, exception, status in _malformed(header, data):
        path = tmp_path / "bad.safetensors"
        path.write_bytes(content)
        for reader in READERS[:1] + (["safetensors"] if HAS_SAFETENSORS else []):
            monkeypatch.setenv("ATTENTION_NO_SAFETENSORS", "1" if reader == "own" else "0")
            with pytest.raises(exception) as raised:
                attention.load(path)
            assert str(path) in str(raised.value) or name == "short", (name, raised.value)
        with pytest.raises((ValueError, TypeError)) as raised:  # the C reader
            _c_load(path)
        assert f"[ATT_ERR_{status}]" in str(raised.value), (name, raised.value)


def test_unreadable_files(tmp_path):
    for path in (tmp_path / "missing.safetensors", tmp_path):
        with pytest.raises(OSError):
            attention.load(path)
        with pytest.raises(OSError, match=r"\[ATT_ERR_IO\]"):
            _c_load(path)
    with pytest.raises(ValueError, match="ATT_ERR_NULL_ARGUMENT"):
        _lib.check(_lib.lib().att_layer_load(None, ctypes.byref(ctypes.c_void_p())))
    with pytest.raises(OSError, match=r"\[ATT_ERR_IO\]"):
        _c_save(_c_load_valid(tmp_path), tmp_path / "no such dir" / "x.safetensors")


def _c_load_valid(tmp_path):
    _valid_file(tmp_path)
    return _c_load(tmp_path / "valid.safetensors")


# -- a Keras layer in a C program -------------------------------------------------------------

_DTYPE_CODES = {np.dtype("float32"): _lib.FLOAT32, np.dtype("float64"): _lib.FLOAT64, np.dtype("uint8"): _lib.UINT8}
_TAGS = {"query": b"q", "value": b"v", "key": b"k", "query_mask": b"Q", "value_mask": b"V", "key_mask": b"K",
         "attention_mask": b"A", "reuse_attention_scores": b"R"}


def _record(tag, array):
    array = np.ascontiguousarray(array)
    return (tag + bytes([_DTYPE_CODES[array.dtype]]) + struct.pack("<i", array.ndim)
            + struct.pack(f"<{array.ndim}q", *array.shape) + array.tobytes())


def _inputs_file(case, dtype, kind, path):
    """The case's inputs as load_layer's records, masks as uint8; Reuse takes only
    attention_mask and reuse_attention_scores, the Luong layers no key/attention masks."""
    call = json.loads(str(case["call"]))
    names = {"Attention": ("query", "value", "key", "query_mask", "value_mask"),
             "AdditiveAttention": ("query", "value", "key", "query_mask", "value_mask"),
             "ReuseMultiHeadAttention": ("query", "value", "key", "attention_mask", "reuse_attention_scores")
             }.get(kind, ("query", "value", "key", "query_mask", "value_mask", "key_mask", "attention_mask"))
    out = b""
    for name in names:
        x = _optional(case, name)
        if x is not None:
            x = x.astype(np.uint8) if name.endswith("mask") else x.astype(dtype)
            out += _record(_TAGS[name], x)
    if call["use_causal_mask"] and kind != "ReuseMultiHeadAttention":
        out += _record(b"c", np.array(1, np.uint8))
    path.write_bytes(out)


@pytest.fixture(scope="module")
def load_layer(tmp_path_factory):
    """examples/c/load_layer.c compiled against the library the tests use, by $CC (default cc;
    `make test-sanitize` gives clang with AddressSanitizer, which its library needs)."""
    compiler = shlex.split(os.environ.get("CC", "cc"))
    if not compiler or shutil.which(compiler[0]) is None:
        pytest.skip("needs a C compiler")
    _lib.lib()
    library = next(p for p in _lib._candidates() if p.is_file())
    program = tmp_path_factory.mktemp("c") / "load_layer"
    subprocess.run([*compiler, "-std=c11", "-O2", f"-I{ROOT / 'include'}", str(ROOT / "examples" / "c" / "load_layer.c"),
                    "-o", str(program), f"-L{library.parent}", "-lattention", f"-Wl,-rpath,{library.parent}", "-lm"],
                   check=True)
    return program


ERRORS = collections.defaultdict(float)  # (kind, dtype) -> max error / tolerance
ABS_ERRORS = collections.defaultdict(float)  # (kind, dtype) -> max abs error
RECORDED = [p for v, p in GOLDEN_CASES if v == "recorded"]


@pytest.mark.parametrize("path", RECORDED, ids=[str(p.relative_to(GOLDEN)) for p in RECORDED])
def test_keras_layer_saved_in_python_runs_in_c(path, load_layer, tmp_path):
    """A stand-in of the case's Keras layer -> from_keras -> save -> load_layer (C) on the
    case's inputs: Keras's outputs (and scores) within the contract."""
    with np.load(path) as case:
        kind, dtype = str(case["layer"]), str(case["dtype"])
        ours = from_keras(_fake_from_case(case, "recorded"))
        ours.save(tmp_path / "layer.safetensors")
        _inputs_file(case, dtype, kind, tmp_path / "inputs.bin")
        scores_wanted = "scores" in case.files
        command = [str(load_layer), str(tmp_path / "layer.safetensors"), "--inputs", str(tmp_path / "inputs.bin"),
                   "--output", str(tmp_path / "output.bin")]
        if scores_wanted:
            command += ["--scores", str(tmp_path / "scores.bin")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr
        assert "loaded" in result.stdout and "output" in result.stdout
        in_float32 = any(bool(case[k]) for k in FLOAT32_FLAGS if k in case.files)
        tol_dtype = np.float32 if in_float32 else np.dtype(dtype)
        for what in ("output",) + (("scores",) if scores_wanted else ()):
            expected = case[what]
            got = np.fromfile(tmp_path / f"{what}.bin", dtype=dtype).reshape(expected.shape)
            assert_close(got, expected, tol_dtype, what)
            error = float(np.max(np.abs(got.astype(np.float64) - expected))) if got.size else 0.0
            key = (kind, dtype + (" (Keras in float32)" if in_float32 and dtype == "float64" else ""))
            ABS_ERRORS[key] = max(ABS_ERRORS[key], error)
            ERRORS[key] = max(ERRORS[key], error / tolerance(expected, tol_dtype))


def test_zz_report_c_errors():
    """Prints, per kind and dtype, the max error of the C runs above (pytest -s shows it)."""
    if not ERRORS:
        pytest.skip("no C runs in this session")
    print("\nKeras layer -> from_keras -> save -> C load_layer, max |error| (and / tolerance):")
    for key in sorted(ERRORS):
        print(f"  {key[0]:26s} {key[1]:28s} {ABS_ERRORS[key]:.3g}  ({ERRORS[key]:.3f} of the tolerance)")
    assert {k for k, _ in ERRORS} == {"Attention", "AdditiveAttention", "MultiHeadAttention",
                                      "GroupQueryAttention", "ReuseMultiHeadAttention"}
    assert max(ERRORS.values()) <= 1


def test_live_keras_layer_runs_in_c(load_layer, tmp_path):
    """Real Keras (when importable): keras layer -> from_keras -> save -> C, max error printed."""
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(5)
    q, v = rng.normal(size=(2, 4, 6)).astype("float32"), rng.normal(size=(2, 5, 6)).astype("float32")
    L = keras.layers
    cases = [(L.Attention(use_scale=True, score_mode="concat"), lambda l: l([q, v])),
             (L.AdditiveAttention(), lambda l: l([q, v])),
             (L.MultiHeadAttention(num_heads=2, key_dim=3, use_gate=True), lambda l: l(q, v)),
             (L.GroupQueryAttention(head_dim=3, num_query_heads=4, num_key_value_heads=2), lambda l: l(q, v))]
    (tmp_path / "inputs.bin").write_bytes(_record(b"q", q) + _record(b"v", v))
    for keras_layer, run in cases:
        run(keras_layer)
        keras_layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in keras_layer.get_weights()])
        expected = keras.ops.convert_to_numpy(run(keras_layer))
        from_keras(keras_layer).save(tmp_path / "layer.safetensors")
        subprocess.run([str(load_layer), str(tmp_path / "layer.safetensors"), "--inputs", str(tmp_path / "inputs.bin"),
                        "--output", str(tmp_path / "out.bin")], check=True, capture_output=True)
        got = np.fromfile(tmp_path / "out.bin", dtype="float32").reshape(expected.shape)
        print(f"\nlive Keras {type(keras_layer).__name__}: max |error| {np.max(np.abs(got - expected)):.3g}")
        assert_close(got, expected, np.float32)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        attention.load(fifo)
