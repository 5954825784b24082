"""Half-precision inputs and dtype policies, dot_product_attention's boolean mask, Keras objects
taken by duck typing (initializers, regularizers, constraints, dtype policies), and the Keras
layer attributes: flash_attention, trainable, compute_output_shape, count_params, weights,
positional constructor arguments."""

import numpy as np
import pytest

import attention
from attention import reference
from conftest import assert_close

try:
    import ml_dtypes
except ImportError:
    ml_dtypes = None

needs_bfloat16 = pytest.mark.skipif(ml_dtypes is None, reason="ml_dtypes is not installed")
HALF = ["float16", pytest.param("bfloat16", marks=needs_bfloat16)]
POLICIES = {  # policy -> compute dtype name
    "float16": "float16", "mixed_float16": "float16",
    "bfloat16": "bfloat16", "mixed_bfloat16": "bfloat16",
}


def _dtype(name):
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def _rng_array(rng, shape, dtype="float32"):
    return rng.normal(size=shape).astype(_dtype(dtype))


def _every_layer(**kwargs):
    return [attention.Attention(use_scale=True, **kwargs), attention.AdditiveAttention(**kwargs),
            attention.MultiHeadAttention(2, 3, **kwargs), attention.GroupQueryAttention(2, 4, 2, **kwargs),
            attention.ReuseMultiHeadAttention(2, 3, **kwargs)]


def _call(layer, q, v, **kwargs):
    if isinstance(layer, attention.Attention):
        return layer([q, v], **kwargs)
    return layer(q, v, **kwargs)


# -- half precision ---------------------------------------------------------------------------

@pytest.mark.parametrize("half", HALF)
def test_dot_product_attention_returns_the_half_dtype_it_was_given(half):
    rng = np.random.default_rng(1)
    q, k, v = (_rng_array(rng, s, half) for s in [(2, 3, 4, 8), (2, 5, 2, 8), (2, 5, 2, 6)])
    bias = _rng_array(rng, (3, 5), half)
    mask = rng.random((2, 4, 3, 5)) < 0.8
    got = attention.dot_product_attention(q, k, v, bias=bias, mask=mask, is_causal=True)
    assert got.dtype == _dtype(half)
    as32 = [x.astype(np.float32) for x in (q, k, v, bias)]
    # float32 math on the exact float32 values, one rounding to the half type at the end.
    in32 = attention.dot_product_attention(*as32[:3], bias=as32[3], mask=mask, is_causal=True)
    np.testing.assert_array_equal(got, in32.astype(_dtype(half)))
    expected = reference.dot_product_attention(*as32[:3], bias=as32[3], mask=mask, is_causal=True)
    assert_close(in32, expected)


@pytest.mark.parametrize("dtypes, expected", [
    (("float16", "float16", "float16", None), "float16"),
    (("float16", "float32", "float16", None), "float32"),
    (("float16", "float16", "float16", "float64"), "float64"),
    (("float16", "float16", "float16", "float32"), "float32"),
    (("int32", "float16", "float16", None), "float16"),
    (("int32", "int32", "int32", None), "float32"),
    pytest.param(("bfloat16", "float16", "bfloat16", None), "float32", marks=needs_bfloat16),
    pytest.param(("bfloat16", "bfloat16", "bfloat16", None), "bfloat16", marks=needs_bfloat16),
])
def test_dot_product_attention_dtype_promotion(dtypes, expected):
    shape = (1, 3, 2, 4)
    q, k, v, bias = (None if d is None else np.ones(shape if i < 3 else (3, 3), _dtype(d))
                     for i, d in enumerate(dtypes))
    assert attention.dot_product_attention(q, k, v, bias=bias).dtype == _dtype(expected)


@pytest.mark.parametrize("half", HALF)
def test_a_float32_layer_casts_half_inputs_and_returns_float32(half):
    """As Keras: inputs are cast to the layer's compute dtype, the result is in it."""
    rng = np.random.default_rng(2)
    q, v = _rng_array(rng, (2, 3, 4), half), _rng_array(rng, (2, 5, 4), half)
    for layer in _every_layer(seed=1):
        kwargs = ({"reuse_attention_scores": None} if isinstance(layer, attention.ReuseMultiHeadAttention)
                  else {})
        out, scores = _call(layer, q, v, return_attention_scores=True, **kwargs)
        ref_out, ref_scores = _call(layer, q.astype(np.float32), v.astype(np.float32),
                                    return_attention_scores=True, **kwargs)
        assert out.dtype == scores.dtype == np.float32
        np.testing.assert_array_equal(out, ref_out)
        np.testing.assert_array_equal(scores, ref_scores)


