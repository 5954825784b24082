"""Bad inputs: every one raises the documented exception with a message naming the problem
(library errors carry att_last_error() and the status name), and nothing crashes."""

import ctypes

import numpy as np
import pytest

import attention
from attention import _lib

F32 = np.float32


def _x(*shape, dtype=F32):
    return np.random.default_rng(0).normal(size=shape).astype(dtype)


def _built_attention(**kwargs):
    layer = attention.Attention(**kwargs)
    layer.build([(2, 3, 4), (2, 5, 4)])
    return layer


def _built_mha(q_shape=(2, 3, 4), v_shape=(2, 5, 4), **kwargs):
    layer = attention.MultiHeadAttention(**{"num_heads": 2, "key_dim": 3, **kwargs})
    layer.build(q_shape, v_shape)
    return layer


# -- Python-side argument checks (Keras's messages) -------------------------------------------

@pytest.mark.parametrize("inputs, fragment", [
    (_x(2, 3, 4), "must be called on a list of inputs"),
    ((_x(2, 3, 4), _x(2, 3, 4)), "must be called on a list of inputs"),
    ([_x(2, 3, 4)], "accepts inputs list of length 2 or 3"),
    ([_x(2, 3, 4)] * 4, "accepts inputs list of length 2 or 3"),
])
def test_attention_inputs_must_be_a_list_of_2_or_3(inputs, fragment):
    with pytest.raises(ValueError, match=fragment):
        attention.Attention()(inputs)


@pytest.mark.parametrize("mask, fragment", [
    (np.ones((2, 3)), "mask must be a list"),
    ([np.ones((2, 3))], "accepts mask list of length 2 or 3"),
])
def test_attention_mask_must_be_a_list_of_2_or_3(mask, fragment):
    with pytest.raises(ValueError, match=fragment):
        attention.Attention()([_x(2, 3, 4), _x(2, 3, 4)], mask=mask)


def test_build_input_shape_must_be_a_list():
    with pytest.raises(ValueError, match="list of inputs"):
        attention.Attention().build((2, 3, 4))


def test_unknown_score_mode():
    with pytest.raises(ValueError, match="score_mode=cosine"):
        attention.Attention(score_mode="cosine")


@pytest.mark.parametrize("dtype", ["float16", "int32", "bfloat16", "complex64", 5])
def test_unsupported_dtype(dtype):
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        attention.Attention(dtype=dtype)


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, "7", True])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed must be None or an integer"):
        attention.MultiHeadAttention(1, 1, seed=seed)


@pytest.mark.parametrize("value", [["a", "b"], None, {"x": 1}, np.array(["x"])])
def test_non_numeric_inputs(value):
    with pytest.raises(TypeError, match="query must be a numeric array"):
        attention.Attention()([value, _x(2, 3, 4)])


def test_non_numeric_mask():
    with pytest.raises(TypeError, match="value_mask must be a numeric array"):
        attention.Attention()([_x(2, 3, 4), _x(2, 3, 4)], mask=[None, [["a"] * 3] * 2])


@pytest.mark.parametrize("argument", ["num_heads", "key_dim", "value_dim"])
@pytest.mark.parametrize("value", [0, -2, 1.5, True])
def test_mha_dims_must_be_positive_ints(argument, value):
    kwargs = {"num_heads": 2, "key_dim": 3, argument: value}
    with pytest.raises(ValueError, match=f"invalid value for argument `{argument}`"):
        attention.MultiHeadAttention(**kwargs)


@pytest.mark.parametrize("window", [0, -1, 2.0])
def test_sliding_window_must_be_positive(window):
    with pytest.raises(ValueError, match="Received: sliding_window="):
        attention.MultiHeadAttention(2, 3, sliding_window=window)


@pytest.mark.parametrize("axes", ["1", 1.0, [1, "2"]])
def test_attention_axes_must_be_ints(axes):
    with pytest.raises(ValueError, match="`attention_axes` must be an int, list, or tuple"):
        attention.MultiHeadAttention(2, 3, attention_axes=axes)


