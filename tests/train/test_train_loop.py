"""The torch loop applies the rules: the LR it steps with and the loss weights it uses."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cis490 import models  # noqa: E402
from cis490.train import rules  # noqa: E402


def _data(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    X[:, 0] += y
    return X, y


def test_loop_steps_with_warmup_then_cosine_lr(monkeypatch):
    seen = []
    real_step = torch.optim.AdamW.step

    def spy(self, *a, **kw):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    Xtr, ytr = _data(100, 0)
    Xva, yva = _data(40, 1)
    m = models.create("mlp", n_features=4, n_classes=3, epochs=5, patience=99,
                      batch_size=32, hidden=[8], lr=0.01, warmup_frac=0.1)
    m.fit(Xtr, ytr, Xva, yva, seed=0)
    total = 5 * math.ceil(100 / 32)  # 20 steps
    warm = rules.warmup_steps(total, 0.1)
    assert warm == 2 and len(seen) == total
    assert seen == pytest.approx([rules.lr_at(s, total, warm, 0.01) for s in range(total)])
    assert seen[0] == pytest.approx(0.005) and seen[1] == pytest.approx(0.01)
    assert seen[-1] < 0.01 * 0.01  # nearly 0 at the end


def test_loss_is_weighted_by_train_class_weights(monkeypatch):
    weights = []
    real = torch.nn.CrossEntropyLoss

    def spy(*a, weight=None, **kw):
        weights.append(weight.clone())
        return real(*a, weight=weight, **kw)

    monkeypatch.setattr(torch.nn, "CrossEntropyLoss", spy)
    Xtr, ytr = _data(90, 0)
    ytr[:60] = 0  # imbalanced train
    Xva, yva = _data(30, 1)
    m = models.create("mlp", n_features=4, n_classes=3, epochs=1, hidden=[4], class_weight_clip=3.0)
    m.fit(Xtr, ytr, Xva, yva, seed=0)
    want = rules.class_weights(ytr, 3, 3.0)
    assert len(weights) == 1
    assert np.allclose(weights[0].numpy(), want.astype(np.float32))


def test_fit_restores_global_torch_settings():
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    Xtr, ytr = _data(40, 0)
    m = models.create("mlp", n_features=4, n_classes=3, epochs=1, hidden=[4])
    m.fit(Xtr, ytr, Xtr, ytr, seed=0)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
