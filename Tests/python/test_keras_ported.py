"""Keras 3.15's own attention tests, ported to this package (a checklist).

From keras/src/layers/attention/{attention,additive_attention,multi_head_attention,
grouped_query_attention}_test.py and the dot_product_attention tests of keras/src/ops/nn_test.py:
the ones that check numbers, shapes, masks and errors. Not ported: tests of private methods
(_calculate_scores, _calculate_score_mask, _compute_attention), of symbolic tensors / Keras masks
carried on tensors / models, LoRA, quantization and dtype policy maps. Error messages may differ
in wording, not in type.
"""

import math
from itertools import combinations, product

import numpy as np
import pytest

import attention as layers  # read as Keras's `layers`
from attention import dot_product_attention, reference

try:
    import ml_dtypes
except ImportError:
    ml_dtypes = None


def assert_all_close(a, b, atol=1e-6, rtol=1e-6):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=atol, rtol=rtol)


def _fake_initializer(class_name, **config):
    """A Keras initializer object seen by duck typing (class name + get_config())."""
    return type(class_name, (), {"get_config": lambda self: dict(config)})()


# -- attention_test.py -------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, weights", [({"score_mode": "dot", "dropout": 0.5}, 0),
                                             ({"use_scale": True, "score_mode": "concat", "dropout": 0.5}, 2)])
def test_attention_basics(kwargs, weights):
    layer = layers.Attention(**kwargs)
    q, v = np.random.random((2, 3, 4)), np.random.random((2, 4, 4))
    assert layer([q, v]).shape == (2, 3, 4)
    assert layer([q, v], training=True).shape == (2, 3, 4)
    assert len(layer.trainable_weights) == weights and layer.non_trainable_weights == []
    assert layer.losses == []


def test_attention_seed_preserved_in_config():
    config = layers.Attention(dropout=0.5, seed=1337).get_config()
    assert config["seed"] == 1337
    assert layers.Attention.from_config(config).seed == 1337


_Q = np.array([[[1.0, 0.0], [0.0, 1.0]]])
_K = np.array([[[0.0, 1.0], [1.0, 0.0]]])
_V = np.array([[[1.0, 2.0], [3.0, 4.0]]])


def test_attention_correctness():
    output, scores = layers.Attention(score_mode="dot")([_Q, _V, _K], return_attention_scores=True)
    assert_all_close(output, [[[2.462, 3.462], [1.538, 2.538]]], atol=1e-3)
    assert_all_close(scores, [[[0.269, 0.731], [0.731, 0.269]]], atol=1e-3)
    output, scores = layers.Attention(score_mode="concat")([_Q, _V, _K], return_attention_scores=True)
    assert_all_close(output, [[[1.727, 2.727], [2.272, 3.272]]], atol=1e-3)
    assert_all_close(scores, [[[0.636, 0.363], [0.363, 0.636]]], atol=1e-3)


@pytest.mark.parametrize("kind", [layers.Attention, lambda: layers.AdditiveAttention(use_scale=False)])
def test_attention_with_mask(kind):
    query = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    value = np.array([[[1.0, 1.0], [1.0, 1.0]]])
    output, scores = kind()([query, value], mask=[np.array([[True, False]]), np.array([[True, False]])],
                            return_attention_scores=True)
    assert_all_close(output, [[[1.0, 1.0], [0.0, 0.0]]])
    assert_all_close(scores, [[[1.0, 0.0], [1.0, 0.0]]])


def test_attention_2D_mask_shape_mismatch():
    query = np.random.random((2, 3, 5)).astype(np.float32)
    value = np.random.random((2, 4, 5)).astype(np.float32)
    query_mask = np.array([[True, False, True], [True, False, True]])
    value_mask = np.array([[True, False, True, True], [True, False, True, True]])
    output, scores = layers.Attention()([query, value], mask=[query_mask, value_mask],
                                        return_attention_scores=True)
    assert output.shape == (2, 3, 5) and scores.shape == (2, 3, 4)


