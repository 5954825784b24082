"""Bad inputs: every one raises the documented exception with a message naming the problem
(library errors carry att_last_error() and the status name), and nothing crashes."""

import ctypes
import re

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


@pytest.mark.parametrize("dtype", ["int32", "float8", "mixed_float64", "complex64", 5])
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


@pytest.mark.parametrize("layer", [attention.MultiHeadAttention, attention.ReuseMultiHeadAttention])
def test_output_shape_leaves_room_for_the_output_kernel(layer):
    """The output kernel (num_heads, value_dim, *output_shape) has at most MAX_RANK dims."""
    assert layer(2, 3, output_shape=(1,) * 6).get_config()["output_shape"] == (1,) * 6
    with pytest.raises(ValueError, match="`output_shape` has 7 entries; at most 6 are supported"):
        layer(2, 3, output_shape=(1,) * 7)


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
    ("kernel_initializer", {"class_name": "Constant", "config": {"value": 10**400}},
     "Constant: value 1000.* is beyond the float64 range"),
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

def library_error(fragment, status, exception=ValueError):
    """pytest.raises for a library error whose message holds `fragment` and the status name."""
    return pytest.raises(exception, match=re.escape(fragment) + r".*\[ATT_ERR_" + status + r"\]")


@pytest.mark.parametrize("q, v, fragment", [
    (_x(3), _x(3), "needs inputs of rank >= 2 (batch axes..., time, dim); query has shape [3]"),
    (_x(4), _x(2, 3, 4), "needs inputs of rank >= 2 (batch axes..., time, dim); query has shape [4]"),
    (_x(2, 3, 4), _x(2, 1, 5, 4), "must have one rank"),
    (_x(2, 3, 3, 4), _x(2, 2, 5, 4), "the batch axes (all but the last two) differ"),
])
def test_attention_needs_one_rank_of_at_least_2(q, v, fragment):
    with library_error(fragment, "SHAPE"):
        attention.Attention()([q, v])


@pytest.mark.parametrize("kind", ["Attention", "AdditiveAttention"])
@pytest.mark.parametrize("shapes, fragment", [
    ([(2, 3, 0), (2, 3, 0)], "query has shape [2, 3, 0]; its last (feature) dim must be >= 1"),
    ([(2, 3, 4), (2, 3, 0), (2, 3, 4)], "value has shape [2, 3, 0]; its last (feature) dim must be >= 1"),
])
def test_zero_feature_dims(kind, shapes, fragment):
    with library_error(fragment, "SHAPE"):
        getattr(attention, kind)()([np.zeros(s, F32) for s in shapes])


@pytest.mark.parametrize("shapes, fragment", [
    ([(2, -1, 4), (2, 3, 4)], "query has dim -1 at axis 1"),
    ([(2, 3, -4), (2, 3, -4)], "query has dim -4 at axis 2"),
    ([(2, 3, 4), (2, 5, 0)], "value has shape [2, 5, 0]; its last (feature) dim must be >= 1"),
])
def test_negative_or_empty_feature_dims_in_build(shapes, fragment):
    with library_error(fragment, "SHAPE"):
        attention.AdditiveAttention().build(shapes)


@pytest.mark.parametrize("score_mode", ["dot", "concat"])
def test_query_and_key_dims_differ(score_mode):
    fragment = "query last dim 4 differs from key last dim 3"
    with library_error(fragment, "SHAPE"):
        attention.Attention(score_mode=score_mode)([_x(2, 3, 4), _x(2, 5, 4), _x(2, 5, 3)])
    with library_error(fragment, "SHAPE"):
        attention.Attention(score_mode=score_mode)([_x(2, 3, 4), _x(2, 5, 3)])


@pytest.mark.parametrize("kind", ["Attention", "AdditiveAttention"])
def test_key_and_value_lengths_differ(kind):
    with library_error("key length 6 differs from value length 5", "SHAPE"):
        getattr(attention, kind)()([_x(2, 3, 4), _x(2, 5, 4), _x(2, 6, 4)])


@pytest.mark.parametrize("kind", ["Attention", "AdditiveAttention"])
def test_batch_sizes_differ(kind):
    with library_error("the batch axes (all but the last two) differ: query [2, 3, 4], value [3, 5, 4]", "SHAPE"):
        getattr(attention, kind)()([_x(2, 3, 4), _x(3, 5, 4)])
    with library_error("the batch axes (all but the last two) differ: query [2, 3, 4], value [2, 5, 4], "
                       "key [1, 5, 4]", "SHAPE"):
        getattr(attention, kind)()([_x(2, 3, 4), _x(2, 5, 4), _x(1, 5, 4)])


@pytest.mark.parametrize("mask, fragment", [
    ([np.ones((2, 4)), None], "query_mask (a mask of the query's positions) of shape [2, 4] does not "
                              "broadcast to [2, 3]"),
    ([np.ones((3, 3)), None], "query_mask (a mask of the query's positions) of shape [3, 3] does not "
                              "broadcast to [2, 3]"),
    ([np.ones((2, 3, 1)), None], "query_mask (a mask of the query's positions) of shape [2, 3, 1] has "
                                 "more dims than [2, 3]"),
    ([None, np.ones((2, 4))], "value_mask (a padding mask of the value's positions) of shape [2, 4] does "
                              "not broadcast to [2, 5]"),
    ([None, np.ones(4)], "value_mask (a padding mask of the value's positions) of shape [4] does not "
                         "broadcast to [2, 5]"),
    ([None, np.ones((2, 5, 1))], "value_mask of shape [2, 5, 1] does not broadcast to [2, 3, 5], the "
                                 "scores' shape"),
    ([None, np.ones((1, 2, 3, 5))], "value_mask of shape [1, 2, 3, 5] does not broadcast to [2, 3, 5]"),
])
def test_attention_masks_that_do_not_fit(mask, fragment):
    with library_error(fragment, "SHAPE"):
        attention.Attention()([_x(2, 3, 4), _x(2, 5, 4)], mask=mask)


