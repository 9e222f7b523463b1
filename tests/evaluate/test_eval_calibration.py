"""Calibration: ECE by hand and by loop, resampled ECE from sums, temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest

from cis490.evaluate.calibration import (
    apply_temperature, calibration_sums, ece, ece_from_sums, fit_temperature, nll,
    reliability,
)

# y and s of six windows, four bins [0,.25) [.25,.5) [.5,.75) [.75,1]:
#   bin 0: s .1 .2, y 1 0 → |mean y - mean s| = |.5 - .15| = .35, weight 2/6
#   bin 1: s .25 (on the edge: bin 1), y 0 → |0 - .25| = .25, weight 1/6
#   bin 2: s .6 .7, y 1 1 → |1 - .65| = .35, weight 2/6
#   bin 3: s 1.0 (the last bin is closed), y 0 → |0 - 1| = 1, weight 1/6
#   ECE = (2 * .35 + .25 + 2 * .35 + 1) / 6 = 2.65 / 6
Y = np.array([1, 0, 0, 1, 1, 0], bool)
SC = np.array([0.1, 0.2, 0.25, 0.6, 0.7, 1.0])


def test_ece_by_hand():
    assert ece(Y, SC, n_bins=4) == pytest.approx(2.65 / 6, abs=1e-15)


def test_reliability_by_hand_and_empty_bins_are_nan():
    mean_s, frac, count = reliability(Y, SC, n_bins=4)
    np.testing.assert_allclose(mean_s, [0.15, 0.25, 0.65, 1.0])
    np.testing.assert_allclose(frac, [0.5, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(count, [2, 1, 2, 1])
    mean_s, frac, count = reliability(Y, SC, n_bins=8)      # [.25, .375) holds .25 only
    assert np.isnan(mean_s[3]) and np.isnan(frac[3]) and count[3] == 0


def _loop_ece(y, s, n_bins, w):
    total, out = w.sum(), 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        m = (s >= lo) & ((s < hi) if b < n_bins - 1 else (s <= 1.0))
        if w[m].sum() > 0:
            out += w[m].sum() / total * abs(np.average(y[m], weights=w[m])
                                            - np.average(s[m], weights=w[m]))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_ece_equals_a_loop_and_its_sums(seed):
    rng = np.random.default_rng(seed)
    n, g, n_bins = 400, 25, int(rng.integers(1, 20))
    codes = np.sort(rng.integers(0, g, n))
    s = rng.random(n)
    s[:20] = rng.choice(np.arange(n_bins + 1) / n_bins, 20)  # on the edges, 0 and 1
    y = rng.random(n) < s ** 1.5
    w = rng.integers(0, 4, n).astype(float)
    assert ece(y, s, n_bins) == pytest.approx(_loop_ece(y, s, n_bins, np.ones(n)), abs=1e-12)
    assert ece(y, s, n_bins, sample_weight=w) == pytest.approx(
        _loop_ece(y, s, n_bins, w), abs=1e-12)
    sums = calibration_sums(codes, g, y, s, n_bins)
    assert sums.shape == (g, 3 * n_bins)
    assert ece_from_sums(sums.sum(axis=0)) == pytest.approx(ece(y, s, n_bins), abs=1e-12)
    # every resample at once: W @ sums, against the weighted ECE of the windows
    wts = rng.multinomial(g, np.full(g, 1 / g), size=5).astype(np.float32)
    per = ece_from_sums(wts @ sums)
    for b in range(5):
        assert per[b] == pytest.approx(ece(y, s, n_bins, sample_weight=wts[b][codes]),
                                       abs=1e-12)


def test_ece_of_nothing_is_nan_from_sums():
    assert np.isnan(ece_from_sums(np.zeros(9)))


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _labelled(seed, n=20_000, k=4):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, k))
    p = _softmax(z)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)   # y ~ Categorical(p)
    y = np.minimum(y, k - 1)                  # guard the cumsum's rounding below 1
    return z, p, y


def test_overconfident_model_gets_t_above_one_and_lower_nll():
    z, _, y = _labelled(1)
    over = _softmax(3 * z)                    # logits tripled: far too sure
    t = fit_temperature(over, y)
    assert 2.5 < t < 3.5
    assert nll(over, y, t) < nll(over, y) - 0.05
    assert fit_temperature(over, y) == t      # deterministic


def test_calibrated_model_gets_t_near_one():
    _, p, y = _labelled(2)
    assert abs(fit_temperature(p, y) - 1.0) < 0.05


def test_apply_temperature_gives_float32_distributions_with_the_same_argmax():
    z, _, _ = _labelled(3, n=500)
    p = _softmax(3 * z)
    q = apply_temperature(p, 3.0)
    assert q.dtype == np.float32
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(q.argmax(axis=1), p.argmax(axis=1))
    np.testing.assert_allclose(q, _softmax(z), atol=1e-6)   # softmax(3z) at T=3 is softmax(z)


@pytest.mark.parametrize("call,match", [
    (lambda: ece(Y, SC, n_bins=0), "`n_bins`"),
    (lambda: ece(Y, SC + 0.5), "`s`"),
    (lambda: calibration_sums([1, 0, 0, 0, 0, 0], 2, Y, SC), "`codes`"),
    (lambda: fit_temperature(np.full((3, 2), 0.5), [0, 2, 1]), "`y`"),
    (lambda: apply_temperature(np.full((3, 2), 0.5), 0.0), "`temperature`"),
])
def test_calibration_arguments_are_validated(call, match):
    with pytest.raises(ValueError, match=match):
        call()