@pytest.mark.parametrize("kind", [layers.Attention, layers.AdditiveAttention])
def test_attention_errors(kind):
    layer, tensor = kind(), np.array([[[1.0, 1.0], [1.0, 1.0]]])
    with pytest.raises(ValueError, match="must be called on a list"):
        layer(tensor)
    with pytest.raises(ValueError, match="length 2 or 3"):
        layer([tensor, tensor, tensor, tensor])
    with pytest.raises(ValueError, match="layer mask must be a list"):
        layer([tensor, tensor], mask=tensor)
    with pytest.raises(ValueError, match="length 2 or 3"):
        layer([tensor, tensor], mask=[tensor])


def test_attention_with_dropout():
    query = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    value = np.array([[[1.0, 1.0], [1.0, 1.0]]])
    # Keras draws its seed at random; a fixed one keeps this from passing by luck.
    output1, scores1 = layers.Attention(dropout=0.2, seed=3)([query, value], return_attention_scores=True,
                                                             training=True)
    output2, scores2 = layers.Attention()([query, value], return_attention_scores=True, training=True)
    assert not np.allclose(output1, output2) and not np.allclose(scores1, scores2)


def test_attention_invalid_score_mode():
    with pytest.raises(ValueError, match="Invalid value for argument score_mode. Expected one of "
                                         "{'dot', 'concat'}"):
        layers.Attention(score_mode="invalid_mode")


_DUMMY = [np.random.random((2, 3, 4)), np.random.random((2, 4, 4))]


@pytest.mark.parametrize("mask, expected", [
    (None, None),                                                       # with_no_mask
    ([None, np.array([True, False, True])], None),                      # with_first_element_none
    ([np.array([True, False, True]), np.array([False, True, False])], [True, False, True]),
    ([np.array([True] * 3), np.array([True] * 3)], [True] * 3),         # all_true_mask
    ([np.array([False] * 3), np.array([False] * 3)], [False] * 3),      # all_false_mask
    ([np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])], [1.0, 0.0, 1.0]),  # tolerance tests
    ([np.array([True]), np.array([False])], [True]),                    # single_element_masks
    ([np.array([1, 0, 1]), np.array([0, 1, 0])], [1, 0, 1]),            # non_boolean_masks
])
def test_attention_compute_mask(mask, expected):
    computed = layers.Attention().compute_mask(inputs=_DUMMY, mask=mask)
    if expected is None:
        assert computed is None
    else:
        np.testing.assert_array_equal(computed, expected)
        assert computed.shape == np.shape(expected)


def test_attention_compute_mask_with_different_input_shapes():
    valid_mask = np.array([True, False, True])
    for shape in [(2, 3, 4), (3, 2, 5), (4, 1, 6)]:
        computed = layers.Attention().compute_mask([np.ones(shape), np.ones(shape)],
                                                   [valid_mask, np.array([False, True, False])])
        np.testing.assert_array_equal(computed, valid_mask)


def test_attention_compute_output_shape():
    query, value, key = np.random.random((2, 3, 4)), np.random.random((2, 3, 5)), np.random.random((2, 3, 4))
    layer = layers.Attention()
    output = layer([query, value, key])
    assert output.shape == value.shape
    assert layer.compute_output_shape(input_shape=[query.shape, value.shape, key.shape]) == output.shape
    assert layer.compute_output_shape([(None, 3, 5), (None, 4, 5)]) == (None, 3, 5)


def test_attention_nd_inputs():
    layer = layers.Attention()
    query = np.random.random((2, 8, 6, 4)).astype(np.float32)
    value = np.random.random((2, 8, 6, 4)).astype(np.float32)
    assert layer([query, value]).shape == (2, 8, 6, 4)
    output, scores = layer([query, value], return_attention_scores=True)
    assert output.shape == (2, 8, 6, 4) and scores.shape == (2, 8, 6, 6)


