"""Keras interop: from_keras on duck-typed stand-ins of Keras layers made from the golden files
(outputs equal the golden ones), save_weights/load_weights round trips (.npz), the Keras
.weights.h5 fixtures of Tests/golden/h5/ (with h5py), bad inputs, and from_keras /
load_weights on real Keras and Model Garden layers (when they can be imported)."""

import copy
import importlib.util
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import attention
from attention import from_keras
from attention._interop import KINDS, build_for
from conftest import assert_close
from test_golden import FILES, FLOAT32_FLAGS, _attends_across_heads, _keras_scores_were_float32, _optional

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
H5_FIXTURES = sorted((GOLDEN / "h5").glob("*/*.npz"))
DTYPES = ("float32", "float64")
KERAS_CLASS = {  # golden "layer" -> (Keras class name, module)
    "Attention": ("Attention", "keras.src.layers.attention.attention"),
    "AdditiveAttention": ("AdditiveAttention", "keras.src.layers.attention.additive_attention"),
    "MultiHeadAttention": ("MultiHeadAttention", "keras.src.layers.attention.multi_head_attention"),
    "GroupQueryAttention": ("GroupedQueryAttention", "keras.src.layers.attention.grouped_query_attention"),
    "ReuseMultiHeadAttention": ("ReuseMultiHeadAttention", "official.nlp.modeling.layers.reuse_attention"),
}
MULTI_HEAD = ("MultiHeadAttention", "GroupQueryAttention", "ReuseMultiHeadAttention")


def _has_h5py():
    return importlib.util.find_spec("h5py") is not None


needs_h5py = pytest.mark.skipif(not _has_h5py(), reason="h5py is not installed")


# -- duck-typed Keras layers ------------------------------------------------------------------


class _FakeLayer:
    """What from_keras reads of a Keras layer: get_config(), built, get_weights(), and
    optionally get_build_config() and the `_query_shape`-style attributes."""

    def __init__(self, config, weights=(), built=True, build_config=None, shape_attributes=None):
        self._config, self._weights, self.built = config, [np.asarray(w) for w in weights], built
        if build_config is not None:
            self.get_build_config = lambda: build_config
        for name, shape in (shape_attributes or {}).items():
            setattr(self, f"_{name}_shape", shape)

    def get_config(self):
        return copy.deepcopy(self._config)

    def get_weights(self):
        return [w.copy() for w in self._weights]


def fake(kind, config, weights=(), module=None, **kwargs):
    """A _FakeLayer whose class is named `kind` (Keras's class name) in `module`."""
    name, default_module = KERAS_CLASS.get(kind, (kind, "keras.src.layers"))
    cls = type(name, (_FakeLayer,), {"__module__": module or default_module})
    return cls(config, weights, **kwargs)


def _policy(dtype):
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": dtype},
            "registered_name": None}


def _smallest_rank(axes):
    return max([3] + [a + 2 if a >= 0 else 1 - a for a in axes])


def _keras_config(case):
    """The get_config() a built Keras (Reuse: tf_keras) layer of the case would give: name,
    trainable, dtype (a DTypePolicy dict; Reuse: a string), the constructor's arguments, and
    the resolved attention_axes of MultiHeadAttention (Keras resolves them at build)."""
    kind, dtype, query = str(case["layer"]), str(case["dtype"]), case["query"]
    config = {"name": f"keras_{kind.lower()}", "trainable": True, **json.loads(str(case["config"]))}
    if kind == "ReuseMultiHeadAttention":
        config["dtype"] = dtype
    else:
        config["dtype"] = _policy(dtype)
    if kind == "MultiHeadAttention":
        axes = config.get("attention_axes")
        axes = (axes,) if isinstance(axes, int) else axes
        rank = query.ndim
        config["attention_axes"] = (tuple(range(1, rank - 1)) if axes is None
                                    else tuple(a if a >= 0 else rank + a for a in axes))
    return config


