"""att_call_args prepared once per call signature, so a layer call costs one trip into C.

A signature is what the library checks about a call's tensors: which fields are present and
their shapes (dtypes follow from the layer). Its CallPlan holds an att_call_args whose
att_tensor structs already carry dtype and shape; a call of that signature only writes the
arrays' data addresses and the scalar arguments, then calls att_layer_call once. The library
validates every call in full, so nothing is checked twice.

Plans are per thread (a layer's table lives in a threading.local): ctypes releases the GIL
during the call, so two threads must never write the same struct.
"""

import ctypes
import threading

from . import _lib


def address(array):
    """The data address of a C-contiguous array, or None (NULL) when it has no elements (the
    library takes NULL data for an empty tensor). A writable array's address comes from a
    ctypes view of its buffer, 4x cheaper than array.ctypes.data (which read-only ones take)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(array))
    except (TypeError, ValueError):  # read-only, or no bytes to view
        return None if array.size == 0 else array.ctypes.data


class CallPlan:
    """The att_call_args of one signature: `fields` maps CallArgs tensor fields to (shape,
    numpy dtype), in the order `bind` receives the arrays."""

    __slots__ = ("args", "ref", "_tensors")

    def __init__(self, fields):
        self.args = _lib.CallArgs(struct_size=ctypes.sizeof(_lib.CallArgs))
        self._tensors = []
        for field, (shape, dtype) in fields.items():
            tensor = _lib.Tensor(dtype=_lib.DTYPE_CODES[dtype], shape=_lib.make_shape(shape))
            setattr(self.args, field, ctypes.pointer(tensor))  # the struct keeps the tensor alive
            self._tensors.append(tensor)
        self.ref = ctypes.byref(self.args)

    def bind(self, arrays):
        """The args with each tensor viewing the matching array (same shapes and dtypes as
        the signature; the caller keeps the arrays alive while the library uses them)."""
        for tensor, array in zip(self._tensors, arrays):
            tensor.data = address(array)
        return self.args


class CallPlans:
    """A layer's plans by signature, one table per thread; `clear` drops them all (after a
    build, which may change the output shapes)."""

    def __init__(self):
        self._local = threading.local()

    def clear(self):
        self._local = threading.local()

    def table(self):
        """This thread's {signature: (CallPlan, output shape, scores shape)}."""
        local = self._local
        try:
            return local.table
        except AttributeError:
            local.table = {}
            return local.table
