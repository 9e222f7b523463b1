"""The default budget trains small sets properly: enough steps, and GunPoint at FCN accuracy.

GunPoint (UCR; 50 train / 150 test windows of 150 steps) comes with ``aeon``
(the optional extra ``cis490[minirocket]``, in requirements.txt), offline:
the test uses the public dataset, not a generated equivalent, and is skipped
where aeon is absent.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cis490 import models  # noqa: E402
from cis490.models import rules  # noqa: E402


@pytest.mark.parametrize("name", ["cnn", "gru", "transformer"])
def test_a_tiny_train_set_gets_enough_optimizer_steps(name, monkeypatch):
    from tests.models.models_helpers import N_CHANNELS, N_CLASSES, N_STEPS, task_for

    steps = []
    real_step = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step",
                        lambda self, *a, **kw: steps.append(1) or real_step(self, *a, **kw))
    Xtr, ytr, Xva, yva = task_for(name, n_train=40, n_val=16)
    small = {"cnn": {"filters": [8, 8], "kernels": [3, 3]}, "gru": {"hidden": 8},
             "transformer": {"d_model": 8, "n_heads": 2, "n_layers": 1, "ff_dim": 16}}[name]
    m = models.create(name, n_classes=N_CLASSES, n_channels=N_CHANNELS, n_steps=N_STEPS,
                      patience=10_000, **small)  # the default budget, no early stop
    report = m.fit(Xtr, ytr, Xva, yva, seed=0)
    # the seed's default (20 epochs of min(256, n)) gave 40 windows 20 steps
    assert len(steps) == report.budget["total_steps"] >= 600
    assert report.budget["batch_size"] == 8 and report.epochs_run == report.budget["epochs"]
    assert len(report.history) == report.budget["epochs"] // report.budget["check_every"]


def _gunpoint():
    datasets = pytest.importorskip("aeon.datasets")
    from sklearn.model_selection import train_test_split

    X, y = datasets.load_gunpoint(split="train")
    X_test, y_test = datasets.load_gunpoint(split="test")
    classes = sorted(set(y.tolist()))
    y = np.array([classes.index(c) for c in y.tolist()])
    y_test = np.array([classes.index(c) for c in y_test.tolist()])
    X_tr, X_val, y_tr, y_val = train_test_split(X.astype(np.float32), y, test_size=0.2,
                                                stratify=y, random_state=0)
    return X_tr, y_tr, X_val, y_val, X_test.astype(np.float32), y_test


def test_gunpoint_cnn_at_defaults_reaches_fcn_accuracy():
    """Through the public API at defaults, validation a stratified fifth of train (seed 0):
    >= 0.95 test accuracy (Wang et al. 2017's FCN: 1.00; measured: 1.00, ~15 s on 1 core)."""
    X_tr, y_tr, X_val, y_val, X_test, y_test = _gunpoint()
    assert X_tr.shape == (40, 1, 150) and X_test.shape == (150, 1, 150)
    m = models.create("cnn", n_classes=2, n_channels=1, n_steps=150)
    report = m.fit(X_tr, y_tr, X_val, y_val, seed=0)
    acc = float((m.predict_proba(X_test).argmax(axis=1) == y_test).mean())
    assert acc >= 0.95, (acc, report.budget)
    assert report.budget["total_steps"] >= 600
    assert rules.plan_budget(40, m.config).to_dict() == report.budget
