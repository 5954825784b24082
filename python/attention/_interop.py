"""Keras interop by duck typing: `from_keras(layer)`, and what it shares with the weight files.

Nothing here imports Keras, TensorFlow or Model Garden. A Keras layer is recognised by its
class name (`type(layer).__name__`) and the top-level package of its class's module (keras,
tf_keras, tensorflow or official), and read through `get_config()`, `built`, `get_weights()`
and, for the input shapes it was built for, `get_build_config()` (Keras 3), the
`query_shape`/`key_shape`/`value_shape` of its config (Model Garden) or `_query_shape`,
`_value_shape`, `_key_shape` attributes (older Keras). Without any of them the shapes are
implied by the weights' (`input_shapes_from_weights`).
"""

from ._additive_attention import AdditiveAttention
from ._attention import Attention
from ._group_query_attention import GroupedQueryAttention
from ._multi_head_attention import MultiHeadAttention
from ._reuse_multi_head_attention import ReuseMultiHeadAttention

# Keras class name -> our layer class.
KINDS = {
    "Attention": Attention,
    "AdditiveAttention": AdditiveAttention,
    "MultiHeadAttention": MultiHeadAttention,
    "GroupQueryAttention": GroupedQueryAttention,
    "GroupedQueryAttention": GroupedQueryAttention,
    "ReuseMultiHeadAttention": ReuseMultiHeadAttention,
    "CachedMultiHeadAttention": MultiHeadAttention,  # keras_hub's subclass: its cache is a call argument
}
_PACKAGES = ("keras", "tf_keras", "tensorflow", "official", "keras_hub", "keras_nlp")


def from_keras(layer):
    """The layer of this library equivalent to a Keras one: keras.layers.Attention,
    AdditiveAttention, MultiHeadAttention, GroupQueryAttention (Keras 3) or Model Garden's
    ReuseMultiHeadAttention (tf_keras), with its get_config() (name and dtype included) and,
    when it is built, built for the same input shapes and holding its get_weights().

    TypeError for any other object; ValueError for a config or weights this library does not
    take (e.g. a quantized dtype policy)."""
    cls = _our_class(layer)
    ours = cls.from_config(layer.get_config())  # Model Garden's config builds Reuse when built
    if not getattr(layer, "built", False):
        return ours
    weights = list(layer.get_weights())
    if not ours.built:
        shapes = _keras_input_shapes(layer, multi_head=not isinstance(ours, Attention))
        if shapes is None:
            names = [name for name, _ in expected_specs(ours)]
            if len(names) != len(weights):
                raise ValueError(f"{type(layer).__name__} {ours.name!r} has {len(weights)} weights, "
                                 f"but its config gives {len(names)}: {names}")
            shapes = input_shapes_from_weights(ours, {n: w.shape for n, w in zip(names, weights)})
        if shapes is None:  # no weights: a first call builds it
            return ours
        build_for(ours, *shapes)
    ours.set_weights(weights)
    return ours


def _our_class(layer):
    """Our class for a Keras layer object (TypeError when it is none of the five kinds)."""
    kind = type(layer).__name__
    package = (getattr(type(layer), "__module__", None) or "").partition(".")[0]
    if kind not in KINDS or package not in _PACKAGES or not callable(getattr(layer, "get_config", None)):
        raise TypeError(
            f"from_keras expects a Keras attention layer ({', '.join(sorted(KINDS))} from "
            f"{', '.join(_PACKAGES)}); got {type(layer).__module__}.{kind}")
    return KINDS[kind]


def _dims(shape):
    """A Keras shape (tuple, list or TensorShape; None dims) as a tuple of ints and None."""
    if shape is None:
        return None
    if hasattr(shape, "as_list"):
        shape = shape.as_list()
    return tuple(None if d is None else int(d) for d in shape)


