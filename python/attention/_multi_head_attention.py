"""keras.layers.MultiHeadAttention.

    Q = query·Wq + bq  (…, N, Hk)     K = key·Wk + bk     V = value·Wv + bv  (…, N, Hv)
    weights = softmax over the key attention axes of (Q / √Hk) · K, masked
    output  = (dropout(weights) · V [⊙ sigmoid(query·Wg + bg) with use_gate]) · Wo + bo

Inputs of any rank ≥ 3 (batch, attention axes…, features); attention_axes defaults to every
axis but batch and features. Masks are ANDed as Keras 3.15 combines them, for any shapes its
rule accepts: query_mask m -> m[..., None], value_mask/key_mask m -> m[..., None, :],
causal and sliding_window (1, T, S), attention_mask as given; the AND (numpy broadcasting)
gains size-1 axes at -2·len(attention_axes)-1 up to the scores' rank and broadcasts to the
scores (so a rank-4 query (B, T, X, dim) over axis 1 takes (B, T) / (B, S) / (1, S) masks,
applied across X and the heads). An explicit query_mask is honoured. Any axis but the feature
axes may be 0; with no keys the output is the output projection's bias. Returned scores are
the weights before dropout. A fully masked row is uniform when Keras takes its fused path (rank
3, no scores, dropout 0) and zero otherwise.
"""

import ctypes

from . import _lib
from ._cache import cached_call
from ._initializers import WeightOptions
from ._layer import Layer


def _positive_int(value, name, allow_none=False):
    """Keras's argument check: a positive int (or None when allowed) that fits an int64."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        expected = "a positive integer or `None`" if allow_none else "a positive integer"
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected {expected}. "
            f"Received: {name}={value}"
        )
    if value >= 2**63:
        raise ValueError(f"`{name}` must fit a 64-bit integer. Received: {name}={value}")
    return value


def _int_tuple(value, name, limit=_lib.MAX_RANK):
    """None, an int, or a list/tuple of at most `limit` ints, as None or a tuple of ints."""
    if value is None:
        return None
    items = (value,) if isinstance(value, int) else value
    if not isinstance(items, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, int) for v in items):
        raise ValueError(f"`{name}` must be an int, list, or tuple of ints. Received: {name}={value}")
    if len(items) > limit:
        raise ValueError(f"`{name}` has {len(items)} entries; at most {limit} are supported")
    if any(not -(2**63) <= v < 2**63 for v in items):
        raise ValueError(f"`{name}` entries must fit a 64-bit integer. Received: {name}={value}")
    return tuple(items)


def _flash_attention(value, dropout):
    """Keras's `flash_attention` argument: None (let the layer choose), True or False. Every
    path here is the fused one, so it changes no number; as in Keras, True refuses dropout
    (here) and returned scores (at the call)."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"`flash_attention` must be None, True or False. Received: flash_attention={value!r}")
    if value and dropout > 0.0:
        raise ValueError("Dropout is not supported when flash attention is enabled. Please set "
                         "dropout to 0.0 to use flash attention.")
    return value


def check_scores_allowed(flash_attention, return_attention_scores):
    """Keras's refusal of return_attention_scores under flash_attention=True."""
    if flash_attention and return_attention_scores:
        raise ValueError("Returning attention scores is not supported when flash attention is "
                         "enabled. Please disable flash attention to access attention scores.")


def multi_head_output_shape(query_shape, value_shape, key_shape, output_shape):
    """Keras's compute_output_shape of the multi-head layers: value and key must agree on
    every dim but the last; the output is query_shape[:-1] + output_shape (or the query's
    shape without one)."""
    query_shape, value_shape = tuple(query_shape), tuple(value_shape)
    key_shape = value_shape if key_shape is None else tuple(key_shape)
    if value_shape[1:-1] != key_shape[1:-1]:
        raise ValueError("All dimensions of `value` and `key`, except the last one, must be "
                         f"equal. Received: value_shape={value_shape} and key_shape={key_shape}")
    return query_shape[:-1] + tuple(output_shape) if output_shape else query_shape


def _output_shape(value):
    """output_shape as a tuple (or None): at most MAX_RANK − 2 dims, the output kernel being
    (num_heads, value_dim, *output_shape)."""
    return _int_tuple(value or None, "output_shape", _lib.MAX_RANK - 2)


