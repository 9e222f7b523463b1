"""numpy -> Arrow without ``pa.array``.

Invariant: nothing here calls ``pa.array``, whose first call imports pandas
(~0.4-0.8 s, in every builder process and every spawned worker) just to
check whether its argument is a pandas object. The builders' columns are
numpy arrays of fixed-width numbers and short lists of distinct strings, so
they are wrapped as Arrow buffers directly (zero-copy for numbers).
"""

from __future__ import annotations

import numpy as np
from cis490.common import InputError

__all__ = ["from_numpy", "strings", "repeat_strings"]

_TYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64", np.dtype(np.int64): "int64",
          np.dtype(np.int32): "int32", np.dtype(np.uint8): "uint8"}


def from_numpy(arr: np.ndarray):
    """A 1-D numeric numpy array as an Arrow array (no nulls; NaN stays NaN)."""
    import pyarrow as pa

    arr = np.ascontiguousarray(arr)
    if arr.ndim != 1 or arr.dtype not in _TYPES:
        raise TypeError(f"from_numpy: need a 1-D array of {sorted(map(str, _TYPES))}, got {arr.dtype} {arr.shape}")
    return pa.Array.from_buffers(getattr(pa, _TYPES[arr.dtype])(), len(arr), [None, pa.py_buffer(arr)])


def strings(values: list[str]):
    """A list of str as an Arrow string array."""
    import pyarrow as pa

    enc = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(enc) + 1, np.int64)
    np.cumsum([len(e) for e in enc], out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise InputError("strings: more than 2 GiB of text in one array")
    return pa.Array.from_buffers(pa.string(), len(enc),
                                 [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(enc))])


def repeat_strings(values: list[str], reps) -> object:
    """``values[i]`` repeated ``reps[i]`` times, as an Arrow string array."""
    idx = np.repeat(np.arange(len(values), dtype=np.int64), np.asarray(reps, dtype=np.int64))
    return strings(values).take(from_numpy(idx))