def _shapes(case):
    """The case's input shapes, batch None as Keras records symbolic ones."""
    return [None if x is None else (None,) + x.shape[1:]
            for x in (case["query"], case["value"], _optional(case, "key"))]


def _fake_from_case(case, variant):
    """A built stand-in of the case's upstream layer. variant "recorded": the input shapes as
    upstream records them (Keras 3: get_build_config(); Model Garden: query/key/value_shape in
    the config, its get_build_config() naming the query only); "weights": no shapes at all."""
    kind = str(case["layer"])
    config = _keras_config(case)
    weights = [case[f"weight_{i}"] for i in range(int(case["weight_count"]))]
    query, value, key = _shapes(case)
    build_config = None
    if variant == "recorded":
        if kind == "ReuseMultiHeadAttention":
            config.update(query_shape=list(query), value_shape=list(value),
                          key_shape=list(key if key is not None else value))
            build_config = {"input_shape": query}
        elif kind in MULTI_HEAD:
            build_config = {"shapes_dict": {"query_shape": query, "value_shape": value,
                                            **({"key_shape": key} if key is not None else {})}}
        else:
            build_config = {"input_shape": [query, value] + ([key] if key is not None else [])}
    return fake(kind, config, weights, build_config=build_config)


def _call(layer, case):
    """Our layer on the case's inputs: (output, scores or None)."""
    kind = str(case["layer"])
    call = json.loads(str(case["call"]))
    scores_wanted = call["return_attention_scores"]
    query, value, key = (_optional(case, n) for n in ("query", "value", "key"))
    if kind in MULTI_HEAD:
        if kind == "ReuseMultiHeadAttention":
            extra = {"reuse_attention_scores": _optional(case, "reuse_attention_scores")}
        else:
            extra = {n: _optional(case, n) for n in ("query_mask", "value_mask", "key_mask")}
            extra["use_causal_mask"] = call["use_causal_mask"]
        result = layer(query, value, key=key, attention_mask=_optional(case, "attention_mask"),
                       return_attention_scores=scores_wanted, training=False, **extra)
    else:
        masks = [_optional(case, "query_mask"), _optional(case, "value_mask")]
        result = layer([query, value] + ([key] if key is not None else []),
                       mask=None if all(m is None for m in masks) else masks, training=False,
                       use_causal_mask=call["use_causal_mask"], return_attention_scores=scores_wanted)
    return result if scores_wanted else (result, None)


def _golden_cases():
    """(variant, file) pairs: every golden file of the five layer kinds that this library
    computes in the file's dtype, with "recorded" shapes, and with "weights" only where the
    weights and the resolved axes give the rank (the smallest the axes allow)."""
    cases = []
    for path in FILES:
        if path.parent.name == "dot_product_attention":
            continue
        with np.load(path) as case:
            if _attends_across_heads(case) or _keras_scores_were_float32(case):
                continue
            cases.append(("recorded", path))
            axes = _keras_config(case).get("attention_axes") or ()
            axes = (axes,) if isinstance(axes, int) else axes
            if case["query"].ndim == _smallest_rank(axes):
                cases.append(("weights", path))
    return cases


GOLDEN_CASES = _golden_cases()


@pytest.mark.parametrize("variant,path", GOLDEN_CASES,
                         ids=[f"{v}-{p.relative_to(GOLDEN)}" for v, p in GOLDEN_CASES])
def test_from_keras_golden(variant, path):
    with np.load(path) as case:
        keras_layer = _fake_from_case(case, variant)
        layer = from_keras(keras_layer)
        kind = str(case["layer"])
        assert isinstance(layer, getattr(attention, kind))
        assert layer.name == keras_layer.get_config()["name"] and layer.dtype == str(case["dtype"])
        for got, expected in zip(layer.get_weights(), keras_layer.get_weights(), strict=True):
            assert got.dtype == layer.dtype and np.array_equal(got, expected)
        output, scores = _call(layer, case)
        in_float32 = any(bool(case[key]) for key in FLOAT32_FLAGS if key in case.files)
        dtype = np.float32 if in_float32 else np.dtype(str(case["dtype"]))
        assert_close(output, case["output"], dtype, "output")
        if "scores" in case.files:
            assert_close(scores, case["scores"], dtype, "scores")