@pytest.mark.parametrize("kind", ["Attention", "AdditiveAttention", "MultiHeadAttention",
                                  "GroupQueryAttention", "ReuseMultiHeadAttention"])
@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_dropout_outside_0_1(kind, rate):
    args = {"MultiHeadAttention": (2, 3), "GroupQueryAttention": (2, 4, 2),
            "ReuseMultiHeadAttention": (2, 3)}.get(kind, ())
    with library_error(f"dropout must be in [0, 1); got {rate}", "INVALID_ARGUMENT"):
        getattr(attention, kind)(*args, dropout=rate)


def test_call_dims_differ_from_build_dims():
    scalar_weights = _built_attention(use_scale=True, score_mode="concat")
    scalar_weights([_x(7, 9, 5), _x(7, 2, 5)])  # as in Keras: scalar weights bind no dim
    additive = attention.AdditiveAttention()
    additive.build([(2, 3, 4), (2, 5, 4)])
    with library_error("built for dim 4 but the query's last dim is 6", "SHAPE"):
        additive([_x(2, 3, 6), _x(2, 5, 6)])
    unscaled = attention.AdditiveAttention(use_scale=False)
    unscaled.build([(2, 3, 4), (2, 5, 4)])
    assert unscaled([_x(2, 3, 6), _x(2, 5, 6)]).shape == (2, 3, 6)  # no weight binds the dim
    mha = _built_mha()
    mha(_x(5, 7, 4), _x(5, 2, 4))  # batch and lengths are free
    for args, fragment in [
        ((_x(2, 3, 5), _x(2, 5, 4)), "built for query last dim 4 but query has shape [2, 3, 5]"),
        ((_x(2, 3, 4), _x(2, 5, 6)), "built for value last dim 4 but value has shape [2, 5, 6]"),
        ((_x(2, 3, 4), _x(2, 5, 4), _x(2, 5, 7)), "built for key last dim 4 but key has shape"),
        ((_x(2, 3, 3, 4), _x(2, 3, 5, 4)), "built for rank-3 inputs but query has shape"),
    ]:
        with library_error(fragment, "SHAPE"):
            mha(*args)


def test_size_products_that_overflow():
    with library_error("[1048576, 2147483648, 2147483648] has more elements than fit in 64 bits",
                       "SHAPE"):
        attention.MultiHeadAttention(2**31, 2**31).build((1, 2, 2**20), (1, 2, 2**20))
    with library_error("[4, 4, 1099511627776, 1099511627776] has more elements", "SHAPE"):
        attention.MultiHeadAttention(4, 4, output_shape=(2**40, 2**40)).build((1, 2, 3), (1, 2, 3))
    layer = _built_attention()
    query = _lib.make_shape((2**40, 2**40, 4))
    out = _lib.Shape()
    status = _lib.lib().att_layer_output_shape(layer._handle, ctypes.byref(query),
                                               ctypes.byref(query), None, ctypes.byref(out), None)
    with library_error("", "SHAPE"):
        _lib.check(status)


def test_huge_weights_are_out_of_memory_not_a_crash():
    # 2**20 heads of 2**10 on 2**12 features: 2**42 floats per kernel (fits 64 bits, not RAM).
    with library_error("cannot allocate", "OUT_OF_MEMORY", MemoryError):
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
    assert np.isfinite(np.delete(out, 1, axis=1)).all()


# -- MultiHeadAttention shapes and masks ------------------------------------------------------

@pytest.mark.parametrize("axes, rank, fragment", [
    ((7,), 3, "must be in 1...1"), ((-6,), 4, "must be in 1...2"),      # out of range
    ((0,), 4, "the batch axis"), ((-5,), 5, "the batch axis"),
    ((2,), 3, "the feature axis"), ((3,), 4, "the feature axis"), ((-1,), 4, "the feature axis"),
    ((1, 1), 4, "repeats an axis"), ((2, -3), 5, "repeats an axis"),
])
def test_attention_axes_out_of_range(axes, rank, fragment):
    """att_layer_build gives INVALID_ARGUMENT for attention_axes that do not fit the rank."""
    layer = attention.MultiHeadAttention(2, 3, attention_axes=axes)
    shape = (2,) + (3,) * (rank - 2) + (4,)
    with library_error(fragment, "INVALID_ARGUMENT"):
        layer.build(shape, shape)


@pytest.mark.parametrize("output_shape", [(4, 0), (0, 2), (-3,), (2, -1)])
def test_output_shape_with_a_non_positive_dim(output_shape):
    with library_error(f"output_shape must be positive dims; got {list(output_shape)}",
                       "INVALID_ARGUMENT"):
        attention.MultiHeadAttention(2, 3, output_shape=output_shape)


@pytest.mark.parametrize("q_shape, v_shape, k_shape, fragment", [
    ((2, 3, 4), (2, 5, 4), (2, 6, 4), "except the last one, must be equal"),
    ((2, 3, 3, 4), (2, 3, 5, 4), (2, 3, 4, 4), "except the last one, must be equal"),
    ((2, 3, 4), (2, 5, 4), (2, 5, 2, 4), "except the last one, must be equal"),
    ((2, 3, 4), (2, 5, 6, 4), None, "query (rank 3) and value (rank 4) must have the same rank"),
])
def test_mha_value_and_key_shapes_must_agree(q_shape, v_shape, k_shape, fragment):
    with library_error(fragment, "SHAPE"):
        attention.MultiHeadAttention(2, 3).build(q_shape, v_shape, k_shape)


def test_mha_batch_or_other_axes_differ():
    with library_error("differ at axis 0, which is not an attention axis", "SHAPE"):
        attention.MultiHeadAttention(2, 3)(_x(2, 3, 4), _x(3, 5, 4))
    with library_error("differ at axis 1, which is not an attention axis", "SHAPE"):
        attention.MultiHeadAttention(2, 3, attention_axes=(2,))(_x(2, 3, 4, 4), _x(2, 2, 5, 4))


