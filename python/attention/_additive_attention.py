"""keras.layers.AdditiveAttention: additive (Bahdanau) attention.

    scores  = Σ_d scale_d · tanh(q_d + k_d)                (scale = 1 without use_scale)
    weights = dropout(softmax(scores − 1e9 · [masked]))
    output  = weights · v, rows where query_mask is 0 set to 0

`scale` (D,) is glorot-uniform initialised from the layer's seed. Call, masks and the rest
as Attention.
"""

from . import _lib
from ._attention import Attention


class AdditiveAttention(Attention):
    """keras.layers.AdditiveAttention (see the module docstring for the math); called and
    built as Attention."""

    _CONFIG_STRUCT = _lib.AdditiveAttentionConfig
    _CREATE = "att_additive_attention_create"

    def __init__(self, use_scale=True, dropout=0.0, *, seed=None, dtype="float32", name=None,
                 trainable=True):
        super().__init__(use_scale=use_scale, dropout=dropout, seed=seed, dtype=dtype, name=name,
                         trainable=trainable)

    def _config_fields(self):
        return {"no_scale": not self.use_scale, "dropout": self.dropout, "seed": self.dropout_seed}

    def _config(self):
        return {"use_scale": self.use_scale, "dropout": self.dropout, "seed": self.seed}