def test_golden_cases_cover_every_kind_and_variant():
    kinds = {(v, p.parent.name) for v, p in GOLDEN_CASES}
    groups = ("attention", "additive_attention", "multi_head_attention", "group_query_attention",
              "reuse_multi_head_attention")
    assert {(v, g) for v in ("recorded", "weights") for g in groups} <= kinds


def _mha_config(**overrides):
    return {"name": "mha", "trainable": True, "dtype": _policy("float32"), "num_heads": 2,
            "key_dim": 3, "value_dim": 3, "dropout": 0.0, "use_bias": True, "use_gate": False,
            "output_shape": None, "attention_axes": None, "sliding_window": None,
            "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform",
                                   "config": {"seed": None, "input_axes": None, "output_axes": None},
                                   "registered_name": None},
            "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {},
                                 "registered_name": None},
            "kernel_regularizer": {"module": "keras.regularizers", "class_name": "L2",
                                   "config": {"l2": 0.01}, "registered_name": None},
            "bias_regularizer": None, "activity_regularizer": None,
            "kernel_constraint": {"module": "keras.constraints", "class_name": "MaxNorm",
                                  "config": {"max_value": 2, "axis": 0}, "registered_name": None},
            "bias_constraint": None, "seed": 7, **overrides}


def _mha_weights(rng, dq=6, dv=7, dk=5):
    """Random weights of Keras's MultiHeadAttention(num_heads=2, key_dim=3) (no gate)."""
    shapes = [(dq, 2, 3), (2, 3), (dk, 2, 3), (2, 3), (dv, 2, 3), (2, 3), (2, 3, dq), (dq,)]
    return [rng.normal(size=s).astype("float32") for s in shapes]


def test_from_keras_unbuilt_gives_unbuilt_layer_with_the_config():
    config = _mha_config(attention_axes=(1, 2), use_gate=True)
    layer = from_keras(fake("MultiHeadAttention", config, built=False))
    assert not layer.built
    expected = dict(config, dtype="float32")  # "trainable" kept, the policy as its name
    assert layer.get_config() == expected
    for kind, config in [("Attention", {"use_scale": True, "score_mode": "concat", "dropout": 0.1}),
                         ("AdditiveAttention", {"use_scale": False}),
                         ("GroupQueryAttention", {"head_dim": 2, "num_query_heads": 4,
                                                  "num_key_value_heads": 2}),
                         ("ReuseMultiHeadAttention", {"num_heads": 2, "key_dim": 3, "query_shape": None,
                                                      "key_shape": None, "value_shape": None})]:
        layer = from_keras(fake(kind, {"name": "x", "dtype": _policy("float64"), **config}, built=False))
        assert not layer.built and layer.dtype == "float64" and layer.name == "x"
        assert type(layer) is getattr(attention, kind)


def test_from_keras_recorded_rank_and_private_shape_attributes():
    """A rank-4 MultiHeadAttention over the default axes: the config's resolved axes (1, 2),
    get_build_config() or older Keras's `_query_shape` attributes give rank 4."""
    rng = np.random.default_rng(0)
    weights = _mha_weights(rng)
    config = _mha_config(attention_axes=(1, 2))
    query, value, key = (rng.normal(size=(2, 3, 4, d)).astype("float32") for d in (6, 7, 5))
    reference = attention.MultiHeadAttention.from_config(config)
    reference.build(query.shape, value.shape, key.shape)
    reference.set_weights(weights)
    expected = reference(query, value, key)
    for kwargs in ({}, {"build_config": {"shapes_dict": {"query_shape": (None, 3, 4, 6),
                                                         "value_shape": (None, 3, 4, 7),
                                                         "key_shape": (None, 3, 4, 5)}}},
                   {"shape_attributes": {"query": [None, 3, 4, 6], "value": [None, 3, 4, 7],
                                         "key": [None, 3, 4, 5]}}):
        layer = from_keras(fake("MultiHeadAttention", config, weights, **kwargs))
        assert layer.built and layer._build_input_shapes[0] in ([None, 3, 4, 6], [None, None, None, 6])
        assert np.array_equal(layer(query, value, key), expected)


