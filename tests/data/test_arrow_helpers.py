"""numpy -> Arrow helpers: equal to ``pa.array``, and the builders never import pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from cis490.data.arrow import from_numpy, repeat_strings, strings


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.uint8])
def test_from_numpy_equals_pa_array(dtype):
    a = (np.arange(-3, 7) * 3).astype(dtype)
    if a.dtype.kind == "f":
        a[2] = np.nan
    got, want = from_numpy(a), pa.array(a)
    assert got.type == want.type and got.null_count == 0
    np.testing.assert_array_equal(got.to_numpy(zero_copy_only=False), a)
    # a strided view is copied, not misread
    np.testing.assert_array_equal(from_numpy(a[::2]).to_numpy(zero_copy_only=False), a[::2])


def test_from_numpy_refuses_what_it_cannot_wrap():
    with pytest.raises(TypeError, match="1-D"):
        from_numpy(np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError):
        from_numpy(np.array(["a"], dtype=object))


def test_strings_and_repeats_equal_python_lists():
    vals = ["ep-0001", "", "kötü-ürün", "x" * 300]
    assert strings(vals).equals(pa.array(vals, pa.string()))
    reps = [2, 0, 3, 1]
    want = [v for v, n in zip(vals, reps) for _ in range(n)]
    assert repeat_strings(vals, reps).to_pylist() == want
    assert repeat_strings([], []).to_pylist() == []


def test_the_builders_do_not_import_pandas(tiny_store, tiny_validation, tmp_path):
    code = (
        "import sys\n"
        "from cis490.data.features import build_features\n"
        "from cis490.data.tensors import build_tensors\n"
        f"build_features({str(tiny_validation[0])!r}, {str(tiny_store[0])!r}, {str(tmp_path / 'f')!r})\n"
        f"build_tensors({str(tiny_validation[0])!r}, {str(tiny_store[0])!r}, {str(tmp_path / 't')!r})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pandas'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
