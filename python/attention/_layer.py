"""The common base of the layers: the C handle, build, weights, inputs, masks, dropout, config.

A layer owns one att_layer handle (destroyed by `close()` or when the object is collected).
Inputs may be any numeric array-like (float16 and bfloat16 included); as in Keras they are
cast to the layer's compute dtype and the results (outputs, scores, gradients of the inputs)
come back in it, whatever the inputs' dtype; see _dtypes for the policies. Masks may be bool or
numeric; nonzero keeps a position.

Dropout: every layer has a 64-bit `dropout_seed` (the `seed` argument, or a random one when
it is None) and a `dropout_stream` counter: every call that applies dropout (training with a
rate > 0) takes the counter's value as its stream and advances it by one, atomically, so
calls made at once from several threads draw distinct masks, as successive calls do (a call
the library then refuses has still used up its stream). A call's dropout mask is a function
of (seed, stream) alone, so two layers with the same seed called the same way drop the same
elements.

Threads: a layer may be called (and its gradients, losses and weights read) from many
threads at once. build, set_weights and apply_constraints while another thread uses the
layer raise LayerBusyError (nothing changed), as does a call that meets one of them.
"""

import collections
import ctypes
import itertools
import math
import operator
import re
import secrets

import numpy as np

from . import _lib
from ._call_plan import CallPlan, CallPlans
from ._dtypes import Policy, numeric
from ._lib import check


_SHAPE = operator.attrgetter("shape")


def as_array(x, dtype, what):
    """A C-contiguous array of `dtype` from a numeric array-like (bfloat16 included;
    TypeError otherwise)."""
    if type(x) is np.ndarray and x.dtype == dtype and x.flags.c_contiguous:
        return x  # already what the library takes
    return np.asarray(numeric(x, what), dtype=dtype, order="C")  # (ascontiguousarray makes 0-d 1-d)


def as_mask(mask, what):
    """A C-contiguous uint8 array (1 keep, 0 mask out) from a bool/numeric mask, or None."""
    if mask is None:
        return None
    return np.asarray(as_array(mask, None, what) != 0, dtype=np.uint8, order="C")


def _resolve_seed(seed):
    if seed is None:
        return secrets.randbits(64)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be None or an integer in [0, 2**64), got {seed!r}")
    return int(seed)


def _shape_ref(dims):
    """byref(att_shape) for a Keras shape (None dims, e.g. the batch, read as 1), or None."""
    if dims is None:
        return None
    return ctypes.byref(_lib.make_shape(1 if d is None else d for d in dims))


class Gradients:
    """The result of `layer.gradients(...)`: one training step's forward `output` (and
    `scores` when a scores_gradient was given) and the gradients of
    L = sum(output * output_gradient) [+ sum(scores * scores_gradient)] [+ sum(losses)]:
    `query`, `value` (with the key's share when no key was passed), `key` (None then),
    `reuse_attention_scores` (None unless the layer reused scores) and `weights`, a list in
    get_weights() order. The outputs and input gradients are in the layer's compute dtype,
    the weight gradients in its variable dtype."""

    def __init__(self, *, output, scores, query, value, key, reuse_attention_scores, weights):
        self.output, self.scores = output, scores
        self.query, self.value, self.key = query, value, key
        self.reuse_attention_scores = reuse_attention_scores
        self.weights = weights

    def __repr__(self):
        return (f"Gradients(query {self.query.shape}, value {self.value.shape}, "
                f"key {None if self.key is None else self.key.shape}, {len(self.weights)} weights)")