def test_from_keras_rejects_other_objects():
    with pytest.raises(TypeError, match="expects a Keras attention layer"):
        from_keras(fake("Dense", {"units": 3}))
    with pytest.raises(TypeError, match="expects a Keras attention layer"):
        from_keras(fake("MultiHeadAttention", _mha_config(), module="torch.nn.modules.activation"))
    with pytest.raises(TypeError, match="expects a Keras attention layer"):
        from_keras(object())
    with pytest.raises(TypeError, match="expects a Keras attention layer"):
        from_keras(attention.MultiHeadAttention(2, 3))


def test_from_keras_bad_configs_and_weights():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="dtype"):
        from_keras(fake("MultiHeadAttention", _mha_config(dtype=_policy("int8_from_float32")), built=False))
    weights = _mha_weights(rng)
    for build_config in (None, {"shapes_dict": {"query_shape": (None, 4, 6), "value_shape": (None, 5, 7),
                                                "key_shape": (None, 5, 5)}}):
        with pytest.raises(ValueError, match="weights"):
            from_keras(fake("MultiHeadAttention", _mha_config(), weights[:-1], build_config=build_config))
        with pytest.raises(ValueError, match="weights"):  # use_gate: 12 weights expected
            from_keras(fake("MultiHeadAttention", _mha_config(use_gate=True), weights,
                            build_config=build_config))
    with pytest.raises(ValueError, match="shape"):  # recorded query dim 8, kernel's 6
        from_keras(fake("MultiHeadAttention", _mha_config(), weights,
                        build_config={"shapes_dict": {"query_shape": (None, 4, 8),
                                                      "value_shape": (None, 5, 7),
                                                      "key_shape": (None, 5, 5)}}))


# -- save_weights / load_weights (.npz) ----------------------------------------------------------


def _built_layers(dtype):
    """One built layer of each kind with random weights, and inputs (query, value, key)."""
    rng = np.random.default_rng(5)

    def x(*shape):
        return rng.normal(size=shape).astype(dtype)

    layers = [
        (attention.Attention(use_scale=True, score_mode="concat", dtype=dtype),
         (x(2, 4, 6), x(2, 5, 7), x(2, 5, 6))),
        (attention.AdditiveAttention(dtype=dtype), (x(2, 4, 6), x(2, 5, 7), x(2, 5, 6))),
        (attention.MultiHeadAttention(2, 3, value_dim=2, use_gate=True, attention_axes=(1, 2),
                                      output_shape=(3,), dtype=dtype), (x(2, 3, 4, 6), x(2, 3, 5, 7), None)),
        (attention.GroupQueryAttention(3, 4, 2, use_gate=True, dtype=dtype),
         (x(2, 4, 6), x(2, 5, 6), x(2, 5, 5))),
        (attention.ReuseMultiHeadAttention(4, 3, reuse_attention=2, use_relative_pe=True,
                                           pe_max_seq_length=5, dtype=dtype), (x(2, 5, 6), x(2, 5, 7), None)),
    ]
    for layer, (query, value, key) in layers:
        build_for(layer, query.shape, value.shape, None if key is None else key.shape)
        layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    return layers


def _forward(layer, inputs):
    query, value, key = inputs
    if isinstance(layer, attention.Attention):
        return layer([query, value] + ([key] if key is not None else []))
    if isinstance(layer, attention.ReuseMultiHeadAttention):
        batch, length, source = query.shape[0], query.shape[1], value.shape[1]
        scores = np.full((batch, layer.num_heads, length, source), 1 / source)
        return layer(query, value, key=key, reuse_attention_scores=scores)
    return layer(query, value, key=key)


