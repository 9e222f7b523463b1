"""Streaming training gives the bytes of in-memory training.

The models read lazy on-disk views (the loaders' ``WindowArray`` /
``RowArray``) batch by batch; the same data as one numpy array must give
byte-identical checkpoint files, for every model, also when the batches come
from DataLoader worker processes (the path CUDA hosts take) and when XGBoost
pages its quantised matrix to disk (external memory). Checked once against the
last materialising commit as well (docs/MODELS.md, "Streaming").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.models.models_helpers import ALL_MODELS, new_model, task_for

from cis490.data.load import NpyRows, RowArray, WindowArray
from cis490.models._array import is_lazy


def lazy(X: np.ndarray, path) -> "WindowArray | RowArray":
    """``X`` written to a .npy file and read back through the loaders' lazy views."""
    if X.ndim == 2:
        np.save(path, X)
        return RowArray(NpyRows(path))
    # two shards, rows interleaved (even rows in one, odd in the other): the shard gather
    n = X.shape[0]
    paths = [Path(f"{path}.even.npy"), Path(f"{path}.odd.npy")]
    np.save(paths[0], X[0::2])
    np.save(paths[1], X[1::2])
    shard_of = np.arange(n, dtype=np.int64) % 2
    row_of = np.arange(n, dtype=np.int64) // 2
    return WindowArray([NpyRows(p) for p in paths], shard_of, row_of, X.shape[1])


def saved_bytes(model, out) -> dict[str, bytes]:
    model.save(out)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_lazy_inputs_give_the_bytes_of_arrays(name, tmp_path):
    Xtr, ytr, Xva, yva = task_for(name, n_train=200, n_val=80)
    ref = new_model(name, epochs=2)
    ref.fit(Xtr, ytr, Xva, yva, seed=3)
    Ltr, Lva = lazy(Xtr, tmp_path / "tr.npy"), lazy(Xva, tmp_path / "va.npy")
    assert is_lazy(Ltr) and is_lazy(Lva)
    got = new_model(name, epochs=2)
    got.fit(Ltr, ytr, Lva, yva, seed=3)
    assert saved_bytes(got, tmp_path / "lazy") == saved_bytes(ref, tmp_path / "ref")
    np.testing.assert_array_equal(got.predict_proba(Lva), ref.predict_proba(Xva))


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_dataloader_workers_give_the_same_bytes(name, tmp_path, monkeypatch):
    Xtr, ytr, Xva, yva = task_for(name, n_train=200, n_val=80)
    ref = new_model(name, epochs=2)
    ref.fit(Xtr, ytr, Xva, yva, seed=1)
    monkeypatch.setenv("CIS490_LOADER_WORKERS", "2")
    got = new_model(name, epochs=2)
    got.fit(lazy(Xtr, tmp_path / "tr.npy"), ytr, lazy(Xva, tmp_path / "va.npy"), yva, seed=1)
    assert saved_bytes(got, tmp_path / "w") == saved_bytes(ref, tmp_path / "ref")


def test_gbt_external_memory_gives_the_same_trees(tmp_path, monkeypatch):
    Xtr, ytr, Xva, yva = task_for("gbt", n_train=300, n_val=100)
    ref = new_model("gbt", epochs=8)
    ref.fit(Xtr, ytr, Xva, yva, seed=0)
    import xgboost as xgb

    made = []
    real = xgb.ExtMemQuantileDMatrix

    def spy(it, **kw):
        made.append(it.cache_prefix if hasattr(it, "cache_prefix") else kw)
        return real(it, **kw)

    monkeypatch.setattr(xgb, "ExtMemQuantileDMatrix", spy)
    monkeypatch.setenv("CIS490_XGB_MEMORY_GIB", "0")  # every matrix goes to disk pages
    got = new_model("gbt", epochs=8)
    got.scratch_dir = str(tmp_path)
    got.fit(lazy(Xtr, tmp_path / "tr.npy"), ytr, lazy(Xva, tmp_path / "va.npy"), yva, seed=0)
    assert len(made) == 2  # train and val were external-memory matrices
    assert saved_bytes(got, tmp_path / "ext") == saved_bytes(ref, tmp_path / "ref")


def test_device_and_worker_settings_are_checked(monkeypatch):
    from cis490.models import loop

    monkeypatch.setenv("CIS490_DEVICE", "tpu")
    with pytest.raises(ValueError, match="CIS490_DEVICE"):
        loop.device()
    monkeypatch.setenv("CIS490_DEVICE", "cpu")
    assert loop.device().type == "cpu" and loop.loader_workers(loop.device()) == 0
    monkeypatch.setenv("CIS490_LOADER_WORKERS", "two")
    with pytest.raises(ValueError, match="CIS490_LOADER_WORKERS"):
        loop.loader_workers(loop.device())


def test_only_the_loaders_views_count_as_lazy(tmp_path):
    import pandas as pd
    import torch

    X = np.zeros((4, 3), dtype=np.float32)
    assert is_lazy(lazy(X, tmp_path / "x.npy"))
    assert not any(is_lazy(v) for v in (X, pd.DataFrame(X), torch.from_numpy(X), X.tolist()))
    model = new_model("gbt", epochs=2)  # a DataFrame still goes through np.asarray
    Xtr, ytr, Xva, yva = task_for("gbt", n_train=60, n_val=30)
    model.fit(pd.DataFrame(Xtr), ytr, pd.DataFrame(Xva), yva, seed=0)
    assert model.predict_proba(pd.DataFrame(Xva)).shape == (30, model.n_classes)


def test_curves_need_tensorboard_not_torch(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from cis490.train.curves import CurveWriter; "
            f"w = CurveWriter({str(tmp_path)!r}); w.close(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # a gbt job with curves stays free of torch