def _keras_input_shapes(layer, multi_head):
    """(query, value, key) shapes a built Keras layer recorded, or None if it recorded none."""
    get_build_config = getattr(layer, "get_build_config", None)
    build = get_build_config() if callable(get_build_config) else None
    if isinstance(build, dict):
        shapes = build.get("shapes_dict")
        if multi_head and isinstance(shapes, dict) and None not in (shapes.get("query_shape"),
                                                                    shapes.get("value_shape")):
            return tuple(_dims(shapes.get(k)) for k in ("query_shape", "value_shape", "key_shape"))
        shapes = build.get("input_shape")
        # The Luong layers build from a list [query, value(, key)] (a tf_keras Reuse's
        # input_shape is the query's alone: not enough).
        if (not multi_head and isinstance(shapes, (list, tuple)) and 2 <= len(shapes) <= 3
                and all(isinstance(s, (list, tuple)) or hasattr(s, "as_list") for s in shapes)):
            shapes = [_dims(s) for s in shapes]
            return shapes[0], shapes[1], shapes[2] if len(shapes) == 3 else None
    if multi_head:
        shapes = [getattr(layer, f"_{name}_shape", None) for name in ("query", "value", "key")]
        if shapes[0] is not None and shapes[1] is not None:
            return tuple(_dims(s) for s in shapes)
    return None


def build_for(layer, query_shape, value_shape, key_shape=None):
    """layer.build for these input shapes, whatever the kind's build signature."""
    if isinstance(layer, Attention):
        layer.build([query_shape, value_shape] + ([key_shape] if key_shape is not None else []))
    else:
        layer.build(query_shape, value_shape, key_shape)


def expected_specs(layer, shapes=None):
    """[(Keras name, shape)] `layer` has (built, shapes None) or would have once built for
    `shapes` = (query, value, key). The names depend on the config alone, so an unbuilt layer
    with shapes None lists them from a copy built for unit feature dims. `layer` is left
    as it is: the builds happen on a copy."""
    if shapes is None and layer.built:
        return layer._weight_specs()
    copy = type(layer).from_config(layer.get_config())
    try:
        if shapes is None:
            unit = (None,) * (_rank(layer) - 1) + (1,)
            shapes = (unit, unit, None)
        build_for(copy, *shapes)
        return copy._weight_specs()
    finally:
        copy.close()


def _rank(layer):
    """The smallest input rank (>= 3) the layer's attention axes fit: each axis a >= 0 needs
    rank >= a + 2, each a < 0 (rank + a >= 1) rank >= 1 - a. GroupQueryAttention: 3."""
    axes = getattr(layer, "attention_axes", None) or ()
    return max([3] + [a + 2 if a >= 0 else 1 - a for a in axes])


def input_shapes_from_weights(layer, shapes):
    """(query, value, key) input shapes for building `layer` to hold weights of these shapes
    ({Keras name: shape}), or None when there are no weights (nothing to build: a first call
    builds the layer). The feature dims are the projection kernels' first dims (the additive
    scale's length for AdditiveAttention; 1 where no weight depends on a dim, and for a fully
    reusing Reuse with output_shape the query's), the rank the smallest the attention axes
    allow (a Keras layer's config lists the axes it resolved at build, which fixes the rank
    except for explicit axes on higher-rank inputs)."""
    if not shapes:
        return None

    def dim(names, default):
        return next((shapes[n][0] for n in names if n in shapes and len(shapes[n]) > 0), default)

    if isinstance(layer, Attention):
        d = dim(["scale"], 1)
        return (None, None, d), (None, None, d), None
    value = dim(["value/kernel", "value_new/kernel", "value_reuse/kernel"], 1)
    # Reuse with every head reused has no query projection; the output kernel
    # (heads, value_dim, query dim) then gives the query's dim unless output_shape is set.
    output = shapes.get("attention_output_reuse/kernel")
    query_default = output[2] if output is not None and len(output) == 3 and not layer._output_shape else 1
    query = dim(["query/kernel", "gate/kernel"], query_default)
    key = dim(["key/kernel"], value)
    lead = (None,) * (_rank(layer) - 1)
    return lead + (query,), lead + (value,), lead + (key,)
