"""Reference detectors that every evaluation table carries as rows.

Invariant: a baseline is fitted at evaluation time on the TRAIN windows, any
choice it makes (tree depth, C, Platt scaling) is made on VALIDATION only
(macro F1; the clock-only detection tree on ROC AUC) (``point_metrics(...).macro_f1``,
the project's one macro F1), and the test windows are only predicted. Same inputs give bitwise-same outputs
(fixed ``random_state``, BLAS held to one thread while sklearn runs).

- ``majority``    constant train class frequencies; its malicious score is
  constant, so its ROC AUC is 0.5 — the floor.
- ``clock-only``  decision trees on ``t_since_start_s`` alone: the shortcut a
  detector takes when the onset of infection sits at a fixed time in the
  episode. Its detection score comes from a malicious-vs-clean tree whose
  depth is chosen on validation ROC AUC (a class-balanced 4-class tree chosen
  on macro F1 is a weak detector and would understate the shortcut); the
  4-class tree only splits the malicious mass over the phases. A model that
  does not beat it has learnt the clock, not the host.
- ``rule-zscore`` no learning: per-host robust z-scores of each realistic
  channel's window mean against the host's benign train windows; the score is
  the largest |z|. Platt-scaled on validation (monotone, so the ranking is the
  rule's own). It cannot attribute phases: all malicious probability goes to
  the last class (``infected_running``, the common malicious phase).
- ``logreg``      multinomial logistic regression on the standardised summary
  features plus missingness indicators.

Train is capped to ``max_train_windows`` by whole episodes in a seeded hash
order (``subsample_episodes``), so memory does not grow with the store. The
val and test features may be lazy on-disk views (``cis490.data.load.RowArray``,
what ``cis490 eval`` passes): they are read ``CHUNK_ROWS`` windows at a time,
never whole (a baseline's score of a window depends only on that window, so the
chunking does not change a number); only the capped train subsample is held in
memory.
"""

from __future__ import annotations

import hashlib
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from cis490.data.channels import channel_names
from cis490.data.schema import feature_names as schema_feature_names
from cis490.evaluate.metrics import point_metrics
from cis490.evaluate.predictions import shared_strings
from cis490.models._array import chunks, fit_normalisation, is_lazy, standardise

__all__ = ["BASELINES", "BaselineData", "BaselineFit", "fit_baselines", "subsample_episodes"]

BASELINES = ("majority", "clock-only", "rule-zscore", "logreg")

CLOCK_DEPTHS = (1, 2, 3, 4, 6, 8)
LOGREG_CS = (0.01, 0.1, 1.0)
MAD_TO_SIGMA = 1.4826
PLATT_C = 1e4
CHUNK_ROWS = 16_384   # val/test windows read and scored at a time


@dataclass(frozen=True)
class BaselineData:
    """One split's windows."""

    X: np.ndarray                # (n, F) float32 realistic summary features, NaN = not observed
    #                              (val/test: also a lazy RowArray, read in chunks)
    feature_names: list[str]     # F names "<channel>__<stat>"
    y: np.ndarray                # (n,) int64 phase 0..K-1
    episode_id: np.ndarray       # (n,) str
    host_id: np.ndarray          # (n,) str
    t_since_start_s: np.ndarray  # (n,) float64 seconds from episode start to window end


@dataclass(frozen=True)
class BaselineFit:
    name: str
    proba_val: np.ndarray   # (n_val, K) float32, rows sum to 1
    proba_test: np.ndarray  # (n_test, K) float32
    info: dict              # JSON-able: what was fitted / chosen


# --------------------------------------------------------------------------
# validation (kept apart from the algorithms)


