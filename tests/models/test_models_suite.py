"""The one suite every model passes, XGBoost and MiniRocket included (STYLE: huey's StorageTests)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.models.models_helpers import FAST_HYPER, N_CLASSES, SUITE_MODELS, new_model, task_for

from cis490 import models
from cis490.models import configs, rules


def majority_macro_f1(y_true: np.ndarray) -> float:
    majority = np.bincount(y_true).argmax()
    return rules.macro_f1(y_true, np.full_like(y_true, majority), N_CLASSES,
                          labels=rules.present_labels(y_true))


@pytest.mark.parametrize("name", SUITE_MODELS)
def test_learns_synthetic_task_well_above_majority_baseline(name, fitted):
    model, report, (_, _, Xva, yva) = fitted(name)
    pred = model.predict_proba(Xva).argmax(axis=1)
    f1 = rules.macro_f1(yva, pred, N_CLASSES, labels=rules.present_labels(yva))
    baseline = majority_macro_f1(yva)
    assert f1 >= 0.75, f"{name}: val macro F1 {f1:.3f}"
    assert f1 >= baseline + 0.5
    assert report.best_val_macro_f1 == pytest.approx(f1)  # restored weights = best epoch's
    assert 1 <= report.best_epoch <= report.epochs_run == len(report.history)


@pytest.mark.parametrize("name", SUITE_MODELS)
def test_predict_proba_is_a_distribution(name, fitted):
    model, _, (_, _, Xva, _) = fitted(name)
    p = model.predict_proba(Xva)
    assert p.shape == (len(Xva), N_CLASSES) and p.dtype == np.float32
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5) and (p >= 0).all()


@pytest.mark.parametrize("name", SUITE_MODELS)
def test_save_load_gives_identical_predictions(name, fitted, tmp_path):
    model, report, (_, _, Xva, _) = fitted(name)
    path = model.save(tmp_path)
    assert path.name == f"{name}_custom.ckpt.json"
    sidecar = ".xgb.json" if name == "gbt" else ".safetensors"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([path.name, f"{name}_custom{sidecar}"])
    loaded = models.load(path, expect_schema_sha256=model.schema_sha256)
    assert np.array_equal(loaded.predict_proba(Xva), model.predict_proba(Xva))
    assert loaded.report == report
    assert models.load(tmp_path).schema_sha256 == model.schema_sha256  # a directory works too


@pytest.mark.parametrize("name", SUITE_MODELS)
def test_schema_mismatch_is_refused_naming_both_hashes(name, tmp_path):
    model = new_model(name, epochs=1)
    model.schema_sha256 = "a" * 64
    model.fit(*task_for(name, n_train=64, n_val=32), seed=0)
    path = model.save(tmp_path)
    with pytest.raises(ValueError) as err:
        models.load(path, expect_schema_sha256="b" * 64)
    assert "a" * 64 in str(err.value) and "b" * 64 in str(err.value)


@pytest.mark.parametrize("name", SUITE_MODELS)
def test_config_round_trips(name, fitted, tmp_path):
    model, _, _ = fitted(name)
    cfg = model.config
    as_json = json.loads(json.dumps(configs.config_to_dict(cfg)))
    assert configs.config_from_dict(name, as_json) == cfg
    assert cfg != configs.CONFIGS[name]()  # FAST_HYPER really changed something
    for key, value in FAST_HYPER[name].items():
        assert configs.config_to_dict(cfg)[key] == value
    model.save(tmp_path)
    assert models.load(tmp_path).config == cfg


@pytest.mark.parametrize("name", SUITE_MODELS)
def test_class_weights_come_from_train_only(name, monkeypatch, tmp_path):
    Xtr, ytr, Xva, yva = task_for(name, n_train=120, n_val=60)
    yva = np.zeros_like(yva)  # a val distribution nothing like train's
    calls = []
    real = rules.class_weights
    monkeypatch.setattr(rules, "class_weights",
                        lambda y, k, clip: calls.append(np.array(y)) or real(y, k, clip))
    model = new_model(name, epochs=1)
    model.fit(Xtr, ytr, Xva, yva, seed=0)
    assert len(calls) == 1 and np.array_equal(calls[0], ytr)
    expected = real(ytr, N_CLASSES, model.config.class_weight_clip)
    assert np.array_equal(model.class_weights, expected)
    meta = json.loads(model.save(tmp_path).read_bytes())
    assert meta["class_weights"] == [float(w) for w in expected]


@pytest.mark.parametrize("name", SUITE_MODELS)
def test_normalisation_is_fitted_on_train_only(name, tmp_path):
    Xtr, ytr, Xva, yva = task_for(name, n_train=120, n_val=60)
    model = new_model(name, epochs=1)
    model.fit(Xtr, ytr, Xva + 1000.0, yva, seed=0)  # val shifted: must not move the stats
    meta = json.loads(model.save(tmp_path).read_bytes())
    if name == "gbt":
        assert meta["normalisation"] is None  # trees: NaN native, no scaling (documented)
        return
    axes = (0,) if Xtr.ndim == 2 else (0, 2)
    assert np.allclose(meta["normalisation"]["mean"], np.nanmean(Xtr, axis=axes), rtol=1e-6)
    assert np.allclose(meta["normalisation"]["std"], np.nanstd(Xtr, axis=axes), rtol=1e-5)