def _unbuilt_copy(layer):
    """A new unbuilt layer of layer's config (Reuse's config holds its input shapes: left out)."""
    config = {k: v for k, v in layer.get_config().items()
              if k not in ("query_shape", "key_shape", "value_shape")}
    copy = type(layer).from_config(config)
    assert not copy.built
    return copy


def _with_key(shapes):
    query, value, key = shapes
    return [query, value, value if key is None else key]


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_load_round_trip(tmp_path, dtype):
    others = _built_layers(dtype)  # the same weights: shifted by 1 below, so a load shows
    for (layer, inputs), (other, _) in zip(_built_layers(dtype), others):
        layer.set_weights([w + 1 for w in layer.get_weights()])
        path = tmp_path / f"{layer.name}.npz"
        layer.save_weights(path)
        expected = _forward(layer, inputs)
        for target in (_unbuilt_copy(layer), other):
            target.load_weights(str(path))
            assert target.built
            assert _with_key(target._build_input_shapes) == _with_key(layer._build_input_shapes)
            for got, want in zip(target.get_weights(), layer.get_weights(), strict=True):
                assert got.dtype == want.dtype and np.array_equal(got, want)
            assert np.array_equal(_forward(target, inputs), expected)
        with np.load(path) as npz:
            meta = json.loads(str(npz["__libattention__"]))
            assert meta["names"] == layer.weight_names and meta["layer"] == type(layer).__name__
            assert meta["dtype"] == dtype
            assert [tuple(s) for s in meta["shapes"]] == [w.shape for w in layer.get_weights()]
            assert [n for n in npz.files if n != "__libattention__"] == layer.weight_names


def test_load_converts_the_dtype(tmp_path):
    layer = _built_layers("float32")[2][0]
    layer.save_weights(tmp_path / "w.npz")
    target = type(layer).from_config({**layer.get_config(), "dtype": "float64"})
    target.load_weights(tmp_path / "w.npz")
    for got, want in zip(target.get_weights(), layer.get_weights(), strict=True):
        assert got.dtype == np.float64 and np.array_equal(got, want.astype(np.float64))


def _unchanged(layer, before):
    if before is None:
        return not layer.built
    return all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), before, strict=True))