@pytest.mark.parametrize("argument, spec, fragment", [
    ("kernel_initializer", "glorot_uniformm", "Unknown initializer: 'glorot_uniformm'"),
    ("bias_initializer", {"class_name": "Identity", "config": {}}, "Unknown initializer: 'Identity'"),
    ("kernel_initializer", {"class_name": "RandomNormal", "config": {"stdev": 1}},
     "Unknown config keys for initializer RandomNormal: \\['stdev'\\]"),
    ("kernel_initializer", None, "an initializer is required"),
    ("kernel_initializer", 3, "Could not interpret initializer identifier"),
    ("kernel_initializer", {"class_name": "GlorotUniform", "config": {"input_axes": [0]}},
     "input_axes/output_axes are not supported"),
    ("kernel_regularizer", "l3", "Unknown regularizer: 'l3'"),
    ("activity_regularizer", "orthogonal_regularizer", "Unknown regularizer"),
    ("bias_regularizer", {"class_name": "L2", "config": {"l2": "big"}}, "L2: l2 must be a number"),
    ("kernel_constraint", "max_norm2", "Unknown constraint: 'max_norm2'"),
    ("bias_constraint", {"class_name": "MaxNorm", "config": {"axis": [0, 1]}},
     "MaxNorm: axis must be one 32-bit integer"),
])
def test_unknown_or_malformed_specs(argument, spec, fragment):
    with pytest.raises(ValueError, match=fragment):
        attention.MultiHeadAttention(2, 3, **{argument: spec})


def test_set_weights_count_and_shapes():
    layer = _built_mha()
    weights = layer.get_weights()
    with pytest.raises(ValueError, match="expects 8 weights .* received 7"):
        layer.set_weights(weights[:-1])
    bad = list(weights)
    bad[2] = np.zeros((4, 2, 4))
    with pytest.raises(ValueError, match=r"'key/kernel' has shape \(4, 2, 3\), but set_weights received shape \(4, 2, 4\)"):
        layer.set_weights(bad)
    np.testing.assert_array_equal(layer.get_weights()[0], weights[0])  # nothing was set
    with pytest.raises(ValueError, match="expects 1 weights"):
        _built_attention(use_scale=True).set_weights([])
    with pytest.raises(ValueError, match="not built yet"):
        attention.Attention(use_scale=True).set_weights([np.float32(1)])
    with pytest.raises(TypeError, match="weight 'scale' must be a numeric array"):
        _built_attention(use_scale=True).set_weights([np.array("x")])


def test_shape_rank_over_max_rank():
    with pytest.raises(ValueError, match="exceeds the largest supported rank 8"):
        attention.MultiHeadAttention(2, 3).build((1,) * 9 + (4,), (1,) * 9 + (4,))


def test_dims_beyond_int64():
    with pytest.raises(ValueError, match="does not fit a 64-bit integer"):
        attention.Attention().build([(2**63, 3, 4), (1, 3, 4)])


# -- library errors through the Python API ----------------------------------------------------

SHAPE = r"\[ATT_ERR_SHAPE\]"
INVALID = r"\[ATT_ERR_INVALID_ARGUMENT\]"


@pytest.mark.parametrize("q, v", [
    (_x(2, 3), _x(2, 3)),
    (_x(2, 3, 4, 1), _x(2, 3, 4, 1)),
    (_x(4), _x(2, 3, 4)),
])
def test_attention_needs_rank_3(q, v):
    with pytest.raises(ValueError, match=SHAPE):
        attention.Attention()([q, v])


@pytest.mark.parametrize("kind", ["Attention", "AdditiveAttention"])
@pytest.mark.parametrize("shapes", [
    [(2, 0, 4), (2, 3, 4)],
    [(2, 3, 4), (0, 3, 4)],
    [(2, 3, 0), (2, 3, 0)],
])
def test_zero_dims(kind, shapes):
    q, v = (np.zeros(s, F32) for s in shapes)
    with pytest.raises(ValueError, match=SHAPE):
        getattr(attention, kind)()([q, v])


@pytest.mark.parametrize("shapes", [
    [(2, -1, 4), (2, 3, 4)],
    [(2, 3, -4), (2, 3, -4)],
    [(2, 3, 0), (2, 3, 0)],
])
def test_non_positive_dims_in_build(shapes):
    with pytest.raises(ValueError, match=SHAPE):
        attention.AdditiveAttention().build(shapes)


