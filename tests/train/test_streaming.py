"""Streaming training gives the bytes of in-memory training.

The models read lazy on-disk views (the loaders' ``WindowArray`` /
``RowArray``) batch by batch; the same data as one numpy array must give
byte-identical checkpoint files, for every model, also when the batches come
from DataLoader worker processes (the path CUDA hosts take) and when XGBoost
pages its quantised matrix to disk (external memory). Checked once against the
last materialising commit as well (docs/MODELS.md, "Streaming").
"""

from __future__ import annotations

import numpy as np
import pytest
from tests.models.models_helpers import ALL_MODELS, new_model, task_for

from cis490.data.load import NpyRows, RowArray, WindowArray
from cis490.models._array import is_lazy


def lazy(X: np.ndarray, path) -> "WindowArray | RowArray":
    """``X`` written to a .npy file and read back through the loaders' lazy views."""
    np.save(path, X)
    rows = NpyRows(path)
    if X.ndim == 2:
        return RowArray(rows)
    # two "shards" of the same file, rows interleaved: exercises the shard gather
    n = X.shape[0]
    shard_of = np.zeros(n, dtype=np.int64)
    return WindowArray([rows], shard_of, np.arange(n, dtype=np.int64), X.shape[1])


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
    from cis490.train import loop

    monkeypatch.setenv("CIS490_DEVICE", "tpu")
    with pytest.raises(ValueError, match="CIS490_DEVICE"):
        loop.device()
    monkeypatch.setenv("CIS490_DEVICE", "cpu")
    assert loop.device().type == "cpu" and loop.loader_workers(loop.device()) == 0
    monkeypatch.setenv("CIS490_LOADER_WORKERS", "two")
    with pytest.raises(ValueError, match="CIS490_LOADER_WORKERS"):
        loop.loader_workers(loop.device())