@pytest.mark.parametrize("policy", [p if "bfloat16" not in p else pytest.param(p, marks=needs_bfloat16)
                                    for p in POLICIES])
def test_half_policies_compute_in_float32_and_return_the_compute_dtype(policy):
    compute = _dtype(POLICIES[policy])
    rng = np.random.default_rng(3)
    q, v = _rng_array(rng, (2, 3, 4)), _rng_array(rng, (2, 5, 4))
    for half_layer, full_layer in zip(_every_layer(dtype=policy, seed=4), _every_layer(seed=4)):
        assert half_layer.dtype == half_layer.variable_dtype == "float32"
        assert half_layer.compute_dtype == compute.name and half_layer.dtype_policy == policy
        assert half_layer.get_config()["dtype"] == policy
        out, scores = _call(half_layer, q, v, return_attention_scores=True)
        full_layer.build(*([[q.shape, v.shape]] if isinstance(full_layer, attention.Attention)
                           else [q.shape, v.shape]))
        full_layer.set_weights(half_layer.get_weights())
        assert all(w.dtype == np.float32 for w in half_layer.get_weights())
        ref_out, ref_scores = _call(full_layer, q, v, return_attention_scores=True)
        assert out.dtype == scores.dtype == compute
        np.testing.assert_array_equal(out, ref_out.astype(compute))
        np.testing.assert_array_equal(scores, ref_scores.astype(compute))
        grads = half_layer.gradients(*(([q, v],) if isinstance(half_layer, attention.Attention) else (q, v)),
                                     output_gradient=np.ones(out.shape, compute))
        assert grads.output.dtype == grads.query.dtype == grads.value.dtype == compute
        assert all(g.dtype == np.float32 for g in grads.weights)


def test_dtype_policy_spellings():
    class DTypePolicy:  # keras.DTypePolicy / keras.mixed_precision.Policy, by duck typing
        def __init__(self, name):
            self.name = name

        def get_config(self):
            return {"name": self.name}

    class Policy:  # tf.keras's, read through get_config alone
        def __init__(self, name):
            self._name = name

        def get_config(self):
            return {"name": self._name}

    spellings = [None, "float32", np.float32, np.dtype("float32"), DTypePolicy("float32"),
                 Policy("float32"), {"module": "keras", "class_name": "DTypePolicy",
                                     "config": {"name": "float32"}, "registered_name": None}]
    for spelling in spellings:
        assert attention.MultiHeadAttention(2, 3, dtype=spelling).dtype_policy == "float32"
    layer = attention.MultiHeadAttention(2, 3, dtype=DTypePolicy("mixed_float16"))
    assert (layer.dtype, layer.compute_dtype, layer.get_config()["dtype"]) == (
        "float32", "float16", "mixed_float16")
    assert attention.MultiHeadAttention.from_config(layer.get_config()).compute_dtype == "float16"
    assert attention.Attention(dtype=np.float16).dtype_policy == "float16"
    for bad in [DTypePolicy("int8"), {"class_name": "QuantizedDTypePolicy", "config": {"name": "float32"}},
                object(), "mixed_float64"]:
        with pytest.raises(ValueError, match="dtype must be"):
            attention.Attention(dtype=bad)


def test_real_keras_dtype_policies():
    keras = _keras()
    mixed = attention.Attention(dtype=keras.DTypePolicy("mixed_float16"))
    assert (mixed.dtype, mixed.compute_dtype) == ("float32", "float16")
    assert attention.Attention(dtype=keras.mixed_precision.Policy("float64")).dtype == "float64"


def _keras():
    try:
        import keras
    except Exception:  # not installed, or no backend to load
        pytest.skip("keras is not importable")
    return keras


def test_half_and_bool_masks_of_layers_are_numeric_masks():
    rng = np.random.default_rng(5)
    q = _rng_array(rng, (1, 3, 4))
    layer = attention.Attention()
    mask = np.array([[1, 0, 1]])
    expected = layer([q, q], mask=[None, mask.astype(bool)])
    np.testing.assert_array_equal(layer([q, q], mask=[None, mask.astype(np.float16)]), expected)
    if ml_dtypes is not None:
        np.testing.assert_array_equal(layer([q, q], mask=[None, mask.astype(ml_dtypes.bfloat16)]), expected)


