"""The report's learning curves read the job's stored ``metrics.jsonl`` (train and val loss,
val macro F1 per epoch) and fall back to the checkpoint's history without it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cis490.evaluate import plots
from cis490.evaluate.compare import compare
from cis490.evaluate.predictions import read_predictions, write_predictions
from cis490.evaluate.scoring import Context
from cis490.fleet import store
from predsim import STRIDE_S, predictions, world

pytest.importorskip("matplotlib")

VAL = world(12, 1, prefix="v", hosts=("elliott-thinkpad",))
TEST = world(16, 2, prefix="t", hosts=("k-gamingcom",))
CTX = Context(onset_ns={**VAL[5], **TEST[5]}, stride_s=STRIDE_S)


def stored_curves(tmp_path, rows: list[dict]) -> list[dict]:
    """metrics.jsonl through the store and back, as eval finds it (``store.read_curves``)."""
    art, curves = tmp_path / "art", tmp_path / "curves"
    art.mkdir()
    (art / "gbt_realistic.ckpt.json").write_text("{}")
    (curves / "tensorboard").mkdir(parents=True)
    (curves / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (curves / "tensorboard" / "events.out.tfevents.0.h.0.0").write_bytes(b"e")
    for sub in ("tmp", "models"):
        (tmp_path / "spool" / sub).mkdir(parents=True)
    stored = store.put(tmp_path / "spool", "gbt_realistic", art, {}, curves_dir=curves)
    return store.read_curves(stored.path)


@pytest.fixture
def comp(tmp_path):
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_macro_f1": 0.2 * e,
             "lr": 0.1, "seconds": 0.5} for e in (1, 2, 3)]
    assert stored_curves(tmp_path, rows) == rows
    gbt = predictions("gbt", "realistic", 0.8, VAL, TEST, seeds=(0, 1))
    # seed 0 has stored curves, seed 1 (a job from before them) only the checkpoint's history
    gbt = dataclasses.replace(gbt, meta={**gbt.meta, "curves": {"0": rows, "1": None}})
    mlp = predictions("mlp", "realistic", 0.6, VAL, TEST)
    preds = []
    for p in (gbt, mlp, predictions("majority", "baseline", 0.0, VAL, TEST)):
        preds.append(read_predictions(write_predictions(p, tmp_path / f"{p.model}.parquet")))
    return compare(preds, CTX, n_resamples=50, seed=1), rows


def test_learning_series_prefers_metrics_jsonl_and_falls_back_to_history(comp):
    comp, rows = comp
    by = {m.name: m for m in comp.models}
    gbt = plots.learning_series(by["gbt_realistic"])
    assert gbt["0"] == [{k: r[k] for k in ("epoch", "train_loss", "val_loss", "val_macro_f1")}
                        for r in rows]
    history = by["gbt_realistic"].meta["history"]["1"]
    assert gbt["1"] == [{"epoch": h["epoch"], "train_loss": h["loss"], "val_loss": None,
                         "val_macro_f1": h["val_macro_f1"]} for h in history]
    assert all(r["val_loss"] is None for r in plots.learning_series(by["mlp_realistic"])["0"])


def test_learning_plot_draws_train_and_val_loss_from_metrics_jsonl(comp, tmp_path, monkeypatch):
    comp, rows = comp
    figures = []
    real_save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or real_save(fig, path))
    path = plots.learning_plot(comp, tmp_path / "learning_curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    [fig] = figures
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert set(axes) == {"gbt_realistic", "mlp_realistic"}       # baselines have no training
    gbt = axes["gbt_realistic"]
    dashed = [ln for ln in gbt.get_lines() if ln.get_linestyle() == "--"]
    solid = [ln for ln in gbt.get_lines() if ln.get_linestyle() == "-"]
    assert len(dashed) == 1 and len(solid) == 2                   # val loss once; train per seed
    assert np.allclose(dashed[0].get_ydata(), [r["val_loss"] for r in rows])
    assert np.allclose(solid[0].get_ydata(), [r["train_loss"] for r in rows])
    assert "val" in gbt.get_ylabel()
    f1 = [ln for ax in fig.axes if ax is not gbt and ax.bbox.bounds == gbt.bbox.bounds
          for ln in ax.get_lines()]                                # the twin axis of gbt's panel
    assert any(np.allclose(ln.get_ydata(), [r["val_macro_f1"] for r in rows]) for ln in f1)
    mlp = axes["mlp_realistic"]
    assert [ln.get_linestyle() for ln in mlp.get_lines()] == ["-"] and mlp.get_ylabel() == "train loss"