@pytest.mark.parametrize("score_mode", ["dot", "concat"])
def test_query_and_key_dims_differ(score_mode):
    layer = attention.Attention(score_mode=score_mode)
    with pytest.raises(ValueError, match=SHAPE):
        layer([_x(2, 3, 4), _x(2, 5, 4), _x(2, 5, 3)])
    with pytest.raises(ValueError, match=SHAPE):
        attention.Attention(score_mode=score_mode)([_x(2, 3, 4), _x(2, 5, 3)])


@pytest.mark.parametrize("kind", ["Attention", "AdditiveAttention"])
def test_key_and_value_lengths_differ(kind):
    with pytest.raises(ValueError, match=SHAPE):
        getattr(attention, kind)()([_x(2, 3, 4), _x(2, 5, 4), _x(2, 6, 4)])


@pytest.mark.parametrize("kind", ["Attention", "AdditiveAttention"])
def test_batch_sizes_differ(kind):
    with pytest.raises(ValueError, match=SHAPE):
        getattr(attention, kind)()([_x(2, 3, 4), _x(3, 5, 4)])
    with pytest.raises(ValueError, match=SHAPE):
        getattr(attention, kind)()([_x(2, 3, 4), _x(2, 5, 4), _x(1, 5, 4)])


@pytest.mark.parametrize("mask", [
    [np.ones((2, 4)), None],
    [np.ones((3, 3)), None],
    [np.ones((2, 3, 1)), None],
    [None, np.ones((2, 4))],
    [None, np.ones(5)],
    [None, np.ones((2, 5, 1))],
])
def test_attention_masks_that_do_not_fit(mask):
    with pytest.raises(ValueError, match=SHAPE):
        attention.Attention()([_x(2, 3, 4), _x(2, 5, 4)], mask=mask)


@pytest.mark.parametrize("kind", ["Attention", "AdditiveAttention"])
@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_dropout_outside_0_1(kind, rate):
    with pytest.raises(ValueError, match=INVALID):
        getattr(attention, kind)(dropout=rate)


@pytest.mark.parametrize("rate", [-0.5, 1.0])
def test_mha_dropout_outside_0_1(rate):
    with pytest.raises(ValueError, match=INVALID):
        attention.MultiHeadAttention(2, 3, dropout=rate)


def test_call_dims_differ_from_build_dims():
    scalar_weights = _built_attention(use_scale=True, score_mode="concat")
    scalar_weights([_x(7, 9, 5), _x(7, 2, 5)])  # as in Keras: scalar weights bind no dim
    additive = attention.AdditiveAttention()
    additive.build([(2, 3, 4), (2, 5, 4)])
    with pytest.raises(ValueError, match=SHAPE):
        additive([_x(2, 3, 6), _x(2, 5, 6)])
    mha = _built_mha()
    mha(_x(5, 7, 4), _x(5, 2, 4))
    for q, v in [(_x(2, 3, 5), _x(2, 5, 4)), (_x(2, 3, 4), _x(2, 5, 6)), (_x(2, 3, 3, 4), _x(2, 3, 5, 4))]:
        with pytest.raises(ValueError, match=SHAPE):
            mha(q, v)
    with pytest.raises(ValueError, match=SHAPE):
        mha(_x(2, 3, 4), _x(2, 5, 4), _x(2, 5, 7))


def test_size_products_that_overflow():
    with pytest.raises(ValueError, match=SHAPE):
        attention.MultiHeadAttention(2**31, 2**31).build((1, 2, 2**20), (1, 2, 2**20))
    with pytest.raises(ValueError, match=SHAPE):
        attention.MultiHeadAttention(4, 4, output_shape=(2**40, 2**40)).build((1, 2, 3), (1, 2, 3))
    layer = _built_attention()
    big = _lib.make_shape((2**40, 2**40, 4))
    value = _lib.make_shape((2**40, 2**40, 4))
    out = _lib.Shape()
    status = _lib.lib().att_layer_output_shape(layer._handle, ctypes.byref(big), ctypes.byref(value),
                                               None, ctypes.byref(out), None)
    with pytest.raises(ValueError, match=SHAPE):
        _lib.check(status)


def test_huge_weights_are_out_of_memory_not_a_crash():
    # 2**20 heads x 2**10 x 2**12 inputs: 2**42 floats per kernel (no overflow, no memory).
    with pytest.raises((MemoryError, ValueError), match=r"ATT_ERR_(OUT_OF_MEMORY|SHAPE)"):
        attention.MultiHeadAttention(2**20, 2**10).build((1, 2, 2**12), (1, 2, 2**12))


