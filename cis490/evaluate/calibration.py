"""Calibration of the detection score: ECE, reliability bins, temperature scaling.

Bins. ``n_bins`` equal-width bins on [0, 1] with float64 edges ``i / n``:
bin i = ``[i/n, (i+1)/n)``, the last bin closed at 1.0.

ECE = sum_b (n_b / N) * |mean(y_b) - mean(s_b)| = sum_b |sum y_b - sum s_b| / N,
so it is a function of per-bin sums [count, sum y, sum s]. Those are additive
over episodes: with ``S`` the per-episode sums ``(G, 3 n)`` from
``calibration_sums`` and ``W`` the bootstrap's episode counts ``(B, G)``,
``ece_from_sums(W @ S)`` is every resample's ECE at once (as the confusion
counts are for macro F1 in ``bootstrap.py``).

Temperature scaling divides the log-probabilities by one scalar T fitted by
minimising the mean multiclass NLL on held-out (validation) windows; T > 1
softens an overconfident model, T < 1 sharpens an underconfident one. The
argmax, hence every thresholded decision on the top class, is unchanged.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from .detection import _as_bool, _as_score, _scalar, _weights, validate_codes

__all__ = [
    "apply_temperature", "calibration_sums", "ece", "ece_from_sums", "fit_temperature",
    "nll", "reliability",
]

T_BOUNDS = (0.05, 20.0)
EPS = 1e-12                    # log(0) guard on probabilities


# --------------------------------------------------------------------------
# validation


def _check_bins(n_bins) -> int:
    return _scalar(n_bins, "n_bins", "an integer >= 1", lambda v: v >= 1, integer=True)


def _pairs(y, s, n=None):
    yb = _as_bool(y, "y", n)
    return yb, _as_score(s, "s", yb.size)


def _proba(proba, y=None) -> tuple[np.ndarray, np.ndarray | None]:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"`proba` must be (N, K) with N >= 1, K >= 2, got shape {p.shape}")
    if not (np.isfinite(p).all() and p.min() >= 0):
        raise ValueError("`proba` must be finite and non-negative")
    if y is None:
        return p, None
    yy = np.asarray(y)
    if yy.shape != (p.shape[0],) or not np.issubdtype(yy.dtype, np.integer):
        raise ValueError(f"`y` must be {p.shape[0]} integer class labels, got "
                         f"shape {yy.shape} dtype {yy.dtype}")
    if yy.min() < 0 or yy.max() >= p.shape[1]:
        raise ValueError(f"`y` must lie in 0..{p.shape[1] - 1}")
    return p, yy.astype(np.int64)


# --------------------------------------------------------------------------
# binned calibration error


def _bin_index(s: np.ndarray, n_bins: int) -> np.ndarray:
    edges = np.arange(n_bins + 1) / n_bins
    return np.minimum(np.searchsorted(edges, s, side="right") - 1, n_bins - 1)


def _sums(b, y, s, w, n_bins, codes=None, n_groups=1) -> np.ndarray:
    """[count, sum y, sum s] per (episode,) bin: ``(n_groups, 3 n_bins)``."""
    key = b if codes is None else codes * n_bins + b
    size = n_groups * n_bins
    cols = [np.bincount(key, weights=w * v, minlength=size).reshape(n_groups, n_bins)
            for v in (np.ones_like(s), y.astype(np.float64), s)]
    return np.concatenate(cols, axis=1)


def ece_from_sums(sums) -> np.ndarray | float:
    """ECE from ``(..., 3 n_bins)`` [counts, sum y, sum s]; NaN where the count is 0."""
    a = np.asarray(sums, dtype=np.float64)
    if a.shape[-1] % 3 or a.shape[-1] == 0:
        raise ValueError(f"`sums` must end in an axis of 3 * n_bins, got shape {a.shape}")
    n = a.shape[-1] // 3
    count, sy, ss = a[..., :n], a[..., n:2 * n], a[..., 2 * n:]
    total = count.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, np.abs(sy - ss).sum(axis=-1) / total, np.nan)
    return float(out) if out.ndim == 0 else out


def ece(y, s, n_bins: int = 15, sample_weight=None) -> float:
    """Expected calibration error of score ``s`` for the binary truth ``y``."""
    yb, sc = _pairs(y, s)
    n_bins = _check_bins(n_bins)
    w = _weights(sample_weight, yb.size)
    w = np.ones(yb.size) if w is None else w
    if not w.sum() > 0:
        raise ValueError("`y` must hold at least one window with weight > 0")
    return ece_from_sums(_sums(_bin_index(sc, n_bins), yb, sc, w, n_bins)[0])


def calibration_sums(codes, n_groups, y, s, n_bins: int = 15) -> np.ndarray:
    """Per-episode [counts, sum y, sum s] per bin, float64 ``(G, 3 n_bins)``."""
    c = validate_codes(codes, n_groups)
    yb, sc = _pairs(y, s, c.size)
    n_bins = _check_bins(n_bins)
    return _sums(_bin_index(sc, n_bins), yb, sc, np.ones(sc.size), n_bins,
                 codes=c, n_groups=int(n_groups))


def reliability(y, s, n_bins: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: (mean score, fraction positive, count); NaN means for empty bins."""
    yb, sc = _pairs(y, s)
    n_bins = _check_bins(n_bins)
    sums = _sums(_bin_index(sc, n_bins), yb, sc, np.ones(sc.size), n_bins)[0]
    count, sy, ss = sums[:n_bins], sums[n_bins:2 * n_bins], sums[2 * n_bins:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(count > 0, ss / count, np.nan),
                np.where(count > 0, sy / count, np.nan), count.astype(np.int64))


# --------------------------------------------------------------------------
# temperature scaling


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(proba, y, temperature: float = 1.0) -> float:
    """Mean multiclass negative log-likelihood after temperature ``temperature``."""
    p, yy = _proba(proba, y)
    return _nll(np.log(np.clip(p, EPS, 1.0)), yy, float(temperature))


def _nll(logp: np.ndarray, y: np.ndarray, t: float) -> float:
    return float(-_log_softmax(logp / t)[np.arange(y.size), y].mean())


def fit_temperature(proba, y) -> float:
    """T in [0.05, 20] minimising the mean NLL of softmax(log p / T).

    Bounded 1-D minimisation on log T (the NLL is smooth and, in practice,
    unimodal in log T); deterministic.
    """
    p, yy = _proba(proba, y)
    logp = np.log(np.clip(p, EPS, 1.0))
    res = minimize_scalar(lambda u: _nll(logp, yy, float(np.exp(u))),
                          bounds=tuple(np.log(T_BOUNDS)), method="bounded",
                          options={"xatol": 1e-6})
    return float(np.exp(res.x))


def apply_temperature(proba, temperature: float) -> np.ndarray:
    """softmax(log(clip(p, 1e-12, 1)) / T) as float32 rows summing to 1."""
    p, _ = _proba(proba)
    t = _scalar(temperature, "temperature", "a finite number > 0",
                lambda v: 0 < v < np.inf)
    out = np.exp(_log_softmax(np.log(np.clip(p, EPS, 1.0)) / t))
    out /= out.sum(axis=1, keepdims=True)
    return out.astype(np.float32)
