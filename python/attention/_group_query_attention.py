"""keras.layers.GroupQueryAttention, whose class is GroupedQueryAttention (as in Keras).

    Q = query·Wq + bq  (B, T, Nq, H)     K = key·Wk + bk,  V = value·Wv + bv  (B, S, Nkv, H)
    weights[n] = softmax_S((Q[n] / √H) · K[g(n)]ᵀ), masked,   g(n) = n // (Nq / Nkv)
    output     = (dropout(weights)[n] · V[g(n)] [⊙ sigmoid(query·Wg + bg) with use_gate]) · Wo + bo

Rank-3 inputs query (B, T, D), value (B, S, D), key (B, S, Dk) (default: value); the output
is (B, T, D). Nkv = 1 is multi-query attention, Nkv = Nq multi-head attention. Masks
(query_mask (B, T), value_mask and key_mask (B, S), attention_mask broadcast to (B, T, S),
causal, sliding_window |i − j| < w) are ANDed as Keras 3.15 combines them, and so broadcast
as it broadcasts them (e.g. a (1, S) or (S,) value_mask applies to every batch row; see
MultiHeadAttention). Returned scores
(B, Nq, T, S) are the weights before dropout. A fully masked row is uniform when Keras takes
its fused path (no scores, dropout 0) and zero otherwise.
"""

from . import _lib
from ._cache import cached_call
from ._initializers import WeightOptions
from ._layer import Layer
from ._multi_head_attention import (MultiHeadAttention, _flash_attention, _positive_int,
                                    check_scores_allowed, multi_head_output_shape)


class GroupedQueryAttention(Layer):
    """keras.layers.GroupQueryAttention: grouped-query attention (Ainslie et al., 2023); see the
    module docstring for the math and masks. Default names are "grouped_query_attention…", as
    in Keras.

    `build(query_shape, value_shape, key_shape=None)` creates the weights (query, key, [gate],
    value, attention_output kernels and biases, in Keras's order); a first call builds too.
    """

    _CONFIG_STRUCT = _lib.GroupQueryAttentionConfig
    _CREATE = "att_group_query_attention_create"

    def __init__(self, head_dim, num_query_heads, num_key_value_heads, dropout=0.0, use_bias=True,
                 sliding_window=None, flash_attention=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 use_gate=False, seed=None, *, dtype="float32", name=None, trainable=True):
        self._head_dim = _positive_int(head_dim, "head_dim")
        self._num_query_heads = _positive_int(num_query_heads, "num_query_heads")
        self._num_key_value_heads = _positive_int(num_key_value_heads, "num_key_value_heads")
        if num_query_heads % num_key_value_heads != 0:
            raise ValueError("`num_query_heads` must be divisible by `num_key_value_heads`.")
        if sliding_window is not None and (isinstance(sliding_window, bool)
                                           or not isinstance(sliding_window, int)
                                           or not 0 < sliding_window < 2**63):
            raise ValueError("`sliding_window` must be `None` or a positive integer (64-bit). "
                             f"Received: sliding_window={sliding_window}")
        self._sliding_window = sliding_window
        self._dropout = float(dropout)
        self._use_bias = bool(use_bias)
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
            head_dim=self._head_dim,
            num_query_heads=self._num_query_heads,
            num_key_value_heads=self._num_key_value_heads,
            dropout=self._dropout,
            no_bias=not self._use_bias,
            sliding_window=self._sliding_window or 0,
            use_gate=self._use_gate,
            seed=self.dropout_seed,
            **self._weight_options.structs(),
        )

    head_dim = property(lambda self: self._head_dim, doc="The constructor's `head_dim` (read-only).")
    num_query_heads = property(lambda self: self._num_query_heads, doc="The constructor's `num_query_heads` (read-only).")
    num_key_value_heads = property(lambda self: self._num_key_value_heads, doc="The constructor's `num_key_value_heads` (read-only).")
    dropout = property(lambda self: self._dropout, doc="The constructor's `dropout` (read-only).")
    use_bias = property(lambda self: self._use_bias, doc="The constructor's `use_bias` (read-only).")
    use_gate = property(lambda self: self._use_gate, doc="The constructor's `use_gate` (read-only).")
    sliding_window = property(lambda self: self._sliding_window, doc="The constructor's `sliding_window` (read-only).")
    flash_attention = property(lambda self: self._flash_attention, doc="The constructor's `flash_attention` (read-only).")

    def build(self, query_shape, value_shape, key_shape=None):
        """Create the weights for rank-3 inputs of these shapes (None dims allowed)."""
        self._build_shapes(query_shape, value_shape, key_shape)

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        """The output's shape, as Keras: the query's; ValueError when the query's and the
        value's last dims differ, or value and key differ in a dim but the last."""
        if query_shape[-1] != value_shape[-1]:
            raise ValueError(
                "The last dimension of `query_shape` and `value_shape` must be equal, but are "
                f"{query_shape[-1]}, {value_shape[-1]}. Received: query_shape={query_shape}, "
                f"value_shape={value_shape}")
        return multi_head_output_shape(query_shape, value_shape, key_shape, None)

    def __call__(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None,
                 attention_mask=None, return_attention_scores=False, training=None,
                 use_causal_mask=False, cache=None, cache_update_index=None):
        """Returns the output (B, T, D), and the scores (B, Nq, T, S) if asked, in the
        layer's compute dtype. With `cache` (B, 2, S_max, num_key_value_heads, head_dim),
        returns (output, cache) or (output, scores, cache), scores (B, Nq, T, S_max);
        `cache_update_index` (an int, or one per batch row) writes the new tokens' keys and
        values into the cache in place (see attention._cache and MultiHeadAttention)."""
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

    gradients = MultiHeadAttention.gradients  # the same call arguments and training step

    def _config(self):
        return {
            "head_dim": self._head_dim,
            "num_query_heads": self._num_query_heads,
            "num_key_value_heads": self._num_key_value_heads,
            "use_bias": self._use_bias,
            "use_gate": self._use_gate,
            "sliding_window": self._sliding_window,
            "dropout": self._dropout,
            **self._weight_options.config(),
            "seed": self.seed,
            # Keras leaves it out of its config; kept here when given, so it round-trips.
            **({} if self._flash_attention is None else {"flash_attention": self._flash_attention}),
        }


GroupQueryAttention = GroupedQueryAttention  # Keras's export name of the class
