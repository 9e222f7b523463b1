"""The loop's rules, checked numerically: class weights, macro F1, LR schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cis490.models import rules


def test_class_weights_are_inverse_frequency_clipped_and_absent_class_gets_clip():
    y = np.array([0] * 80 + [1] * 2 + [3] * 18)
    w = rules.class_weights(y, 4, clip=10.0)
    assert w[0] == pytest.approx(100 / (4 * 80))
    assert w[3] == pytest.approx(100 / (4 * 18))
    assert w[1] == 10.0  # 100 / 8 = 12.5, clipped
    assert w[2] == 10.0  # absent from train


def test_balanced_train_gives_unit_weights():
    assert np.allclose(rules.class_weights(np.arange(40) % 4, 4, clip=10.0), 1.0)


def test_macro_f1_matches_sklearn_with_labels_present_in_y_true():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for trial in range(50):
        n = int(rng.integers(1, 60))
        y_true = rng.integers(0, 4 if trial % 3 else 2, n)
        y_pred = rng.integers(0, 4 if trial % 2 else 3, n)
        labels = rules.present_labels(y_true)
        assert labels.tolist() == sorted(set(y_true.tolist()))
        want = f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0)
        assert rules.macro_f1(y_true, y_pred, 4, labels=labels) == pytest.approx(want)
        per = f1_score(y_true, y_pred, average=None, labels=range(4), zero_division=0)
        assert np.allclose(rules.per_class_f1(y_true, y_pred, 4), per)


def test_selection_and_report_use_the_same_macro_f1():
    """Regression: selection averaged over y_true | y_pred, the report over y_true only."""
    from sklearn.metrics import f1_score

    from cis490.evaluate import metrics

    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 3, 0, 1, 0, 2, 3, 2])  # predicts 3, which y_true lacks
    labels = metrics.present_labels(y_true)
    assert labels.tolist() == [0, 1, 2]
    selection = rules.macro_f1(y_true, y_pred, 4, labels=labels)
    report = metrics.macro_f1_score(y_true, y_pred, labels=labels)
    ours = metrics.point_metrics(y_true, y_pred, n_classes=4).macro_f1  # the report's own path
    want = f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0)
    assert selection == report == ours == pytest.approx(want, abs=1e-15)
    old_union_rule = f1_score(y_true, y_pred, average="macro", zero_division=0)  # labels 0..3
    assert selection != pytest.approx(old_union_rule)
    assert metrics.macro_f1_score(y_true, y_pred, labels=labels, n_classes=4) == selection
    assert np.array_equal(metrics.per_class_f1_score(y_true, y_pred, 4),
                          rules.per_class_f1(y_true, y_pred, 4))


def test_macro_f1_requires_explicit_labels():
    from cis490.evaluate import metrics

    y = np.array([0, 1, 1])
    with pytest.raises(TypeError):
        rules.macro_f1(y, y, 4)  # labels is keyword-only and required
    with pytest.raises(TypeError):
        metrics.macro_f1_score(y, y)
    with pytest.raises(ValueError, match="labels"):
        metrics.macro_f1_score(y, y, labels=[])
    with pytest.raises(ValueError, match="y_true"):
        metrics.present_labels([])


def test_lr_warms_up_linearly_over_5_percent_then_cosine_to_zero():
    total, base = 200, 1e-3
    warm = rules.warmup_steps(total, 0.05)
    assert warm == 10
    lrs = [rules.lr_at(s, total, warm, base) for s in range(total + 1)]
    assert lrs[0] == pytest.approx(base / 10)
    assert lrs[:10] == pytest.approx([base * (s + 1) / 10 for s in range(10)])
    assert lrs[9] == pytest.approx(base) and lrs[10] == pytest.approx(base)
    assert lrs[105] == pytest.approx(base / 2)  # halfway through the cosine
    assert lrs[10 + 190 // 4] == pytest.approx(base * (1 + math.cos(math.pi / 4)) / 2, rel=1e-2)
    assert lrs[total] == pytest.approx(0.0, abs=1e-15)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone after warmup
    assert 0 < lrs[total - 1] < base * 1e-3


def test_lr_schedule_with_few_steps_still_warms_up_one_step():
    assert rules.warmup_steps(3, 0.05) == 1
    assert rules.lr_at(0, 3, 1, 1.0) == 1.0
    assert rules.lr_at(3, 3, 1, 1.0) == pytest.approx(0.0, abs=1e-15)


def test_early_stopping_needs_strict_improvement():
    es = rules.EarlyStopping(patience=2)
    assert es.update(1, 0.5) and not es.should_stop(1)
    assert not es.update(2, 0.5)  # a tie is not an improvement
    assert not es.should_stop(2)
    assert not es.update(3, 0.4) and es.should_stop(3)
    assert es.best_epoch == 1


# --- the training budget (rules.plan_budget) -------------------------------------------------

def _cfg(**kw):
    from cis490.models.configs import TorchConfig

    return TorchConfig(**kw)


def test_auto_batch_is_a_64th_of_train_between_8_and_256():
    assert [rules.auto_batch_size(n) for n in (1, 5, 8, 40, 511, 512, 3146, 16384, 2_000_000)] == \
        [1, 5, 8, 8, 8, 8, 49, 256, 256]


def test_budget_gives_a_tiny_train_set_enough_steps():
    cfg = _cfg()  # the defaults: auto batch, at least 10 epochs and 600 steps, checks of 25+
    for n, batch, spe, every in ((40, 8, 5, 5), (53, 8, 7, 4), (32, 8, 4, 7)):
        b = rules.plan_budget(n, cfg)  # GunPoint, ItalyPowerDemand, BasicMotions minus val
        assert (b.batch_size, b.steps_per_epoch, b.check_every) == (batch, spe, every)
        assert b.total_steps == b.epochs * spe >= cfg.min_steps == 600
        assert b.total_steps < 600 + spe * every  # the least whole number of checks
        assert b.epochs % every == 0 and b.checks == b.epochs // every
        assert b.check_every * spe >= cfg.min_check_steps  # a check spans >= 25 steps
        assert [e for e in range(1, b.epochs + 1) if b.is_check(e)][-1] == b.epochs
        assert b.warmup_steps == math.ceil(0.05 * b.total_steps)
    # the seed's rule (20 epochs of min(256, n)) gave 40 windows 20 full-batch steps
    seed_rule = _cfg(epochs=20, batch_size=256, min_steps=0, min_check_steps=0)
    assert rules.plan_budget(40, seed_rule).total_steps == 20


def test_budget_keeps_large_sets_at_epochs_of_full_batches():
    cfg = _cfg()
    b = rules.plan_budget(2_000_000, cfg)
    assert (b.batch_size, b.steps_per_epoch, b.epochs, b.check_every) == (256, 7813, 10, 1)
    assert b.total_steps == 78_130  # the floor of 600 steps plays no part
    demo = rules.plan_budget(3146, cfg)  # the demo's train slice: 64 batches of 49, 10 epochs
    assert (demo.batch_size, demo.steps_per_epoch, demo.epochs, demo.check_every) == (49, 65, 10, 1)
    assert rules.plan_budget(2_000_000, _cfg(epochs=60)).epochs == 60


def test_explicit_epochs_and_batch_size():
    # batch_size > 0 is used as given (at most n); epochs and min_steps are both floors;
    # min_steps = min_check_steps = 0 gives exactly `epochs` epochs, a check after each
    b = rules.plan_budget(100, _cfg(epochs=5, batch_size=32, min_steps=0, min_check_steps=0))
    assert (b.batch_size, b.steps_per_epoch, b.epochs, b.total_steps, b.check_every) == (32, 4, 5, 20, 1)
    assert rules.plan_budget(100, _cfg(batch_size=512, min_steps=0)).batch_size == 100
    b = rules.plan_budget(100, _cfg(epochs=5, batch_size=32))  # the floor still applies
    assert b.total_steps >= 600 and b.epochs == 154 and b.check_every == 7
    assert rules.plan_budget(100, _cfg(epochs=500, batch_size=32)).epochs == 504  # whole checks


def test_epoch_batches_cover_the_permutation_in_near_equal_sorted_parts():
    order = np.random.default_rng(0).permutation(41)
    parts = rules.epoch_batches(order, 6)
    assert len(parts) == 6 and sorted(len(p) for p in parts) == [6, 7, 7, 7, 7, 7]
    assert all((np.diff(p) > 0).all() for p in parts)
    assert sorted(np.concatenate(parts).tolist()) == list(range(41))


def test_tied_checks_improve_only_where_asked():
    nets = rules.EarlyStopping(patience=2, ties_improve=True)
    assert nets.update(1, 0.9) and nets.update(2, 0.9)  # the later of equal checks is kept
    assert not nets.update(3, 0.8) and not nets.should_stop(3) and nets.should_stop(4)
    assert nets.best_epoch == 2
    strict = rules.EarlyStopping(patience=2)
    assert strict.update(1, 0.9) and not strict.update(2, 0.9) and strict.best_epoch == 1
