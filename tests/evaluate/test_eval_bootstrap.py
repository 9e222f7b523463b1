"""The episode bootstrap against outside references and against its own promises.

Tolerances are stated where they are used; every simulation is seeded, so a
pass is reproducible, and each tolerance is sized so that a *wrong* method
(window-level resampling, wrong quantiles, unshared weights) fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from cis490.evaluate import EpisodeBootstrap, holm, macro_f1_ci, paired_test
from evalsim import predict, simulate, true_macro_f1

K = 4


def _macro_f1_vectorised(yt, yp, axis=-1):
    """Macro F1 over the classes 0..K-1 of paired samples, batched (for scipy)."""
    yt = np.moveaxis(yt, axis, -1)[..., None, None, :]
    yp = np.moveaxis(yp, axis, -1)[..., None, None, :]
    t = np.arange(K)[:, None, None]
    p = np.arange(K)[None, :, None]
    cm = ((yt == t) & (yp == p)).sum(-1).astype(float)            # (..., K, K)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    denom = cm.sum(-1) + cm.sum(-2)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1.mean(-1)


# ---------------------------------------------------------------- references

def test_one_window_per_episode_matches_scipy_percentile_bootstrap():
    rng = np.random.default_rng(11)
    n = 300
    yt = rng.choice(K, n, p=[0.3, 0.1, 0.1, 0.5])
    yp = predict(yt, np.full(n, 0.7), K, rng)
    groups = np.arange(n)
    B = 10_000
    ours = macro_f1_ci(yt, yp, groups, n_resamples=B, seed=3, labels=range(K))
    ref = stats.bootstrap((yt, yp), _macro_f1_vectorised, paired=True, vectorized=True,
                          method="percentile", n_resamples=B, confidence_level=0.95,
                          random_state=np.random.default_rng(4))
    assert ours.point == pytest.approx(_macro_f1_vectorised(yt, yp))
    # Two independent bootstraps differ by Monte-Carlo error only. The SE of a
    # 2.5 % quantile estimated from B draws is sqrt(a(1-a)/B) / phi(z_a) * sigma
    # (normal approximation) = 0.027 sigma at B = 10 000; the difference of two
    # runs has sqrt(2) times that. 4 SE = 0.15 sigma: a 90 % instead of a 95 %
    # interval (endpoints 0.32 sigma apart) or a missing resampling would fail.
    sigma = ref.standard_error
    tol = 4 * np.sqrt(2) * np.sqrt(0.025 * 0.975 / B) / stats.norm.pdf(1.96) * sigma
    assert abs(ours.low - ref.confidence_interval.low) < tol
    assert abs(ours.high - ref.confidence_interval.high) < tol


def test_resampled_confusions_equal_rescoring_the_drawn_windows():
    """w @ E is exactly sklearn's F1 on the windows of the drawn episodes."""
    yt, yp, groups = simulate(30, 7, rng=5)
    boot = EpisodeBootstrap(yt, groups, n_classes=K, n_resamples=40, seed=9)
    r = boot.score(yp)
    W = boot.weights()
    assert W.shape == (40, 30) and np.all(W.sum(axis=1) == 30)
    for b in range(40):
        idx = np.concatenate([np.tile(np.flatnonzero(groups == g), int(W[b, g]))
                              for g in range(30)])
        ref = f1_score(yt[idx], yp[idx], labels=boot.labels, average="macro",
                       zero_division=0)
        assert r.macro_f1_b[b] == pytest.approx(ref, abs=1e-12)


def test_holm_matches_statsmodels_formula():
    # statsmodels.stats.multitest.multipletests([.01, .04, .03, .2], method="holm")[1]
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.2]), [0.04, 0.09, 0.09, 0.2])
    np.testing.assert_allclose(holm([0.5, 0.5]), [1.0, 1.0])
    assert holm([]).size == 0

    def step_down(p, alpha):  # Holm (1979), as a loop
        reject = np.zeros(len(p), bool)
        for rank, i in enumerate(np.argsort(p, kind="stable")):
            if p[i] > alpha / (len(p) - rank):
                break
            reject[i] = True
        return reject

    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.random(int(rng.integers(1, 12))) ** 3
        adj = holm(p)
        assert np.all(adj >= p) and np.all(adj <= 1)
        for alpha in (0.01, 0.05, 0.1, 0.3):
            np.testing.assert_array_equal(adj <= alpha, step_down(p, alpha))