def test_save_load_bad_inputs(tmp_path):
    _, _, (mha, _), (gqa, _), _ = _built_layers("float32")
    with pytest.raises(ValueError, match="no weights yet"):
        attention.MultiHeadAttention(2, 3).save_weights(tmp_path / "unbuilt.npz")
    with pytest.raises(ValueError, match=r"\.npz"):
        mha.save_weights(tmp_path / "mha.weights")
    path = tmp_path / "mha.npz"
    mha.save_weights(path)
    with pytest.raises(ValueError, match=r"reads \.npz"):
        mha.load_weights(tmp_path / "mha.bin")
    with pytest.raises(ValueError, match="layer_name"):
        mha.load_weights(path, layer_name="mha")
    with pytest.raises(FileNotFoundError):
        mha.load_weights(tmp_path / "missing.npz")

    def refused(target, file, match):
        before = target.get_weights() if target.built else None
        with pytest.raises(ValueError, match=match):
            target.load_weights(file)
        assert _unchanged(target, before)

    config = mha.get_config()
    refused(gqa, path, "weights of a MultiHeadAttention, not of a GroupedQueryAttention")
    refused(type(mha).from_config({**config, "num_heads": 3}), path, "shape")  # unbuilt
    other = type(mha).from_config({**config, "num_heads": 3})
    other.build((None, 3, 4, 6), (None, 3, 5, 7))
    refused(other, path, "shape")
    refused(type(mha).from_config({**config, "use_gate": False}), path, "has weights")
    built = type(mha).from_config({**config, "use_gate": False})
    built.build((None, 3, 4, 6), (None, 3, 5, 7))
    refused(built, path, "has weights")

    np.savez(tmp_path / "plain.npz", a=np.ones(3))
    refused(mha, tmp_path / "plain.npz", "not a weights file of save_weights")
    np.save(tmp_path / "single.npy", np.ones(3))
    shutil.copy(tmp_path / "single.npy", tmp_path / "single.npz")
    refused(mha, tmp_path / "single.npz", "single array")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file at all")
    refused(mha, tmp_path / "garbage.npz", "not a weights file of save_weights")

    with np.load(path) as npz:
        arrays = dict(npz)
    meta = json.loads(str(arrays["__libattention__"]))

    def rewrite(name, **changes):
        file = tmp_path / name
        np.savez(file, **{**arrays, "__libattention__": np.array(json.dumps({**meta, **changes}))})
        return file

    refused(mha, rewrite("format.npz", format="other-2"), "format")
    refused(mha, rewrite("shapes.npz", shapes=[[1]] * len(meta["shapes"])), "says")
    refused(mha, rewrite("dtype.npz", dtype="float64"), "says")
    refused(mha, rewrite("names.npz", names=meta["names"][:-1] + ["nope"]), "missing")
    refused(mha, rewrite("nonames.npz", names=[], shapes=[]), "has weights")
    no_shapes = rewrite("noshapes.npz", build_shapes=None)
    refused(type(mha).from_config(config), no_shapes, "no input shapes")
    mha.load_weights(no_shapes)  # a built layer does not need them
    np.savez(tmp_path / "bad_meta.npz", __libattention__=np.array("{not json"))
    refused(mha, tmp_path / "bad_meta.npz", "unreadable")


# -- Keras .weights.h5 files --------------------------------------------------------------------