@pytest.mark.parametrize("argument, mask, fragment", [
    ("query_mask", np.ones((2, 4)), "query_mask of shape [2, 4] does not broadcast to [2, 2, 3, 5]"),
    ("query_mask", np.ones((2, 3, 1)), "query_mask of shape [2, 3, 1] does not broadcast to [2, 2, 3, 5]"),
    ("value_mask", np.ones((2, 3)), "value_mask of shape [2, 3] does not broadcast to [2, 2, 3, 5]"),
    ("key_mask", np.ones((1, 6)), "key_mask of shape [1, 6] does not broadcast to [2, 2, 3, 5]"),
    ("key_mask", np.ones(()), "key_mask is a scalar"),
    ("query_mask", np.ones((1, 1, 1, 2, 3)), "the combined mask has rank 6, more than the scores' rank 4"),
    ("attention_mask", np.ones((2, 4, 5)), "attention_mask has shape (2, 4, 5); pass (B, T, S) = (2, 3, 5)"),
    ("attention_mask", np.ones((3, 3, 5)), "pass (B, T, S) = (2, 3, 5), or a shape that broadcasts to it"),
    ("attention_mask", np.ones((2, 3, 3, 5)), "read against the scores (B, N, T, S) = (2, 2, 3, 5)"),
    ("attention_mask", np.ones((1, 1, 2, 3, 5)), "attention_mask has shape (1, 1, 2, 3, 5); pass (B, T, S)"),
    ("attention_mask", np.ones(4), "attention_mask has shape (4,); pass (B, T, S) = (2, 3, 5)"),
])
def test_mha_masks_that_do_not_broadcast(argument, mask, fragment):
    layer = _built_mha()
    with library_error(fragment, "SHAPE"):
        layer(_x(2, 3, 4), _x(2, 5, 4), **{argument: mask})


def test_mha_wrong_weight_shapes():
    layer = _built_mha(use_bias=False, output_shape=(2, 2))
    weights = layer.get_weights()
    assert [w.shape for w in weights] == [(4, 2, 3), (4, 2, 3), (4, 2, 3), (2, 3, 2, 2)]
    with pytest.raises(ValueError, match=r"'attention_output/kernel' has shape \(2, 3, 2, 2\)"):
        layer.set_weights(weights[:3] + [np.zeros((2, 3, 4))])
    with pytest.raises(ValueError, match="expects 4 weights"):
        layer.set_weights(weights + [np.zeros((2, 2))])


# -- GroupQueryAttention ----------------------------------------------------------------------

@pytest.mark.parametrize("num_query_heads, num_key_value_heads", [(4, 3), (6, 4), (1, 2), (3, 6)])
def test_gqa_key_value_heads_must_divide_query_heads(num_query_heads, num_key_value_heads):
    with pytest.raises(ValueError, match=re.escape(
            "`num_query_heads` must be divisible by `num_key_value_heads`.")):
        attention.GroupQueryAttention(2, num_query_heads, num_key_value_heads)


@pytest.mark.parametrize("argument", ["head_dim", "num_query_heads", "num_key_value_heads"])
@pytest.mark.parametrize("value", [0, -2, 1.5, True, None])
def test_gqa_dims_must_be_positive_ints(argument, value):
    kwargs = {"head_dim": 2, "num_query_heads": 4, "num_key_value_heads": 2, argument: value}
    with pytest.raises(ValueError, match=f"invalid value for argument `{argument}`"):
        attention.GroupQueryAttention(**kwargs)