def test_return_attention_scores_true_tuple_then_unpack():
    query = np.random.random((2, 8, 16)).astype(np.float32)
    value = np.random.random((2, 4, 16)).astype(np.float32)
    outputs = layers.Attention()([query, value], return_attention_scores=True)
    assert isinstance(outputs, tuple)
    output, attention_scores = outputs
    assert output.shape == (2, 8, 16) and attention_scores.shape == (2, 8, 4)


# -- additive_attention_test.py ----------------------------------------------------------------

@pytest.mark.parametrize("use_scale, weights", [(True, 1), (False, 0)])
def test_additive_attention_basics(use_scale, weights):
    layer = layers.AdditiveAttention(use_scale=use_scale, dropout=0.5)
    q, v = np.random.random((2, 3, 4)), np.random.random((2, 4, 4))
    assert layer([q, v], training=True).shape == (2, 3, 4)
    assert len(layer.trainable_weights) == weights and layer.losses == []


def test_additive_attention_correctness():
    output, scores = layers.AdditiveAttention(use_scale=False)([_Q, _V, _K], return_attention_scores=True)
    assert_all_close(output, [[[1.727, 2.727], [2.272, 3.272]]], atol=1e-3)
    assert_all_close(scores, [[[0.636, 0.363], [0.363, 0.636]]], atol=1e-3)


# -- multi_head_attention_test.py and grouped_query_attention_test.py --------------------------

def _mha(**kwargs):
    return layers.MultiHeadAttention(num_heads=2, key_dim=2, **kwargs)


def _gqa(**kwargs):
    return layers.GroupedQueryAttention(num_query_heads=2, num_key_value_heads=2, head_dim=2, **kwargs)


@pytest.mark.parametrize("make", [_mha, _gqa])
@pytest.mark.parametrize("kwargs, weights", [
    ({}, 8),
    ({"use_bias": False, "dropout": 0.5, "value_dim": 4}, 4),
    ({"use_gate": True}, 10),
    ({"use_bias": False, "dropout": 0.5, "use_gate": True, "value_dim": 4}, 5),
])
def test_basics(make, kwargs, weights):
    if make is _gqa:
        kwargs = {k: v for k, v in kwargs.items() if k != "value_dim"}
    layer = make(**kwargs)
    query, value = np.random.random((2, 8, 16)), np.random.random((2, 4, 16))
    assert layer(query, value, training=True).shape == (2, 8, 16)
    assert len(layer.trainable_weights) == weights and layer.non_trainable_weights == []
    assert layer.losses == []


@pytest.mark.parametrize("q_dims, v_dims, mask_dims, attention_axes", [
    ((3, 4), (3, 2), (4, 2), (2,)),
    ((3, 4), (3, 2), (3, 4, 2), (2,)),
    ((3, 4), (3, 2), (3, 2, 4, 2), (2,)),
    ((3, 4), (3, 2), (3, 4, 3, 2), (1, 2)),
    ((5, 3, 4), (5, 3, 2), (3, 4, 3, 2), (2, 3)),
    ((5, 3, 4), (5, 3, 2), (5, 3, 4, 3, 2), (2, 3)),
])
@pytest.mark.parametrize("use_gate, weights", [(False, 8), (True, 10)])
def test_high_dim_attention(q_dims, v_dims, mask_dims, attention_axes, use_gate, weights):
    query_shape, value_shape = (3, *q_dims, 8), (3, *v_dims, 8)
    layer = _mha(attention_axes=attention_axes, use_gate=use_gate)
    output = layer(np.random.random(query_shape), np.random.random(value_shape))
    assert output.shape == query_shape and len(layer.weights) == weights