def _check_data(d: BaselineData, arg: str, n_classes: int) -> BaselineData:
    if not isinstance(d, BaselineData):
        raise ValueError(f"`{arg}` must be a BaselineData, got {type(d).__name__}")
    X = d.X if is_lazy(d.X) else np.asarray(d.X)
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.floating):
        raise ValueError(f"`{arg}.X` must be a 2-D float array, got {X.dtype} {X.shape}")
    n, f = X.shape
    if n == 0:
        raise ValueError(f"`{arg}.X` has no windows")
    names = [str(s) for s in d.feature_names]
    if len(names) != f:
        raise ValueError(f"`{arg}.feature_names` has {len(names)} names for {f} columns of `{arg}.X`")
    unknown = sorted(set(names) - set(schema_feature_names(mode="realistic")))
    if unknown:
        raise ValueError(f"`{arg}.feature_names` holds non-realistic features: {unknown[:5]}")
    out = {}
    for field in ("y", "episode_id", "host_id", "t_since_start_s"):
        a = np.asarray(getattr(d, field))
        if a.shape != (n,):
            raise ValueError(f"`{arg}.{field}` must have one entry per row of `{arg}.X` ({n}), "
                             f"got shape {a.shape}")
        out[field] = a
    y = out["y"]
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"`{arg}.y` must hold integer phases 0..{n_classes - 1}")
    t = out["t_since_start_s"]
    if not np.issubdtype(t.dtype, np.number) or not np.all(np.isfinite(t)):
        raise ValueError(f"`{arg}.t_since_start_s` must be finite numbers")
    return BaselineData(X=X, feature_names=names, y=y.astype(np.int64),
                        episode_id=shared_strings(out["episode_id"]),
                        host_id=shared_strings(out["host_id"]),
                        t_since_start_s=t.astype(np.float64))


# --------------------------------------------------------------------------
# helpers


def subsample_episodes(data: BaselineData, max_windows: int, seed: int) -> BaselineData:
    """At most ``max_windows`` windows, by whole episodes; identity when under the cap.

    Episodes are visited in the order of ``sha256(f"{seed}:{episode_id}")`` and
    each is kept if it still fits under the cap (so the result is a pure
    function of the ids, the cap and the seed). Rows keep their input order.
    """
    if isinstance(max_windows, bool) or not isinstance(max_windows, (int, np.integer)) \
            or max_windows < 1:
        raise ValueError(f"`max_windows` must be a positive integer, got {max_windows!r}")
    ids = shared_strings(np.asarray(data.episode_id))
    if ids.size <= max_windows:
        return data
    uniq, codes, counts = np.unique(ids, return_inverse=True, return_counts=True)
    order = sorted(range(uniq.size),
                   key=lambda i: hashlib.sha256(f"{seed}:{uniq[i]}".encode()).hexdigest())
    keep = np.zeros(uniq.size, dtype=bool)
    total = 0
    for i in order:
        if total + counts[i] <= max_windows:
            keep[i] = True
            total += int(counts[i])
    if total == 0:
        raise ValueError(f"`max_windows`={max_windows} is smaller than every episode "
                         f"(smallest has {int(counts.min())} windows)")
    rows = keep[codes.ravel()]
    X = data.X.take(rows)[:] if is_lazy(data.X) else np.asarray(data.X)[rows]  # the kept rows only
    return replace(data, X=X, y=np.asarray(data.y)[rows],
                   episode_id=ids[rows], host_id=np.asarray(data.host_id)[rows],
                   t_since_start_s=np.asarray(data.t_since_start_s)[rows])


@contextmanager
def _one_thread():
    """BLAS/OpenMP held to one thread: reproducible sums, and the 2 shared cores."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1):
        yield


def _full_proba(proba: np.ndarray, classes: np.ndarray, k: int) -> np.ndarray:
    """Map an estimator's ``predict_proba`` columns (``classes_``) onto all K classes."""
    out = np.zeros((proba.shape[0], k), dtype=np.float64)
    out[:, np.asarray(classes, dtype=np.int64)] = proba
    return out


def _val_f1(y_val: np.ndarray, proba: np.ndarray, k: int) -> float:
    return point_metrics(y_val, proba.argmax(axis=1), n_classes=k).macro_f1