class MultiHeadAttention(Layer):
    """keras.layers.MultiHeadAttention (see the module docstring for the math and masks).

    `build(query_shape, value_shape, key_shape=None)` creates the weights (query, key, [gate],
    value, attention_output kernels and biases, in Keras's order); a first call builds too.
    """

    _CONFIG_STRUCT = _lib.MultiHeadAttentionConfig
    _CREATE = "att_multi_head_attention_create"

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True,
                 output_shape=None, attention_axes=None, sliding_window=None,
                 flash_attention=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 use_gate=False, seed=None, *, dtype="float32", name=None, trainable=True):
        self._num_heads = _positive_int(num_heads, "num_heads")
        self._key_dim = _positive_int(key_dim, "key_dim")
        self._value_dim = _positive_int(value_dim, "value_dim", allow_none=True) or key_dim
        self._dropout = float(dropout)
        self._use_bias = bool(use_bias)
        self._output_shape = _output_shape(output_shape)
        self._attention_axes = _int_tuple(attention_axes, "attention_axes")
        self._sliding_window = _positive_int(sliding_window, "sliding_window", allow_none=True)
        self._use_gate = bool(use_gate)
        self._flash_attention = _flash_attention(flash_attention, self._dropout)
        self._weight_options = WeightOptions(
            kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint)
        super().__init__(dtype=dtype, name=name, seed=seed, trainable=trainable)

    def _config_fields(self):
        return dict(
            num_heads=self._num_heads,
            key_dim=self._key_dim,
            value_dim=self._value_dim,
            dropout=self._dropout,
            no_bias=not self._use_bias,
            output_rank=len(self._output_shape or ()),
            output_shape=(ctypes.c_int64 * _lib.MAX_RANK)(*(self._output_shape or ())),
            num_attention_axes=len(self._attention_axes or ()),
            attention_axes=(ctypes.c_int64 * _lib.MAX_RANK)(*(self._attention_axes or ())),
            sliding_window=self._sliding_window or 0,
            use_gate=self._use_gate,
            seed=self.dropout_seed,
            **self._weight_options.structs(),
        )

    num_heads = property(lambda self: self._num_heads, doc="The constructor's `num_heads` (read-only).")
    key_dim = property(lambda self: self._key_dim, doc="The constructor's `key_dim` (read-only).")
    value_dim = property(lambda self: self._value_dim, doc="The constructor's `value_dim` (read-only).")
    dropout = property(lambda self: self._dropout, doc="The constructor's `dropout` (read-only).")
    use_bias = property(lambda self: self._use_bias, doc="The constructor's `use_bias` (read-only).")
    attention_axes = property(lambda self: self._attention_axes, doc="The constructor's `attention_axes` (read-only).")
    flash_attention = property(lambda self: self._flash_attention, doc="The constructor's `flash_attention` (read-only).")

    def build(self, query_shape, value_shape, key_shape=None):
        """Create the weights for inputs of these shapes (None dims, e.g. batch, allowed)."""
        self._build_shapes(query_shape, value_shape, key_shape)

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        """The output's shape, as Keras: query_shape[:-1] + output_shape (default: the query's
        shape); ValueError when value and key differ in a dim but the last."""
        return multi_head_output_shape(query_shape, value_shape, key_shape, self._output_shape)

    def __call__(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None,
                 attention_mask=None, return_attention_scores=False, training=None,
                 use_causal_mask=False, cache=None, cache_update_index=None):
        """Returns the output (query.shape[:-1] + output_shape), and the scores
        (B, <other axes>, N, <query attention axes>, <key attention axes>) if asked, in the
        layer's compute dtype. With `cache` (keras_hub's CachedMultiHeadAttention: rank-3
        inputs, cache (B, 2, S_max, num_heads, key_dim)), returns (output, cache) or
        (output, scores, cache), scores (B, N, T, S_max); `cache_update_index` (an int, or
        one per batch row) writes the new tokens' keys and values into the cache in place
        (see attention._cache)."""
        check_scores_allowed(self._flash_attention, return_attention_scores)
        masks = {"query_mask": query_mask, "value_mask": value_mask, "key_mask": key_mask,
                 "attention_mask": attention_mask}
        if cache is not None or cache_update_index is not None:
            return cached_call(self, query, value, key, masks, training=training,
                               use_causal_mask=use_causal_mask, return_scores=return_attention_scores,
                               cache=cache, cache_update_index=cache_update_index)
        return self._call_multi_head(query, value, key, masks, training=training,
                                     use_causal_mask=use_causal_mask,
                                     return_scores=return_attention_scores)

    def gradients(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None,
                  attention_mask=None, training=None, use_causal_mask=False, *, output_gradient,
                  scores_gradient=None, regularization=False):
        """One training step: the forward of this call (same arguments as __call__) and the
        backward of L = sum(output * output_gradient) [+ sum(scores * scores_gradient)]
        [+ sum(self.losses) when regularization], with one dropout mask for both (the stream
        then advances as after a training call). Returns a Gradients."""
        masks = {"query_mask": query_mask, "value_mask": value_mask, "key_mask": key_mask,
                 "attention_mask": attention_mask}
        return self._call_multi_head(
            query, value, key, masks, training=training, use_causal_mask=use_causal_mask,
            return_scores=False, gradients={"output_gradient": output_gradient,
                                            "scores_gradient": scores_gradient,
                                            "regularization": regularization})

    def _config(self):
        return {
            "num_heads": self._num_heads,
            "key_dim": self._key_dim,
            "value_dim": self._value_dim,
            "dropout": self._dropout,
            "use_bias": self._use_bias,
            "use_gate": self._use_gate,
            "output_shape": self._output_shape,
            "attention_axes": self._attention_axes,
            "sliding_window": self._sliding_window,
            **self._weight_options.config(),
            "seed": self.seed,
            # Keras leaves it out of its config; kept here when given, so it round-trips.
            **({} if self._flash_attention is None else {"flash_attention": self._flash_attention}),
        }