def test_keras_files_need_h5py(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py raises ImportError
    layer = attention.MultiHeadAttention(2, 3)
    with pytest.raises(ImportError, match="h5py"):
        layer.load_weights(tmp_path / "model.weights.h5")
    assert not layer.built


def _fixture_layer(case):
    """Our unbuilt layer from the fixture's Keras config."""
    return KINDS[str(case["layer"])].from_config(json.loads(str(case["config"])))


def _fixture_output(layer, case):
    query, value, key = (_optional(case, n) for n in ("query", "value", "key"))
    if isinstance(layer, attention.Attention):
        return layer([query, value] + ([key] if key is not None else []))
    if isinstance(layer, attention.ReuseMultiHeadAttention):
        return layer(query, value, key=key, reuse_attention_scores=case["reuse_attention_scores"])
    return layer(query, value, key=key)


def test_h5_fixtures_exist():
    assert {p.stem for p in H5_FIXTURES} >= {"mha", "mha_gate_rank4_float64", "gqa", "luong_attention",
                                            "luong_additive_attention", "reuse"}
    assert sum(f.stat().st_size for f in (GOLDEN / "h5").glob("*/*")) < 200_000


@needs_h5py
@pytest.mark.parametrize("fixture", H5_FIXTURES, ids=[p.stem for p in H5_FIXTURES])
def test_load_keras_h5(fixture, tmp_path):
    with np.load(fixture) as case:
        h5 = fixture.parent / str(case["h5"])
        expected = [case[f"weight_{i}"] for i in range(int(case["weight_count"]))]
        layer_name = str(case["layer_name"])
        archive = tmp_path / "model.keras"  # a .keras archive holds model.weights.h5
        with zipfile.ZipFile(archive, "w") as z:
            z.write(h5, "model.weights.h5")
        built = _fixture_layer(case)
        _fixture_output(built, case)  # built by a call, random weights
        for layer, file, name in ((_fixture_layer(case), h5, layer_name),
                                  (_fixture_layer(case), h5, None),  # the only one of its kind
                                  (built, h5, None),
                                  (_fixture_layer(case), archive, layer_name)):
            layer.load_weights(file, layer_name=name)
            assert layer.dtype == str(case["dtype"])
            for got, want in zip(layer.get_weights(), expected, strict=True):
                assert got.dtype == want.dtype and np.array_equal(got, want)
            assert_close(_fixture_output(layer, case), case["output"], layer.dtype, "output")


@needs_h5py
def test_load_keras_h5_bad_inputs(tmp_path):
    import h5py

    keras_dir = GOLDEN / "h5" / "keras"
    mha_config = json.loads(str(np.load(keras_dir / "mha.npz")["config"]))

    def refused(layer, file, match, **kwargs):
        with pytest.raises(ValueError, match=match):
            layer.load_weights(file, **kwargs)
        assert not layer.built

    mha = attention.MultiHeadAttention.from_config(mha_config)
    refused(mha, keras_dir / "mha.weights.h5", "no layers named 'decoder'", layer_name="decoder")
    refused(attention.MultiHeadAttention.from_config(mha_config), keras_dir / "luong.weights.h5",
            "has no multi_head_attention layers")
    refused(attention.Attention(), keras_dir / "luong.weights.h5", "does not have",
            layer_name="luong_concat")
    refused(attention.Attention(use_scale=True), keras_dir / "luong.weights.h5", "holds 2 variables",
            layer_name="luong_concat")
    refused(attention.MultiHeadAttention.from_config({**mha_config, "use_gate": True}),
            keras_dir / "mha.weights.h5", "no weights of sublayer 'gate'")
    refused(attention.MultiHeadAttention.from_config({**mha_config, "use_bias": False}),
            keras_dir / "mha.weights.h5", "holds 2 variables")
    refused(attention.GroupQueryAttention(3, 4, 2), keras_dir / "mha_gate_rank4_float64.weights.h5",
            "has no grouped_query_attention layers")
    gate = attention.MultiHeadAttention.from_config(
        json.loads(str(np.load(keras_dir / "mha_gate_rank4_float64.npz")["config"])))
    refused(attention.MultiHeadAttention.from_config({**gate.get_config(), "use_gate": False}),
            keras_dir / "mha_gate_rank4_float64.weights.h5", "does not have")
    built = attention.MultiHeadAttention.from_config({**mha_config, "num_heads": 1})
    built.build((None, 4, 6), (None, 5, 7), (None, 5, 5))
    before = built.get_weights()
    with pytest.raises(ValueError, match="shape"):
        built.load_weights(keras_dir / "mha.weights.h5")
    assert _unchanged(built, before)
    (tmp_path / "garbage.weights.h5").write_bytes(b"not hdf5")
    refused(attention.MultiHeadAttention(2, 3), tmp_path / "garbage.weights.h5", "not a Keras weights file")
    (tmp_path / "garbage.keras").write_bytes(b"not a zip")
    refused(attention.MultiHeadAttention(2, 3), tmp_path / "garbage.keras", "not a Keras weights file")

    # Two MultiHeadAttention layers: layer_name picks one.
    two = tmp_path / "two.weights.h5"
    with h5py.File(keras_dir / "mha.weights.h5") as source, h5py.File(two, "w") as out:
        source.copy("layers", out)
        out.copy("layers/multi_head_attention", "layers/multi_head_attention_1")
        out["layers/multi_head_attention_1/vars"].attrs["name"] = "second"
        out["layers/multi_head_attention_1/query_dense/vars/0"][...] = 0.0
    refused(attention.MultiHeadAttention.from_config(mha_config), two, "has 2 multi_head_attention layers")
    layer = attention.MultiHeadAttention.from_config(mha_config)
    layer.load_weights(two, layer_name="second")
    assert np.all(layer.get_weights()[0] == 0)
    layer.load_weights(two, layer_name="multi_head_attention")  # by vars name or by path
    assert np.array_equal(layer.get_weights()[0], np.load(keras_dir / "mha.npz")["weight_0"])


# -- real Keras and Model Garden (skipped unless importable) --------------------------------------


def _keras():
    keras = pytest.importorskip("keras")
    if not keras.__version__.startswith("3."):
        pytest.skip(f"Keras 3 needed, found {keras.__version__}")
    return keras


def test_live_keras_from_keras(tmp_path):
    keras = _keras()
    rng = np.random.default_rng(11)
    q = rng.normal(size=(2, 4, 6)).astype("float32")
    v = rng.normal(size=(2, 5, 7)).astype("float32")
    k = rng.normal(size=(2, 5, 6)).astype("float32")
    q4 = rng.normal(size=(2, 3, 4, 6)).astype("float32")
    v4 = rng.normal(size=(2, 3, 5, 7)).astype("float32")
    L = keras.layers
    cases = [
        (L.Attention(use_scale=True, score_mode="concat"), lambda l: l([q, v, k])),
        (L.AdditiveAttention(), lambda l: l([q, v, k])),
        (L.MultiHeadAttention(num_heads=2, key_dim=3, use_gate=True), lambda l: l(q, v, key=k)),
        (L.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=2, output_shape=(3,)), lambda l: l(q4, v4)),
        (L.GroupQueryAttention(head_dim=3, num_query_heads=4, num_key_value_heads=2),
         lambda l: l(q, v[..., :6], key=k[..., :5])),
    ]
    for keras_layer, run in cases:
        unbuilt = from_keras(keras_layer)
        assert not unbuilt.built and unbuilt.name == keras_layer.name
        run(keras_layer)  # builds
        keras_layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in keras_layer.get_weights()])
        expected = keras.ops.convert_to_numpy(run(keras_layer))
        ours = from_keras(keras_layer)
        assert ours.weight_names == [w.path.split("/", 1)[1] for w in keras_layer.weights]
        assert_close(run(ours), expected, np.float32)
        if _has_h5py():  # and through a saved model, the layer a tracked attribute of it
            fresh = type(ours).from_config(ours.get_config())
            model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
            model.attention_layer = keras_layer
            model.save_weights(tmp_path / "m.weights.h5")
            fresh.load_weights(tmp_path / "m.weights.h5", layer_name=keras_layer.name)
            for got, want in zip(fresh.get_weights(), ours.get_weights(), strict=True):
                assert np.array_equal(got, want)