def test_holm_rejects_bad_input():
    with pytest.raises(ValueError, match="pvalues"):
        holm([0.1, 1.2])
    with pytest.raises(ValueError, match="pvalues"):
        holm([[0.1]])


# ---------------------------------------------------------------- clustering

def test_correlated_windows_give_a_wider_episode_interval():
    yt, yp, groups = simulate(60, 30, concentration=2.0, rng=1)
    ep = macro_f1_ci(yt, yp, groups, n_resamples=1000, seed=0)
    win = macro_f1_ci(yt, yp, np.arange(yt.size), n_resamples=1000, seed=0)
    assert ep.point == win.point
    # design effect 1 + (m - 1) rho with rho ~ 0.3 here: about 3x wider
    assert (ep.high - ep.low) > 1.5 * (win.high - win.low)


def test_independent_windows_give_the_same_width_either_way():
    yt, yp, groups = simulate(60, 30, concentration=np.inf, rng=1)
    ep = macro_f1_ci(yt, yp, groups, n_resamples=2000, seed=0)
    win = macro_f1_ci(yt, yp, np.arange(yt.size), n_resamples=2000, seed=0)
    assert 0.75 < (ep.high - ep.low) / (win.high - win.low) < 1.33


def test_coverage_of_the_95_interval_is_close_to_95_percent():
    """600 simulated test splits (100 episodes x 20 correlated windows).

    Binomial SE of an estimated coverage of 0.95 over R = 600 is 0.0089; we
    allow 3.5 SE around 0.95 (plus 0.5 pt below for the percentile
    bootstrap's known O(1/G) under-coverage, measured at 0.9445 +- 0.005
    with R = 2000, B = 1000). Resampling windows instead covers ~0.57.
    """
    R, B, G, m, skill = 600, 400, 100, 20, 0.7
    truth = true_macro_f1(m, skill)
    below = above = 0
    for r in range(R):
        yt, yp, groups = simulate(G, m, skill=skill, concentration=2.0, rng=[7, r])
        ci = macro_f1_ci(yt, yp, groups, n_resamples=B, seed=r, labels=range(K))
        below += truth < ci.low
        above += truth > ci.high
    coverage = 1 - (below + above) / R
    assert 0.95 - 0.036 <= coverage <= 0.95 + 0.031, coverage
    # neither tail carries the whole miss (each ~0.025, SE 0.0064)
    assert below / R < 0.05 and above / R < 0.05


# ---------------------------------------------------------------- paired test

def _two_models(G, m, skill_a, skill_b, rng, sd=0.15):
    """Two models on the same windows.

    Episode difficulty is partly shared (``u``: the models are positively
    correlated, which only a *paired* resample exploits) and partly
    model-specific (``sd``: the difference itself varies by episode, which
    only an *episode* resample captures).
    """
    rng = np.random.default_rng(rng)
    yt, _, groups = simulate(G, m, rng=rng)
    u = rng.beta(2.0 * 0.7, 2.0 * 0.3, G)
    ua = np.clip(u + rng.normal(0, sd, G) + skill_a - 0.7, 0, 1)[groups]
    ub = np.clip(u + rng.normal(0, sd, G) + skill_b - 0.7, 0, 1)[groups]
    return yt, predict(yt, ua, K, rng), predict(yt, ub, K, rng), groups


def test_paired_test_finds_a_planted_difference():
    rejections = 0
    for r in range(40):
        yt, pa, pb, g = _two_models(100, 20, 0.85, 0.70, rng=[3, r])
        res = paired_test(yt, pa, pb, g, n_resamples=1000, seed=r)
        assert res.difference == pytest.approx(res.point_a - res.point_b)
        rejections += res.pvalue < 0.05
    assert rejections >= 36                # power is ~1 here


