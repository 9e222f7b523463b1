"""Early stopping restores the best epoch; identical bytes on re-runs; the mask reaches the nets."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from tests.models.models_helpers import ALL_MODELS, N_CHANNELS, N_CLASSES, new_model, task_for

from cis490.models import loop, rules

# Val macro F1 per epoch, scripted: peaks at epoch 2, never recovers.
SCRIPT = [0.30, 0.90, 0.50, 0.40, 0.60, 0.20, 0.10, 0.05, 0.01, 0.0]
PATIENCE = 4


def scripted_macro_f1(n_val: int):
    """A stand-in for rules.macro_f1 returning SCRIPT on val-sized inputs."""
    real = rules.macro_f1
    state = {"epoch": 0}

    def fake(y_true, y_pred, n_classes, *, labels):
        if len(y_true) != n_val or state["epoch"] >= len(SCRIPT):
            return real(y_true, y_pred, n_classes, labels=labels)
        state["epoch"] += 1
        return SCRIPT[state["epoch"] - 1]

    return fake


@pytest.mark.parametrize("name", ALL_MODELS)
def test_early_stopping_restores_the_epoch_where_val_f1_peaked(name, monkeypatch):
    Xtr, ytr, Xva, yva = task_for(name, n_train=160, n_val=48)
    monkeypatch.setattr(rules, "macro_f1", scripted_macro_f1(len(yva)))
    snapshots = []  # the net's weights at each end-of-epoch evaluation
    real_predict = loop.predict_logits

    def spying_predict(net, prepare, X, dev=None):
        snapshots.append(copy.deepcopy(net.state_dict()))
        return real_predict(net, prepare, X, dev)

    monkeypatch.setattr(loop, "predict_logits", spying_predict)
    model = new_model(name, epochs=len(SCRIPT), patience=PATIENCE)
    report = model.fit(Xtr, ytr, Xva, yva, seed=0)

    assert report.best_epoch == 2 and report.best_val_macro_f1 == 0.90
    assert report.epochs_run == 2 + PATIENCE
    assert [r.val_macro_f1 for r in report.history] == SCRIPT[: 2 + PATIENCE]
    if name == "gbt":  # cut to the best round: one tree per class per round
        assert len(model.booster.get_dump()) == 2 * N_CLASSES
    else:
        best = snapshots[1]  # evaluated after epoch 2
        last = snapshots[report.epochs_run - 1]
        restored = model.net.state_dict()
        assert all(torch_equal(restored[k], best[k]) for k in best)
        assert not all(torch_equal(restored[k], last[k]) for k in last)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_same_spec_same_data_gives_identical_checkpoint_bytes(name, tmp_path):
    data = task_for(name, n_train=160, n_val=64)
    paths = []
    for run in ("a", "b"):
        model = new_model(name, epochs=3)
        model.fit(*data, seed=7)
        model.save(tmp_path / run)
        paths.append(tmp_path / run)
    files = sorted(p.name for p in paths[0].iterdir())
    assert files == sorted(p.name for p in paths[1].iterdir()) and len(files) == 2
    for f in files:
        assert (paths[0] / f).read_bytes() == (paths[1] / f).read_bytes(), f


@pytest.mark.parametrize("name", ["gbt", "gru"])
def test_another_seed_gives_other_weights(name, tmp_path):
    data = task_for(name, n_train=160, n_val=64)
    sides = []
    for seed in (1, 2):
        model = new_model(name, epochs=3)
        model.fit(*data, seed=seed)
        ckpt = model.save(tmp_path / str(seed))
        sides.append(next(p for p in ckpt.parent.iterdir() if p != ckpt).read_bytes())
    assert sides[0] != sides[1]


def test_checkpoint_holds_no_time_host_or_path(tmp_path):
    import socket

    model = new_model("mlp", epochs=1)
    model.fit(*task_for("mlp", n_train=64, n_val=32), seed=0)
    text = model.save(tmp_path).read_text()
    assert str(tmp_path) not in text and socket.gethostname() not in text
    for word in ("time", "date", "host"):
        assert word not in text.lower()

    def strings(obj):
        if isinstance(obj, dict):
            return [s for k, v in obj.items() for s in [k, *strings(v)]]
        if isinstance(obj, list):
            return [s for v in obj for s in strings(v)]
        return [obj] if isinstance(obj, str) else []

    assert not [s for s in strings(json.loads(text)) if s.startswith(("/", "\\")) or ":\\" in s]


@pytest.mark.parametrize("name", ["cnn", "gru", "lstm", "transformer"])
def test_sequence_nets_see_values_and_missingness_mask(name):
    Xtr, ytr, Xva, yva = task_for(name, n_train=64, n_val=32)
    model = new_model(name, epochs=1)
    model.fit(Xtr, ytr, Xva, yva, seed=0)
    x = model._prepare(Xva[:8]).numpy()
    assert x.shape == (8, 2 * N_CHANNELS, Xva.shape[2])
    assert np.array_equal(x[:, N_CHANNELS:], np.isfinite(Xva[:8]).astype(np.float32))
    assert np.isfinite(x).all() and (x[:, :N_CHANNELS][~np.isfinite(Xva[:8])] == 0).all()


def test_inputs_of_the_wrong_shape_are_refused_naming_the_argument():
    model = new_model("gru", epochs=1)
    Xtr, ytr, Xva, yva = task_for("gru", n_train=32, n_val=16)
    with pytest.raises(ValueError, match="X_val"):
        model.fit(Xtr, ytr, Xva[:, :2], yva)
    with pytest.raises(ValueError, match="y_train"):
        model.fit(Xtr, ytr + 10, Xva, yva)


@pytest.mark.parametrize("name", ["gbt", "lstm"])
def test_checkpoint_json_is_canonical(name, tmp_path):
    from cis490.models.checkpoint import canonical_json

    model = new_model(name, epochs=2)
    model.fit(*task_for(name, n_train=64, n_val=32), seed=0)
    raw = model.save(tmp_path).read_bytes()
    meta = json.loads(raw)
    assert canonical_json(meta) == raw
    assert list(meta) == sorted(meta) and list(meta["config"]) == sorted(meta["config"])
    assert raw.endswith(b"}\n") and b"NaN" not in raw and b"Infinity" not in raw


def test_mode_must_be_a_safe_file_name_part():
    from cis490 import models

    for bad in ("../x", "Oracle", "a b", ""):
        with pytest.raises(ValueError, match="mode"):
            models.create("mlp", n_features=3, n_classes=2, mode=bad)


@pytest.mark.parametrize("name", ["gbt", "mlp"])
def test_selection_and_report_use_the_same_macro_f1(name):
    """Regression: the recorded best val macro F1 averaged over y_val | y_pred, the report
    over the classes in y_true only; a val set lacking a class the model predicts told them apart."""
    from sklearn.metrics import f1_score

    from cis490 import models
    from cis490.evaluate import metrics
    from tests.models.models_helpers import FAST_HYPER, shape_kwargs

    Xtr, ytr, Xva, yva = task_for(name, n_train=240, n_val=96)
    yva = np.where(yva == 1, 0, yva)  # val truth without class 1; its rows still look like 1
    hyper = {**FAST_HYPER[name], "epochs": 12}
    model = models.create(name, n_classes=N_CLASSES, **shape_kwargs(name), **hyper)
    report = model.fit(Xtr, ytr, Xva, yva, seed=0)

    pred = model.predict_proba(Xva).argmax(1)
    assert 1 in pred and 1 not in yva  # the case where the two old rules differ
    labels = metrics.present_labels(yva)
    report_f1 = metrics.macro_f1_score(yva, pred, labels=labels)
    assert report.best_val_macro_f1 == report_f1  # exactly: one definition, one arithmetic
    assert model.val_metrics["macro_f1"] == report_f1
    assert report.history[report.best_epoch - 1].val_macro_f1 == report_f1
    assert report_f1 == pytest.approx(
        f1_score(yva, pred, labels=np.unique(yva), average="macro", zero_division=0), abs=1e-12)
    assert report_f1 != pytest.approx(f1_score(yva, pred, average="macro", zero_division=0))
