"""TF Model Garden's ReuseMultiHeadAttention: multi-head attention whose first r heads reuse
the attention weights of an earlier layer.

r = reuse_attention (−1: all num_heads) heads take reuse_attention_scores[:, :r] as given;
the n = num_heads − r new heads compute

    logits  = (query·Wq + bq) / √key_dim · (key·Wk + bk)  [+ E[0, h, clip(j − i + P − 1, 0, 2P − 2)]]
    weights = softmax over the key attention axes of (logits + (1 − attention_mask)·(−1e9))

with the relative position bias E (1, n, 2P − 1), P = pe_max_seq_length, when use_relative_pe.
Then, with dropout(scores) split back into the two sets,

    output = (reused · (value·Wvr + bvr))·Wor + bor  +  (new · (value·Wvn + bvn))·Won [+ bon if r = 0]

Scores are laid out as MultiHeadAttention's (B, <other axes>, heads, <query attention axes>,
<key attention axes>), new heads first; with full reuse they are the given ones. Only
attention_mask masks; nothing is zeroed after the softmax. Negative attention_axes count from
the end of the projected (…, heads, channels) tensor, as upstream resolves them. Partial reuse
and the relative position bias need rank-3 inputs attending over axis 1.
"""

import ctypes
import operator

from . import _lib
from ._initializers import WeightOptions
from ._layer import Layer
from ._multi_head_attention import _int_tuple, _output_shape, _positive_int, multi_head_output_shape

_DEFAULT_PE_MAX_SEQ_LENGTH = 512


def _reuse_heads(reuse_attention, num_heads):
    """Upstream's range check: an integer in -1 ... num_heads."""
    try:
        reuse = operator.index(reuse_attention)
    except TypeError:
        reuse = None
    if reuse is None or not -1 <= reuse <= num_heads:
        raise ValueError(f"reuse_attention should be between -1 and {num_heads} (num_heads). "
                         f"Received: reuse_attention={reuse_attention}")
    return num_heads if reuse == -1 else int(reuse)


def _pe_max_seq_length(pe_max_seq_length, max_sequence_length):
    """pe_max_seq_length, or max_sequence_length (upstream's documented name) when given."""
    if max_sequence_length is None:
        return _positive_int(pe_max_seq_length, "pe_max_seq_length")
    if pe_max_seq_length not in (_DEFAULT_PE_MAX_SEQ_LENGTH, max_sequence_length):
        raise ValueError(
            "`max_sequence_length` is another name for `pe_max_seq_length`; give one of them. "
            f"Received: pe_max_seq_length={pe_max_seq_length}, "
            f"max_sequence_length={max_sequence_length}"
        )
    return _positive_int(max_sequence_length, "max_sequence_length")