@pytest.mark.parametrize("kind", ["Attention", "AdditiveAttention", "MultiHeadAttention"])
def test_nan_inputs_propagate(kind):
    q, v = _x(2, 3, 4), _x(2, 5, 4)
    q[0, 1, 2] = np.nan
    if kind == "MultiHeadAttention":
        out = attention.MultiHeadAttention(2, 3)(q, v)
    else:
        out = getattr(attention, kind)()([q, v])
    assert np.isnan(out[0, 1]).all()
    assert np.isfinite(out[1]).all()


# -- MultiHeadAttention shapes and masks ------------------------------------------------------

@pytest.mark.parametrize("axes, rank", [
    ((3,), 4), ((-4,), 4),   # out of range
    ((0,), 4), ((-5,), 5),   # the batch axis
    ((2,), 3), ((-1,), 4),   # the feature axis
    ((1, 1), 4), ((2, -3), 5),  # repeated
    ((7,), 3),
])
def test_attention_axes_out_of_range(axes, rank):
    layer = attention.MultiHeadAttention(2, 3, attention_axes=axes)
    shape = (2,) + (3,) * (rank - 2) + (4,)
    with pytest.raises(ValueError, match=SHAPE):
        layer.build(shape, shape)


@pytest.mark.parametrize("output_shape", [(4, 0), (0, 2), (-3,), (2, -1)])
def test_output_shape_with_a_non_positive_dim(output_shape):
    with pytest.raises(ValueError, match=INVALID):
        attention.MultiHeadAttention(2, 3, output_shape=output_shape)


@pytest.mark.parametrize("q_shape, v_shape, k_shape", [
    ((2, 3, 4), (2, 5, 4), (2, 6, 4)),          # key length differs
    ((2, 3, 3, 4), (2, 3, 5, 4), (2, 3, 4, 4)),
    ((2, 3, 4), (2, 5, 4), (2, 5, 2, 4)),       # key rank differs
    ((2, 3, 4), (2, 5, 6, 4), None),            # value rank differs from query
])
def test_mha_value_and_key_shapes_must_agree(q_shape, v_shape, k_shape):
    with pytest.raises(ValueError, match=SHAPE):
        attention.MultiHeadAttention(2, 3).build(q_shape, v_shape, k_shape)


def test_mha_batch_or_other_axes_differ():
    with pytest.raises(ValueError, match=SHAPE):
        attention.MultiHeadAttention(2, 3)(_x(2, 3, 4), _x(3, 5, 4))
    with pytest.raises(ValueError, match=SHAPE):
        attention.MultiHeadAttention(2, 3, attention_axes=(2,))(_x(2, 3, 4, 4), _x(2, 2, 5, 4))


@pytest.mark.parametrize("argument, mask", [
    ("query_mask", np.ones((2, 4))),
    ("query_mask", np.ones((2, 3, 1))),
    ("value_mask", np.ones((2, 3))),
    ("key_mask", np.ones((1, 6))),
    ("attention_mask", np.ones((2, 4, 5))),
    ("attention_mask", np.ones((3, 3, 5))),
    ("attention_mask", np.ones((2, 3, 3, 5))),
    ("attention_mask", np.ones((1, 1, 2, 3, 5))),
    ("attention_mask", np.ones(4)),
])
def test_mha_masks_that_do_not_broadcast(argument, mask):
    layer = _built_mha()
    with pytest.raises(ValueError, match=SHAPE):
        layer(_x(2, 3, 4), _x(2, 5, 4), **{argument: mask})


def test_mha_wrong_weight_shapes():
    layer = _built_mha(use_bias=False, output_shape=(2, 2))
    weights = layer.get_weights()
    assert [w.shape for w in weights] == [(4, 2, 3), (4, 2, 3), (4, 2, 3), (2, 3, 2, 2)]
    with pytest.raises(ValueError, match=r"'attention_output/kernel' has shape \(2, 3, 2, 2\)"):
        layer.set_weights(weights[:3] + [np.zeros((2, 3, 4))])
    with pytest.raises(ValueError, match="expects 4 weights"):
        layer.set_weights(weights + [np.zeros((2, 2))])


# -- dot_product_attention --------------------------------------------------------------------

