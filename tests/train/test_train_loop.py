"""The torch loop applies the rules: the LR it steps with and the loss weights it uses."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cis490 import models  # noqa: E402
from cis490.models import rules  # noqa: E402


def _data(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    X[:, 0] += y
    return X, y


@pytest.fixture
def lr_steps(monkeypatch) -> list[float]:
    """The learning rate of every optimizer step the loop takes, in order."""
    seen: list[float] = []
    real_step = torch.optim.AdamW.step

    def spy(self, *a, **kw):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    return seen


def test_loop_steps_with_warmup_then_cosine_lr(lr_steps):
    seen = lr_steps
    Xtr, ytr = _data(100, 0)
    Xva, yva = _data(40, 1)
    m = models.create("mlp", n_features=4, n_classes=3, epochs=5, patience=99,
                      batch_size=32, hidden=[8], lr=0.01, warmup_frac=0.1,
                      min_steps=0, min_check_steps=0)  # the seed's budget: 5 epochs of 32
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


def test_the_default_budget_gives_a_tiny_train_set_its_planned_steps_and_checks(lr_steps):
    """40 rows at the defaults: 600 steps of batch 8 (the seed's rule: 10 steps), a check
    every 5 epochs (25 steps), the LR schedule over all 600 steps."""
    seen, checks = lr_steps, []
    Xtr, ytr = _data(40, 0)
    Xva, yva = _data(20, 1)
    m = models.create("mlp", n_features=4, n_classes=3, hidden=[8], patience=10_000)
    report = m.fit(Xtr, ytr, Xva, yva, seed=0, on_epoch=checks.append)
    plan = rules.plan_budget(40, m.config)
    assert (plan.batch_size, plan.steps_per_epoch, plan.epochs, plan.check_every) == (8, 5, 120, 5)
    assert len(seen) == plan.total_steps == 600
    assert seen == pytest.approx([rules.lr_at(s, 600, plan.warmup_steps, m.config.lr)
                                  for s in range(600)])
    assert [r.epoch for r in checks] == list(range(5, 121, 5)) == [r.epoch for r in report.history]
    assert report.epochs_run == 120 and report.budget == plan.to_dict()
    assert report.best_epoch in {r.epoch for r in report.history}