@pytest.mark.parametrize("use_gate", [False, True])
def test_attention_axes_negative_indexing(use_gate):
    x = np.random.normal(size=(2, 3, 8, 4))
    pos = layers.MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=2, use_gate=use_gate)
    neg = layers.MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=-2, use_gate=use_gate)
    pos(x, x)
    neg(x, x)
    neg.set_weights(pos.get_weights())
    z_pos, a_pos = pos(x, x, return_attention_scores=True)
    z_neg, a_neg = neg(x, x, return_attention_scores=True)
    assert z_pos.shape == z_neg.shape and a_pos.shape == a_neg.shape
    assert_all_close(z_pos, z_neg, atol=1e-5, rtol=1e-5)
    assert_all_close(a_pos, a_neg, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("query_dims, value_dims, key_dims, output_shape", [
    ((4, 8), (2, 8), None, None),
    ((4, 8), (2, 8), (2, 3), None),
    ((4, 8), (2, 8), None, (3, 4)),
    ((4, 8), (2, 8), (2, 3), (1, 5)),
    ((4, 2, 3, 8), (1, 1, 5, 8), (1, 1, 5, 2), None),
    ((4, 2, 3, 8), (1, 1, 5, 8), (1, 1, 5, 2), (3, 2)),
    ((4, 2, 3, 8), (4, 2, 3, 7), (4, 2, 3, 8), None),
])
def test_compute_output_shape(query_dims, value_dims, key_dims, output_shape):
    layer = layers.MultiHeadAttention(num_heads=2, key_dim=2, value_dim=2, output_shape=output_shape)
    query_shape, value_shape = (7, *query_dims), (7, *value_dims)
    key_shape = (7, *key_dims) if key_dims else None
    output = layer(query=np.ones(query_shape), value=np.ones(value_shape),
                   key=np.ones(key_shape) if key_shape else None)
    assert layer.compute_output_shape(query_shape, value_shape, key_shape) == output.shape
    assert layer.compute_output_shape(list(query_shape), list(value_shape),
                                      list(key_shape) if key_shape else None) == output.shape


@pytest.mark.parametrize("query_shape, value_shape, key_shape", [
    ((2, 4, 8), (2, 2, 7), (2,)),
    ((2, 4, 8), (2, 2, 8), (2, 1, 7)),
    ((2, 4, 2, 3, 8), (2, 1, 1, 5, 8), (2, 1, 15, 5, 2)),
])
def test_shape_mismatch_error(query_shape, value_shape, key_shape):
    layer = layers.MultiHeadAttention(num_heads=4, key_dim=2, value_dim=2)
    with pytest.raises(ValueError, match="must be equal"):
        layer.compute_output_shape(query_shape, value_shape, key_shape)
    with pytest.raises(ValueError):
        layer(np.ones(query_shape), np.ones(value_shape), np.ones(key_shape))


def test_invalid_scalar_args_rejected():
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="argument `num_heads`"):
            layers.MultiHeadAttention(num_heads=bad, key_dim=4)
        with pytest.raises(ValueError, match="argument `key_dim`"):
            layers.MultiHeadAttention(num_heads=4, key_dim=bad)
        with pytest.raises(ValueError, match="argument `value_dim`"):
            layers.MultiHeadAttention(num_heads=4, key_dim=4, value_dim=bad)
    layers.MultiHeadAttention(num_heads=4, key_dim=4, value_dim=None)


@pytest.mark.parametrize("make", [
    lambda init: layers.MultiHeadAttention(num_heads=12, key_dim=64, use_gate=True, kernel_initializer=init),
    lambda init: layers.GroupedQueryAttention(num_query_heads=16, num_key_value_heads=16, head_dim=64,
                                              use_gate=True, kernel_initializer=init),
])
def test_initializer(make):
    layer = make(_fake_initializer("TruncatedNormal", seed=None, mean=0.0, stddev=0.02))
    layer.build((2, 4, 8), (2, 4, 8))
    kernels = dict(zip(layer.weight_names, layer.get_weights()))
    query = kernels["query/kernel"]
    for other in ("key/kernel", "value/kernel", "attention_output/kernel", "gate/kernel"):
        assert query.shape != kernels[other].shape or not np.allclose(query, kernels[other])
    assert abs(float(np.std(query)) - 0.02 * 0.88) < 0.003  # truncated at 2 stddev


_QUERY_TOKENS = np.array([[1, 2, 3, 0, 0], [3, 3, 1, 1, 2], [1, 0, 0, 0, 0]])
_VALUE_TOKENS = np.array([[5, 4, 0], [3, 0, 0], [2, 1, 1]])