class ReuseMultiHeadAttention(Layer):
    """TF Model Garden's ReuseMultiHeadAttention (see the module docstring for the math).

    `reuse_attention`: heads that reuse an earlier layer's scores (0 none, −1 all);
    `use_relative_pe`, `pe_max_seq_length` (also spelled `max_sequence_length`; giving both
    with different values is an error, and an explicit 512 reads as the default): the
    relative position bias of the new heads. `build(query_shape, value_shape, key_shape=None)`
    creates the weights in upstream's order (upstream creates them on the first call, which
    builds here too).
    """

    _CONFIG_STRUCT = _lib.ReuseMultiHeadAttentionConfig
    _CREATE = "att_reuse_multi_head_attention_create"

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, reuse_attention=0,
                 use_relative_pe=False, pe_max_seq_length=_DEFAULT_PE_MAX_SEQ_LENGTH,
                 use_bias=True, output_shape=None, attention_axes=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, *, seed=None, dtype="float32",
                 name=None, trainable=True, max_sequence_length=None):
        self._num_heads = _positive_int(num_heads, "num_heads")
        self._key_dim = _positive_int(key_dim, "key_dim")
        self._value_dim = _positive_int(value_dim, "value_dim", allow_none=True) or key_dim
        self._dropout = float(dropout)
        self._reuse_attention = _reuse_heads(reuse_attention, num_heads)
        self._use_relative_pe = bool(use_relative_pe)
        self._pe_max_seq_length = _pe_max_seq_length(pe_max_seq_length, max_sequence_length)
        self._use_bias = bool(use_bias)
        self._output_shape = _output_shape(output_shape)
        self._attention_axes = _int_tuple(attention_axes, "attention_axes")
        self._weight_options = WeightOptions(
            kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint)
        self._input_shapes = (None, None, None)  # query, key, value: recorded by build
        super().__init__(dtype=dtype, name=name, seed=seed, trainable=trainable)

    def _config_fields(self):
        return dict(
            num_heads=self._num_heads,
            key_dim=self._key_dim,
            value_dim=self._value_dim,
            dropout=self._dropout,
            reuse_attention=self._reuse_attention,
            use_relative_pe=self._use_relative_pe,
            pe_max_seq_length=self._pe_max_seq_length,
            no_bias=not self._use_bias,
            output_rank=len(self._output_shape or ()),
            output_shape=(ctypes.c_int64 * _lib.MAX_RANK)(*(self._output_shape or ())),
            num_attention_axes=len(self._attention_axes or ()),
            attention_axes=(ctypes.c_int64 * _lib.MAX_RANK)(*(self._attention_axes or ())),
            seed=self.dropout_seed,
            **self._weight_options.structs(),
        )

    num_heads = property(lambda self: self._num_heads, doc="The constructor's `num_heads` (read-only).")
    key_dim = property(lambda self: self._key_dim, doc="The constructor's `key_dim` (read-only).")
    value_dim = property(lambda self: self._value_dim, doc="The constructor's `value_dim` (read-only).")
    dropout = property(lambda self: self._dropout, doc="The constructor's `dropout` (read-only).")
    reuse_attention = property(lambda self: self._reuse_attention, doc="The constructor's `reuse_attention` (read-only).")
    use_relative_pe = property(lambda self: self._use_relative_pe, doc="The constructor's `use_relative_pe` (read-only).")
    pe_max_seq_length = property(lambda self: self._pe_max_seq_length, doc="The constructor's `pe_max_seq_length` (read-only).")
    use_bias = property(lambda self: self._use_bias, doc="The constructor's `use_bias` (read-only).")
    attention_axes = property(lambda self: self._attention_axes, doc="The constructor's `attention_axes` (read-only).")

    def build(self, query_shape, value_shape, key_shape=None):
        """Create the weights for inputs of these shapes (None dims, e.g. batch, allowed)."""
        self._build_shapes(query_shape, value_shape, key_shape)
        key_shape = value_shape if key_shape is None else key_shape
        self._input_shapes = tuple(tuple(s) for s in (query_shape, key_shape, value_shape))

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        """The output's shape: query_shape[:-1] + output_shape (default: the query's shape);
        ValueError when value and key differ in a dim but the last."""
        return multi_head_output_shape(query_shape, value_shape, key_shape, self._output_shape)

    def __call__(self, query, value, key=None, attention_mask=None, return_attention_scores=False,
                 training=None, reuse_attention_scores=None):
        """Returns the output (query.shape[:-1] + output_shape), and the scores if asked (in
        the layer's compute dtype).
        reuse_attention_scores (an earlier layer's scores, laid out like this layer's; only
        the first reuse_attention heads are read with partial reuse) is required when
        reuse_attention != 0 and ignored when it is 0."""
        return self._run(query, value, key, attention_mask, training, reuse_attention_scores,
                         return_scores=return_attention_scores)

    def gradients(self, query, value, key=None, attention_mask=None, training=None,
                  reuse_attention_scores=None, *, output_gradient, scores_gradient=None,
                  regularization=False):
        """One training step: the forward of this call (same arguments as __call__) and the
        backward of L = sum(output * output_gradient) [+ sum(scores * scores_gradient)]
        [+ sum(self.losses) when regularization], with one dropout mask for both (the stream
        then advances as after a training call). Returns a Gradients."""
        return self._run(query, value, key, attention_mask, training, reuse_attention_scores,
                         return_scores=False, gradients={"output_gradient": output_gradient,
                                                         "scores_gradient": scores_gradient,
                                                         "regularization": regularization})

    def _run(self, query, value, key, attention_mask, training, reuse_attention_scores, *,
             return_scores, gradients=None):
        if self._reuse_attention > 0 and reuse_attention_scores is None:
            raise ValueError("reuse_attention_scores cannot be None when reuse_attention is "
                             "True or > 0.")
        return self._call_multi_head(
            query, value, key, {"attention_mask": attention_mask}, training=training,
            use_causal_mask=False, return_scores=return_scores,
            reuse_attention_scores=reuse_attention_scores if self._reuse_attention else None,
            gradients=gradients)

    def _config(self):
        query_shape, key_shape, value_shape = self._input_shapes
        return {
            "num_heads": self._num_heads,
            "key_dim": self._key_dim,
            "value_dim": self._value_dim,
            "dropout": self._dropout,
            "use_bias": self._use_bias,
            "output_shape": self._output_shape,
            "attention_axes": self._attention_axes,
            "reuse_attention": self._reuse_attention,
            "use_relative_pe": self._use_relative_pe,
            "pe_max_seq_length": self._pe_max_seq_length,
            **self._weight_options.config(),
            "query_shape": query_shape,
            "key_shape": key_shape,
            "value_shape": value_shape,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        """A new layer from get_config() (ours or upstream's): built when the config holds
        the three input shapes, as upstream's from_config does."""
        config = dict(config)
        shapes = [config.pop(key, None) for key in ("query_shape", "key_shape", "value_shape")]
        layer = super().from_config(config)
        if None not in shapes:
            query_shape, key_shape, value_shape = shapes
            layer.build(query_shape, value_shape, key_shape)
        return layer
