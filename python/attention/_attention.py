"""keras.layers.Attention: dot-product (Luong) attention.

    scores  = (q · kᵀ) · scale                            score_mode="dot"
            = w · Σ_d tanh(scale · (q_d + k_d))            score_mode="concat"
    weights = dropout(softmax(scores − 1e9 · [masked]))    (value mask, causal j ≤ i)
    output  = weights · v, rows where query_mask is 0 set to 0

query (L..., Tq, D), value (L..., Tv, Dv), key (L..., Tv, D) (default: value), of one rank >= 2:
the leading axes L are batch axes (as Keras's matmul batches them; equal in all three).
query_mask broadcasts to (L..., Tq); a value_mask of lower rank broadcasts to (L..., Tv) (a
padding mask of the value's positions), one of the inputs' rank to the scores (L..., Tq, Tv).
Any axis but the feature axes may be 0; with no keys (Tv = 0) the output is 0. `scale` (a scalar
weight, 1 at start) exists when use_scale; `concat_score_weight` (scalar, 1) with "concat".
`causal=True` (TensorFlow 2.0's spelling) applies the causal mask on every call.
"""

import numpy as np

from . import _lib
from ._layer import Layer, as_mask

_SCORE_MODES = {"dot": _lib.SCORE_DOT, "concat": _lib.SCORE_CONCAT}


class Attention(Layer):
    """keras.layers.Attention (see the module docstring for the math). Called on
    [query, value(, key)] with mask [query_mask, value_mask]; `build([query_shape,
    value_shape(, key_shape)])` creates the weights (scale, concat_score_weight) it has."""

    _CONFIG_STRUCT = _lib.AttentionConfig
    _CREATE = "att_attention_create"

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None, *, causal=False,
                 dtype="float32", name=None, trainable=True):
        if score_mode not in _SCORE_MODES:
            raise ValueError(
                "Invalid value for argument score_mode. Expected one of {'dot', 'concat'}. "
                f"Received: score_mode={score_mode}"
            )
        self.use_scale = bool(use_scale)
        self.score_mode = score_mode
        self.dropout = float(dropout)
        self.causal = bool(causal)
        super().__init__(dtype=dtype, name=name, seed=seed, trainable=trainable)

    def _config_fields(self):
        return {"use_scale": self.use_scale, "score_mode": _SCORE_MODES[self.score_mode],
                "dropout": self.dropout, "causal": self.causal}

    def _validate(self, inputs, mask=None):
        """Keras's checks of the call arguments: inputs and mask are lists of 2 or 3."""
        name = type(self).__name__
        if not isinstance(inputs, list):
            raise ValueError(
                f"{name} layer must be called on a list of inputs, namely [query, value] or "
                f"[query, value, key]. Received: inputs={inputs}."
            )
        if not 2 <= len(inputs) <= 3:
            raise ValueError(
                f"{name} layer accepts inputs list of length 2 or 3, namely [query, value] or "
                f"[query, value, key]. Received length: {len(inputs)}."
            )
        if mask is not None:
            if not isinstance(mask, list):
                raise ValueError(
                    f"{name} layer mask must be a list, namely [query_mask, value_mask]. "
                    f"Received: mask={mask}."
                )
            if not 2 <= len(mask) <= 3:
                raise ValueError(
                    f"{name} layer accepts mask list of length 2 or 3. Received: mask={mask}."
                )

    def build(self, input_shape):
        """Create the weights for input_shape = [query_shape, value_shape(, key_shape)]."""
        self._validate(input_shape)
        self._build_shapes(*input_shape)

    def compute_output_shape(self, input_shape):
        """The output's shape for input_shape = [query_shape, value_shape(, key_shape)]:
        query_shape[:-1] + (value_shape[-1],), as Keras."""
        self._validate(input_shape)
        query_shape, value_shape = (tuple(s) for s in input_shape[:2])
        return (*query_shape[:-1], value_shape[-1])

    def compute_mask(self, inputs, mask=None):
        """The mask Keras carries on the output: the query mask (as an array), or None."""
        self._validate(inputs, mask)
        return None if mask is None or mask[0] is None else np.asarray(mask[0])

    def __call__(self, inputs, mask=None, training=False, return_attention_scores=False,
                 use_causal_mask=False):
        """inputs [query, value(, key)], mask [query_mask, value_mask] (either may be None).
        Returns the output (L..., Tq, Dv), and the weights (L..., Tq, Tv) if asked, in the
        layer's compute dtype."""
        return self._run(inputs, mask, training, use_causal_mask, return_scores=return_attention_scores)

    def gradients(self, inputs, mask=None, training=False, use_causal_mask=False, *, output_gradient,
                  scores_gradient=None):
        """One training step: the forward of this call (same arguments as __call__) and the
        backward of L = sum(output * output_gradient) [+ sum(scores * scores_gradient)], with
        one dropout mask for both (the stream then advances as after a training call).
        Returns a Gradients (.query, .value, .key for the inputs; .weights)."""
        return self._run(inputs, mask, training, use_causal_mask, return_scores=False,
                         gradients={"output_gradient": output_gradient,
                                    "scores_gradient": scores_gradient, "regularization": False})

    def _run(self, inputs, mask, training, use_causal_mask, *, return_scores, gradients=None):
        self._validate(inputs, mask)
        arrays = list(map(self._input, inputs, ("query", "value", "key")))
        if not self.built:
            self.build([a.shape for a in arrays])
        masks = {} if mask is None else {"query_mask": as_mask(mask[0], "query_mask"),
                                         "value_mask": as_mask(mask[1], "value_mask")}
        return self._forward(arrays[0], arrays[1], arrays[2] if len(arrays) == 3 else None,
                             masks=masks, training=training, use_causal_mask=use_causal_mask,
                             return_scores=return_scores, gradients=gradients)

    def _config(self):
        config = {"use_scale": self.use_scale, "score_mode": self.score_mode,
                  "dropout": self.dropout, "seed": self.seed}
        if self.causal:
            config["causal"] = True
        return config