@pytest.mark.parametrize("make", [_mha, _gqa, lambda: _gqa(use_gate=True)])
@pytest.mark.parametrize("use_causal_mask", [True, False])
def test_masking(make, use_causal_mask):
    """Keras's Embedding(mask_zero=True) masks, given here as query_mask and value_mask."""
    layer = make()
    rng = np.random.default_rng(0)
    masked_query = rng.normal(size=(4, 8))[_QUERY_TOKENS]
    masked_value = rng.normal(size=(6, 8))[_VALUE_TOKENS]
    output = layer(query=masked_query, value=masked_value, query_mask=_QUERY_TOKENS != 0,
                   value_mask=_VALUE_TOKENS != 0, use_causal_mask=use_causal_mask)
    mask = np.array([[[1, 1, 0]] * 3 + [[0, 0, 0]] * 2] + [[[1, 0, 0]] * 5]
                    + [[[1, 1, 1]] + [[0, 0, 0]] * 4]).astype(bool)
    if use_causal_mask:
        mask = mask & np.array([[[1, 0, 0], [1, 1, 0]] + [[1, 1, 1]] * 3]).astype(bool)
    output_with_manual_mask = layer(query=masked_query, value=masked_value, attention_mask=mask)
    assert_all_close(output, output_with_manual_mask)


def test_masking_with_different_shapes():
    x = np.random.uniform(size=(2, 5, 8)).astype(np.float32)
    mask = np.tril(np.ones((5, 5)))
    layer = layers.MultiHeadAttention(num_heads=2, key_dim=4)
    output_1 = layer(query=x, value=x, attention_mask=mask)
    mask = np.tile(mask[None, ...], (2, 1, 1))
    output_2 = layer(query=x, value=x, attention_mask=mask)
    mask = np.tile(mask[:, None, ...], (1, 2, 1, 1))
    output_3 = layer(query=x, value=x, attention_mask=mask)
    assert_all_close(output_1, output_2)
    assert_all_close(output_1, output_3)


@pytest.mark.parametrize("make", [
    lambda: layers.MultiHeadAttention(num_heads=2, key_dim=4, sliding_window=3),
    lambda: layers.GroupedQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2,
                                         sliding_window=3),
])
@pytest.mark.parametrize("causal", [True, False])
def test_sliding_window(make, causal):
    x = np.random.RandomState(0).randn(1, 6, 8).astype("float32")
    _, scores = make()(x, x, use_causal_mask=causal, return_attention_scores=True)
    scores = scores[0, 0]
    for i, j in product(range(6), range(6)):
        if (j <= i or not causal) and abs(i - j) < 3:
            assert scores[i, j] > 0.0
        else:
            assert scores[i, j] == 0.0


def _causal_layers(dropout=0.0):
    return [layers.MultiHeadAttention(num_heads=2, key_dim=4, dropout=dropout),
            layers.GroupedQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2,
                                         dropout=dropout)]


@pytest.mark.parametrize("index", [0, 1])
def test_causal_only_fast_path(index):
    layer = _causal_layers()[index]
    x = np.random.RandomState(0).randn(2, 5, 16).astype("float32")
    layer(x, x, use_causal_mask=True)
    fast = layer(x, x, use_causal_mask=True)
    slow = layer(x, x, attention_mask=np.tril(np.ones((1, 5, 5), dtype="bool")))
    assert_all_close(fast, slow, atol=1e-5)