# -- dot_product_attention's mask -------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "uint8", "float16"])
def test_dot_product_attention_refuses_a_non_boolean_mask(dtype):
    q = np.ones((1, 3, 2, 4), np.float32)
    additive = np.where(np.tril(np.ones((3, 3))) > 0, 0, -np.inf) if dtype.startswith("float") else np.tril(np.ones((3, 3)))
    with pytest.raises(ValueError, match="boolean.*bias="):
        attention.dot_product_attention(q, q, q, mask=additive.astype(dtype))


def test_an_additive_mask_goes_in_bias():
    rng = np.random.default_rng(6)
    q, k, v = (_rng_array(rng, (2, 4, 2, 3)) for _ in range(3))
    keep = np.tril(np.ones((4, 4), bool))
    additive = np.where(keep, 0.0, -np.inf).astype(np.float32)
    assert_close(attention.dot_product_attention(q, k, v, bias=additive),
                 reference.dot_product_attention(q, k, v, mask=keep))
    np.testing.assert_array_equal(attention.dot_product_attention(q, k, v, mask=keep.tolist()),
                                  attention.dot_product_attention(q, k, v, mask=keep))


# -- Keras objects by duck typing --------------------------------------------------------------

def _fake(class_name, config):
    """An object of a class named like Keras's, whose get_config() gives `config`."""
    return type(class_name, (), {"get_config": lambda self: dict(config)})()