@pytest.mark.parametrize("q, k, v", [
    (_x(1, 3, 4, 2), _x(1, 5, 3, 2), _x(1, 5, 3, 2)),   # 3 kv heads do not divide 4
    (_x(1, 3, 4, 2), _x(1, 5, 2, 3), _x(1, 5, 2, 2)),   # head dims differ
    (_x(1, 3, 4, 2), _x(1, 5, 2, 2), _x(1, 6, 2, 2)),   # key and value lengths differ
    (_x(1, 3, 4, 2), _x(2, 5, 2, 2), _x(2, 5, 2, 2)),   # batch differs
    (_x(3, 4, 2), _x(5, 2, 2), _x(5, 2, 2)),            # rank 3
    (_x(1, 0, 4, 2), _x(1, 5, 2, 2), _x(1, 5, 2, 2)),   # zero dim
])
def test_dot_product_attention_shapes(q, k, v):
    with pytest.raises(ValueError, match=SHAPE):
        attention.dot_product_attention(q, k, v)


@pytest.mark.parametrize("argument, array", [
    ("bias", _x(2, 3, 5)), ("bias", _x(1, 1, 1, 1, 5)), ("bias", _x(4, 5)),
    ("mask", np.ones((3, 4))), ("mask", np.ones((3, 4, 3, 5))),
])
def test_dot_product_attention_bias_and_mask_must_broadcast(argument, array):
    with pytest.raises(ValueError, match=SHAPE):
        attention.dot_product_attention(_x(1, 3, 4, 2), _x(1, 5, 2, 2), _x(1, 5, 2, 2),
                                        **{argument: array})


# -- threads and handles ----------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, -3])
def test_set_num_threads_below_1(n):
    before = attention.get_num_threads()
    with pytest.raises(ValueError, match=INVALID):
        attention.set_num_threads(n)
    assert attention.get_num_threads() == before


def test_closed_layer_is_an_invalid_handle():
    layer = _built_attention()
    layer.close()
    layer.close()  # idempotent
    with pytest.raises(ValueError, match=r"\[ATT_ERR_INVALID_HANDLE\]"):
        layer([_x(2, 3, 4), _x(2, 5, 4)])
    with pytest.raises(ValueError, match=r"\[ATT_ERR_INVALID_HANDLE\]"):
        layer.get_weights()


# -- the C API directly: what Python never sends ----------------------------------------------

def _status(function, *args):
    return getattr(_lib.lib(), function)(*args)


def _expect(status, expected, exception=ValueError):
    assert status == expected, (status, _lib.lib().att_last_error())
    with pytest.raises(exception, match=_lib.lib().att_status_name(expected).decode()):
        _lib.check(status)
    assert _lib.lib().att_last_error() != b""


def _attention_config(**fields):
    return _lib.AttentionConfig(struct_size=ctypes.sizeof(_lib.AttentionConfig), **fields)


def test_c_create_null_and_struct_size():
    out = ctypes.c_void_p()
    _expect(_status("att_attention_create", None, ctypes.byref(out)), _lib.ERR_NULL_ARGUMENT)
    _expect(_status("att_attention_create", ctypes.byref(_attention_config()), None),
            _lib.ERR_NULL_ARGUMENT)
    for size in (0, 8, ctypes.sizeof(_lib.AttentionConfig) + 8):
        config = _attention_config()
        config.struct_size = size
        _expect(_status("att_attention_create", ctypes.byref(config), ctypes.byref(out)),
                _lib.ERR_STRUCT_SIZE)
    mha = _lib.MultiHeadAttentionConfig(struct_size=ctypes.sizeof(_lib.MultiHeadAttentionConfig) - 8,
                                        num_heads=1, key_dim=1)
    _expect(_status("att_multi_head_attention_create", ctypes.byref(mha), ctypes.byref(out)),
            _lib.ERR_STRUCT_SIZE)


@pytest.mark.parametrize("fields", [
    {"dtype": _lib.UINT8}, {"dtype": 9}, {"score_mode": 2}, {"score_mode": -1},
    {"dropout": -1e-9}, {"dropout": 1.0},
])
def test_c_attention_config_out_of_range(fields):
    out = ctypes.c_void_p()
    _expect(_status("att_attention_create", ctypes.byref(_attention_config(**fields)),
                    ctypes.byref(out)), _lib.ERR_INVALID_ARGUMENT)