def test_paired_test_rejects_a_null_at_about_alpha():
    """Rejection rate under the null over 300 simulated splits.

    At alpha = 0.05 the binomial SE over R = 300 is 0.0126: we accept
    [0.01, 0.10] (the upper end is 4 SE: the percentile bootstrap is slightly
    liberal at G = 100). Measured on this simulation: 0.053 here; resampling
    windows instead rejects 0.22 (clustering ignored); drawing independent
    weights per model rejects 0.00 (pairing ignored) — both fail.
    """
    R = 300
    p = np.empty(R)
    agree = 0
    for r in range(R):
        yt, pa, pb, g = _two_models(100, 20, 0.7, 0.7, rng=[4, r])
        res = paired_test(yt, pa, pb, g, n_resamples=400, seed=r)
        p[r] = res.pvalue
        excludes_zero = not (res.low <= 0 <= res.high)
        agree += (res.pvalue < 0.05) == excludes_zero or abs(res.pvalue - 0.05) < 0.01
    assert 0.01 <= np.mean(p < 0.05) <= 0.10
    assert 0.12 <= np.mean(p < 0.2) <= 0.28        # about uniform further out too
    assert agree == R                              # p < .05 <=> 95 % CI excludes 0


def test_identical_models_have_p_one():
    yt, yp, g = simulate(20, 5, rng=0)
    res = paired_test(yt, yp, yp, g, n_resamples=200)
    assert res.difference == 0 and res.pvalue == 1.0 and res.low == res.high == 0


# ---------------------------------------------------------------- records

def test_seed_is_recorded_and_reproducible():
    yt, yp, g = simulate(40, 5, rng=2)
    a = macro_f1_ci(yt, yp, g, n_resamples=300, seed=12)
    b = macro_f1_ci(yt, yp, g, n_resamples=300, seed=12)
    c = macro_f1_ci(yt, yp, g, n_resamples=300, seed=13)
    assert a == b and a != c
    assert (a.seed, a.n_resamples, a.confidence) == (12, 300, 0.95)
    assert a.low <= a.point <= a.high


def test_weights_do_not_depend_on_how_many_resamples_follow():
    yt, _, g = simulate(40, 5, rng=2)
    w300 = EpisodeBootstrap(yt, g, n_resamples=300, seed=1).weights()
    w250 = EpisodeBootstrap(yt, g, n_resamples=250, seed=1).weights()
    np.testing.assert_array_equal(w300[:250], w250)


def test_string_episode_ids_are_accepted():
    yt, yp, g = simulate(10, 4, rng=2)
    a = macro_f1_ci(yt, yp, g, n_resamples=100)
    b = macro_f1_ci(yt, yp, np.array([f"ep-{i:03d}" for i in g]), n_resamples=100)
    assert a == b


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_resamples=0), "n_resamples"),
    (dict(n_resamples=2.5), "n_resamples"),
    (dict(confidence=1.0), "confidence"),
    (dict(seed=-1), "seed"),
    (dict(groups=[0, 1]), "groups"),
])
def test_bootstrap_validation_names_the_parameter(kwargs, match):
    args = dict(y_true=[0, 1, 1], y_pred=[0, 1, 0], groups=[0, 0, 1])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        macro_f1_ci(args.pop("y_true"), args.pop("y_pred"), args.pop("groups"), **args)


def test_projected_resampling_equals_resampled_confusion_matrices():
    """score_many resamples TP/predicted/true only; it must match W @ E exactly."""
    from cis490.evaluate.metrics import accuracy, f1_per_class

    yt, _, groups = simulate(50, 9, rng=8)
    rng = np.random.default_rng(8)
    preds = [predict(yt, np.full(yt.size, s), K, rng) for s in (0.4, 0.7, 0.9)]
    boot = EpisodeBootstrap(yt, groups, n_classes=K, n_resamples=300, seed=2)
    # reference windows, and per-model windows (one model on a subset of episodes)
    keep = groups < 30
    y_trues, grps = [yt, yt, yt[keep]], [groups, groups, groups[keep]]
    preds_own = [preds[0], preds[1], preds[2][keep]]
    for args in ((preds,), (preds_own, y_trues, grps)):
        full, cms = boot.resampled_confusions(*args)
        for j, r in enumerate(boot.score_many(*args)):
            np.testing.assert_allclose(r.f1_b, f1_per_class(cms[:, j]), atol=1e-12)
            np.testing.assert_allclose(r.macro_f1_b, f1_per_class(cms[:, j])[:, boot.labels]
                                       .mean(axis=1), atol=1e-12)
            np.testing.assert_allclose(r.accuracy_b, accuracy(cms[:, j]), atol=1e-12)
            assert r.macro_f1 == pytest.approx(f1_per_class(full[j])[boot.labels].mean())
