"""What the Keras 3.15 generators share (make_golden.py, make_grad_golden.py,
make_h5_weights.py): the JAX backend in float64, checked on import, and the case helpers
they draw the same way.

Importing it sets KERAS_BACKEND=jax and JAX_ENABLE_X64=1 unless already set, and stops the
script with a message when Keras 3.15 with JAX is missing or set up otherwise.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_ENABLE_X64", "1")
SCRIPT = os.path.basename(sys.argv[0])
if os.environ["KERAS_BACKEND"] != "jax":
    sys.exit(f"{SCRIPT} needs KERAS_BACKEND=jax and JAX_ENABLE_X64=1.")
try:
    import numpy as np
    import jax
    import jax.numpy as jnp  # noqa: F401  (for the scripts)
    import keras
except ImportError as error:
    sys.exit(f"{SCRIPT} needs Keras 3.15 with JAX installed ({error}).\n"
             "Run it with the python of an environment that has them (see README.md).")
if not jax.config.jax_enable_x64:
    sys.exit(f"{SCRIPT} needs KERAS_BACKEND=jax and JAX_ENABLE_X64=1.")
if not keras.__version__.startswith("3.15."):
    sys.exit(f"{SCRIPT} reproduces Keras 3.15; found Keras {keras.__version__}.")

MHA_DEFAULTS = {"num_heads": 2, "key_dim": 3, "value_dim": None, "dropout": 0.0,
                "use_bias": True, "output_shape": None, "attention_axes": None,
                "sliding_window": None, "use_gate": False}
GQA_DEFAULTS = {"head_dim": 3, "num_query_heads": 4, "num_key_value_heads": 2, "dropout": 0.0,
                "use_bias": True, "use_gate": False, "sliding_window": None}


def set_random_weights(layer, rng, dtype, draw):
    """Replace every weight by draw(shape); return the weights in get_weights() order."""
    weights = [draw(rng, w.shape).astype(dtype) for w in layer.get_weights()]
    layer.set_weights(weights)
    return [np.asarray(w) for w in layer.get_weights()]