@pytest.mark.parametrize("index", [0, 1])
def test_causal_only_with_other_mask_falls_back(index):
    layer = _causal_layers()[index]
    x = np.random.RandomState(0).randn(2, 5, 16).astype("float32")
    layer.build(query_shape=x.shape, value_shape=x.shape)
    extra_mask = np.ones((2, 5, 5), dtype="bool")
    extra_mask[:, 2, 3] = False
    merged = extra_mask & np.tril(np.ones((5, 5), dtype="bool"))
    out1 = layer(x, x, attention_mask=extra_mask, use_causal_mask=True)
    out2 = layer(x, x, attention_mask=merged, use_causal_mask=False)
    assert out1.shape == (2, 5, 16)
    assert_all_close(out1, out2, atol=1e-5)


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("dropout, return_attention_scores", [(0.0, True), (0.1, False), (0.1, True)])
def test_causal_only_masks_when_fused_path_disabled(index, dropout, return_attention_scores):
    t = 6
    future = np.triu(np.ones((t, t)), k=1).astype(bool)
    x = np.random.RandomState(0).randn(1, t, 16).astype("float32")
    layer = _causal_layers(dropout)[index]
    if return_attention_scores:
        _, scores = layer(x, x, use_causal_mask=True, return_attention_scores=True, training=False)
        assert scores[..., future].sum() < 1e-6
    else:
        out_causal = layer(x, x, use_causal_mask=True, training=False)
        out_explicit = layer(x, x, attention_mask=(~future)[None], training=False)
        assert_all_close(out_causal, out_explicit, atol=1e-5)


def test_causal_only_masks_non_4d_inputs():
    t = 5
    future = np.triu(np.ones((t, t)), k=1).astype(bool)
    x = np.random.RandomState(0).randn(1, t, 3, 8).astype("float32")
    layer = layers.MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=1)
    _, scores = layer(x, x, use_causal_mask=True, return_attention_scores=True)
    assert scores[..., future].sum() < 1e-6


@pytest.mark.parametrize("make", [
    lambda **kw: layers.MultiHeadAttention(num_heads=2, key_dim=4, **kw),
    lambda **kw: layers.GroupedQueryAttention(head_dim=2, num_query_heads=2, num_key_value_heads=2, **kw),
])
def test_sliding_window_validation_and_serialization(make):
    for bad in (0, -3):
        with pytest.raises(ValueError, match="sliding_window"):
            make(sliding_window=bad)
    config = make(sliding_window=5).get_config()
    assert config["sliding_window"] == 5
    assert type(make()).from_config(config).get_config()["sliding_window"] == 5


@pytest.mark.parametrize("kind", ["mha", "gqa"])
@pytest.mark.parametrize("flash_attention", [False, True])
def test_correctness(kind, flash_attention):
    """Keras runs this in float16 (flash attention needs it): here a float16 layer computes
    in float32 and returns float16."""
    key_dim = num_heads = 8
    query = np.identity(key_dim)[np.newaxis, ...]
    key = np.identity(key_dim)[np.newaxis, ...]
    value = np.reshape(np.arange(key_dim * key_dim), (1, key_dim, key_dim)) / 100.0
    if kind == "mha":
        layer = layers.MultiHeadAttention(num_heads=num_heads, key_dim=key_dim, dtype="float16",
                                          flash_attention=flash_attention)
    else:
        layer = layers.GroupedQueryAttention(head_dim=key_dim, num_query_heads=num_heads,
                                             num_key_value_heads=num_heads, dtype="float16",
                                             flash_attention=flash_attention)
    layer.build(query.shape, key.shape, value.shape)
    kernel = np.repeat(np.identity(key_dim)[:, np.newaxis, :], num_heads, axis=1)
    bias = np.zeros((num_heads, key_dim))
    layer.set_weights([kernel, bias] * 3 + [kernel, np.zeros((key_dim,))])
    expected_output = np.tile(np.array([2.406, 2.440, 2.473, 2.504, 2.535, 2.568, 2.602, 2.633])
                              [np.newaxis, :, np.newaxis], (1, 1, key_dim))
    expected_score = np.tile(np.array([[0.1187] * i + [0.1691] + [0.1187] * (7 - i) for i in range(8)])
                             [np.newaxis, np.newaxis, ...], (1, key_dim, 1, 1))
    if flash_attention:
        output = layer(query=query, value=value, key=key)
        assert_all_close(output, expected_output, atol=1e-2)
    else:
        output, scores = layer(query=query, value=value, key=key, return_attention_scores=True)
        assert output.dtype == scores.dtype == np.float16
        assert_all_close(output, expected_output, atol=1e-2)
        assert_all_close(scores, expected_score, atol=1e-2)