class Layer:
    """Base of the Keras-shaped layers. Subclasses set `_CONFIG_STRUCT` (their C config struct)
    and `_CREATE` (the name of the att_*_create function taking it), and define
    `_config_fields()` (that struct's fields after struct_size and dtype), `_config()` (their
    get_config keys) and the Keras call/build signatures."""

    _name_counts = collections.Counter()
    _weight_options = None  # the multi-head layers' WeightOptions (their regularizers)

    def __init__(self, *, dtype="float32", name=None, seed=None, trainable=True):
        self._handle = None
        self._built = False
        self._plans = CallPlans()
        self._policy = Policy(dtype)
        self._np_dtype = self._policy.variable_dtype  # what the library computes and stores in
        self.dtype = self._np_dtype.name
        if not isinstance(trainable, (bool, np.bool_)):
            raise TypeError(f"trainable must be True or False, got {trainable!r}")
        self.trainable = bool(trainable)
        self.name = name if name is not None else self._default_name()
        self.seed = seed
        self.dropout_seed = _resolve_seed(seed)
        self.dropout_stream = 0  # sets self._streams
        struct = self._CONFIG_STRUCT
        config = struct(struct_size=ctypes.sizeof(struct), dtype=self._dtype_code, **self._config_fields())
        handle = ctypes.c_void_p()
        check(getattr(_lib.lib(), self._CREATE)(ctypes.byref(config), ctypes.byref(handle)))
        self._handle = handle

    @classmethod
    def _default_name(cls):
        base = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
        n = Layer._name_counts[base]
        Layer._name_counts[base] += 1
        return base if n == 0 else f"{base}_{n}"

    @property
    def dropout_stream(self):
        """The stream the next call that applies dropout takes (settable, mod 2**64)."""
        return int(repr(self._streams)[len("count("):-1]) % 2**64  # reads without taking

    @dropout_stream.setter
    def dropout_stream(self, value):
        self._streams = itertools.count(operator.index(value) % 2**64)

    def _take_stream(self):
        """The next stream, taken atomically: next() of an itertools.count runs under the
        GIL without releasing it (no lock, so none can be held across a fork)."""
        return next(self._streams) % 2**64

    @property
    def _dtype_code(self):
        return _lib.DTYPE_CODES[self._np_dtype]

    @property
    def dtype_policy(self):
        """The Keras dtype policy name ("float32", "mixed_float16", ...) the layer was made with."""
        return self._policy.name

    @property
    def compute_dtype(self):
        """The dtype of the results (Keras's compute dtype): float32, float64, float16 or
        bfloat16. Inputs of any dtype are computed in float32 (float64 for a float64 layer)."""
        return self._policy.compute_dtype.name

    @property
    def variable_dtype(self):
        """The dtype of the weights (also `dtype`): float64 for a float64 layer, else float32."""
        return self._np_dtype.name

    # -- lifetime ---------------------------------------------------------------------------

    def close(self):
        """Destroy the C layer now (later use raises ValueError: invalid handle)."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            check(_lib.lib().att_layer_destroy(handle))

    def __del__(self):
        if getattr(self, "_handle", None) is not None:
            _lib.lib().att_layer_destroy(self._handle)
            self._handle = None

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} dtype={self.dtype}>"

    # -- build and weights ------------------------------------------------------------------

    @property
    def built(self):
        """Whether the weights exist (build or a first call creates them; a built layer stays
        built, so once true it is not asked again)."""
        if not self._built:
            built = ctypes.c_int32()
            check(_lib.lib().att_layer_is_built(self._handle, ctypes.byref(built)))
            self._built = bool(built.value)
        return self._built

    def _build_shapes(self, query_shape, value_shape, key_shape=None):
        check(_lib.lib().att_layer_build(
            self._handle, _shape_ref(query_shape), _shape_ref(value_shape), _shape_ref(key_shape)
        ))
        self._plans.clear()  # the output shapes may change
        # [query, value, key] (key None: the value's) as lists of ints and None, for save_weights.
        self._build_input_shapes = [None if s is None else [None if d is None else int(d) for d in s]
                                    for s in (query_shape, value_shape, key_shape)]

    def _weight_specs(self):
        """[(Keras name, shape)] of the weights, in get_weights() order; [] before build."""
        if not self.built:
            return []
        count = ctypes.c_size_t()
        check(_lib.lib().att_layer_weight_count(self._handle, ctypes.byref(count)))
        specs = []
        for i in range(count.value):
            shape, name = _lib.Shape(), ctypes.c_char_p()
            check(_lib.lib().att_layer_weight_info(self._handle, i, ctypes.byref(shape), ctypes.byref(name)))
            specs.append((name.value.decode(), _lib.shape_tuple(shape)))
        return specs

    @property
    def weight_names(self):
        """The Keras names of the weights ("query/kernel", ...), in get_weights() order (a
        Keras variable's `path` without the layer name)."""
        return [name for name, _ in self._weight_specs()]

    @property
    def weights(self):
        """The weights, as Keras's `layer.weights` but as numpy arrays (copies; get_weights())."""
        return self.get_weights()

    @property
    def trainable_weights(self):
        """`weights` when `trainable` (every weight of these layers is trainable), else []."""
        return self.get_weights() if self.trainable else []

    @property
    def non_trainable_weights(self):
        """[] when `trainable`, else `weights`, as Keras splits them."""
        return [] if self.trainable else self.get_weights()

    def count_params(self):
        """The number of weight values (ValueError before build, as Keras)."""
        if not self.built:
            raise ValueError(f"You tried to call `count_params` on layer {self.name!r}, but the "
                             "layer isn't built. Build it first (build() or a call).")
        return sum(math.prod(shape) for _, shape in self._weight_specs())

    def get_weights(self):
        """The weights as numpy arrays, in Keras's order and shapes ([] before build)."""
        arrays = []
        for i, (_, shape) in enumerate(self._weight_specs()):
            array = np.empty(shape, self._np_dtype)
            check(_lib.lib().att_layer_get_weight(self._handle, i, ctypes.byref(_lib.make_tensor(array))))
            arrays.append(array)
        return arrays

    def set_weights(self, weights):
        """Load weights given in Keras's get_weights() order (all checked before any is set)."""
        specs = self._weight_specs()
        weights = list(weights)
        if len(weights) != len(specs):
            hint = "" if specs or self.built else " (the layer is not built yet: build or call it first)"
            raise ValueError(
                f"Layer {self.name!r} expects {len(specs)} weights {[n for n, _ in specs]}, "
                f"but set_weights received {len(weights)}{hint}"
            )
        arrays = []
        for (name, shape), weight in zip(specs, weights):
            array = as_array(weight, self._np_dtype, f"weight {name!r}")
            if array.shape != shape:
                raise ValueError(
                    f"Layer {self.name!r}: weight {name!r} has shape {shape}, "
                    f"but set_weights received shape {array.shape}"
                )
            arrays.append(array)
        for i, array in enumerate(arrays):
            check(_lib.lib().att_layer_set_weight(self._handle, i, ctypes.byref(_lib.make_tensor(array))))

    def save_weights(self, path):
        """Write the weights to `path` (must end in .npz): each under its Keras name, in
        get_weights() order, with the layer kind, dtype, shapes and build input shapes that
        load_weights checks and builds from. The layer must be built (ValueError otherwise)."""
        from ._weights_file import save_npz
        save_npz(self, path)

    def save(self, path):
        """Write the layer to `path` as a layer file (safetensors): its kind, get_config(),
        build input shapes and weights, which `attention.load(path)` and the C library's
        att_layer_load read back. The layer must be built (ValueError otherwise)."""
        from ._layer_file import save
        save(self, path)

    def load_weights(self, path, layer_name=None):
        """Load weights from a file: `.npz` from save_weights (kind, names and shapes must
        match; an unbuilt layer is built for the stored input shapes), or Keras's
        `.weights.h5` / `.keras` of a model (needs h5py): the layer named `layer_name`, or
        when it is None the model's only layer of this kind; an unbuilt layer is built for
        input shapes implied by the weights (if it has any). Weights are converted to the
        layer's dtype. Mismatches raise ValueError and leave the layer as it was."""
        from ._weights_file import load
        load(self, path, layer_name)

    # -- forward ----------------------------------------------------------------------------

    def _input(self, x, what):
        return as_array(x, self._np_dtype, what)

    def _call_multi_head(self, query, value, key, masks, *, training, use_causal_mask,
                         return_scores, reuse_attention_scores=None, gradients=None):
        """The call of the multi-head layers: query, value, key (or None) and
        reuse_attention_scores (or None) converted to the layer dtype, `masks` (CallArgs mask
        field -> mask or None) to uint8, the layer built for the inputs' shapes on first use,
        then _forward (with `gradients`: the backward, see `gradients()`)."""
        query = self._input(query, "query")
        value = self._input(value, "value")
        key = None if key is None else self._input(key, "key")
        if not self.built:
            self.build(query.shape, value.shape, None if key is None else key.shape)
        tensors = {field: as_mask(mask, field) for field, mask in masks.items()}
        if reuse_attention_scores is not None:
            tensors["reuse_attention_scores"] = self._input(reuse_attention_scores,
                                                            "reuse_attention_scores")
        return self._forward(query, value, key, masks=tensors, training=training,
                             use_causal_mask=use_causal_mask, return_scores=return_scores,
                             gradients=gradients)

    def _output_shapes(self, query_shape, value_shape, key_shape):
        """att_layer_output_shape: the (output, scores) shapes for these input shapes."""
        out_shape, scores_shape = _lib.Shape(), _lib.Shape()
        check(_lib.lib().att_layer_output_shape(
            self._handle, _shape_ref(query_shape), _shape_ref(value_shape),
            None if key_shape is None else _shape_ref(key_shape),
            ctypes.byref(out_shape), ctypes.byref(scores_shape)))
        return _lib.shape_tuple(out_shape), _lib.shape_tuple(scores_shape)

    def _plan(self, inputs, return_scores, cache=None):
        """The CallPlan for `inputs` (CallArgs tensor field -> array, query and value
        first) and, for a cached call, `cache` (its field after the inputs; the scores' last
        dim is its S_max); made on the signature's first call in a thread."""
        signature = (return_scores, None if cache is None else cache.shape, *inputs,
                     *map(_SHAPE, inputs.values()))
        table = self._plans.table()
        plan = table.get(signature)
        if plan is None:
            key = inputs.get("key")
            out_dims, scores_dims = self._output_shapes(inputs["query"].shape, inputs["value"].shape,
                                                        None if key is None else key.shape)
            fields = {field: (array.shape, array.dtype) for field, array in inputs.items()}
            if cache is not None:  # any rank: the library says what it needs
                fields["cache"] = (cache.shape, cache.dtype)
                scores_dims = tuple(scores_dims[:-1]) + (cache.shape[2] if cache.ndim == 5 else 0,)
            fields["output"] = (out_dims, self._np_dtype)
            if return_scores:
                fields["scores"] = (scores_dims, self._np_dtype)
            plan = table[signature] = CallPlan(fields, out_dims, scores_dims)
        return plan

    def _prepare(self, query, value, key, masks, *, return_scores, training, use_causal_mask, cache=None):
        """A call's CallPlan bound to its arrays — query, value, key and the masks (CallArgs
        field -> array) that are not None, then `cache`, then a new output (and scores when
        return_scores) — and its scalar arguments: a training call with a dropout rate takes
        the next dropout stream (0, unused, otherwise). Returns (plan, args, output, scores)."""
        inputs = {"query": query, "value": value}
        if key is not None:
            inputs["key"] = key
        for field, mask in masks.items():
            if mask is not None:
                inputs[field] = mask
        plan = self._plan(inputs, return_scores, cache)
        output, scores = np.empty(plan.out_dims, self._np_dtype), None
        arrays = [*inputs.values(), output] if cache is None else [*inputs.values(), cache, output]
        if return_scores:
            scores = np.empty(plan.scores_dims, self._np_dtype)
            arrays.append(scores)
        training = bool(training)
        stream = self._take_stream() if training and self.dropout > 0 else 0
        args = plan.bind(arrays, training, bool(use_causal_mask), self.dropout_seed, stream)
        return plan, args, output, scores

    def _forward(self, query, value, key, *, masks, training, use_causal_mask, return_scores,
                 gradients=None):
        """att_layer_call on converted inputs; `masks` maps optional CallArgs tensor fields
        (the masks, reuse_attention_scores) to arrays or None. Returns output, or (output,
        scores) when return_scores; with `gradients` (the keywords of `gradients()`), runs
        att_layer_backward instead and returns a Gradients."""
        if gradients is not None:
            return_scores = gradients["scores_gradient"] is not None
        plan, args, output, scores = self._prepare(query, value, key, masks, return_scores=return_scores,
                                                   training=training, use_causal_mask=use_causal_mask)
        if gradients is None:
            check(_lib.lib().att_layer_call(self._handle, plan.ref))
            result = self._policy.result
            result = (result(output), result(scores)) if return_scores else result(output)
        else:
            result = self._backward(args, query, value, key, masks, output, scores, plan.out_dims,
                                    plan.scores_dims, **gradients)
        if self._weight_options is not None:
            self._record_activity_losses(args)
        return result

    def _backward(self, args, query, value, key, masks, output, scores, out_dims, scores_dims, *,
                  output_gradient, scores_gradient, regularization):
        """att_layer_backward for the call `args`; returns a Gradients."""
        d_output = self._input(output_gradient, "output_gradient")
        if d_output.shape != tuple(out_dims):
            raise ValueError(f"output_gradient has shape {d_output.shape}, but the output's shape is {tuple(out_dims)}")
        d_scores = None
        if scores_gradient is not None:
            d_scores = self._input(scores_gradient, "scores_gradient")
            if d_scores.shape != tuple(scores_dims):
                raise ValueError(f"scores_gradient has shape {d_scores.shape}, but the scores' shape is "
                                 f"{tuple(scores_dims)}")
        reuse = masks.get("reuse_attention_scores")
        grads = {"query": np.empty_like(query), "value": np.empty_like(value),
                 "key": None if key is None else np.empty_like(key),
                 "reuse_attention_scores": None if reuse is None else np.empty_like(reuse)}
        weights = [np.empty(shape, self._np_dtype) for _, shape in self._weight_specs()]
        tensors = (_lib.Tensor * max(1, len(weights)))(*[_lib.make_tensor(w) for w in weights])
        g = _lib.GradientArgs(
            struct_size=ctypes.sizeof(_lib.GradientArgs),
            output_gradient=_lib.tensor_ref(d_output),
            scores_gradient=_lib.tensor_ref(d_scores),
            query_gradient=_lib.tensor_ref(grads["query"]),
            value_gradient=_lib.tensor_ref(grads["value"]),
            key_gradient=_lib.tensor_ref(grads["key"]),
            reuse_attention_scores_gradient=_lib.tensor_ref(grads["reuse_attention_scores"]),
            weight_gradients=ctypes.cast(tensors, ctypes.POINTER(_lib.Tensor)) if weights else None,
            include_regularization=bool(regularization),
        )
        check(_lib.lib().att_layer_backward(self._handle, ctypes.byref(args), ctypes.byref(g)))
        result = self._policy.result
        return Gradients(output=result(output), scores=result(scores), weights=weights,
                         **{field: result(grad) for field, grad in grads.items()})

    # -- training -----------------------------------------------------------------------------

    def _losses(self, args):
        """att_layer_losses for the call `args` (None: the weights' penalties only). With args
        the library reruns the forward, so the buffer is sized to need one call."""
        count, capacity = ctypes.c_size_t(), 64  # more than any layer's weights + activity terms
        while True:
            values = (ctypes.c_double * capacity)()
            check(_lib.lib().att_layer_losses(self._handle, args and ctypes.byref(args), values, capacity,
                                              ctypes.byref(count)))
            if count.value <= capacity:
                return [float(v) for v in values[:count.value]]
            capacity = count.value

    def _record_activity_losses(self, args):
        """Keeps the activity penalties of the call `args`, for `losses`."""
        options = self._weight_options
        if options is None or not options.has_activity_regularizer:
            return
        weights = len(self._losses(None))
        self._activity_losses = self._losses(args)[weights:]

    @property
    def losses(self):
        """The regularization losses, as Keras's layer.losses: the penalty of each regularized
        weight (current values), then the activity penalties of the last call (each divided
        by its tensor's batch size). [] before build or without regularizers."""
        if not self.built:
            return []
        return self._losses(None) + list(getattr(self, "_activity_losses", []))

    def apply_constraints(self):
        """Applies kernel_constraint and bias_constraint to the weights in place, as Keras's
        optimizer does after an update."""
        check(_lib.lib().att_layer_apply_constraints(self._handle))

    # -- config -----------------------------------------------------------------------------

    def get_config(self):
        """Keras's get_config keys for this layer: "name", "trainable", "dtype" (the policy
        name) and the constructor's."""
        return {"name": self.name, "trainable": self.trainable, "dtype": self.dtype_policy,
                **self._config()}

    @classmethod
    def from_config(cls, config):
        """A new layer from get_config() (ours or Keras's)."""
        return cls(**config)