def test_live_model_garden_from_keras(tmp_path):
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    reuse_module = pytest.importorskip("official.nlp.modeling.layers.reuse_attention")
    rng = np.random.default_rng(12)
    q = rng.normal(size=(2, 5, 6)).astype("float32")
    v = rng.normal(size=(2, 5, 7)).astype("float32")
    scores = np.full((2, 4, 5, 5), 0.2, "float32")
    for config in ({"reuse_attention": 2, "use_relative_pe": True, "pe_max_seq_length": 5},
                   {"reuse_attention": -1}, {"reuse_attention": 0, "output_shape": (3,)}):
        keras_layer = reuse_module.ReuseMultiHeadAttention(num_heads=4, key_dim=3, **config)
        assert not from_keras(keras_layer).built
        keras_layer(q, v, reuse_attention_scores=scores)
        keras_layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in keras_layer.get_weights()])
        expected = keras_layer(q, v, reuse_attention_scores=scores).numpy()
        ours = from_keras(keras_layer)
        assert_close(ours(q, v, reuse_attention_scores=scores), expected, np.float32)
        if _has_h5py():
            import tf_keras

            inputs = [tf_keras.Input(x.shape[1:]) for x in (q, v, scores)]
            outputs = keras_layer(inputs[0], inputs[1], reuse_attention_scores=inputs[2])
            model = tf_keras.Model(inputs, outputs)
            model.save_weights(str(tmp_path / "reuse.weights.h5"))
            fresh = _unbuilt_copy(ours)
            fresh.load_weights(tmp_path / "reuse.weights.h5")
            assert_close(fresh(q, v, reuse_attention_scores=scores), expected, np.float32)