def test_keras_initializer_regularizer_and_constraint_objects():
    by_object = attention.MultiHeadAttention(
        2, 3, kernel_initializer=_fake("HeNormal", {"seed": 5, "input_axes": None, "output_axes": None}),
        bias_initializer=_fake("Constant", {"value": 0.5}),
        kernel_regularizer=_fake("L2", {"l2": 0.1}), bias_regularizer=_fake("L1L2", {"l1": 0.2, "l2": 0.0}),
        activity_regularizer=_fake("L1", {"l1": 0.3}),
        kernel_constraint=_fake("MaxNorm", {"max_value": 3, "axis": 0}), bias_constraint=_fake("NonNeg", {}),
        seed=9)
    by_dict = attention.MultiHeadAttention(
        2, 3, kernel_initializer={"class_name": "HeNormal", "config": {"seed": 5}},
        bias_initializer={"class_name": "Constant", "config": {"value": 0.5}},
        kernel_regularizer={"class_name": "L2", "config": {"l2": 0.1}},
        bias_regularizer={"class_name": "L1L2", "config": {"l1": 0.2}},
        activity_regularizer={"class_name": "L1", "config": {"l1": 0.3}},
        kernel_constraint={"class_name": "MaxNorm", "config": {"max_value": 3}},
        bias_constraint="non_neg", seed=9)
    config = by_object.get_config()
    assert {k: v for k, v in config.items() if k != "name"} == {
        k: v for k, v in by_dict.get_config().items() if k != "name"}
    assert config["kernel_initializer"]["config"]["seed"] == 5
    assert config["kernel_regularizer"] == {"module": "keras.regularizers", "class_name": "L2",
                                            "config": {"l2": 0.1}, "registered_name": None}
    for layer in (by_object, by_dict):
        layer.build((1, 2, 4), (1, 2, 4))
    for a, b in zip(by_object.get_weights(), by_dict.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert by_object.losses == by_dict.losses


def test_unknown_or_broken_keras_objects_are_refused():
    with pytest.raises(ValueError, match="Could not interpret initializer"):
        attention.MultiHeadAttention(2, 3, kernel_initializer=_fake("VarianceScaling", {"scale": 2.0}))
    with pytest.raises(ValueError, match="Unknown config keys"):
        attention.MultiHeadAttention(2, 3, kernel_regularizer=_fake("L2", {"l2": 0.1, "rate": 1}))
    with pytest.raises(ValueError, match="not a dict"):
        attention.MultiHeadAttention(2, 3, kernel_constraint=type("MaxNorm", (), {"get_config": lambda s: 3})())
    with pytest.raises(ValueError, match="Could not interpret constraint"):
        attention.MultiHeadAttention(2, 3, kernel_constraint=object())


def test_real_keras_objects():
    keras = _keras()
    layer = attention.GroupQueryAttention(
        2, 4, 2, kernel_initializer=keras.initializers.HeNormal(seed=3),
        kernel_regularizer=keras.regularizers.L2(0.1), kernel_constraint=keras.constraints.MaxNorm(2),
        dtype=keras.DTypePolicy("float64"))
    config = layer.get_config()
    assert config["kernel_initializer"]["class_name"] == "HeNormal"
    assert config["kernel_initializer"]["config"]["seed"] == 3
    assert config["kernel_regularizer"]["config"] == {"l2": 0.1}
    assert config["kernel_constraint"]["config"] == {"max_value": 2, "axis": 0}
    assert layer.dtype == "float64"


# -- Keras layer attributes --------------------------------------------------------------------

@pytest.mark.parametrize("kind", [attention.MultiHeadAttention, attention.GroupQueryAttention])
def test_flash_attention_argument(kind):
    args = (2, 3) if kind is attention.MultiHeadAttention else (3, 2, 2)
    assert "flash_attention" not in kind(*args).get_config()  # as Keras's config
    for value in (True, False):
        layer = kind(*args, flash_attention=value)
        assert layer.flash_attention is value and layer.get_config()["flash_attention"] is value
        assert kind.from_config(layer.get_config()).flash_attention is value
    with pytest.raises(ValueError, match="Dropout is not supported when flash attention"):
        kind(*args, flash_attention=True, dropout=0.1)
    with pytest.raises(TypeError, match="flash_attention"):
        kind(*args, flash_attention="yes")
    x = np.ones((1, 3, 4), np.float32)
    flash = kind(*args, flash_attention=True)
    assert flash(x, x).shape == (1, 3, 4)
    with pytest.raises(ValueError, match="Returning attention scores is not supported"):
        flash(x, x, return_attention_scores=True)


def test_trainable_and_the_weight_lists():
    for layer in _every_layer():
        assert layer.trainable and layer.get_config()["trainable"] is True
        assert layer.weights == [] and layer.trainable_weights == [] and layer.non_trainable_weights == []
        with pytest.raises(ValueError, match="isn't built"):
            layer.count_params()
        q = np.ones((2, 3, 4), np.float32)
        _call(layer, q, q, **({"reuse_attention_scores": None}
                              if isinstance(layer, attention.ReuseMultiHeadAttention) else {}))
        weights = layer.get_weights()
        assert layer.count_params() == sum(w.size for w in weights)
        for listed in (layer.weights, layer.trainable_weights):
            assert len(listed) == len(weights)
            for a, b in zip(listed, weights):
                np.testing.assert_array_equal(a, b)
        assert layer.non_trainable_weights == []
        layer.trainable = False
        assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == len(weights)
        assert layer.get_config()["trainable"] is False
        frozen = type(layer).from_config(layer.get_config())
        assert frozen.trainable is False
    assert attention.MultiHeadAttention(2, 3).count_params  # method, as Keras
    mha = attention.MultiHeadAttention(2, 3)
    mha.build((None, 5, 8), (None, 6, 8))
    assert mha.count_params() == 4 * (8 * 2 * 3) + 3 * (2 * 3) + 8  # 4 kernels, 3 biases (2, 3), one (8,)
    with pytest.raises(TypeError, match="trainable"):
        attention.Attention(trainable="no")


@pytest.mark.parametrize("layer, shapes", [
    (attention.Attention(), [(2, 3, 4), (2, 5, 4)]),
    (attention.Attention(), [(None, 3, 4), (None, 5, 6), (None, 5, 4)]),
    (attention.AdditiveAttention(), [(2, 3, 4), (2, 5, 4)]),
    (attention.MultiHeadAttention(2, 3), [(2, 3, 4), (2, 5, 6)]),
    (attention.MultiHeadAttention(2, 3, output_shape=(2, 5)), [(None, 3, 4), (None, 5, 6), (None, 5, 7)]),
    (attention.MultiHeadAttention(2, 3, output_shape=7, attention_axes=(1, 2)), [(2, 3, 4, 5), (2, 6, 4, 5)]),
    (attention.GroupQueryAttention(2, 4, 2), [(2, 3, 4), (2, 5, 4), (2, 5, 3)]),
    (attention.ReuseMultiHeadAttention(2, 3, output_shape=(5,)), [(2, 3, 4), (2, 5, 6)]),
])
def test_compute_output_shape_is_the_calls(layer, shapes):
    if isinstance(layer, attention.Attention):
        computed = layer.compute_output_shape(shapes)
    else:
        computed = layer.compute_output_shape(*shapes)
    concrete = [[2 if d is None else d for d in s] for s in shapes]
    arrays = [np.ones(s, np.float32) for s in concrete]
    out = layer(arrays) if isinstance(layer, attention.Attention) else layer(*arrays[:2], *arrays[2:])
    assert isinstance(computed, tuple)
    assert tuple(2 if d is None else d for d in computed) == out.shape
    assert computed[0] == shapes[0][0]  # a None batch stays None


def test_compute_output_shape_errors():
    with pytest.raises(ValueError, match="must be equal"):
        attention.MultiHeadAttention(2, 3).compute_output_shape((2, 4, 8), (2, 2, 8), (2, 1, 7))
    with pytest.raises(ValueError, match="must be equal"):
        attention.GroupQueryAttention(2, 4, 2).compute_output_shape((2, 4, 8), (2, 2, 7))
    with pytest.raises(ValueError, match="list"):
        attention.Attention().compute_output_shape((2, 3, 4))


def test_attention_compute_mask_is_the_query_mask():
    layer, x = attention.Attention(), [np.ones((2, 3, 4)), np.ones((2, 4, 4))]
    assert layer.compute_mask(x) is None and layer.compute_mask(x, [None, np.ones((2, 4))]) is None
    np.testing.assert_array_equal(layer.compute_mask(x, [[1, 0, 1], [1, 1, 1, 0]]), [1, 0, 1])
    with pytest.raises(ValueError, match="mask must be a list"):
        layer.compute_mask(x, np.ones(3))


def test_positional_arguments_in_keras_order():
    attention_layer = attention.Attention(True, "concat", 0.1, 5)
    assert (attention_layer.use_scale, attention_layer.score_mode, attention_layer.dropout,
            attention_layer.seed) == (True, "concat", 0.1, 5)
    additive = attention.AdditiveAttention(False, 0.2)
    assert (additive.use_scale, additive.dropout) == (False, 0.2)
    mha = attention.MultiHeadAttention(2, 3, 4, 0.1, False, (5,), (1,), 2, False, "he_normal", "ones",
                                       "l2", "l1", None, "max_norm", "non_neg", True, 7)
    config = mha.get_config()
    assert (config["value_dim"], config["dropout"], config["use_bias"], config["output_shape"],
            config["attention_axes"], config["sliding_window"], config["flash_attention"],
            config["kernel_initializer"]["class_name"], config["bias_initializer"]["class_name"],
            config["kernel_regularizer"]["class_name"], config["bias_regularizer"]["class_name"],
            config["kernel_constraint"]["class_name"], config["bias_constraint"]["class_name"],
            config["use_gate"], config["seed"]) == (
        4, 0.1, False, (5,), (1,), 2, False, "HeNormal", "Ones", "L2", "L1", "MaxNorm", "NonNeg", True, 7)
    gqa = attention.GroupQueryAttention(2, 4, 2, 0.1, False, 3, False, "lecun_normal")
    assert (gqa.dropout, gqa.use_bias, gqa.sliding_window, gqa.flash_attention,
            gqa.get_config()["kernel_initializer"]["class_name"]) == (0.1, False, 3, False, "LecunNormal")
    reuse = attention.ReuseMultiHeadAttention(4, 3, 5, 0.1, 2, True, 6, False, (2,), (1,), "zeros")
    assert (reuse.value_dim, reuse.reuse_attention, reuse.use_relative_pe, reuse.pe_max_seq_length,
            reuse.use_bias, reuse.attention_axes) == (5, 2, True, 6, False, (1,))
    # What Keras takes only by keyword (its **kwargs) is keyword-only here too.
    with pytest.raises(TypeError):
        attention.Attention(False, "dot", 0.0, None, True)
    with pytest.raises(TypeError):
        attention.AdditiveAttention(True, 0.0, 3)
    with pytest.raises(TypeError):
        attention.MultiHeadAttention(2, 3, None, 0.0, True, None, None, None, None, "glorot_uniform",
                                     "zeros", None, None, None, None, None, False, None, "float64")