@pytest.mark.parametrize("fields", [
    {"num_heads": 0}, {"num_heads": -1}, {"key_dim": 0}, {"value_dim": -2},
    {"sliding_window": -1}, {"output_rank": 9}, {"output_rank": -1},
    {"num_attention_axes": 9}, {"num_attention_axes": -1},
    {"kernel_initializer": _lib.Initializer(kind=14)},
    {"kernel_regularizer": _lib.Regularizer(kind=2, l2=-0.1)},
    {"bias_regularizer": _lib.Regularizer(kind=1, l1=float("nan"))},
    {"activity_regularizer": _lib.Regularizer(kind=7)},
    {"kernel_constraint": _lib.Constraint(kind=4, min_value=2.0, max_value=1.0, rate=1.0)},
    {"bias_constraint": _lib.Constraint(kind=4, min_value=0.0, max_value=1.0, rate=1.5)},
    {"bias_constraint": _lib.Constraint(kind=9)},
])
def test_c_mha_config_out_of_range(fields):
    config = _lib.MultiHeadAttentionConfig(
        struct_size=ctypes.sizeof(_lib.MultiHeadAttentionConfig),
        **{"num_heads": 2, "key_dim": 3, "use_bias": 1, **fields})
    out = ctypes.c_void_p()
    _expect(_status("att_multi_head_attention_create", ctypes.byref(config), ctypes.byref(out)),
            _lib.ERR_INVALID_ARGUMENT)


def test_c_handles():
    assert _status("att_layer_destroy", None) == _lib.OK
    built = ctypes.c_int32()
    _expect(_status("att_layer_is_built", None, ctypes.byref(built)), _lib.ERR_INVALID_HANDLE)
    foreign = ctypes.create_string_buffer(256)
    _expect(_status("att_layer_is_built", ctypes.addressof(foreign), ctypes.byref(built)),
            _lib.ERR_INVALID_HANDLE)
    _expect(_status("att_layer_destroy", ctypes.addressof(foreign)), _lib.ERR_INVALID_HANDLE)
    out = ctypes.c_void_p()
    assert _status("att_attention_create", ctypes.byref(_attention_config()), ctypes.byref(out)) == 0
    _expect(_status("att_layer_is_built", out, None), _lib.ERR_NULL_ARGUMENT)
    assert _status("att_layer_destroy", out) == _lib.OK
    _expect(_status("att_layer_destroy", out), _lib.ERR_INVALID_HANDLE)
    _expect(_status("att_layer_is_built", out, ctypes.byref(built)), _lib.ERR_INVALID_HANDLE)


def test_c_not_built_and_weight_index():
    layer = attention.Attention(use_scale=True)
    count = ctypes.c_size_t()
    _expect(_status("att_layer_weight_count", layer._handle, ctypes.byref(count)), _lib.ERR_NOT_BUILT)
    args = _call_args(_x(1, 2, 3), _x(1, 2, 3), np.zeros((1, 2, 3), F32))
    _expect(_status("att_layer_call", layer._handle, ctypes.byref(args)), _lib.ERR_NOT_BUILT)
    layer.build([(1, 2, 3), (1, 2, 3)])
    shape = _lib.Shape()
    _expect(_status("att_layer_weight_info", layer._handle, 1, ctypes.byref(shape), None),
            _lib.ERR_INVALID_ARGUMENT)
    weight = np.zeros((), np.float32)
    _expect(_status("att_layer_get_weight", layer._handle, 5, ctypes.byref(_lib.make_tensor(weight))),
            _lib.ERR_INVALID_ARGUMENT)
    _expect(_status("att_layer_set_weight", layer._handle, 0, None), _lib.ERR_NULL_ARGUMENT)
    _expect(_status("att_layer_set_weight", layer._handle, 0,
                    ctypes.byref(_lib.make_tensor(np.zeros((), np.float64)))),
            _lib.ERR_DTYPE, TypeError)
    _expect(_status("att_layer_set_weight", layer._handle, 0,
                    ctypes.byref(_lib.make_tensor(np.zeros((1,), np.float32)))), _lib.ERR_SHAPE)
    null_data = _lib.make_tensor(weight)
    null_data.data = None
    _expect(_status("att_layer_set_weight", layer._handle, 0, ctypes.byref(null_data)),
            _lib.ERR_NULL_ARGUMENT)