def test_mha_constraints():
    """Keras checks that kernel_constraint / bias_constraint reach the query, key, value and
    gate projections; here: apply_constraints() clips every such weight."""
    for which in ("kernel", "bias"):
        layer = layers.MultiHeadAttention(num_heads=2, key_dim=2, use_gate=True, **{f"{which}_constraint": "non_neg"})
        layer.build(_Q.shape, _K.shape, _V.shape)
        layer.set_weights([-np.abs(np.random.random(w.shape)) - 0.1 for w in layer.get_weights()])
        layer.apply_constraints()
        for name, weight in zip(layer.weight_names, layer.get_weights()):
            if name.endswith(which) and name.split("/")[0] in ("query", "key", "value", "gate"):
                assert np.all(weight >= 0), name


@pytest.mark.parametrize("shape", [(1, 2, 3), (2, 3, 5)])
def test_return_attention_scores(shape):
    out = layers.MultiHeadAttention(num_heads=4, key_dim=2)(np.random.random(shape), np.random.random(shape),
                                                            return_attention_scores=True)
    assert len(out) == 2 and out[0].shape == shape and out[1].shape == (shape[0], 4, shape[1], shape[1])


def test_gqa_shapes_with_and_without_return_attention_scores():
    layer = layers.GroupedQueryAttention(num_query_heads=4, num_key_value_heads=2, head_dim=8)
    query, value = np.random.random((2, 10, 32)), np.random.random((2, 15, 32))
    output, scores = layer(query, value, return_attention_scores=True)
    assert output.shape == (2, 10, 32) and scores.shape == (2, 4, 10, 15)
    assert layer(query, value).shape == (2, 10, 32)


@pytest.mark.parametrize("make", [
    lambda **kw: layers.MultiHeadAttention(num_heads=2, key_dim=2, **kw),
    lambda **kw: layers.GroupedQueryAttention(head_dim=2, num_query_heads=2, num_key_value_heads=2, **kw),
])
def test_flash_attention_with_errors(make):
    with pytest.raises(ValueError, match="Dropout is not supported when flash attention is enabled."):
        make(flash_attention=True, dropout=0.1)
    layer = make(flash_attention=True)
    assert layer.flash_attention
    with pytest.raises(ValueError, match="Returning attention scores is not supported when flash "
                                         "attention is enabled. Please disable flash attention to access"
                                         " attention scores."):
        layer(query=np.random.random((2, 4, 8)), value=np.random.random((2, 4, 8)),
              return_attention_scores=True)


@pytest.mark.parametrize("output_shape, expected", [(8, (2, 4, 8)), ((8, 8), (2, 4, 8, 8))])
def test_multi_head_attention_output_shape(output_shape, expected):
    mha = layers.MultiHeadAttention(num_heads=2, key_dim=16, output_shape=output_shape)
    query, value = np.random.uniform(size=(2, 4, 16)), np.random.uniform(size=(2, 4, 16))
    assert mha(query=query, value=value).shape == expected


def test_multi_head_attention_output_shape_error():
    with pytest.raises(ValueError, match="output_shape"):
        layers.MultiHeadAttention(num_heads=2, key_dim=16, output_shape=8.0)


@pytest.mark.parametrize("query_dims, value_dims, key_dims, num_query_heads, num_key_value_heads", [
    ((4, 8), (2, 8), None, 2, 2), ((4, 8), (2, 8), (2, 3), 2, 2),
    ((4, 8), (2, 8), None, 4, 2), ((4, 8), (2, 8), (2, 3), 4, 2),
    ((4, 8), (2, 8), None, 4, 1), ((4, 8), (2, 8), (2, 3), 4, 1),
])
def test_gqa_compute_output_shape(query_dims, value_dims, key_dims, num_query_heads, num_key_value_heads):
    layer = layers.GroupedQueryAttention(num_query_heads=num_query_heads,
                                         num_key_value_heads=num_key_value_heads, head_dim=2)
    query_shape, value_shape = (7, *query_dims), (7, *value_dims)
    key_shape = (7, *key_dims) if key_dims else None
    output = layer(query=np.ones(query_shape), value=np.ones(value_shape),
                   key=np.ones(key_shape) if key_shape else None)
    assert layer.compute_output_shape(query_shape, value_shape, key_shape) == output.shape


