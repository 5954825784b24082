"""The call plan's data addresses: what the library is handed for each kind of array."""

import numpy as np

from attention import _call_plan


def test_data_address_is_numpys_for_every_kind_of_array():
    base = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    read_only = base.copy()
    read_only.flags.writeable = False
    arrays = [base, base[1:], read_only, np.asfortranarray(base), base.view(np.recarray),
              np.empty((0, 4), np.float32), np.ascontiguousarray(base[:, ::2]), np.array(3.0)]
    for array in arrays:
        assert _call_plan._data_address(array) == array.ctypes.data


def test_reader_falls_back_where_the_object_layout_does_not_hold(monkeypatch):
    # An interpreter whose arrays keep their pointer elsewhere: the probe fails, and the reader
    # asks numpy instead.
    monkeypatch.setattr(_call_plan.ctypes.c_void_p, "from_address",
                        classmethod(lambda cls, address: cls(0)))
    read = _call_plan._data_address_reader()
    array = np.ones(5, np.float32)
    assert read(array) == array.ctypes.data
