"""att_call_args prepared once per call signature, so a layer call costs one trip into C.

A signature is what the library checks about a call's tensors: which fields are present and
their shapes (dtypes follow from the layer). Its CallPlan holds an att_call_args whose
att_tensor structs already carry dtype and shape; a call of that signature only writes the
arrays' data addresses (read straight from the ndarray objects) and, when they differ from
its last call's, the scalar arguments, then calls att_layer_call once. The library validates
every call in full, so nothing is checked twice.

Plans are per thread (a layer's table lives in a threading.local): ctypes releases the GIL
during the call, so two threads must never write the same struct.
"""

import ctypes
import threading

import numpy as np

from . import _lib


def _data_address_reader():
    """A function giving an ndarray's data address. Under CPython it reads the pointer from
    the array object: numpy's PyArrayObject_fields starts with `char *data` right after the
    object header (ABI-stable: PyArray_DATA compiles to that read in every extension), 4x
    cheaper than array.ctypes.data or a ctypes view of the buffer. Checked on a probe array
    at import; where it does not hold (an interpreter whose id() is not the object's
    address), array.ctypes.data."""
    probe, offset, pointer_at = np.empty(1), object.__basicsize__, ctypes.c_void_p.from_address
    if pointer_at(id(probe) + offset).value == probe.ctypes.data:
        return lambda array: pointer_at(id(array) + offset).value
    return lambda array: array.ctypes.data


_data_address = _data_address_reader()


class CallPlan:
    """The att_call_args of one signature: `fields` maps CallArgs tensor fields to (shape,
    numpy dtype), in the order `bind` receives the arrays (ndarrays, subclasses included);
    `out_dims` and `scores_dims` are the output and scores shapes its calls allocate."""

    __slots__ = ("args", "ref", "out_dims", "scores_dims", "_tensors", "_scalars")

    def __init__(self, fields, out_dims, scores_dims):
        self.args = _lib.CallArgs(struct_size=ctypes.sizeof(_lib.CallArgs))
        self.out_dims, self.scores_dims = out_dims, scores_dims
        self._tensors = []
        for field, (shape, dtype) in fields.items():
            tensor = _lib.Tensor(dtype=_lib.DTYPE_CODES[dtype], shape=_lib.make_shape(shape))
            setattr(self.args, field, ctypes.pointer(tensor))  # the struct keeps the tensor alive
            self._tensors.append(tensor)
        self.ref = ctypes.byref(self.args)
        self._scalars = None  # (training, use_causal_mask, dropout_seed, dropout_stream) in args

    def bind(self, arrays, training, use_causal_mask, dropout_seed, dropout_stream):
        """The args with each tensor viewing the matching array (same shapes and dtypes as
        the signature; the caller keeps the arrays alive while the library uses them) and
        these scalar arguments (written only when they differ from the last call's)."""
        for tensor, array in zip(self._tensors, arrays):
            tensor.data = _data_address(array)  # (an empty array's is never read)
        scalars = (training, use_causal_mask, dropout_seed, dropout_stream)
        if scalars != self._scalars:
            args = self.args
            args.training, args.use_causal_mask, args.dropout_seed, args.dropout_stream = scalars
            self._scalars = scalars
        return self.args


class CallPlans:
    """A layer's plans by signature, one table per thread; `clear` drops them all (after a
    build, which may change the output shapes)."""

    def __init__(self):
        self._local = threading.local()

    def clear(self):
        self._local = threading.local()

    def table(self):
        """This thread's {signature: CallPlan}."""
        local = self._local
        try:
            return local.table
        except AttributeError:
            local.table = {}
            return local.table