def _select(grid: Sequence, fit_one: Callable, y_val: np.ndarray, k: int):
    """Fit every grid value; keep the best on val macro F1 (ties -> first, i.e. smaller)."""
    best, best_f1, scores = None, -np.inf, {}
    for value in grid:
        model, proba_val = fit_one(value)
        f1 = _val_f1(y_val, proba_val, k)
        scores[str(value)] = f1
        if f1 > best_f1:
            best, best_f1 = (value, model, proba_val), f1
    return best, scores


def _f32(p: np.ndarray) -> np.ndarray:
    return np.asarray(p, dtype=np.float32)


def _by_chunk(d: BaselineData, fn: Callable[[np.ndarray, slice], np.ndarray]) -> np.ndarray:
    """``fn(X rows, slice)`` over ``d`` ``CHUNK_ROWS`` windows at a time, stacked (rows of
    a lazy ``d.X`` are read per chunk; a window's result must depend on that window only)."""
    return np.concatenate([fn(np.asarray(d.X[sl]), sl) for sl in chunks(d.y.size, CHUNK_ROWS)])


# --------------------------------------------------------------------------
# the four baselines (inputs validated; each returns (proba_val, proba_test, info))


def _majority(train, val, test, k, seed):
    freq = np.bincount(train.y, minlength=k) / train.y.size
    info = {"train_frequencies": [float(v) for v in freq], "majority_class": int(freq.argmax())}
    return (np.tile(freq, (val.y.size, 1)), np.tile(freq, (test.y.size, 1)), info)