def _call_args(q, v, out, **extra):
    return _lib.CallArgs(struct_size=ctypes.sizeof(_lib.CallArgs), query=_lib.tensor_ref(q),
                         value=_lib.tensor_ref(v), output=_lib.tensor_ref(out), **extra)


def test_c_call_arguments():
    layer = _built_attention()
    q, v, out = _x(2, 3, 4), _x(2, 5, 4), np.zeros((2, 3, 4), F32)
    call = _lib.lib().att_layer_call
    assert call(layer._handle, ctypes.byref(_call_args(q, v, out))) == _lib.OK
    _expect(call(layer._handle, None), _lib.ERR_NULL_ARGUMENT)
    args = _call_args(q, v, out)
    args.struct_size = 16
    _expect(call(layer._handle, ctypes.byref(args)), _lib.ERR_STRUCT_SIZE)
    _expect(call(layer._handle, ctypes.byref(_call_args(q, v, None))), _lib.ERR_NULL_ARGUMENT)
    _expect(call(layer._handle, ctypes.byref(_call_args(None, v, out))), _lib.ERR_NULL_ARGUMENT)
    _expect(call(layer._handle, ctypes.byref(_call_args(q.astype(np.float64), v, out))),
            _lib.ERR_DTYPE, TypeError)
    _expect(call(layer._handle, ctypes.byref(_call_args(q, v, out.astype(np.float64)))),
            _lib.ERR_DTYPE, TypeError)
    _expect(call(layer._handle, ctypes.byref(_call_args(q, v, np.zeros((2, 3, 5), F32)))),
            _lib.ERR_SHAPE)
    _expect(call(layer._handle, ctypes.byref(_call_args(q, v, out, scores=_lib.tensor_ref(
        np.zeros((2, 3, 4), F32))))), _lib.ERR_SHAPE)
    float_mask = _call_args(q, v, out, value_mask=_lib.tensor_ref(np.ones((2, 5), F32)))
    _expect(call(layer._handle, ctypes.byref(float_mask)), _lib.ERR_DTYPE, TypeError)
    for field in ("key_mask", "attention_mask"):  # masks Attention does not take
        args = _call_args(q, v, out, **{field: _lib.tensor_ref(np.ones((2, 5), np.uint8))})
        _expect(call(layer._handle, ctypes.byref(args)), _lib.ERR_INVALID_ARGUMENT)
    null_query = _call_args(q, v, out)
    null_query.query.contents.data = None
    _expect(call(layer._handle, ctypes.byref(null_query)), _lib.ERR_NULL_ARGUMENT)


def test_c_dot_product_attention_arguments():
    q, k, out = _x(1, 3, 2, 4), _x(1, 5, 2, 4), np.zeros((1, 3, 2, 4), F32)
    dpa = _lib.lib().att_dot_product_attention

    def args(struct_size=ctypes.sizeof(_lib.DotProductAttentionArgs), **arrays):
        arrays = {"query": q, "key": k, "value": k, "output": out, **arrays}
        return _lib.DotProductAttentionArgs(
            struct_size=struct_size, **{n: _lib.tensor_ref(a) for n, a in arrays.items()})

    assert dpa(ctypes.byref(args())) == _lib.OK
    _expect(dpa(None), _lib.ERR_NULL_ARGUMENT)
    _expect(dpa(ctypes.byref(args(struct_size=8))), _lib.ERR_STRUCT_SIZE)
    _expect(dpa(ctypes.byref(args(key=None))), _lib.ERR_NULL_ARGUMENT)
    _expect(dpa(ctypes.byref(args(output=None))), _lib.ERR_NULL_ARGUMENT)
    _expect(dpa(ctypes.byref(args(value=k.astype(np.float64)))), _lib.ERR_DTYPE, TypeError)
    _expect(dpa(ctypes.byref(args(mask=np.ones((3, 5), F32)))), _lib.ERR_DTYPE, TypeError)
    _expect(dpa(ctypes.byref(args(bias=np.ones((3, 5), np.uint8)))), _lib.ERR_DTYPE, TypeError)
    _expect(dpa(ctypes.byref(args(output=np.zeros((1, 3, 2, 5), F32)))), _lib.ERR_SHAPE)
