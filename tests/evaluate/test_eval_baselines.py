"""Baselines: fitted on train, chosen on val, deterministic; the clock shortcut is caught.

The generated worlds are window-level (no episodes on disk): episodes of
windows at stride 2 s with window ends from 20 s, one informative feature.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cis490.evaluate.baselines import BASELINES, BaselineData, fit_baselines, subsample_episodes
from cis490.evaluate.metrics import point_metrics

INFO = "host.cpu_user_pct__mean"     # the informative feature
NOISE = "netflow.flows__mean"        # uninformative, sometimes missing
CONST = "host.load1__mean"           # constant on every window
NAMES = [INFO, NOISE, CONST, "host.cpu_user_pct__std"]


def _phase(r: np.ndarray, m: float) -> np.ndarray:
    """Phase at time ``r`` since onset of a malicious period of length ``m``."""
    return np.select([(r < 0) | (r >= m), r < 8, r < 16], [0, 1, 2], 3).astype(np.int64)


def _world(rng, hosts, n_eps, *, fixed_onset, shift=2.0, host_level=None) -> BaselineData:
    """Episodes per host; fixed onsets put the label in the clock, random ones do not."""
    cols = {k: [] for k in ("X", "y", "ep", "host", "t")}
    for h in hosts:
        level = 10.0 if host_level is None else host_level[h]
        for e in range(n_eps):
            if fixed_onset:     # 120 s episode, onset at 0.3 of it, then "forever" malicious
                t = np.arange(20, 121, 2, dtype=np.float64)
                y = _phase(t - 36.0, np.inf)
            else:               # observation window on a stationary process: P(mal | t) = M/2L
                t = np.arange(20, int(rng.integers(90, 601)) + 1, 2, dtype=np.float64)
                y = _phase(t - rng.uniform(-600, 600), 300.0)
            n = t.size
            x = np.empty((n, len(NAMES)), np.float32)
            x[:, 0] = level + rng.normal(0, 1, n) + shift * (y != 0)
            x[:, 1] = np.where(rng.random(n) < 0.1, np.nan, rng.gamma(2.0, 1.0, n))
            x[:, 2] = 1.0
            x[:, 3] = rng.gamma(2.0, 1.0, n)
            cols["X"].append(x)
            cols["y"].append(y)
            cols["ep"].append(np.full(n, f"{h}-e{e}"))
            cols["host"].append(np.full(n, h))
            cols["t"].append(t)
    return BaselineData(X=np.concatenate(cols["X"]), feature_names=list(NAMES),
                        y=np.concatenate(cols["y"]), episode_id=np.concatenate(cols["ep"]),
                        host_id=np.concatenate(cols["host"]), t_since_start_s=np.concatenate(cols["t"]))


def _splits(seed, *, fixed_onset, n_train=60, n_val=40, n_test=80, **kw):
    rng = np.random.default_rng(seed)
    return (_world(rng, ["h0", "h1"], n_train, fixed_onset=fixed_onset, **kw),
            _world(rng, ["h0", "h1"], n_val, fixed_onset=fixed_onset, **kw),
            _world(rng, ["h9"], n_test, fixed_onset=fixed_onset, **kw))


def _auc(data: BaselineData, proba: np.ndarray) -> float:
    return roc_auc_score(data.y != 0, 1.0 - proba[:, 0].astype(np.float64))


def _rows(data: BaselineData, rows) -> BaselineData:
    return dataclasses.replace(data, X=data.X[rows], y=data.y[rows], episode_id=data.episode_id[rows],
                               host_id=data.host_id[rows], t_since_start_s=data.t_since_start_s[rows])


@pytest.fixture(scope="module")
def fixed_world():
    return _splits(1, fixed_onset=True)


@pytest.fixture(scope="module")
def random_world():
    return _splits(2, fixed_onset=False, n_train=150, n_val=60, n_test=300, shift=3.0)


# --------------------------------------------------------------------------


def test_every_baseline_gives_probabilities_over_all_classes(fixed_world):
    train, val, test = fixed_world
    train = _rows(train, train.y != 2)           # class 2 absent from train
    fits = fit_baselines(train, val, test, seed=0)
    assert list(fits) == list(BASELINES)
    for name, fit in fits.items():
        for p, d in ((fit.proba_val, val), (fit.proba_test, test)):
            assert p.dtype == np.float32 and p.shape == (d.y.size, 4), name
            np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6, err_msg=name)
            assert np.all(p >= 0), name
        if name != "rule-zscore":
            assert np.all(fit.proba_test[:, 2] == 0), name
        json.dumps(fit.info)
        assert fit.info["n_train_windows"] == train.y.size and not fit.info["train_capped"]
    assert np.all(fits["rule-zscore"].proba_test[:, 1:3] == 0)   # cannot attribute phases


def test_majority_is_the_train_frequencies(fixed_world):
    train, val, test = fixed_world
    fit = fit_baselines(train, val, test, names=["majority"])["majority"]
    freq = np.bincount(train.y, minlength=4) / train.y.size
    np.testing.assert_allclose(fit.proba_test, np.tile(freq, (test.y.size, 1)), rtol=1e-6)
    np.testing.assert_allclose(fit.proba_val, np.tile(freq, (val.y.size, 1)), rtol=1e-6)
    assert np.all(fit.proba_test.argmax(1) == np.argmax(freq)) and fit.info["majority_class"] == 3
    assert _auc(test, fit.proba_test) == 0.5


def test_clock_only_exploits_fixed_onsets(fixed_world):
    train, val, test = fixed_world
    fit = fit_baselines(train, val, test, names=["clock-only"])["clock-only"]
    assert _auc(test, fit.proba_test) >= 0.9
    scores = fit.info["val_macro_f1_by_depth"]
    assert list(scores) == ["1", "2", "3", "4", "6", "8"]
    best = max(scores.values())
    assert fit.info["max_depth"] == int(next(d for d, f in scores.items() if f == best))


def test_clock_only_is_chance_when_time_carries_no_label_but_logreg_is_not(random_world):
    train, val, test = random_world
    fits = fit_baselines(train, val, test, names=["clock-only", "logreg"])
    assert abs(_auc(test, fits["clock-only"].proba_test) - 0.5) <= 0.05
    assert _auc(test, fits["logreg"].proba_test) >= 0.9


def _rule_world(seed=3):
    levels = {"h0": 8.0, "h1": 12.0, "h9": 10.0, "hx": 10.0}
    return _splits(seed, fixed_onset=True, n_train=20, n_val=15, n_test=20, shift=90.0,
                   host_level=levels)


def test_rule_zscore_detects_a_shifted_channel():
    train, val, test = _rule_world()
    fit = fit_baselines(train, val, test, names=["rule-zscore"])["rule-zscore"]
    assert _auc(val, fit.proba_val) >= 0.95 and _auc(test, fit.proba_test) >= 0.95
    assert np.all(np.isfinite(fit.proba_test))      # the constant channel gives no inf z
    assert fit.info["channels"] == [INFO.split("__")[0], CONST.split("__")[0], NOISE.split("__")[0]]
    assert fit.info["platt"]["coef"] > 0 and not fit.info["platt"]["clamped_negative_coef"]


def test_rule_zscore_baseline_sees_only_benign_train_windows():
    train, val, test = _rule_world()
    X = train.X.copy()
    mal = train.y != 0
    X[mal] = np.random.default_rng(0).uniform(0, 1e6, (mal.sum(), X.shape[1]))
    X[mal, 1] = np.nan
    poisoned = dataclasses.replace(train, X=X)
    a = fit_baselines(train, val, test, names=["rule-zscore"])["rule-zscore"]
    b = fit_baselines(poisoned, val, test, names=["rule-zscore"])["rule-zscore"]
    assert np.array_equal(a.proba_val, b.proba_val) and np.array_equal(a.proba_test, b.proba_test)
    assert a.info == b.info


def test_rule_zscore_unseen_host_falls_back_to_the_pooled_baseline():
    train, val, test = _rule_world()
    only_mal = _rows(train, (train.host_id == "h1") & (train.y != 0))
    only_mal = dataclasses.replace(only_mal, host_id=np.full(only_mal.y.size, "hm"))
    train = BaselineData(*(np.concatenate([getattr(train, f.name), getattr(only_mal, f.name)])
                           if f.name != "feature_names" else train.feature_names
                           for f in dataclasses.fields(BaselineData)))
    fit = fit_baselines(train, val, test, names=["rule-zscore"])["rule-zscore"]
    assert fit.info["hosts_own_baseline"] == ["h0", "h1"]
    assert fit.info["hosts_pooled"] == {"train": ["hm"], "val": [], "test": ["h9"]}
    renamed = fit_baselines(train, val, dataclasses.replace(test, host_id=np.full(test.y.size, "hx")),
                            names=["rule-zscore"])["rule-zscore"]
    as_h0 = fit_baselines(train, val, dataclasses.replace(test, host_id=np.full(test.y.size, "h0")),
                          names=["rule-zscore"])["rule-zscore"]
    assert np.array_equal(renamed.proba_test, fit.proba_test)     # pooled, whatever its name
    assert not np.array_equal(as_h0.proba_test, fit.proba_test)   # h0's own baseline differs


def _separable(seed):
    rng = np.random.default_rng(seed)
    n = 400
    y = rng.integers(0, 4, n)
    X = np.column_stack([10.0 * y + rng.normal(0, 0.5, n),
                         np.where(rng.random(n) < 0.2, np.nan, rng.normal(0, 1, n)),
                         np.ones(n), rng.normal(0, 1, n)]).astype(np.float32)
    return BaselineData(X=X, feature_names=list(NAMES), y=y.astype(np.int64),
                        episode_id=np.array([f"s{seed}-e{i // 20}" for i in range(n)]),
                        host_id=np.full(n, f"h{seed}"), t_since_start_s=np.arange(n) * 2.0 + 20)


def test_logreg_learns_a_separable_problem_and_chooses_c_on_val():
    train, val, test = _separable(0), _separable(1), _separable(2)
    fit = fit_baselines(train, val, test, names=["logreg"])["logreg"]
    assert point_metrics(test.y, fit.proba_test.argmax(1), n_classes=4).macro_f1 == 1.0
    scores = fit.info["val_macro_f1_by_C"]
    assert list(scores) == ["0.01", "0.1", "1.0"]
    best = max(scores.values())
    assert fit.info["C"] == float(next(c for c, f in scores.items() if f == best))  # ties: smaller
    assert point_metrics(val.y, fit.proba_val.argmax(1), n_classes=4).macro_f1 == \
        scores[str(fit.info["C"])]
    assert fit.info["missing_indicators"] == [NOISE]


def test_logreg_is_bitwise_deterministic(random_world):
    train, val, test = random_world
    a = fit_baselines(train, val, test, names=["logreg"], seed=5)["logreg"]
    b = fit_baselines(train, val, test, names=["logreg"], seed=5)["logreg"]
    assert np.array_equal(a.proba_val, b.proba_val) and np.array_equal(a.proba_test, b.proba_test)
    assert a.info == b.info


def test_subsample_keeps_whole_episodes_deterministically(random_world):
    train = random_world[0]
    cap = train.y.size // 3
    a, b = subsample_episodes(train, cap, seed=7), subsample_episodes(train, cap, seed=7)
    assert 0 < a.y.size <= cap
    assert np.array_equal(a.X, b.X, equal_nan=True) and np.array_equal(a.episode_id, b.episode_id)
    full = dict(zip(*np.unique(train.episode_id, return_counts=True)))
    kept = dict(zip(*np.unique(a.episode_id, return_counts=True)))
    assert all(full[e] == n for e, n in kept.items())
    assert set(kept) != set(np.unique(subsample_episodes(train, cap, seed=8).episode_id))
    assert subsample_episodes(train, train.y.size, seed=7) is train
    fit = fit_baselines(train, *random_world[1:], names=["majority"], max_train_windows=cap)
    assert fit["majority"].info["train_capped"] and fit["majority"].info["n_train_windows"] <= cap


def _broken(data, **change):
    return dataclasses.replace(data, **change)


@pytest.mark.parametrize("which,change,match", [
    ("train", lambda d: {"y": d.y[:-1]}, r"`train\.y`"),
    ("val", lambda d: {"host_id": d.host_id[:-1]}, r"`val\.host_id`"),
    ("test", lambda d: {"X": d.X[:, :-1]}, r"`test\.feature_names`"),
    ("val", lambda d: {"X": d.X[:, :-1], "feature_names": d.feature_names[:-1]},
     r"`val\.feature_names`"),
    ("train", lambda d: {"y": d.y + 4}, r"`train\.y`"),
    ("train", lambda d: {"feature_names": ["proc.cpu_pct__mean"] + d.feature_names[1:]},
     r"`train\.feature_names`"),
])
def test_bad_input_names_the_argument(fixed_world, which, change, match):
    splits = dict(zip(("train", "val", "test"), fixed_world))
    splits[which] = _broken(splits[which], **change(splits[which]))
    with pytest.raises(ValueError, match=match):
        fit_baselines(splits["train"], splits["val"], splits["test"], names=["majority"])


def test_unknown_baseline_name_is_refused(fixed_world):
    with pytest.raises(ValueError, match="`names`"):
        fit_baselines(*fixed_world, names=["majority", "oracle"])


def test_rule_zscore_keeps_its_ranking_on_a_far_off_host():
    """Regression: P(clean) was 1 − expit(x), which rounds to 0 once x > 37, so a host far
    from the pooled baseline got one tied score and ROC AUC 0.5 whatever the rule saw."""
    from scipy.stats import spearmanr

    levels = {"h0": 8.0, "h1": 12.0, "h9": 400.0, "hx": 10.0}       # h9: 400 vs ~10 in train
    train, val, test = _splits(3, fixed_onset=True, n_train=20, n_val=15, n_test=20, shift=6.0,
                               host_level=levels)
    fit = fit_baselines(train, val, test, names=["rule-zscore"])["rule-zscore"]
    key = -fit.proba_test[:, 0].astype(np.float64)            # the evaluation's ranking key
    n = test.y.size
    assert fit.proba_test[:, 0].max() < 1e-10                 # every window far out ...
    assert np.unique(key).size > 0.9 * n                      # ... yet almost no ties
    x = np.log1p(np.maximum(test.X[:, 0].astype(np.float64), 0.0))  # the channel that moves
    assert spearmanr(key, x).statistic > 0.99                 # the stored order is the rule's
    assert roc_auc_score(test.y != 0, key) > 0.9              # and it still separates