def _clock_only(train, val, test, k, seed):
    """Two trees on ``t_since_start_s``: the detection score from a malicious-vs-clean tree
    (depth chosen on validation ROC AUC — the clock as a *detector*, as strong as a tree on
    time can be), the phase split from a class-balanced 4-class tree (depth on validation
    macro F1). P(clean) = 1 − P_bin(malicious); P(phase j ≥ 1) = P_bin(malicious) ·
    P_4(j | not clean)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.tree import DecisionTreeClassifier

    leaf = max(1, train.y.size // 200)
    t_tr, t_va, t_te = (d.t_since_start_s.reshape(-1, 1) for d in (train, val, test))

    def fit_phase(depth):
        tree = DecisionTreeClassifier(max_depth=depth, class_weight="balanced",
                                      min_samples_leaf=leaf, random_state=seed)
        tree.fit(t_tr, train.y)
        return tree, _full_proba(tree.predict_proba(t_va), tree.classes_, k)

    (depth, tree, _), scores = _select(CLOCK_DEPTHS, fit_phase, val.y, k)

    def p_mal(m, t):
        p = m.predict_proba(t)
        return p[:, list(m.classes_).index(True)] if True in m.classes_ else np.zeros(len(t))

    det_scores, det = {}, None
    two_classes = np.unique(val.y > 0).size == 2
    for d in CLOCK_DEPTHS:
        m = DecisionTreeClassifier(max_depth=d, min_samples_leaf=leaf, random_state=seed)
        m.fit(t_tr, train.y > 0)
        auc = float(roc_auc_score(val.y > 0, p_mal(m, t_va))) if two_classes else 0.5
        det_scores[str(d)] = auc
        if det is None or auc > det[0]:
            det = (auc, d, m)

    def combine(t):
        phase = _full_proba(tree.predict_proba(t), tree.classes_, k)
        mal = phase[:, 1:]
        total = mal.sum(axis=1, keepdims=True)
        share = np.where(total > 0, mal / np.where(total > 0, total, 1.0), 1.0 / (k - 1))
        pm = p_mal(det[2], t)[:, None]
        return np.hstack([1.0 - pm, pm * share])

    info = {"feature": "t_since_start_s", "max_depth": depth, "min_samples_leaf": leaf,
            "n_leaves": int(tree.get_n_leaves()), "val_macro_f1_by_depth": scores,
            "detection_max_depth": det[1], "val_roc_auc_by_depth": det_scores}
    return combine(t_va), combine(t_te), info


def _robust_baseline(V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column median and floored 1.4826·MAD of finite values (NaN if none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column -> NaN, handled later
        med = np.nanmedian(V, axis=0)
        mad = np.nanmedian(np.abs(V - med), axis=0)
    # floor: a channel constant on benign windows must not give infinite z
    return med, np.maximum(MAD_TO_SIGMA * mad, 1e-3 * (1.0 + np.abs(med)))


def _rule_zscore(train, val, test, k, seed):
    from scipy.special import expit
    from sklearn.linear_model import LogisticRegression

    chans = channel_names("realistic")
    col = {n: i for i, n in enumerate(train.feature_names)}
    used = [c for c in chans if f"{c}__mean" in col]
    if not used:
        raise ValueError("`train.feature_names` has no '<channel>__mean' feature of a "
                         "realistic channel; rule-zscore needs one")
    idx = [col[f"{c}__mean"] for c in used]

    def transform(X):  # realistic channels are non-negative rates/gauges: log1p squashes bursts
        with np.errstate(invalid="ignore"):
            return np.log1p(np.maximum(np.asarray(X[:, idx], dtype=np.float64), 0.0))

    V_tr = transform(train.X)
    benign = train.y == 0  # only benign train windows ever enter a baseline
    if not benign.any():
        raise ValueError("`train` has no benign (y == 0) windows; rule-zscore needs some")
    pooled = _robust_baseline(V_tr[benign])
    own = {}
    for h in np.unique(train.host_id[benign]):
        med, sig = _robust_baseline(V_tr[benign & (train.host_id == h)])
        ok = np.isfinite(med)  # a channel the host never observed: pooled for that channel
        own[str(h)] = (np.where(ok, med, pooled[0]), np.where(ok, sig, pooled[1]))
    fell_back = {arg: sorted(str(h) for h in np.unique(d.host_id) if str(h) not in own)
                 for arg, d in (("train", train), ("val", val), ("test", test))}

    def score_rows(X, host):
        V = transform(X)
        med, sig = np.empty_like(V), np.empty_like(V)
        for h in np.unique(host):
            rows = host == h
            med[rows], sig[rows] = own.get(str(h), pooled)
        az = np.abs((V - med) / sig)
        m = np.where(np.isfinite(az), az, -np.inf).max(axis=1)
        return np.log1p(np.where(np.isfinite(m), m, 0.0)).reshape(-1, 1)  # none finite -> 0

    def score(d):
        return _by_chunk(d, lambda X, sl: score_rows(X, d.host_id[sl]))

    s_val, s_te = score(val), score(test)
    mal = (val.y != 0).astype(np.int64)
    if mal.min() == mal.max():
        raise ValueError("`val` must hold clean and malicious windows to Platt-scale rule-zscore")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        platt = LogisticRegression(C=PLATT_C, solver="lbfgs", max_iter=1000).fit(s_val, mal)
    coef, icpt = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    clamped = coef < 0  # a larger anomaly never means "more clean": no ranking rather than a flip
    if clamped:
        prev = float(mal.mean())
        coef, icpt = 0.0, float(np.log(prev / (1.0 - prev)))

    def proba(s):
        x = coef * s[:, 0] + icpt
        out = np.zeros((s.shape[0], k))
        # P(clean) straight from the logit: 1 - expit(x) rounds to 0 for x > 37 and would
        # tie every far-out window (the ranking then lives in P(clean), see Windows.key)
        out[:, 0], out[:, k - 1] = expit(-x), expit(x)
        return out

    info = {
        "channels": used, "channels_missing": [c for c in chans if c not in used],
        "transform": "log1p(max(x, 0)) of '<channel>__mean'",
        "baseline": "per host median and 1.4826*MAD of benign train windows, "
                    "sigma >= 1e-3*(1+|median|)",
        "score": "log1p(max |z| over finite channels)",
        "hosts_own_baseline": sorted(own), "hosts_pooled": fell_back,
        "platt": {"coef": coef, "intercept": icpt, "C": PLATT_C, "fitted_on": "val",
                  "clamped_negative_coef": bool(clamped),
                  "warnings": sorted({str(w.message) for w in caught})},
        "malicious_class": k - 1,
        "phases": "not attributed: p_clean = 1 - P, p_class_K-1 = P, other classes 0",
    }
    return proba(s_val), proba(s_te), info


def _logreg(train, val, test, k, seed):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    mean, std = fit_normalisation(train.X)  # train-only statistics
    gappy = ~np.isfinite(train.X).all(axis=0)  # features that ever miss in train

    def design(X):
        z, mask = standardise(X, mean, std)  # NaN -> 0
        return np.hstack([z, (~mask[:, gappy]).astype(np.float32)])

    def proba(model, d):  # val/test a chunk at a time: never the whole design matrix
        return _by_chunk(d, lambda X, sl: _full_proba(model.predict_proba(design(X)),
                                                      model.classes_, k))

    Z_tr = design(train.X)
    converged, n_iter = {}, {}

    def fit_one(c):
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000,
                                   random_state=seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(Z_tr, train.y)
        hit = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
        converged[str(c)] = not hit  # recorded here, so not repeated as a warning
        for w in caught:
            if w not in hit:
                warnings.warn(w.message, w.category, stacklevel=2)
        n_iter[str(c)] = int(np.max(model.n_iter_))
        return model, proba(model, val)

    (c, model, p_val), scores = _select(LOGREG_CS, fit_one, val.y, k)
    info = {"C": c, "val_macro_f1_by_C": scores, "converged_by_C": converged,
            "n_iter_by_C": n_iter, "n_features": int(train.X.shape[1]),
            "missing_indicators": [n for n, g in zip(train.feature_names, gappy) if g]}
    return p_val, proba(model, test), info


_FITTERS = {"majority": _majority, "clock-only": _clock_only,
            "rule-zscore": _rule_zscore, "logreg": _logreg}


def fit_baselines(train: BaselineData, val: BaselineData, test: BaselineData, *,
                  n_classes: int = 4, seed: int = 0, names: Sequence[str] = BASELINES,
                  max_train_windows: int = 40_000) -> dict[str, BaselineFit]:
    """Fit the requested baselines on train, choose on val, predict val and test.

    Returns ``{name: BaselineFit}`` in ``BASELINES`` order.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) \
            or n_classes < 2:
        raise ValueError(f"`n_classes` must be an integer >= 2, got {n_classes!r}")
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in BASELINES]
    if unknown or not names:
        raise ValueError(f"`names`: unknown baseline(s) {unknown} (expected some of {BASELINES})")
    k = int(n_classes)
    train = _check_data(train, "train", k)
    val, test = _check_data(val, "val", k), _check_data(test, "test", k)
    for arg, d in (("val", val), ("test", test)):
        if d.feature_names != train.feature_names:
            raise ValueError(f"`{arg}.feature_names` must equal `train.feature_names` "
                             f"({len(d.feature_names)} vs {len(train.feature_names)} names)")
    n_all = int(train.y.size)
    train = subsample_episodes(train, max_train_windows, seed)
    if is_lazy(train.X):                     # at most max_train_windows rows: read them once
        train = replace(train, X=train.X[:])
    common = {"n_train_windows": int(train.y.size), "n_train_windows_available": n_all,
              "train_capped": bool(train.y.size < n_all), "max_train_windows": int(max_train_windows),
              "n_train_episodes": int(np.unique(train.episode_id).size), "seed": int(seed)}
    fits = {}
    with _one_thread():
        for name in BASELINES:
            if name not in names:
                continue
            p_val, p_test, info = _FITTERS[name](train, val, test, k, int(seed))
            fits[name] = BaselineFit(name=name, proba_val=_f32(p_val), proba_test=_f32(p_test),
                                     info={**common, **info})
    return fits