@pytest.mark.parametrize("kind, kwargs, argument", [
    ("MultiHeadAttention", {"num_heads": 2**63, "key_dim": 3}, "num_heads"),
    ("GroupQueryAttention", {"head_dim": 2**64 + 2, "num_query_heads": 1,
                             "num_key_value_heads": 1}, "head_dim"),
    ("ReuseMultiHeadAttention", {"num_heads": 2, "key_dim": 3, "pe_max_seq_length": 2**64},
     "pe_max_seq_length"),
])
def test_dims_beyond_int64_are_not_wrapped(kind, kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}` must fit a 64-bit integer"):
        getattr(attention, kind)(**kwargs)


@pytest.mark.parametrize("window", [0, -1, 2.0, True, 2**63])
def test_gqa_sliding_window_must_be_positive(window):
    with pytest.raises(ValueError, match=re.escape(
            "`sliding_window` must be `None` or a positive integer")):
        attention.GroupQueryAttention(2, 4, 2, sliding_window=window)


@pytest.mark.parametrize("q_shape, v_shape, k_shape, name", [
    ((2, 3, 3, 4), (2, 3, 5, 4), None, "query"),
    ((2, 3), (2, 3), None, "query"),
    ((2, 3, 4), (2, 5, 1, 4), None, "value"),
    ((2, 3, 4), (2, 5, 4), (2, 5, 2, 4), "key"),
])
def test_gqa_needs_rank_3(q_shape, v_shape, k_shape, name):
    shape = {"query": q_shape, "value": v_shape, "key": k_shape}[name]
    with library_error(f"GroupQueryAttention needs rank-3 inputs (batch, time, features); "
                       f"{name} has shape {list(shape)}", "SHAPE"):
        attention.GroupQueryAttention(2, 4, 2).build(q_shape, v_shape, k_shape)


@pytest.mark.parametrize("argument, mask, fragment", [
    ("query_mask", np.ones((2, 4)), "query_mask of shape [2, 4] does not broadcast to [2, 4, 3, 5]"),
    ("value_mask", np.ones((2, 3)), "value_mask of shape [2, 3] does not broadcast to [2, 4, 3, 5]"),
    ("key_mask", np.ones((2, 5, 1)), "key_mask of shape [2, 5, 1] does not broadcast to [2, 4, 3, 5]"),
    ("attention_mask", np.ones((2, 4, 5)), "attention_mask has shape (2, 4, 5); pass (B, T, S) = (2, 3, 5)"),
    ("attention_mask", np.ones((3, 3, 5)), "the scores (B, N, T, S) = (2, 4, 3, 5)"),
    ("attention_mask", np.ones((1, 1, 2, 3, 5)), "attention_mask has shape (1, 1, 2, 3, 5); pass (B, T, S)"),
])
def test_gqa_masks_that_do_not_fit(argument, mask, fragment):
    layer = attention.GroupQueryAttention(2, 4, 2)
    with library_error(fragment, "SHAPE"):
        layer(_x(2, 3, 4), _x(2, 5, 4), **{argument: mask})


def test_gqa_call_dims_differ_from_build_dims():
    layer = attention.GroupQueryAttention(2, 4, 2)
    layer.build((2, 3, 4), (2, 5, 4), (2, 5, 3))
    layer(_x(7, 9, 4), _x(7, 2, 4), _x(7, 2, 3))  # batch and lengths are free
    with library_error("built for query last dim 4 but query has shape [2, 3, 6]", "SHAPE"):
        layer(_x(2, 3, 6), _x(2, 5, 6), _x(2, 5, 3))
    with library_error("built for key last dim 3 but key has shape [2, 5, 4]", "SHAPE"):
        layer(_x(2, 3, 4), _x(2, 5, 4))
    with library_error("query [2, 3, 4] and value [3, 5, 4] differ at axis 0", "SHAPE"):
        layer(_x(2, 3, 4), _x(3, 5, 4), _x(3, 5, 3))


def test_gqa_takes_no_reuse_scores_or_window_at_call():
    with pytest.raises(TypeError, match="unexpected keyword argument 'reuse_attention_scores'"):
        attention.GroupQueryAttention(2, 4, 2)(_x(2, 3, 4), _x(2, 5, 4),
                                               reuse_attention_scores=_x(2, 4, 3, 5))


# -- ReuseMultiHeadAttention ------------------------------------------------------------------

@pytest.mark.parametrize("reuse", [5, -2, 100, 1.5, "1", None])
def test_reuse_attention_out_of_range(reuse):
    with pytest.raises(ValueError, match=re.escape(
            f"reuse_attention should be between -1 and 4 (num_heads). Received: reuse_attention={reuse}")):
        attention.ReuseMultiHeadAttention(4, 2, reuse_attention=reuse)


@pytest.mark.parametrize("argument", ["num_heads", "key_dim", "value_dim", "pe_max_seq_length",
                                      "max_sequence_length"])
@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_reuse_dims_must_be_positive_ints(argument, value):
    kwargs = {"num_heads": 2, "key_dim": 3, argument: value}
    with pytest.raises(ValueError, match=f"invalid value for argument `{argument}`"):
        attention.ReuseMultiHeadAttention(**kwargs)


def test_reuse_max_sequence_length_conflicts_with_pe_max_seq_length():
    with pytest.raises(ValueError, match="`max_sequence_length` is another name for "
                                         "`pe_max_seq_length`; give one of them"):
        attention.ReuseMultiHeadAttention(2, 3, pe_max_seq_length=16, max_sequence_length=8)


@pytest.mark.parametrize("reuse", [1, 4, -1])
def test_reuse_scores_are_required_when_reusing(reuse):
    layer = attention.ReuseMultiHeadAttention(4, 2, reuse_attention=reuse)
    with pytest.raises(ValueError, match=re.escape(
            "reuse_attention_scores cannot be None when reuse_attention is True or > 0.")):
        layer(_x(2, 3, 4), _x(2, 5, 4))
    assert not layer.built  # checked before anything else, as upstream


@pytest.mark.parametrize("reuse, scores_shape", [
    (2, (2, 1, 3, 5)), (2, (2, 4, 3, 6)), (2, (1, 4, 3, 5)), (2, (2, 4, 3)),
    (-1, (2, 5, 3, 5)), (-1, (2, 4, 5, 3)), (4, (2, 4, 3, 5, 1)),
])
def test_reuse_scores_of_the_wrong_shape(reuse, scores_shape):
    layer = attention.ReuseMultiHeadAttention(4, 2, reuse_attention=reuse)
    with library_error(f"reuse_attention_scores has shape {list(scores_shape)} but "
                       "[2, 4, 3, 5] is required", "SHAPE"):
        layer(_x(2, 3, 4), _x(2, 5, 4), reuse_attention_scores=np.ones(scores_shape))


def test_reuse_scores_must_be_numeric():
    layer = attention.ReuseMultiHeadAttention(4, 2, reuse_attention=1)
    with pytest.raises(TypeError, match="reuse_attention_scores must be a numeric array"):
        layer(_x(2, 3, 4), _x(2, 5, 4), reuse_attention_scores=np.full((2, 4, 3, 5), "x"))


@pytest.mark.parametrize("argument", ["query_mask", "value_mask", "key_mask", "use_causal_mask"])
def test_reuse_takes_only_an_attention_mask(argument):
    """Upstream's call has attention_mask only; the C API refuses the other masks too."""
    layer = attention.ReuseMultiHeadAttention(2, 3)
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{argument}'"):
        layer(_x(2, 3, 4), _x(2, 5, 4), **{argument: np.ones((2, 3))})
    layer.build((2, 3, 4), (2, 5, 4))
    q, v, out = _x(2, 3, 4), _x(2, 5, 4), np.zeros((2, 3, 4), F32)
    field = {"use_causal_mask": 1}.get(argument) or _lib.tensor_ref(np.ones((2, 3), np.uint8))
    args = _call_args(q, v, out, **{argument: field})
    fragment = ("has no causal mask" if argument == "use_causal_mask"
                else f"takes no {argument}; pass an attention_mask")
    _expect(_lib.lib().att_layer_call(layer._handle, ctypes.byref(args)),
            _lib.ERR_INVALID_ARGUMENT, fragment)


@pytest.mark.parametrize("config, fragment", [
    ({"reuse_attention": 2, "attention_axes": (2,)},
     "partial reuse takes heads [:, :2] of the scores, which needs the heads at axis 1"),
    ({"use_relative_pe": True, "attention_axes": (2,)},
     "use_relative_pe needs attention over axis 1 only; attention_axes resolve to [2]"),
    ({"attention_axes": (3,)}, "attention_axes"),
])
def test_reuse_layouts_it_cannot_take(config, fragment):
    """Partial reuse slices heads on axis 1 and the position bias is (1, n, T, S): both need
    rank-3 inputs attending over axis 1 (the build or the call refuses other layouts)."""
    layer = attention.ReuseMultiHeadAttention(4, 2, **config)
    scores = np.ones((2, 3, 4, 4, 5)) if config.get("reuse_attention") else None
    with library_error(fragment, "INVALID_ARGUMENT"):
        layer(_x(2, 3, 4, 4), _x(2, 3, 5, 4), reuse_attention_scores=scores)


def test_reuse_attention_mask_that_does_not_broadcast():
    layer = attention.ReuseMultiHeadAttention(4, 2)
    with library_error("attention_mask has shape (2, 3, 4); pass (B, T, S) = (2, 3, 5)", "SHAPE"):
        layer(_x(2, 3, 4), _x(2, 5, 4), attention_mask=np.ones((2, 3, 4)))


def test_reuse_position_table_too_large():
    layer = attention.ReuseMultiHeadAttention(2, 3, use_relative_pe=True, pe_max_seq_length=2**62)
    with library_error("2 x pe_max_seq_length (2 x 4611686018427387904) overflows 64 bits", "SHAPE"):
        layer.build((1, 2, 3), (1, 2, 3))
    huge = attention.ReuseMultiHeadAttention(2, 3, use_relative_pe=True, pe_max_seq_length=2**40)
    with library_error("cannot allocate", "OUT_OF_MEMORY", MemoryError):
        huge.build((1, 2, 3), (1, 2, 3))
    # Without the table (no relative PE, or every head reused) the length is never used.
    for config in ({}, {"use_relative_pe": True, "reuse_attention": -1}):
        attention.ReuseMultiHeadAttention(2, 3, pe_max_seq_length=2**62, **config).build((1, 2, 3), (1, 2, 3))


# -- dot_product_attention --------------------------------------------------------------------

@pytest.mark.parametrize("q, k, v, fragment", [
    (_x(1, 3, 4, 2), _x(1, 5, 3, 2), _x(1, 5, 3, 2), "heads (3) must divide query heads (4)"),
    (_x(1, 3, 4, 2), _x(1, 5, 2, 3), _x(1, 5, 2, 2), "query dim 2 differs from key dim 3"),
    (_x(1, 3, 4, 2), _x(1, 5, 2, 2), _x(1, 6, 2, 2), "must agree in batch, length and heads"),
    (_x(1, 3, 4, 2), _x(2, 5, 2, 2), _x(2, 5, 2, 2), "batch sizes differ"),
    (_x(3, 4, 2), _x(5, 2, 2), _x(5, 2, 2), "needs 4-D (batch, time, heads, dim) tensors"),
    (_x(1, 3, 4, 2), _x(1, 5, 0, 2), _x(1, 5, 0, 2), "needs at least one key/value head"),
    (_x(1, 3, 4, 0), _x(1, 5, 2, 0), _x(1, 5, 2, 2), "feature dims >= 1"),
])
def test_dot_product_attention_shapes(q, k, v, fragment):
    with library_error(fragment, "SHAPE"):
        attention.dot_product_attention(q, k, v)


@pytest.mark.parametrize("argument, array, fragment", [
    ("bias", _x(2, 3, 5), "bias of shape [2, 3, 5] does not broadcast to [1, 4, 3, 5]"),
    ("bias", _x(1, 1, 1, 1, 5), "bias of shape [1, 1, 1, 1, 5] has more dims than"),
    ("bias", _x(4, 5), "bias of shape [4, 5] does not broadcast"),
    ("mask", np.ones((3, 4), bool), "mask of shape [3, 4] does not broadcast"),
    ("mask", np.ones((3, 4, 3, 5), bool), "mask of shape [3, 4, 3, 5] does not broadcast"),
])
def test_dot_product_attention_bias_and_mask_must_broadcast(argument, array, fragment):
    with library_error(fragment, "SHAPE"):
        attention.dot_product_attention(_x(1, 3, 4, 2), _x(1, 5, 2, 2), _x(1, 5, 2, 2),
                                        **{argument: array})


# -- threads and handles ----------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, -3])
def test_set_num_threads_below_1(n):
    before = attention.get_num_threads()
    with library_error(f"thread count must be >= 1; got {n}", "INVALID_ARGUMENT"):
        attention.set_num_threads(n)
    assert attention.get_num_threads() == before


def test_closed_layer_is_an_invalid_handle():
    layer = _built_attention()
    layer.close()
    layer.close()  # idempotent
    with library_error("handle", "INVALID_HANDLE"):
        layer([_x(2, 3, 4), _x(2, 5, 4)])
    with library_error("handle", "INVALID_HANDLE"):
        layer.get_weights()


# -- the C API directly: what Python never sends ----------------------------------------------

def _status(function, *args):
    return getattr(_lib.lib(), function)(*args)


def _expect(status, expected, fragment, exception=ValueError):
    """`status` is `expected`, att_last_error() holds `fragment`, and check() raises
    `exception` with it (less the C struct's `args->`) and the status name."""
    assert status == expected, (status, _lib.lib().att_last_error())
    assert fragment in _lib.lib().att_last_error().decode(), (fragment, _lib.lib().att_last_error())
    with library_error(fragment.replace("args->", ""), _lib.lib().att_status_name(expected).decode()[8:], exception):
        _lib.check(status)


def _attention_config(**fields):
    return _lib.AttentionConfig(struct_size=ctypes.sizeof(_lib.AttentionConfig), **fields)


def test_c_create_null_and_struct_size():
    out = ctypes.c_void_p()
    _expect(_status("att_attention_create", None, ctypes.byref(out)), _lib.ERR_NULL_ARGUMENT,
            "config is NULL")
    _expect(_status("att_attention_create", ctypes.byref(_attention_config()), None),
            _lib.ERR_NULL_ARGUMENT, "out is NULL")
    for size in (0, 8, ctypes.sizeof(_lib.AttentionConfig) + 8):
        config = _attention_config()
        config.struct_size = size
        _expect(_status("att_attention_create", ctypes.byref(config), ctypes.byref(out)),
                _lib.ERR_STRUCT_SIZE, f"att_attention_config.struct_size is {size}")
    size = ctypes.sizeof(_lib.MultiHeadAttentionConfig) - 8
    mha = _lib.MultiHeadAttentionConfig(struct_size=size, num_heads=1, key_dim=1)
    _expect(_status("att_multi_head_attention_create", ctypes.byref(mha), ctypes.byref(out)),
            _lib.ERR_STRUCT_SIZE, f"att_multi_head_attention_config.struct_size is {size}")


@pytest.mark.parametrize("fields, fragment", [
    ({"dtype": _lib.UINT8}, "dtype 3 is not ATT_FLOAT32 or ATT_FLOAT64"),
    ({"dtype": 9}, "dtype 9 is not"),
    ({"score_mode": 2}, "score_mode 2 is unknown"),
    ({"score_mode": -1}, "is unknown: expected ATT_SCORE_DOT or ATT_SCORE_CONCAT"),
    ({"dropout": -1e-9}, "dropout must be in [0, 1); got -1e-09"),
    ({"dropout": 1.0}, "dropout must be in [0, 1); got 1.0"),
])
def test_c_attention_config_out_of_range(fields, fragment):
    out = ctypes.c_void_p()
    _expect(_status("att_attention_create", ctypes.byref(_attention_config(**fields)),
                    ctypes.byref(out)), _lib.ERR_INVALID_ARGUMENT, fragment)


@pytest.mark.parametrize("fields, fragment", [
    ({"num_heads": 0}, "num_heads must be a positive integer; got 0"),
    ({"num_heads": -1}, "num_heads must be a positive integer; got -1"),
    ({"key_dim": 0}, "key_dim must be a positive integer; got 0"),
    ({"value_dim": -2}, "value_dim must be a positive integer or None; got -2"),
    ({"sliding_window": -1}, "sliding_window must be None or a positive integer; got -1"),
    ({"output_rank": 9}, "output_rank 9 is outside 0...6"),
    ({"output_rank": -1}, "output_rank -1 is outside 0...6"),
    ({"num_attention_axes": 9}, "num_attention_axes 9 is outside 0...8"),
    ({"num_attention_axes": -1}, "num_attention_axes -1 is outside 0...8"),
    ({"kernel_initializer": _lib.Initializer(kind=14)}, "kernel_initializer.kind 14 is not a known"),
    ({"kernel_regularizer": _lib.Regularizer(kind=2, l2=-0.1)}, "l2 must be a finite number >= 0"),
    ({"bias_regularizer": _lib.Regularizer(kind=1, l1=float("nan"))}, "got l1=nan"),
    ({"activity_regularizer": _lib.Regularizer(kind=7)}, "activity_regularizer.kind 7 is not a known"),
    ({"kernel_constraint": _lib.Constraint(kind=4, min_value=2.0, max_value=1.0, rate=1.0)},
     "min_value (2.0) must be <= max_value (1.0)"),
    ({"bias_constraint": _lib.Constraint(kind=4, min_value=0.0, max_value=1.0, rate=1.5)},
     "rate must be in [0, 1], got 1.5"),
    ({"bias_constraint": _lib.Constraint(kind=9)}, "bias_constraint.kind 9 is not a known"),
])
def test_c_mha_config_out_of_range(fields, fragment):
    config = _lib.MultiHeadAttentionConfig(
        struct_size=ctypes.sizeof(_lib.MultiHeadAttentionConfig),
        **{"num_heads": 2, "key_dim": 3, **fields})
    out = ctypes.c_void_p()
    _expect(_status("att_multi_head_attention_create", ctypes.byref(config), ctypes.byref(out)),
            _lib.ERR_INVALID_ARGUMENT, fragment)


_GQA_DEFAULTS = {"head_dim": 2, "num_query_heads": 4, "num_key_value_heads": 2}
_REUSE_DEFAULTS = {"num_heads": 4, "key_dim": 2}


@pytest.mark.parametrize("struct, create, fields, fragment", [
    (_lib.GroupQueryAttentionConfig, "att_group_query_attention_create",
     {"num_key_value_heads": 3}, "num_query_heads (4) must be divisible by num_key_value_heads (3)"),
    (_lib.GroupQueryAttentionConfig, "att_group_query_attention_create",
     {"num_key_value_heads": 0}, "must be positive integers"),
    (_lib.GroupQueryAttentionConfig, "att_group_query_attention_create",
     {"head_dim": 0}, "head_dim must be a positive integer; got 0"),
    (_lib.GroupQueryAttentionConfig, "att_group_query_attention_create",
     {"sliding_window": -2}, "sliding_window must be None or a positive integer; got -2"),
    (_lib.GroupQueryAttentionConfig, "att_group_query_attention_create",
     {"dtype": 9}, "dtype 9 is not ATT_FLOAT32 or ATT_FLOAT64"),
    (_lib.GroupQueryAttentionConfig, "att_group_query_attention_create",
     {"kernel_initializer": _lib.Initializer(kind=14)}, "kernel_initializer.kind 14 is not a known"),
    (_lib.ReuseMultiHeadAttentionConfig, "att_reuse_multi_head_attention_create",
     {"reuse_attention": 5}, "reuse_attention should be between -1 and 4 (num_heads); got 5"),
    (_lib.ReuseMultiHeadAttentionConfig, "att_reuse_multi_head_attention_create",
     {"reuse_attention": -2}, "reuse_attention should be between -1 and 4 (num_heads); got -2"),
    (_lib.ReuseMultiHeadAttentionConfig, "att_reuse_multi_head_attention_create",
     {"pe_max_seq_length": -1}, "pe_max_seq_length must be a positive integer; got -1"),
    (_lib.ReuseMultiHeadAttentionConfig, "att_reuse_multi_head_attention_create",
     {"num_heads": 0}, "num_heads must be a positive integer; got 0"),
    (_lib.ReuseMultiHeadAttentionConfig, "att_reuse_multi_head_attention_create",
     {"value_dim": -1}, "value_dim must be a positive integer or None; got -1"),
    (_lib.ReuseMultiHeadAttentionConfig, "att_reuse_multi_head_attention_create",
     {"output_rank": 9}, "output_rank 9 is outside 0...6"),
    (_lib.ReuseMultiHeadAttentionConfig, "att_reuse_multi_head_attention_create",
     {"bias_constraint": _lib.Constraint(kind=9)}, "bias_constraint.kind 9 is not a known"),
])
def test_c_gqa_and_reuse_config_out_of_range(struct, create, fields, fragment):
    defaults = _GQA_DEFAULTS if struct is _lib.GroupQueryAttentionConfig else _REUSE_DEFAULTS
    config = struct(struct_size=ctypes.sizeof(struct), **{**defaults, **fields})
    out = ctypes.c_void_p()
    _expect(_status(create, ctypes.byref(config), ctypes.byref(out)), _lib.ERR_INVALID_ARGUMENT,
            fragment)


@pytest.mark.parametrize("struct, create, c_name", [
    (_lib.GroupQueryAttentionConfig, "att_group_query_attention_create",
     "att_group_query_attention_config"),
    (_lib.ReuseMultiHeadAttentionConfig, "att_reuse_multi_head_attention_create",
     "att_reuse_multi_head_attention_config"),
])
def test_c_gqa_and_reuse_struct_size(struct, create, c_name):
    out = ctypes.c_void_p()
    for size in (0, 8, ctypes.sizeof(struct) - 8, ctypes.sizeof(struct) + 8):
        config = struct(struct_size=size)
        _expect(_status(create, ctypes.byref(config), ctypes.byref(out)), _lib.ERR_STRUCT_SIZE,
                f"{c_name}.struct_size is {size}")
    _expect(_status(create, None, ctypes.byref(out)), _lib.ERR_NULL_ARGUMENT, "config is NULL")


def test_c_reuse_scores_arguments():
    layer = attention.ReuseMultiHeadAttention(4, 2, reuse_attention=2)
    layer.build((2, 3, 4), (2, 5, 4))
    q, v, out = _x(2, 3, 4), _x(2, 5, 4), np.zeros((2, 3, 4), F32)
    call = _lib.lib().att_layer_call
    _expect(call(layer._handle, ctypes.byref(_call_args(q, v, out))), _lib.ERR_INVALID_ARGUMENT,
            "reuse_attention_scores cannot be None when reuse_attention is 2")
    wrong_dtype = _call_args(q, v, out, reuse_attention_scores=_lib.tensor_ref(
        np.zeros((2, 4, 3, 5), np.float64)))
    _expect(call(layer._handle, ctypes.byref(wrong_dtype)), _lib.ERR_DTYPE,
            "reuse_attention_scores is float64 but the computation is in float32", TypeError)
    gqa = attention.GroupQueryAttention(2, 4, 2)
    gqa.build((2, 3, 4), (2, 5, 4))
    scores = _call_args(q, v, out, reuse_attention_scores=_lib.tensor_ref(
        np.zeros((2, 4, 3, 5), F32)))
    _expect(call(gqa._handle, ctypes.byref(scores)), _lib.ERR_INVALID_ARGUMENT,
            "GroupQueryAttention takes no reuse_attention_scores")


def test_c_handles():
    assert _status("att_layer_destroy", None) == _lib.OK
    built = ctypes.c_int32()
    _expect(_status("att_layer_is_built", None, ctypes.byref(built)), _lib.ERR_INVALID_HANDLE,
            "layer handle is NULL")
    foreign = ctypes.create_string_buffer(256)
    dead = "is not a live layer (never created, or destroyed)"
    _expect(_status("att_layer_is_built", ctypes.addressof(foreign), ctypes.byref(built)),
            _lib.ERR_INVALID_HANDLE, dead)
    _expect(_status("att_layer_destroy", ctypes.addressof(foreign)), _lib.ERR_INVALID_HANDLE, dead)
    out = ctypes.c_void_p()
    assert _status("att_attention_create", ctypes.byref(_attention_config()), ctypes.byref(out)) == 0
    _expect(_status("att_layer_is_built", out, None), _lib.ERR_NULL_ARGUMENT, "built is NULL")
    assert _status("att_layer_destroy", out) == _lib.OK
    _expect(_status("att_layer_destroy", out), _lib.ERR_INVALID_HANDLE, dead)
    _expect(_status("att_layer_is_built", out, ctypes.byref(built)), _lib.ERR_INVALID_HANDLE, dead)


def _call_args(q, v, out, **extra):
    return _lib.CallArgs(struct_size=ctypes.sizeof(_lib.CallArgs), query=_lib.tensor_ref(q),
                         value=_lib.tensor_ref(v), output=_lib.tensor_ref(out), **extra)


def test_c_not_built_and_weight_index():
    layer = attention.Attention(use_scale=True)
    count = ctypes.c_size_t()
    _expect(_status("att_layer_weight_count", layer._handle, ctypes.byref(count)),
            _lib.ERR_NOT_BUILT, "not built")
    args = _call_args(_x(1, 2, 3), _x(1, 2, 3), np.zeros((1, 2, 3), F32))
    _expect(_status("att_layer_call", layer._handle, ctypes.byref(args)), _lib.ERR_NOT_BUILT,
            "not built")
    layer.build([(1, 2, 3), (1, 2, 3)])
    shape = _lib.Shape()
    _expect(_status("att_layer_weight_info", layer._handle, 1, ctypes.byref(shape), None),
            _lib.ERR_INVALID_ARGUMENT, "weight index 1 is out of range: the layer has 1 weights")
    weight = np.zeros((), np.float32)
    _expect(_status("att_layer_get_weight", layer._handle, 5, ctypes.byref(_lib.make_tensor(weight))),
            _lib.ERR_INVALID_ARGUMENT, "weight index 5 is out of range")
    set_weight = _lib.lib().att_layer_set_weight
    _expect(set_weight(layer._handle, 0, None), _lib.ERR_NULL_ARGUMENT, "value is NULL")
    _expect(set_weight(layer._handle, 0, ctypes.byref(_lib.make_tensor(np.zeros((), np.float64)))),
            _lib.ERR_DTYPE, "weight 0 (scale) is float32; the tensor is float64", TypeError)
    _expect(set_weight(layer._handle, 0, ctypes.byref(_lib.make_tensor(np.zeros((1,), F32)))),
            _lib.ERR_SHAPE, "weight 0 (scale) has shape []; the tensor has shape [1]")
    null_data = _lib.make_tensor(weight)
    null_data.data = None
    _expect(set_weight(layer._handle, 0, ctypes.byref(null_data)), _lib.ERR_NULL_ARGUMENT,
            "value->data is NULL")


def test_c_call_arguments():
    layer = _built_attention()
    q, v, out = _x(2, 3, 4), _x(2, 5, 4), np.zeros((2, 3, 4), F32)
    handle, call = layer._handle, _lib.lib().att_layer_call
    assert call(handle, ctypes.byref(_call_args(q, v, out))) == _lib.OK
    _expect(call(handle, None), _lib.ERR_NULL_ARGUMENT, "args is NULL")
    args = _call_args(q, v, out)
    args.struct_size = 16
    _expect(call(handle, ctypes.byref(args)), _lib.ERR_STRUCT_SIZE, "struct_size is 16")
    _expect(call(handle, ctypes.byref(_call_args(q, v, None))), _lib.ERR_NULL_ARGUMENT,
            "args->output is NULL")
    _expect(call(handle, ctypes.byref(_call_args(None, v, out))), _lib.ERR_NULL_ARGUMENT,
            "args->query is NULL")
    _expect(call(handle, ctypes.byref(_call_args(q.astype(np.float64), v, out))), _lib.ERR_DTYPE,
            "query is float64 but the computation is in float32", TypeError)
    _expect(call(handle, ctypes.byref(_call_args(q, v, out.astype(np.float64)))), _lib.ERR_DTYPE,
            "output is float64", TypeError)
    _expect(call(handle, ctypes.byref(_call_args(q, v, np.zeros((2, 3, 5), F32)))), _lib.ERR_SHAPE,
            "output has shape [2, 3, 5] but [2, 3, 4] is required")
    wrong_scores = _call_args(q, v, out, scores=_lib.tensor_ref(np.zeros((2, 3, 4), F32)))
    _expect(call(handle, ctypes.byref(wrong_scores)), _lib.ERR_SHAPE,
            "scores has shape [2, 3, 4] but [2, 3, 5] is required")
    float_mask = _call_args(q, v, out, value_mask=_lib.tensor_ref(np.ones((2, 5), F32)))
    _expect(call(handle, ctypes.byref(float_mask)), _lib.ERR_DTYPE, "value_mask is float32",
            TypeError)
    for field in ("key_mask", "attention_mask"):  # masks Attention does not take
        args = _call_args(q, v, out, **{field: _lib.tensor_ref(np.ones((2, 5), np.uint8))})
        _expect(call(handle, ctypes.byref(args)), _lib.ERR_INVALID_ARGUMENT,
                f"Attention takes no {field}")
    null_query = _call_args(q, v, out)
    null_query.query.contents.data = None
    _expect(call(handle, ctypes.byref(null_query)), _lib.ERR_NULL_ARGUMENT,
            "args->query->data is NULL")


def test_c_dot_product_attention_arguments():
    q, k, out = _x(1, 3, 2, 4), _x(1, 5, 2, 4), np.zeros((1, 3, 2, 4), F32)
    dpa = _lib.lib().att_dot_product_attention

    def args(struct_size=ctypes.sizeof(_lib.DotProductAttentionArgs), **arrays):
        arrays = {"query": q, "key": k, "value": k, "output": out, **arrays}
        return ctypes.byref(_lib.DotProductAttentionArgs(
            struct_size=struct_size, **{n: _lib.tensor_ref(a) for n, a in arrays.items()}))

    assert dpa(args()) == _lib.OK
    _expect(dpa(None), _lib.ERR_NULL_ARGUMENT, "args is NULL")
    _expect(dpa(args(struct_size=8)), _lib.ERR_STRUCT_SIZE, "struct_size is 8")
    _expect(dpa(args(key=None)), _lib.ERR_NULL_ARGUMENT, "args->key is NULL")
    _expect(dpa(args(output=None)), _lib.ERR_NULL_ARGUMENT, "args->output is NULL")
    _expect(dpa(args(value=k.astype(np.float64))), _lib.ERR_DTYPE, "value is float64", TypeError)
    _expect(dpa(args(mask=np.ones((3, 5), F32))), _lib.ERR_DTYPE, "mask is float32", TypeError)
    _expect(dpa(args(bias=np.ones((3, 5), np.uint8))), _lib.ERR_DTYPE, "bias is uint8", TypeError)
    _expect(dpa(args(output=np.zeros((1, 3, 2, 5), F32))), _lib.ERR_SHAPE,
            "output has shape [1, 3, 2, 5] but [1, 3, 2, 4] is required")


@pytest.mark.parametrize("missing", ["query", "key", "value"])
def test_dot_product_attention_none_operand(missing):
    operands = {name: np.ones((1, 3, 1, 4), np.float32) for name in ("query", "key", "value")}
    operands[missing] = None
    with pytest.raises(TypeError, match=f"{missing} must be a numeric array, got None"):
        attention.dot_product_attention(**operands)