@pytest.mark.parametrize("query_shape, value_shape, key_shape", [
    ((2, 4, 8), (2, 2, 7), 2), ((2, 4, 8), (2, 2, 8), (2, 1, 7))])
def test_gqa_shape_mismatch_error(query_shape, value_shape, key_shape):
    layer = layers.GroupedQueryAttention(num_query_heads=4, num_key_value_heads=4, head_dim=2)
    with pytest.raises(ValueError, match="must be equal"):
        layer.compute_output_shape(query_shape, value_shape, key_shape)


# -- nn_test.py: dot_product_attention ---------------------------------------------------------

@pytest.mark.parametrize("bias, scale, mask_and_is_causal", list(product(
    (None, True), (None, 1.0), ((None, False), (True, False), (None, True)))))
def test_dot_product_attention(bias, scale, mask_and_is_causal):
    """Keras's parameters without flash_attention=True (skipped by Keras off GPU; this
    function has no flash_attention argument). Keras's expected values come from its numpy
    formula; here from attention.reference, written from the same math."""
    mask, is_causal = mask_and_is_causal
    query_shape = key_shape = (2, 3, 4, 8)
    query = np.arange(math.prod(query_shape), dtype=float).reshape(query_shape)
    key = np.arange(math.prod(key_shape), dtype=float).reshape(key_shape)
    value = np.arange(math.prod(key_shape), dtype=float).reshape(key_shape)
    if mask is not None:
        mask = np.tile(np.tril(np.ones((3, 3))).astype("bool")[None, None, ...], (2, 4, 1, 1))
    if bias is not None:
        bias = np.arange(math.prod((2, 4, 3, 3)), dtype=float).reshape((2, 4, 3, 3))
    outputs = dot_product_attention(query, key, value, bias=bias, mask=mask, scale=scale, is_causal=is_causal)
    expected = reference.dot_product_attention(query, key, value, bias=bias, mask=mask, scale=scale,
                                               is_causal=is_causal)
    assert_all_close(outputs, expected, atol=1e-6)


_FLOAT_DTYPES = ["float16", "float32"] + (["bfloat16"] if ml_dtypes is not None else [])


def _np_dtype(name):
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


@pytest.mark.parametrize("dtypes", list(combinations(_FLOAT_DTYPES, 2)) + [(d, d) for d in _FLOAT_DTYPES])
def test_dot_product_attention_dtype(dtypes):
    """Keras's result_type of the query's and the key/value's dtypes."""
    query_dtype, key_value_dtype = dtypes
    query = np.ones((2, 3, 3, 8), _np_dtype(query_dtype))
    key = value = np.ones((2, 3, 3, 8), _np_dtype(key_value_dtype))
    expected = query_dtype if query_dtype == key_value_dtype else "float32"
    assert dot_product_attention(query, key, value).dtype == _np_dtype(expected)


def test_gqa_broadcasting():
    query = np.ones((2, 16, 4, 32), dtype="float32")
    key = value = np.ones((2, 16, 2, 32), dtype="float32")
    assert dot_product_attention(query, key, value).shape == (2, 16, 4, 32)


def test_dot_product_attention_mask_must_be_boolean():
    """jax.nn.dot_product_attention (Keras's JAX backend) refuses a non-boolean mask with a
    ValueError ("mask dtype should be bool")."""
    query = np.ones((1, 3, 2, 4), np.float32)
    with pytest.raises(ValueError, match="boolean"):
        dot_product_attention(query, query, query, mask=np.ones((1, 2, 3, 3), np.float32))
