"""What the TF Model Garden generators share (make_reuse_golden.py, make_reuse_grad_golden.py,
make_reuse_h5_weights.py): tf_keras and ReuseMultiHeadAttention, checked on import, the stamps
and the layer's defaults.

Importing it sets TF_USE_LEGACY_KERAS=1 (Model Garden's layers are tf.keras 2 layers) and
quiets TensorFlow's log unless already set, and stops the script with a message when
TensorFlow, tf-keras or tf-models-official is missing.
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
try:
    import importlib.metadata

    import numpy as np  # noqa: F401  (for the scripts)
    import tensorflow as tf
    import tf_keras
    from official.nlp.modeling.layers.reuse_attention import ReuseMultiHeadAttention  # noqa: F401
except ImportError as error:
    sys.exit(f"{os.path.basename(sys.argv[0])} needs TensorFlow, tf-keras and tf-models-official "
             f"({error}).\nRun it with the python of an environment that has them (see README.md).")

GROUP = "reuse_multi_head_attention"
STAMPS = {
    "keras_version": tf_keras.__version__,
    "backend": "tensorflow",
    "tensorflow_version": tf.__version__,
    "tf_models_version": importlib.metadata.version("tf-models-official"),
}
DEFAULTS = {"num_heads": 3, "key_dim": 2, "value_dim": None, "dropout": 0.0,
            "reuse_attention": 0, "use_relative_pe": False, "pe_max_seq_length": 512,
            "use_bias": True, "output_shape": None, "attention_axes": None}
PE_FLOAT32_NOTE = (
    "Model Garden creates relative_position_embeddings in float32 whatever the layer's dtype "
    "(float64 layers then fail adding it), so this case exists in float32 only.")


def heads(config):
    """(reused, new) head counts."""
    reused = config["num_heads"] if config["reuse_attention"] == -1 else config["reuse_attention"]
    return reused, config["num_heads"] - reused
