"""Detection metrics against hand-worked streams, brute-force loops and scikit-learn.

Every random case is seeded. Exactness claims (the sweep, the ranking metrics,
the resampled AUCs) are tested as equalities (counts) or to 1e-12 (floats).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from cis490.evaluate.bootstrap import EpisodeBootstrap
from cis490.evaluate.detection import (
    Sweep, alarms, choose_threshold, episode_outcomes, precision_at_base_rate, sweep,
    weighted_quantile,
)
from cis490.evaluate.ranking import (
    auc_grid_error_bound, average_precision, episode_histograms, pr_curve, resampled_aucs,
    roc_auc, roc_curve, score_grid,
)

S = 1_000_000_000          # ns per second
TAU = 0.5

# ------------------------------------------------------------- a hand stream
# e0 benign only, 6 windows:       scores .9 .1 .7 .8 .9 .2
# e1 infected, onset 250 s labelled; t_end 100..700 s; malicious from window 2:
#                                   scores .1 .2 .6 .3 .7 .8 .9
# e2 infected, onset unknown (-1);  t_end 1000..1070 s; malicious from window 2:
#                                   scores .2 .7 .8 .9 .1 .95 .9 .3
#   (its run 1..3 starts on a benign window and continues past the onset)
# e3 has no windows.
E0 = [0.9, 0.1, 0.7, 0.8, 0.9, 0.2]
E1 = [0.1, 0.2, 0.6, 0.3, 0.7, 0.8, 0.9]
E2 = [0.2, 0.7, 0.8, 0.9, 0.1, 0.95, 0.9, 0.3]


def _hand_stream():
    codes = np.repeat([0, 1, 2], [6, 7, 8])
    score = np.array(E0 + E1 + E2)
    malicious = np.array([False] * 6 + [False, False] + [True] * 5
                         + [False, False] + [True] * 6)
    t_end = np.concatenate([np.arange(1, 7) * 10, np.arange(1, 8) * 100,
                            1000 + 10 * np.arange(8)]) * S
    onset = np.array([-1, 250 * S, -1, -1])
    return codes, 4, t_end, malicious, score, onset


def test_alarm_positions_on_hand_stream():
    codes, _, _, _, score, _ = _hand_stream()
    # k = 1: every run is an alarm. e0 runs {0} {2,3,4}; e1 (offset 6) {2} {4,5,6};
    # e2 (offset 13) {1,2,3} {5,6}.
    a = alarms(codes, score, TAU, 1)
    np.testing.assert_array_equal(a.start, [0, 2, 8, 10, 14, 18])
    np.testing.assert_array_equal(a.fire, a.start)
    # k = 3: only runs of >= 3 windows: e0 {2,3,4}, e1 {4,5,6}, e2 {1,2,3}; each
    # fires at its third window.
    a = alarms(codes, score, TAU, 3)
    np.testing.assert_array_equal(a.start, [2, 10, 14])
    np.testing.assert_array_equal(a.fire, [4, 12, 16])


def test_outcomes_on_hand_stream_k1():
    o = episode_outcomes(*_hand_stream()[:5], TAU, 1, _hand_stream()[5])
    np.testing.assert_array_equal(o.n_windows, [6, 7, 8, 0])
    np.testing.assert_array_equal(o.n_benign, [6, 2, 2, 0])
    np.testing.assert_array_equal(o.n_malicious, [0, 5, 6, 0])
    np.testing.assert_array_equal(o.infected, [False, True, True, False])
    # e0: 2 false alarms, not pre-onset (e0 is never infected); e1: two true
    # alarms; e2: the run from benign window 1 is a false (pre-onset) alarm,
    # the run {5,6} a true one.
    np.testing.assert_array_equal(o.n_alarms, [2, 2, 2, 0])
    np.testing.assert_array_equal(o.n_false_alarms, [2, 0, 1, 0])
    np.testing.assert_array_equal(o.n_pre_onset_alarms, [0, 0, 1, 0])
    np.testing.assert_array_equal(o.detected, [False, True, True, False])
    # e1: first true alarm fires at window 2, t_end 300 s; onset 250 s → 50 s.
    # e2: onset unknown → first malicious t_end 1020 s; true alarm fires at
    # window 5, t_end 1050 s → 30 s.
    np.testing.assert_array_equal(o.ttd_s, [np.nan, 50.0, 30.0, np.nan])
    # flagged: e0 windows 0,2,3,4 (benign); e1 2,4,5,6; e2 benign 1, malicious 2,3,5,6
    np.testing.assert_array_equal(o.n_flagged_benign, [4, 0, 1, 0])
    np.testing.assert_array_equal(o.n_flagged_malicious, [0, 4, 4, 0])


def test_outcomes_on_hand_stream_k3_fire_late_and_straddling_run():
    o = episode_outcomes(*_hand_stream()[:5], TAU, 3, _hand_stream()[5])
    np.testing.assert_array_equal(o.n_alarms, [1, 1, 1, 0])
    np.testing.assert_array_equal(o.n_false_alarms, [1, 0, 1, 0])
    np.testing.assert_array_equal(o.n_pre_onset_alarms, [0, 0, 1, 0])
    # e1: the run at window 2 is too short; the alarm starting at window 4
    # fires 2 windows later, at window 6 (t_end 700 s): 700 - 250 = 450 s.
    # e2: its only alarm starts on benign window 1 and runs into the infection
    # (windows 2, 3): one false alarm, and no detection from it; the later run
    # {5,6} is too short, so e2 is not detected.
    np.testing.assert_array_equal(o.detected, [False, True, False, False])
    np.testing.assert_array_equal(o.ttd_s, [np.nan, 450.0, np.nan, np.nan])
    np.testing.assert_array_equal(o.n_flagged_benign, [3, 0, 1, 0])
    np.testing.assert_array_equal(o.n_flagged_malicious, [0, 3, 2, 0])


def test_sweep_on_hand_stream_k3():
    codes, _, _, mal, score, _ = _hand_stream()
    sw = sweep(codes, mal, score, 3)

    def at(tau):            # counts are constant up to the next threshold
        j = np.searchsorted(sw.thresholds, tau)
        return int(sw.n_false_alarms[j]), int(sw.n_detected[j])

    assert sw.n_infected == 2
    assert at(0.5) == at(0.6) == (2, 1)  # as test_outcomes_..._k3
    # every score is >= .1, so each episode is one run that starts on a benign
    # window: three false alarms and, by attribution to the first window, no detection
    assert at(0.1) == (3, 0)
    assert at(0.8) == (0, 0)             # no three consecutive scores >= .8
    assert at(1.0) == (0, 0) and sw.thresholds[-1] == np.nextafter(1.0, np.inf)


# ------------------------------------------------------------- brute force

def _loop_alarms(codes, score, tau, k):
    starts, flagged, i, n = [], np.zeros(len(score), bool), 0, len(score)
    while i < n:
        if score[i] < tau:
            i += 1
            continue
        j = i
        while j + 1 < n and codes[j + 1] == codes[i] and score[j + 1] >= tau:
            j += 1
        if j - i + 1 >= k:
            starts.append(i)
            flagged[i:j + 1] = True
        i = j + 1
    return np.array(starts, dtype=np.int64), flagged


def _random_stream(rng, n_groups=12, max_len=9):
    """Episodes of 0..max_len windows (many of 1-2), tied and untied scores."""
    lens = rng.integers(0, max_len + 1, n_groups)
    short = rng.random(n_groups) < 0.3
    lens[short] = rng.integers(1, 3, short.sum())
    codes = np.repeat(np.arange(n_groups), lens)
    n = codes.size
    grid = rng.random() < 0.5
    score = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], n) if grid else rng.random(n).round(2)
    mal = np.zeros(n, bool)
    t_end = np.zeros(n, np.int64)
    onset = np.full(n_groups, -1, np.int64)
    pos = 0
    for g, m in enumerate(lens):
        t_end[pos:pos + m] = np.cumsum(rng.integers(1, 5, m)) * S
        if m and rng.random() < 0.6:                   # infected from a random window
            at = int(rng.integers(0, m))
            mal[pos + at:pos + m] = True
            if rng.random() < 0.5:
                onset[g] = t_end[pos + at] - int(rng.integers(0, S))
        pos += m
    if rng.random() < 0.3:                             # labels not a clean suffix
        mal ^= rng.random(n) < 0.1
    return codes, n_groups, t_end, mal, score, onset


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("k", [1, 2, 3])
def test_outcomes_equal_a_loop(seed, k):
    rng = np.random.default_rng(seed)
    codes, g, t_end, mal, score, onset = _random_stream(rng)
    tau = float(rng.choice([0.25, 0.5, 0.5001, 0.9]))
    starts, flagged = _loop_alarms(codes, score, tau, k)
    a = alarms(codes, score, tau, k)
    np.testing.assert_array_equal(a.start, starts)
    np.testing.assert_array_equal(a.fire, starts + k - 1)
    o = episode_outcomes(codes, g, t_end, mal, score, tau, k, onset)
    for e in range(g):
        idx = np.flatnonzero(codes == e)
        mine = [s for s in starts if codes[s] == e]
        true = [s for s in mine if mal[s]]
        assert o.n_windows[e] == idx.size and o.n_malicious[e] == mal[idx].sum()
        assert o.n_alarms[e] == len(mine)
        assert o.n_false_alarms[e] == len(mine) - len(true)
        assert o.n_pre_onset_alarms[e] == (len(mine) - len(true) if mal[idx].any() else 0)
        assert o.detected[e] == bool(true and mal[idx].any())
        if true:
            start = onset[e] if onset[e] >= 0 else t_end[idx[mal[idx]][0]]
            assert o.ttd_s[e] == (t_end[true[0] + k - 1] - start) / 1e9
        else:
            assert np.isnan(o.ttd_s[e])
        assert o.n_flagged_benign[e] == (flagged[idx] & ~mal[idx]).sum()
        assert o.n_flagged_malicious[e] == (flagged[idx] & mal[idx]).sum()


@pytest.mark.parametrize("seed", range(15))
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_sweep_equals_outcomes_at_every_threshold(seed, k):
    rng = np.random.default_rng(100 + seed)
    codes, g, t_end, mal, score, onset = _random_stream(rng)
    sw = sweep(codes, mal, score, k)
    np.testing.assert_array_equal(sw.thresholds[:-1], np.unique(score))
    assert sw.n_infected == np.unique(codes[mal]).size
    for j, tau in enumerate(sw.thresholds):
        o = episode_outcomes(codes, g, t_end, mal, score, tau, k, onset)
        assert sw.n_false_alarms[j] == o.n_false_alarms.sum(), (j, tau)
        assert sw.n_detected[j] == o.detected.sum(), (j, tau)
    assert sw.n_false_alarms[-1] == sw.n_detected[-1] == 0
    # between thresholds nothing changes: tau behaves as the next threshold up
    for tau in rng.random(10):
        j = np.searchsorted(sw.thresholds, tau)
        o = episode_outcomes(codes, g, t_end, mal, score, tau, k, onset)
        assert (sw.n_false_alarms[j], sw.n_detected[j]) == \
            (o.n_false_alarms.sum(), o.detected.sum())


def test_sweep_of_an_empty_stream_alarms_nothing():
    sw = sweep(np.empty(0, np.int64), np.empty(0, bool), np.empty(0), 2)
    assert sw.thresholds.tolist() == [np.nextafter(1.0, np.inf)]
    assert sw.n_false_alarms.tolist() == [0] and sw.n_infected == 0


# ------------------------------------------------------------- threshold choice

def _sweep(fa, det, n_inf=5):
    thr = np.r_[0.1, 0.3, 0.5, 0.7, np.nextafter(1.0, np.inf)]
    return Sweep(thr, np.array(fa), np.array(det), n_inf)


def test_choose_threshold_by_hand():
    # 2 benign host-days, so the rates are fa / 2 = [5, 2, 2, .5, 0] per day.
    sw = _sweep([10, 4, 4, 1, 0], [5, 4, 4, 2, 0])
    c = choose_threshold(sw, benign_seconds=2 * 86400, budget_per_day=2)
    # feasible: .3 .5 .7 top; most detected 4 at .3 and .5, same false alarms
    # → the higher threshold .5
    assert (c.threshold, c.n_detected, c.n_false_alarms) == (0.5, 4, 4)
    assert c.false_alarms_per_host_day == 2.0 and c.detection_rate == 0.8
    assert c.n_candidates == 4 and c.benign_host_seconds == 2 * 86400
    assert choose_threshold(sw, benign_seconds=2 * 86400, budget_per_day=1).threshold == 0.7
    top = choose_threshold(sw, benign_seconds=2 * 86400, budget_per_day=0)
    assert top.threshold == sw.thresholds[-1] and top.n_detected == 0


def test_choose_threshold_prefers_fewer_false_alarms_on_equal_detection():
    sw = _sweep([10, 4, 3, 1, 0], [5, 4, 4, 2, 0])
    assert choose_threshold(sw, benign_seconds=86400, budget_per_day=5).threshold == 0.5


def test_choose_threshold_equals_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(30):
        codes, _, _, mal, score, _ = _random_stream(rng, n_groups=20)
        sw = sweep(codes, mal, score, int(rng.integers(1, 4)))
        secs, budget = float(rng.uniform(1e3, 1e6)), float(rng.uniform(0, 20))
        c = choose_threshold(sw, benign_seconds=secs, budget_per_day=budget)
        best = max((d, -f, t) for t, f, d in zip(sw.thresholds, sw.n_false_alarms,
                                                  sw.n_detected) if f / (secs / 86400) <= budget)
        assert (c.n_detected, -c.n_false_alarms, c.threshold) == best


def test_choose_threshold_refuses_without_benign_time():
    with pytest.raises(ValueError, match="no benign windows"):
        choose_threshold(_sweep([0] * 5, [0] * 5), benign_seconds=0, budget_per_day=1)


def test_no_infected_episode_gives_nan_detection_rate():
    c = choose_threshold(_sweep([0] * 5, [0] * 5, n_inf=0), benign_seconds=1, budget_per_day=1)
    assert np.isnan(c.detection_rate)


# ------------------------------------------------------------- ranking metrics

def _ranking_cases():
    rng = np.random.default_rng(20261201)
    for i in range(20):
        n = int(rng.integers(2, 300))
        y = rng.random(n) < rng.uniform(0.1, 0.9)
        y[:2] = [True, False]
        s = np.clip(0.3 * y + rng.random(n), 0, 1)
        if i % 2:
            s = s.round(1)                              # heavy ties
        w = rng.integers(0, 4, n) if i % 3 else None    # integer weights, some zero
        if w is not None:
            w[:2] = 1
        yield y, s, w


@pytest.mark.parametrize("y,s,w", list(_ranking_cases()))
def test_ranking_metrics_equal_sklearn(y, s, w):
    assert roc_auc(y, s, w) == pytest.approx(skm.roc_auc_score(y, s, sample_weight=w),
                                             abs=1e-12)
    assert average_precision(y, s, w) == pytest.approx(
        skm.average_precision_score(y, s, sample_weight=w), abs=1e-12)
    for drop in (True, False):
        ours = roc_curve(y, s, sample_weight=w, drop_intermediate=drop)
        ref = skm.roc_curve(y, s, sample_weight=w, drop_intermediate=drop)
        for a, b in zip(ours, ref):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    recall, precision = pr_curve(y, s, sample_weight=w)
    p_ref, r_ref, _ = skm.precision_recall_curve(y, s, sample_weight=w)
    np.testing.assert_allclose(recall, r_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(precision, p_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("fn", [roc_auc, average_precision, roc_curve, pr_curve])
def test_ranking_metrics_refuse_one_class(fn):
    with pytest.raises(ValueError, match="`y` holds only the positive class"):
        fn([True, True], [0.2, 0.3])
    with pytest.raises(ValueError, match="`y` holds only the negative class"):
        fn([False, False], [0.2, 0.3])
    with pytest.raises(ValueError, match="`y` holds only the negative class"):
        fn([True, False], [0.2, 0.3], sample_weight=[0, 1])     # the positive weighs 0


# ------------------------------------------------------------- resampled AUCs

def _episodes(rng, g, n):
    codes = np.sort(rng.integers(0, g, n))
    mal = rng.random(n) < np.where(codes % 3 == 0, 0.0, 0.7)      # every 3rd benign-only
    score = np.clip(0.35 * mal + 0.65 * rng.random(n), 0, 1).round(4)
    return codes, mal, score


def _snap(score, grid):
    return grid[np.searchsorted(grid, score)]


@pytest.mark.parametrize("max_bins", [100_000, 16])
def test_resampled_aucs_equal_sklearn_on_the_drawn_episodes(max_bins):
    rng = np.random.default_rng(5)
    g = 30
    codes, mal, score = _episodes(rng, g, 1500)
    grid = score_grid(score, max_bins=max_bins)
    if max_bins > score.size:                              # exact: the distinct scores
        np.testing.assert_array_equal(grid, np.unique(score))
    else:                                                  # quantile edges, real scores
        assert 1 < grid.size <= max_bins < np.unique(score).size
        assert np.isin(grid, score).all() and grid[-1] == score.max()
    pos, neg = episode_histograms(codes, g, mal, score, grid)
    assert pos.shape == neg.shape == (g, grid.size)
    assert pos.sum() == mal.sum() and neg.sum() == (~mal).sum()
    boot = EpisodeBootstrap.over_episodes(np.arange(g), n_classes=2, labels=[0, 1],
                                          n_resamples=300, seed=2)     # two chunks
    roc_b, ap_b = resampled_aucs(boot.weight_chunks(), pos, neg)
    assert roc_b.shape == ap_b.shape == (300,)
    w = boot.weights()
    snapped = _snap(score, grid)
    for b in (0, 1, 137, 249, 250, 299):
        sw = w[b][codes]
        assert roc_b[b] == pytest.approx(skm.roc_auc_score(mal, snapped, sample_weight=sw),
                                         abs=1e-12)
        assert ap_b[b] == pytest.approx(
            skm.average_precision_score(mal, snapped, sample_weight=sw), abs=1e-12)
    # the all-ones resample is the point estimate
    roc1, ap1 = resampled_aucs([np.ones((1, g), np.float32)], pos, neg)
    assert roc1[0] == pytest.approx(roc_auc(mal, snapped), abs=1e-12)
    assert ap1[0] == pytest.approx(average_precision(mal, snapped), abs=1e-12)


def test_resample_without_a_class_is_nan():
    codes = np.array([0, 0, 1, 1, 2])         # e0 mixed, e1 benign only, e2 malicious only
    mal = np.array([False, True, False, False, True])
    score = np.array([0.1, 0.9, 0.2, 0.3, 0.8])
    pos, neg = episode_histograms(codes, 3, mal, score, score_grid(score))
    w = np.array([[0, 3, 0], [1, 1, 1], [0, 0, 3]], np.float32)  # no positive, both, no negative
    roc_b, ap_b = resampled_aucs([w], pos, neg)
    assert np.isnan(roc_b[[0, 2]]).all() and np.isnan(ap_b[[0, 2]]).all()
    assert roc_b[1] == 1.0 and ap_b[1] == 1.0


def test_grid_error_bound_holds_and_is_small():
    rng = np.random.default_rng(9)
    codes, mal, score = _episodes(rng, 40, 5000)
    grid = score_grid(score, max_bins=32)
    pos, neg = episode_histograms(codes, 40, mal, score, grid)
    bound = auc_grid_error_bound(pos, neg)
    err = abs(roc_auc(mal, score) - roc_auc(mal, _snap(score, grid)))
    assert 0 < err <= bound
    n_b = np.asarray((pos + neg).sum(axis=0)).ravel()
    assert bound <= n_b.max() / (2 * score.size)
    assert auc_grid_error_bound(pos.sum(axis=0), neg.sum(axis=0)) == bound


# ------------------------------------------------------------- small helpers

def test_precision_at_base_rate():
    # tpr .9, fpr .01, pi .01: .009 / (.009 + .0099) = .47619...
    assert precision_at_base_rate(0.9, 0.01, 0.01) == pytest.approx(0.009 / 0.0189)
    out = precision_at_base_rate(np.array([0.9, 0.0, 0.5]), np.array([0.0, 0.0, 0.5]), 0.5)
    np.testing.assert_array_equal(out, [1.0, np.nan, 0.5])


def test_weighted_quantile_equals_numpy_inverted_cdf():
    rng = np.random.default_rng(3)
    v = np.sort(rng.random(12).round(2))
    w = rng.integers(0, 4, (50, 12))
    w[0] = 0                                # empty row → NaN
    w[1, :5] = 0                            # leading zero weights
    w[2] = 0
    w[2, 7] = 5                             # one value only
    for q in (0.0, 0.025, 0.3, 0.5, 0.975, 1.0):
        got = weighted_quantile(v, w, q)
        assert np.isnan(got[0])
        for b in range(1, w.shape[0]):
            assert got[b] == np.quantile(np.repeat(v, w[b]), q, method="inverted_cdf"), (q, b)
        assert weighted_quantile(v, w[3], q) == got[3]


# ------------------------------------------------------------- validation

def test_unsorted_codes_are_refused():
    with pytest.raises(ValueError, match="`codes` must be non-decreasing"):
        alarms([0, 1, 0], [0.1, 0.2, 0.3], 0.5, 1)
    with pytest.raises(ValueError, match="`codes`"):
        sweep([1, 0], [True, False], [0.1, 0.2], 1)


@pytest.mark.parametrize("kwargs,match", [
    (dict(score=[0.1, float("nan"), 0.2]), "`score`"),
    (dict(k=0), "`k`"),
    (dict(n_groups=1), "`n_groups`"),
    (dict(malicious=[0, 2, 1]), "`malicious`"),
    (dict(t_end_ns=[3, 2, 1]), "`t_end_ns`"),
    (dict(onset_ns=[-2, 0]), "`onset_ns`"),
])
def test_outcome_arguments_are_validated(kwargs, match):
    args = dict(codes=[0, 0, 1], n_groups=2, t_end_ns=[1, 2, 3], malicious=[0, 1, 1],
                score=[0.1, 0.6, 0.7], tau=0.5, k=1, onset_ns=[-1, -1])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        episode_outcomes(**args)
